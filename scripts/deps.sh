#!/bin/bash
# Install everything the project needs from Debian's archive: build
# dependencies (Debian 12 + bookworm-backports for meson >= 1.5), a
# deb-src entry for Debian 13 (QEMU 10.0 source), firmware and the guest's
# packages.  Safe to re-run; does nothing when all is present.
STEP=deps
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

PKGS=(build-essential ccache ninja-build pkg-config libglib2.0-dev
      libpixman-1-dev libfdt-dev zlib1g-dev flex bison python3-venv
      python3-setuptools dpkg-dev seabios qemu-system-data busybox-static
      ipxe-qemu cpio gzip iproute2 python3-matplotlib valgrind
      clang-14 libclang-rt-14-dev llvm-14
      libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu
      linux-perf)
# clang-14, its sanitizer and libFuzzer runtimes (libclang-rt-14-dev) and
# llvm-symbolizer (llvm-14): make sanitize and make fuzz.
# libvirt-*: make libvirt-demo (Debian 12's libvirt 9.0: its <qemu:override>
# sets the balloon's free-page-hint and iothread properties).
# linux-perf: make profile's sampled run of a freed guest's migration.
# qemu-system-x86: Debian's own QEMU 10.0 build, for the compatibility tests
BPO_PKGS=(meson python3-pycotap qemu-system-x86)
LIST=/etc/apt/sources.list.d/qemu-free-page-hint.sources

# The URI of the machine's own Debian 12 archive entry, so that a user
# with another mirror gets that mirror.
debian_mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        if [ ! -f "$f" ] || [ "$f" = "$LIST" ]; then continue; fi
        awk 'BEGIN { RS = ""; FS = "\n" }
             {
                 uri = ""; suites = ""; types = ""
                 for (i = 1; i <= NF; i++) {
                     if ($i ~ /^URIs:/)   { uri = $i;    sub(/^URIs:[ \t]*/, "", uri) }
                     if ($i ~ /^Suites:/) { suites = $i }
                     if ($i ~ /^Types:/)  { types = $i }
                 }
                 if (types ~ /deb/ && suites ~ /[ \t]bookworm([ \t]|$)/) {
                     split(uri, u, " "); print u[1]; exit
                 }
             }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk '$1 == "deb" && $0 ~ /[ \t]bookworm[ \t]/ {
                 for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i ~ /:\/\//) { print $i; exit }
             }' "$f"
    done
}

missing() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' ||
            printf '%s\n' "$p"
    done
}

meson_ok() {
    command -v meson >/dev/null &&
        dpkg --compare-versions "$(meson --version)" ge 1.5
}

need_src=yes
[ -f "$LIST" ] && need_src=no
need=$(missing "${PKGS[@]}" "${BPO_PKGS[@]}")
if [ -z "$need" ] && meson_ok && [ "$need_src" = no ]; then
    log "all dependencies present"
    exit 0
fi

[ "$(id -u)" = 0 ] || die "installing packages needs root" "run 'sudo make deps' once"

if [ "$need_src" = yes ]; then
    mirror=$(debian_mirror | head -n 1)
    [ -n "$mirror" ] || die "no Debian 12 (bookworm) entry found in the apt sources" \
        "add your Debian 12 mirror to /etc/apt/sources.list.d/ and re-run 'make deps'"
    log "adding deb-src trixie and bookworm-backports from $mirror to $LIST"
    cat > "$LIST.tmp" <<EOT
# Added by qemu-free-page-hint's scripts/deps.sh
Types: deb-src
URIs: $mirror
Suites: trixie trixie-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $mirror
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOT
    mv "$LIST.tmp" "$LIST"
fi

log "apt-get update"
apt-get update -qq || die "apt-get update failed" "check the network and $LIST"
export DEBIAN_FRONTEND=noninteractive
log "installing: $(echo "$need" | tr '\n' ' ')"
# shellcheck disable=SC2046
apt-get install -y -q --no-install-recommends "${PKGS[@]}" >/dev/null ||
    die "apt-get install of the build dependencies failed" "see apt's message above"
apt-get install -y -q --no-install-recommends -t bookworm-backports "${BPO_PKGS[@]}" >/dev/null ||
    die "apt-get install from bookworm-backports failed" "see apt's message above"
meson_ok || die "meson >= 1.5 is still missing" "apt-get install -t bookworm-backports meson"
log "done"
