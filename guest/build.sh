#!/bin/bash
# Build the test guest from Debian packages: the current Debian 12 kernel
# (linux-image-amd64, unpacked, not installed) with its virtio modules,
# busybox-static, and our memagent, into build/guest/{vmlinuz,initrd.gz}.
STEP=guest
# shellcheck source=../scripts/lib.sh
. "$(dirname "$0")/../scripts/lib.sh"

G=$BUILD/guest
mkdir -p "$G"
cd "$G"

kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
       awk '/Depends: linux-image-[0-9]/ && !n++ { print $2 }')
[ -n "$kpkg" ] || die "cannot resolve linux-image-amd64 to a kernel package" "run 'make deps' (apt-get update)"
stamp="$kpkg $(sha256sum "$TOP/guest/init" "$TOP/guest/memagent.c" "$TOP/guest/build.sh" | sha256sum | cut -c1-16)"
if [ -f initrd.gz ] && [ "$(cat stamp 2>/dev/null)" = "$stamp" ]; then
    log "up to date ($kpkg)"
    exit 0
fi

if [ ! -d "kernel-$kpkg" ]; then
    log "downloading $kpkg"
    rm -f ./*.deb
    apt-get download -q "$kpkg" >/dev/null 2>&1 ||
        die "apt-get download $kpkg failed" "run 'make deps' and retry"
    rm -rf kernel.tmp
    dpkg -x ./"$kpkg"_*.deb kernel.tmp
    rm -f ./*.deb
    mv kernel.tmp "kernel-$kpkg"
fi
kdir=kernel-$kpkg
cp "$kdir"/boot/vmlinuz-* vmlinuz.tmp  # atomic: others may be booting it
mv vmlinuz.tmp vmlinuz

log "building memagent"
gcc -O2 -Wall -Wextra -Werror -static -o memagent "$TOP/guest/memagent.c" ||
    die "memagent does not compile" "see the compiler's message above"

log "assembling the initramfs"
rm -rf root
mkdir -p root/bin root/proc root/sys root/dev root/lib/modules
cp /bin/busybox root/bin/busybox
cp "$TOP/guest/init" root/init
cp memagent root/memagent
for m in virtio virtio_ring virtio_pci_legacy_dev virtio_pci_modern_dev \
         virtio_pci virtio_balloon virtio_mem; do
    f=$(find "$kdir/lib/modules" -name "$m.ko*" | head -n 1)
    [ -n "$f" ] || die "module $m not found in $kpkg" "check the kernel package"
    case "$f" in
        *.ko) cp "$f" root/lib/modules/ ;;
        *.ko.xz) xz -dc "$f" > "root/lib/modules/$m.ko" ;;
        *) die "module $f has an unknown compression" "extend guest/build.sh" ;;
    esac
done
chmod +x root/init
(cd root && find . | cpio -o -H newc --quiet | gzip -1) > initrd.gz.tmp
mv initrd.gz.tmp initrd.gz
echo "$stamp" > stamp
log "ready: $G/vmlinuz, $G/initrd.gz ($kpkg)"
