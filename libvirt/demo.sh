#!/bin/bash
# make libvirt-demo: free page hints through libvirt, as an operator gets
# them.  Two private libvirt daemons on this machine, virsh migrate --live
# of the test guest between them, a live snapshot with hints on and off,
# and the errors operators meet.  See harness/libvirt_demo.py for the options
# (--short, --mem MIB, --json FILE, --keep, print-xml).
#
# Everything it starts lives under one run directory; whatever happens
# (an error, Ctrl-C, a kill of the demo), the trap below ends the daemons
# and QEMUs whose pid files are there and removes the directory.
STEP=libvirt-demo
# shellcheck source=../scripts/lib.sh
. "$(dirname "$0")/../scripts/lib.sh"

if ! command -v virsh >/dev/null || [ ! -x /usr/sbin/libvirtd ]; then
    die "libvirt is not installed" "run 'make deps' as root"
fi
[ "$(id -u)" = 0 ] || die "the demo runs two system libvirt daemons" "run it as root"

keep=no
for a in "$@"; do
    if [ "$a" = --keep ]; then keep=yes; fi
done

rundir=$(mktemp -d /tmp/fph-libvirt-XXXXXX)
chmod 755 "$rundir"

# end PIDFILE MARKER: kill the process of PIDFILE if its command line
# still contains MARKER (never a process that reused the number)
end() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 0
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 0
    if tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "$2"; then
        log "ending $(basename "$1" .pid) (pid $pid) left behind"
        kill -9 "$pid" 2>/dev/null || true
    fi
}

cleanup() {
    local f
    for f in "$rundir"/*/run/libvirt/qemu/*.pid; do
        [ -f "$f" ] && end "$f" "guest=fph-"
    done
    for f in "$rundir"/*/run/libvirtd.pid; do
        [ -f "$f" ] && end "$f" "$rundir"
    done
    if [ "$keep" = yes ]; then
        log "kept $rundir"
    else
        rm -rf "$rundir"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

/usr/bin/python3 -m harness.libvirt_demo --rundir "$rundir" "$@" ||
    die "the libvirt demo failed" "see the [libvirt] ERROR above; logs are kept with --keep"
