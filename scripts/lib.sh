# shellcheck shell=bash
# Common helpers for the harness scripts.  Sourced, never run.

set -euo pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$TOP/build}
QEMU_VERSION=${QEMU_VERSION:-1:10.0.13+ds-0+deb13u1}
SRC_UNPACKED=$BUILD/src/unpacked     # Debian's source, patches applied
WT=$BUILD/qemu                       # git work tree: upstream, base, series
OBJ=$BUILD/obj                       # our build
OBJ_STOCK=$BUILD/obj-stock           # stock (upstream + Debian) build
STOCK_WT=$BUILD/qemu-stock           # git worktree at the upstream commit
export TOP BUILD QEMU_VERSION SRC_UNPACKED WT OBJ OBJ_STOCK STOCK_WT
# The Python harness is the package harness/ at the top; QMP comes from
# QEMU's own python/qemu in the work tree
PYTHONPATH=$TOP:$WT/python${PYTHONPATH:+:$PYTHONPATH}
export PYTHONPATH

STEP=${STEP:-$(basename "$0" .sh)}

log() { printf '[%s] %s\n' "$STEP" "$*" >&2; }

# die MESSAGE [HINT]: stop, naming the step and what to do.
die() {
    printf '[%s] ERROR: %s\n' "$STEP" "$1" >&2
    [ $# -gt 1 ] && printf '[%s] what to do: %s\n' "$STEP" "$2" >&2
    exit 1
}

# link_firmware OBJ: Debian's +ds source has no firmware blobs; link
# Debian's seabios, qemu-system-data and ipxe-qemu where QEMU looks for
# them in the build tree OBJ, keeping what the build put there (its links
# may dangle until built).
link_firmware() {
    local bundle=$1/qemu-bundle/usr/local/share/qemu f
    mkdir -p "$bundle"
    for f in /usr/share/seabios/* /usr/share/qemu/* /usr/lib/ipxe/qemu/*; do
        [ -e "$f" ] || die "$f is missing" "run 'make deps' (seabios, qemu-system-data, ipxe-qemu)"
        [ -e "$bundle/$(basename "$f")" ] || [ -L "$bundle/$(basename "$f")" ] ||
            ln -s "$f" "$bundle/"
    done
}

# Configure flags shared by our build and the stock build, so that the
# comparison is fair.
# shellcheck disable=SC2034
QEMU_CONFIGURE_FLAGS=(--target-list=x86_64-softmmu --disable-docs
    --disable-werror --python=/usr/bin/python3 --disable-install-blobs)
# ccache, where present, through --cc: QEMU's configure names the compiler
# itself, so meson would not add ccache on its own.
if command -v ccache >/dev/null; then
    QEMU_CONFIGURE_FLAGS+=(--cc="ccache cc" --cxx="ccache c++")
fi
