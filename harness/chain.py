#!/usr/bin/python3
"""One guest with free page hints migrated along a chain of QEMUs, e.g.
ours -> stock -> stock: the first hop with the VM stopped (QMP stop; the
destination continues it), every later hop while it runs, after the guest
has written and freed memory again so that its free pages hold old data.
After each hop the guest verifies the memory it keeps.  What each QEMU
migrates of the balloon (the command id of the latest hint round) must let
the next one ask the guest for hints.

    chain.py [--mem 1024] [--bandwidth MIB_S] QEMU QEMU [QEMU ...]
QEMU: ours, stock or debian.  Prints one line per hop.
"""

import argparse
import os
import sys
import time

from harness.scenario import fill_mib, mib, prepare_workload
from harness.vm import (QEMU, Guest, HarnessError, hint_negotiated, log,
                        migrate, probe_accel)

BALLOON = "/machine/peripheral/balloon/virtio-backend"
# For the hops of a running guest.  Stock QEMU does not wait for the hints:
# its migration thread sends while the guest reports, and at full speed on
# loopback it had sent 484 MiB of 660 before the hints came (another run:
# 191 MiB).  At 64 MiB/s the guest's hints come long before the bulk pass
# reaches most of its free pages, whichever QEMU sends.
BANDWIDTH = 64 << 20


def cmd_id(g):
    """The balloon's latest hint command id, where the QEMU shows it (ours
    has the QOM property, stock has not)."""
    try:
        return g.cmd("qom-get", path=BALLOON, property="free-page-hint-cmd-id")
    except Exception:
        return None


def wait_running(g, timeout=60):
    deadline = time.monotonic() + timeout
    while not g.cmd("query-status")["running"]:
        if time.monotonic() > deadline:
            raise HarnessError(f"the guest does not run on {g.name}")
        time.sleep(0.05)


def run(qemus, mem=1024, accel="tcg", stop_first=True, bandwidth=BANDWIDTH):
    """Boot a guest with hints on qemus[0], prepare the "freed" workload
    and migrate it along qemus[1:]; return one dict per hop.  @bandwidth
    limits the hops of a running guest; a stopped one goes at full speed."""
    for q in set(qemus):
        if not os.access(QEMU[q], os.X_OK):
            raise HarnessError(f"{QEMU[q]} is missing")
    hops = []
    src = Guest(qemus[0], mem, True, accel=accel, name="chain0")
    try:
        features = src.boot()
        if not hint_negotiated(features):
            raise HarnessError("the guest's driver did not negotiate "
                               f"F_FREE_PAGE_HINT (features {features})")
        prepare_workload(src, "freed", mem)
        for i, qemu in enumerate(qemus[1:], 1):
            stopped = stop_first and i == 1
            if i > 1:
                # Free memory again: the free pages hold old data
                src.agent(f"fill {fill_mib(mem)}", timeout=600)
            time.sleep(1)   # let the guest settle after its writes
            if stopped:
                src.cmd("stop")
            id_before = cmd_id(src)
            dst = Guest(qemu, mem, True, incoming=True, accel=accel,
                        name=f"chain{i}")
            try:
                info = migrate(src, dst,
                               bandwidth=100 << 30 if stopped else bandwidth)
            except BaseException:
                dst.close()
                raise
            src.close()
            src = dst
            if stopped:
                src.cmd("cont")
            wait_running(src)
            src.attach_serial()
            verify = src.agent("verify", timeout=300)
            ram = info["ram"]
            hop = {
                "hop": i, "from": qemus[i - 1], "to": qemu, "stopped": stopped,
                "status": info["status"],
                "total_ms": info["total-time"],
                "transferred": ram["transferred"],
                "normal": ram["normal"], "zero": ram["duplicate"],
                "free_page_hint": info.get("free-page-hint"),
                "cmd_id_src": id_before, "cmd_id_dst": cmd_id(src),
                "verified_pages": int(verify["pages"]),
                "mismatches": int(verify["mismatches"]),
            }
            hops.append(hop)
            ids = "".join(f", {k} cmd id {hop['cmd_id_' + k]:#x}"
                          for k in ("src", "dst")
                          if hop["cmd_id_" + k] is not None)
            log(f"[chain] hop {i}: {hop['from']} -> {qemu}"
                f"{' (VM stopped)' if stopped else ''}: {hop['total_ms']} ms, "
                f"{mib(hop['transferred'])} sent ({hop['transferred']} bytes, "
                f"{hop['normal']} normal pages){ids}; "
                f"{hop['verified_pages']} pages verified, "
                f"{hop['mismatches']} mismatches")
    finally:
        src.close()
    return hops


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("qemus", nargs="+", choices=sorted(QEMU))
    ap.add_argument("--mem", type=int, default=1024)
    ap.add_argument("--bandwidth", type=int, default=BANDWIDTH >> 20,
                    help="MiB/s while the guest runs (default: %(default)s)")
    args = ap.parse_args()
    if len(args.qemus) < 2:
        ap.error("a chain needs at least two QEMUs")
    hops = run(args.qemus, args.mem, probe_accel(),
               bandwidth=args.bandwidth << 20)
    return 1 if any(h["mismatches"] for h in hops) else 0


if __name__ == "__main__":
    sys.exit(main())
