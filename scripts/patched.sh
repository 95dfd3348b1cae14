#!/bin/bash
# QEMU trees with patches that are not part of the series, each a git
# worktree of build/qemu at BASE with DIR/*.patch applied by git am, built
# in its own build/ with build.sh's configure flags:
#   make testaid   testaid/ (TCG with KVM's lazy dirty log clearing, for
#                  tests/e2e/kvm_semantics.py) on upstream and on the series:
#                  build/qemu-aid-stock, build/qemu-aid-ours
#   make ablation  bench/ablation/ (QEMU_FPH_ABLATE) on the series:
#                  build/qemu-ablate
#   patched.sh NAME:BASE:DIR... [-- prepare|build...]   (default: both)
# A tree is reset and its patches applied again only when BASE or DIR's
# patches changed (build/qemu-NAME.stamp), so that ninja rebuilds little.
STEP=patched
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

TREES=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do TREES+=("$1"); shift; done
[ "${1:-}" != "--" ] || shift
[ ${#TREES[@]} -gt 0 ] || die "no tree given" "see the usage at the top of $0"
[ -d "$WT/.git" ] || die "$WT is not prepared" "run 'make prepare'"

patches_of() {  # patches_of DIR: its patches, in order
    find "$TOP/$1" -name '*.patch' | sort
}

stamp_of() {  # stamp_of BASE DIR: what the tree must be built from
    local p
    mapfile -t p < <(patches_of "$2")
    [ ${#p[@]} -gt 0 ] || die "no patch in $TOP/$2" "git checkout $2"
    { git -C "$WT" rev-parse "$1^{commit}"; cat "${p[@]}"; } | sha256sum | cut -d' ' -f1
}

prepare_tree() {  # prepare_tree NAME BASE DIR
    local dir=$BUILD/qemu-$1 base=$2 pdir=$3 stamp want p
    stamp=$BUILD/qemu-$1.stamp
    want=$(stamp_of "$base" "$pdir")
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
        log "up to date: $dir ($base + $pdir/)"
        return
    fi
    log "applying $pdir/ to $dir on $base"
    mapfile -t p < <(patches_of "$pdir")
    git -C "$dir" am --abort >/dev/null 2>&1 || true
    git -C "$dir" reset -q --hard "$base"
    git -C "$dir" -c user.name="QEMU free page hint import" \
        -c user.email="qemu-fph@localhost" -c commit.gpgsign=false \
        am -q --keep-cr "${p[@]}" ||
        { git -C "$dir" am --abort >/dev/null 2>&1 || true
          die "$pdir/ does not apply on $base" \
              "rebase it on $base in $dir, then git format-patch it into $pdir/"; }
    echo "$want" > "$stamp"
}

build_tree() {  # build_tree NAME
    local src=$BUILD/qemu-$1 obj
    obj=$src/build
    [ -e "$src/.git" ] || die "$src is not prepared" "run its make target (testaid, ablation)"
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
              "fix its patches for $src's base"; }
    link_firmware "$obj"
    log "built: $obj/qemu-system-x86_64"
}

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(prepare build)
for step in "${steps[@]}"; do
    for t in "${TREES[@]}"; do
        IFS=: read -r name base pdir <<< "$t"
        case "$step" in
            prepare) prepare_tree "$name" "$base" "$pdir" ;;
            build) build_tree "$name" ;;
            *) die "unknown step '$step'" "use 'prepare' or 'build'" ;;
        esac
    done
done
