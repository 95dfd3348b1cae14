#!/bin/bash
# Configure and build one QEMU tree: "ours" (build/qemu, the series) or
# "stock" (build/qemu-stock, upstream + Debian).  Same configure flags for
# both; ccache makes the second and later builds quick.
#   build.sh ours|stock [ninja targets...]
STEP=build
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

which=${1:?usage: build.sh ours|stock [targets]}
shift
case "$which" in
    ours)  src=$WT ;;
    stock) src=$STOCK_WT ;;
    *) die "unknown tree '$which'" "use 'ours' or 'stock'" ;;
esac
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(qemu-system-x86_64)
STEP="build $which"

[ -d "$src/.git" ] || [ -f "$src/.git" ] || die "$src is not prepared" "run 'make prepare'"
obj=$src/build
export CCACHE_BASEDIR=$BUILD CCACHE_NOHASHDIR=1
if [ ! -f "$obj/build.ninja" ]; then
    log "configuring $src"
    rm -rf "$obj"
    mkdir -p "$obj"
    (cd "$obj" && ../configure "${QEMU_CONFIGURE_FLAGS[@]}" > configure.log 2>&1) ||
        die "configure failed (see $obj/configure.log)" \
            "run 'make deps'; if a package is missing, add it to scripts/deps.sh"
fi
log "ninja ${targets[*]} (progress: [done/total])"
ninja -C "$obj" "${targets[@]}" 2>&1 | tee "$obj/ninja.log" |
    awk '/^\[[0-9]+\/[0-9]+\]/ { n++; if (n % 200 == 0) { print "  " $1; fflush() } next }
         /error|FAILED/ { print; fflush() }' >&2
[ "${PIPESTATUS[0]}" = 0 ] || die "the build of $which failed (see $obj/ninja.log)" \
    "fix the failing patch in $WT and run 'make build' again"
# Debian's +ds source has no firmware blobs: take Debian's seabios and
# qemu-system-data, where QEMU looks for them in a build tree.
bundle=$obj/qemu-bundle/usr/local/share/qemu
mkdir -p "$bundle"
for f in /usr/share/seabios/* /usr/share/qemu/* /usr/lib/ipxe/qemu/*; do
    [ -e "$f" ] || die "$f is missing" "run 'make deps' (seabios, qemu-system-data, ipxe-qemu)"
    # Keep what the build put there (its links may dangle until built)
    [ -e "$bundle/$(basename "$f")" ] || [ -L "$bundle/$(basename "$f")" ] ||
        ln -s "$f" "$bundle/"
done
log "built: ${targets[*]}"
