#!/bin/bash
# Fetch QEMU's source package from Debian (apt verifies the signed index,
# dpkg-source verifies the checksums in the .dsc) and unpack it with
# Debian's own patch stack applied.  Falls back to the newest 10.0.x that
# Debian offers when the pinned version has left the archive.
STEP=source
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

stamp=$BUILD/src/.unpacked
if [ -f "$stamp" ]; then
    log "already unpacked: $(cat "$stamp")"
    exit 0
fi

mkdir -p "$BUILD/src"
cd "$BUILD/src"
rm -rf unpacked unpack.tmp

version=$QEMU_VERSION
# (Read apt-cache's answer whole: grep -q would stop early, and under
# pipefail the SIGPIPE would read as "not found".)
versions=$(apt-cache showsrc qemu 2>/dev/null | sed -n 's/^Version: //p')
if ! printf '%s\n' "$versions" | grep -qx -- "$version"; then
    newest=$(printf '%s\n' "$versions" | grep -E '^1:10\.0\.' | sort -V | tail -n 1)
    [ -n "$newest" ] || die "Debian's archive offers no qemu 10.0.x source" \
        "run 'make deps' (it adds the deb-src trixie entry), then retry"
    log "WARNING: qemu $version is no longer in the archive; using $newest instead"
    version=$newest
fi

upstream=${version#*:}
dsc=qemu_${upstream}.dsc
if [ ! -f "$dsc" ]; then
    log "downloading qemu $version source (about 40 MB)"
    apt-get source --download-only -q "qemu=$version" >/dev/null ||
        die "apt-get source qemu=$version failed" "check the network; re-run 'make source'"
fi

# apt checked the downloads against the archive's signed index; check
# again here so that a file tampered with or truncated since is refused.
log "verifying checksums of $dsc and its tarballs against the archive index"
apt-cache showsrc qemu |
    awk -v v="$version" 'BEGIN { RS = ""; FS = "\n" }
        index($0, "\nVersion: " v "\n") {
            for (i = 1; i <= NF; i++) {
                if ($i ~ /^Checksums-Sha256:/) { f = 1; continue }
                if ($i !~ /^ /) f = 0
                if (f) { split($i, c, " "); print c[1] "  " c[3] }
            }
        }' |
    sort -u > SHA256SUMS
[ -s SHA256SUMS ] || die "apt-cache gave no checksums for qemu $version" "run 'make deps' and retry"
sha256sum --quiet -c SHA256SUMS ||
    die "checksum mismatch in $BUILD/src" "delete $BUILD/src and run 'make source' again"

log "unpacking $dsc with Debian's patches (dpkg-source checks the .dsc checksums)"
dpkg-source -x "$dsc" unpack.tmp >/dev/null 2>dpkg-source.log ||
    die "dpkg-source could not unpack $dsc (see $BUILD/src/dpkg-source.log)" \
        "delete $BUILD/src and run 'make source' again"
[ -f unpack.tmp/VERSION ] || die "unpacked tree has no VERSION file" "delete $BUILD/src and retry"
mv unpack.tmp unpacked
echo "qemu $version (QEMU $(cat unpacked/VERSION))" > "$stamp"
log "ready: $(cat "$stamp")"
