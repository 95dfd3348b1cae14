#!/bin/bash
# The test aid (testaid/*.patch): TCG with KVM's lazy dirty log clearing
# (-accel tcg,x-lazy-dirty-clear=on), for tests/e2e/kvm_semantics.py.  It is
# not part of the series.  Two git worktrees of build/qemu, the aid applied
# with git am on top of
#   build/qemu-aid-stock   upstream (QEMU 10.0.13 + Debian's patches)
#   build/qemu-aid-ours    series
# each built in its own build/ with build.sh's configure flags.
#   testaid.sh [prepare|build]...   (default: both)
# A tree is reset and the aid applied again only when its base commit or
# testaid/ changed (build/qemu-aid-*.stamp), so that ninja rebuilds little.
STEP=testaid
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

TREES=("aid-stock upstream" "aid-ours series")
mapfile -t aid_patches < <(find "$TOP/testaid" -name '*.patch' | sort)
[ ${#aid_patches[@]} -gt 0 ] || die "no patch in $TOP/testaid" "git checkout testaid/"
[ -d "$WT/.git" ] || die "$WT is not prepared" "run 'make prepare'"

stamp_of() {  # stamp_of BASE: what the tree must be built from
    { git -C "$WT" rev-parse "$1^{commit}"; cat "${aid_patches[@]}"; } | sha256sum | cut -d' ' -f1
}

prepare_tree() {  # prepare_tree NAME BASE
    local dir=$BUILD/qemu-$1 base=$2 stamp want
    stamp=$BUILD/qemu-$1.stamp
    want=$(stamp_of "$base")
    # A worktree whose repository went away (prepare made build/qemu anew)
    if [ -e "$dir/.git" ] && ! git -C "$dir" rev-parse -q --verify HEAD >/dev/null 2>&1; then
        log "removing $dir: its repository is gone"
        rm -rf "$dir"
    fi
    if [ ! -e "$dir/.git" ]; then
        log "creating the worktree $dir at $base"
        git -C "$WT" worktree prune
        git -C "$WT" worktree add -q --detach "$dir" "$base"
    elif [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
         [ -z "$(git -C "$dir" status --porcelain --untracked-files=no)" ]; then
        log "up to date: $dir ($base + testaid/)"
        return
    fi
    log "applying testaid/ to $dir on $base"
    git -C "$dir" am --abort >/dev/null 2>&1 || true
    git -C "$dir" reset -q --hard "$base"
    git -C "$dir" -c user.name="QEMU free page hint import" \
        -c user.email="qemu-fph@localhost" -c commit.gpgsign=false \
        am -q --keep-cr "${aid_patches[@]}" ||
        { git -C "$dir" am --abort >/dev/null 2>&1 || true
          die "testaid/ does not apply on $base" \
              "rebase the aid on $base in $dir, then git format-patch it into testaid/"; }
    echo "$want" > "$stamp"
}

build_tree() {  # build_tree NAME
    local src=$BUILD/qemu-$1 obj bundle f
    obj=$src/build
    [ -e "$src/.git" ] || die "$src is not prepared" "run 'scripts/testaid.sh prepare'"
    export CCACHE_BASEDIR=$BUILD CCACHE_NOHASHDIR=1
    if [ ! -f "$obj/build.ninja" ]; then
        log "configuring $src"
        rm -rf "$obj"
        mkdir -p "$obj"
        (cd "$obj" && ../configure "${QEMU_CONFIGURE_FLAGS[@]}" > configure.log 2>&1) ||
            die "configure failed (see $obj/configure.log)" "run 'make deps'"
        # As build.sh: the cross file must not force -Werror on a meson rerun
        sed -i '/^werror = true$/d' "$obj/config-meson.cross"
    fi
    log "ninja qemu-system-x86_64 in $obj"
    ninja -C "$obj" qemu-system-x86_64 > "$obj/ninja.log" 2>&1 ||
        { grep -E 'error|FAILED' "$obj/ninja.log" | head -20 >&2
          die "the build of $src failed (see $obj/ninja.log)" \
              "fix the aid (testaid/) for $src's base"; }
    # As build.sh: Debian's firmware where QEMU looks for it in a build tree
    bundle=$obj/qemu-bundle/usr/local/share/qemu
    mkdir -p "$bundle"
    for f in /usr/share/seabios/* /usr/share/qemu/* /usr/lib/ipxe/qemu/*; do
        [ -e "$f" ] || die "$f is missing" "run 'make deps'"
        [ -e "$bundle/$(basename "$f")" ] || [ -L "$bundle/$(basename "$f")" ] ||
            ln -s "$f" "$bundle/"
    done
    log "built: $obj/qemu-system-x86_64"
}

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(prepare build)
for step in "${steps[@]}"; do
    for t in "${TREES[@]}"; do
        read -r name base <<< "$t"
        case "$step" in
            prepare) prepare_tree "$name" "$base" ;;
            build) build_tree "$name" ;;
            *) die "unknown step '$step'" "use 'prepare' or 'build'" ;;
        esac
    done
done
