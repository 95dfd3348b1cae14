#!/usr/bin/python3
"""Postcopy with free page hints, end to end: the Debian guest frees most
of its memory and keeps churning; migration switches to postcopy after the
guest's first round of hints; on the destination the guest allocates and
writes memory it had hinted free while postcopy still runs; then it
verifies everything it keeps.  Optionally the migration channel breaks in
the middle of postcopy and migration resumes on a new one.

    postcopy.py [--mem 1024] [--recover] [--no-hints] [--cmdline OPTIONS]
"""

import argparse
import json
import os
import sys
import time

from harness.scenario import KEEP_MIB, mib
from harness.vm import Guest, HarnessError, hint_negotiated, log, probe_accel
from harness.waits import wait_migration

PRECOPY_BANDWIDTH = 64 << 20     # slow enough to switch in the middle
POSTCOPY_BANDWIDTH = 16 << 20    # postcopy lasts several seconds
CHURN_MIB = 128
TIMEOUT = 300
HINT_TIMEOUT = 120   # for the first hints, at precopy's start
# Debian's kernel zeroes the pages its driver allocates for a hint round
# (init_on_alloc), which dirties them again: at the switch they are dirty
# and go as ordinary (zero) pages.  Without it the hinted pages stay clean
# and reach the destination only through what the switch does for them.
INIT_ON_ALLOC_OFF = "init_on_alloc=0"


def wait_status(g, want, timeout=60):
    """query-migrate on @g until its status is in @want (no cancel)."""
    return wait_migration(g, timeout, f"migration ({g.name})", want=want,
                          cancel=False)


def wait_hinted(src, timeout):
    """Wait while precopy runs until a round of hints is complete and the
    hints have removed pages from the dirty bitmap; return query-migrate's
    free-page-hint member then."""
    deadline = time.monotonic() + timeout
    while True:
        fph = wait_status(src, ("active",)).get("free-page-hint") or {}
        if fph.get("rounds-completed") and fph.get("pages-cleared"):
            return fph
        if time.monotonic() > deadline:
            raise HarnessError(f"no hint round cleared a page within {timeout}"
                               f" s of precopy (free-page-hint: {fph})")
        time.sleep(0.05)


def recover_oob(dst, uri, timeout=60):
    """migrate-recover on the destination, out of band: while postcopy is
    paused its main loop may wait for a page that only the new channel
    will bring, so in-band commands (query-migrate too) can hang.  Retry
    until the destination has noticed that the channel broke."""
    deadline = time.monotonic() + timeout
    for n in range(1000000):
        r = dst.qmp.cmd_obj({"exec-oob": "migrate-recover",
                             "arguments": {"uri": uri}, "id": f"recover{n}"})
        if "error" not in r:
            return
        if time.monotonic() > deadline:
            raise HarnessError(f"migrate-recover: {r['error']}")
        time.sleep(0.05)


def switch(src, dst, hints):
    """Start a postcopy migration of @src to @dst and switch to postcopy
    once the hints are in; return query-migrate's free-page-hint member at
    the switch and the seconds from the start until @dst ran the guest."""
    uri = "unix:" + os.path.join(dst.dir, "migrate.sock")
    caps = [{"capability": "postcopy-ram", "state": True}]
    for g in (src, dst):
        g.cmd("migrate-set-capabilities", capabilities=caps)
    src.cmd("migrate-set-parameters", **{
        "max-bandwidth": PRECOPY_BANDWIDTH,
        "max-postcopy-bandwidth": POSTCOPY_BANDWIDTH})
    dst.cmd("migrate-incoming", uri=uri)
    t0 = time.monotonic()
    src.cmd("migrate", uri=uri)
    # Switch once hints are in (or after a second of precopy without
    # hints): the guest's hints arrive on the balloon's iothread while
    # the migration thread sends, so only waiting for them makes the
    # order of the two certain
    if hints:
        at_switch = wait_hinted(src, HINT_TIMEOUT)
    else:
        time.sleep(1)
        at_switch = wait_status(src, ("active",)).get("free-page-hint")
    src.cmd("migrate-start-postcopy")
    wait_status(src, ("postcopy-active",))
    # The destination runs the guest once it has loaded the devices
    deadline = time.monotonic() + 60
    while not dst.cmd("query-status")["running"]:
        if time.monotonic() > deadline:
            raise HarnessError("the destination did not start the guest")
        time.sleep(0.02)
    switched = time.monotonic() - t0
    log(f"[postcopy] switched after {switched:.1f} s, hints then: "
        f"{json.dumps(at_switch)}")
    return at_switch, switched


def pause_and_recover(src, dst):
    """Break postcopy's channel and recover it.  Right after the switch,
    while postcopy surely still runs (a destination that has not started
    the guest yet could not recover, and would fail the migration)."""
    uri2 = "unix:" + os.path.join(dst.dir, "recover.sock")
    src.cmd("migrate-pause")
    wait_status(src, ("postcopy-paused",))
    log("[postcopy] channel broken (migrate-pause); recovering")
    recover_oob(dst, uri2)
    src.cmd("migrate", uri=uri2, resume=True)
    wait_status(src, ("postcopy-active", "completed"))


def run(mem=1024, hints=True, recover=False, accel="tcg", cmdline=""):
    """One postcopy migration; returns a dict of what happened."""
    src = dst = None
    try:
        src = Guest("ours", mem, hints, accel=accel, name="src",
                    cmdline=cmdline)
        if hint_negotiated(src.boot()) != hints:
            raise HarnessError("the guest's driver did not negotiate hinting")
        src.agent(f"keep {KEEP_MIB}")
        src.agent(f"fill {mem - 256}", timeout=600)
        src.agent(f"churn {CHURN_MIB}")
        dst = Guest("ours", mem, hints, incoming=True, accel=accel, name="dst",
                    cmdline=cmdline)
        at_switch, switched = switch(src, dst, hints)
        if recover:
            pause_and_recover(src, dst)

        # The destination runs the guest: allocate and write memory that
        # the guest had hinted free on the source
        dst.attach_serial()
        t1 = time.monotonic()
        dst.agent("fill 256", timeout=TIMEOUT)
        fill_s = time.monotonic() - t1
        still_postcopy = src.cmd("query-migrate")["status"] != "completed"
        log(f"[postcopy] the destination's guest wrote 256 MiB in "
            f"{fill_s:.1f} s (postcopy {'still' if still_postcopy else 'no longer'}"
            " running)")

        info = wait_status(src, ("completed",), timeout=TIMEOUT)
        churn = dst.agent("churnstop", timeout=120)
        verify = dst.agent("verify", timeout=300)
        ram = info["ram"]
        return {
            "hints": hints, "recover": recover, "mem_mib": mem,
            "switch_s": switched, "fill_s": fill_s,
            "free_page_hint_at_switch": at_switch,
            "filled_in_postcopy": still_postcopy,
            "total_ms": info["total-time"], "downtime_ms": info["downtime"],
            "transferred": ram["transferred"],
            "postcopy_bytes": ram.get("postcopy-bytes", 0),
            "postcopy_requests": ram.get("postcopy-requests", 0),
            "verified_pages": int(verify["pages"]),
            "mismatches": int(verify["mismatches"]) + int(churn["mismatches"]),
            "churn_rounds": int(churn["rounds"]),
            "free_page_hint": info.get("free-page-hint"),
        }
    finally:
        for g in (src, dst):
            if g:
                g.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mem", type=int, default=1024)
    ap.add_argument("--recover", action="store_true")
    ap.add_argument("--no-hints", action="store_true")
    ap.add_argument("--cmdline", default=INIT_ON_ALLOC_OFF,
                    help="guest kernel options (default: %(default)s)")
    args = ap.parse_args()
    r = run(args.mem, not args.no_hints, args.recover, probe_accel(),
            args.cmdline)
    fph = r["free_page_hint"] or {}
    print(f"postcopy{' with recovery' if r['recover'] else ''}, hints "
          f"{'on' if r['hints'] else 'off'}, {r['mem_mib']} MiB guest: "
          f"{r['total_ms']} ms, {mib(r['transferred'])} sent "
          f"({mib(r['postcopy_bytes'])} in postcopy), "
          f"{fph.get('postcopy-free-pages', 0)} free pages sent as zero "
          f"pages; the guest wrote 256 MiB in {r['fill_s']:.1f} s on the "
          f"destination; {r['verified_pages']} pages verified, "
          f"{r['mismatches']} mismatches")
    print("query-migrate's free-page-hint member:")
    print(json.dumps(fph, indent=2))
    return 1 if r["mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())
