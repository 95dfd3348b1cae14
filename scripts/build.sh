#!/bin/bash
# Configure and build one QEMU tree: "ours" (build/qemu, the series),
# "stock" (build/qemu-stock, upstream + Debian), "san" (the series again,
# in build/qemu/build-san: clang with ASAN, UBSAN and libFuzzer, for
# `make sanitize` and `make fuzz`) or "series-check" (build/qemu-series-check,
# the worktree of `make series-check`, at one commit of the series after
# another).  Same configure flags for all; ccache makes the second and later
# builds quick.
#   build.sh ours|stock|san|series-check [ninja targets...]
STEP=build
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

which=${1:?usage: build.sh ours|stock|san|series-check [targets]}
shift
flags=("${QEMU_CONFIGURE_FLAGS[@]}")
case "$which" in
    ours)  src=$WT; obj=$src/build ;;
    stock) src=$STOCK_WT; obj=$src/build ;;
    series-check) src=$BUILD/qemu-series-check; obj=$src/build ;;
    san)   src=$WT; obj=$src/build-san
           # --enable-fuzzing needs clang's libFuzzer; one build serves the
           # sanitizer qtest and the fuzzer (the fuzzer's coverage hooks in
           # hw/ cost the qtest little).  The later --cc wins in configure.
           cc=clang-14 cxx=clang++-14
           if command -v ccache >/dev/null; then cc="ccache $cc" cxx="ccache $cxx"; fi
           flags+=(--cc="$cc" --cxx="$cxx" --enable-asan --enable-ubsan
                   --enable-fuzzing) ;;
    *) die "unknown tree '$which'" "use 'ours', 'stock', 'san' or 'series-check'" ;;
esac
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(qemu-system-x86_64)
STEP="build $which"

[ -d "$src/.git" ] || [ -f "$src/.git" ] || die "$src is not prepared" "run 'make prepare'"
export CCACHE_BASEDIR=$BUILD CCACHE_NOHASHDIR=1
if [ ! -f "$obj/build.ninja" ]; then
    log "configuring $src"
    rm -rf "$obj"
    mkdir -p "$obj"
    (cd "$obj" && ../configure "${flags[@]}" > configure.log 2>&1) ||
        die "configure failed (see $obj/configure.log)" \
            "run 'make deps'; if a package is missing, add it to scripts/deps.sh"
    # In a git tree configure writes "werror = true" into the cross file
    # and overrides it with -Dwerror=false only on its own command line;
    # when ninja reruns meson (a patch that changes a meson.build), the
    # cross file wins and every object is rebuilt with -Werror.
    sed -i '/^werror = true$/d' "$obj/config-meson.cross"
fi
log "ninja ${targets[*]} (progress: [done/total])"
ninja -C "$obj" "${targets[@]}" 2>&1 | tee "$obj/ninja.log" |
    awk '/^\[[0-9]+\/[0-9]+\]/ { n++; if (n % 200 == 0) { print "  " $1; fflush() } next }
         /error|FAILED/ { print; fflush() }' >&2
[ "${PIPESTATUS[0]}" = 0 ] || die "the build of $which failed (see $obj/ninja.log)" \
    "fix the failing patch in $WT and build again"
link_firmware "$obj"
log "built: ${targets[*]}"
