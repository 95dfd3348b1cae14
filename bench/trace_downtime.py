#!/usr/bin/python3
"""Where a migration's downtime goes: one guest, traced, run after run.

Boots the test guest, brings it into a workload's state (the benchmark's
idle, freed or busy), and migrates it over a link (harness/netns.py) with
QEMU's trace events for the dirty bitmap syncs, the pending sizes and the
downtime's checkpoints.  Prints, per run: total time and downtime, the
time the last stage took to save RAM, the dirty pages each sync found
and the time between syncs, what was still pending when migration
switched over, and the destination QEMU's CPU time and resident memory
when the migration completed.  This is how the idle guest's downtime
over 10g was traced to the destination reading zero pages (see README).

    trace_downtime.py [--variant "our hints"] [--mem 2048]
                      [--workload idle] [--link 10g] [--runs 3]

BUILD=DIR (see harness/common.py) runs the QEMUs of another build tree,
e.g. a second worktree of the series, for a before/after comparison.
"""

import argparse
import os
import re
import sys
import tempfile
import time

from harness.netns import LINKS, Netns
from harness.scenario import prepare_workload
from harness.variant import VARIANTS, lookup
from harness.vm import Guest, log, migrate, probe_accel

TRACES = ("migration_bitmap_sync_end", "vmstate_downtime_checkpoint",
          "vmstate_downtime_save", "migrate_pending_exact",
          "migration_thread_low_pending")


def proc_figures(pid):
    """CPU time (ms, user + system) and resident memory (MiB) of pid."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS"))
    return ticks * 1000 // os.sysconf("SC_CLK_TCK"), rss >> 10


def one_run(args, accel, ns, trace):
    v = lookup(args.variant)
    qemu, hints = v.qemu, v.hints
    extra = sum((("-trace", t) for t in TRACES), ())
    extra += ("-trace", f"file={trace}", "-msg", "timestamp=on")
    src = dst = None
    try:
        src = Guest(qemu, args.mem, hints, accel=accel, name="src",
                    extra=extra)
        src.boot()
        prepare_workload(src, args.workload, args.mem)
        time.sleep(1)
        kw = {}
        if ns:
            kw = {"wrapper": ns.wrapper}
        dst = Guest(qemu, args.mem, hints, incoming=True, accel=accel,
                    name="dst", **kw)
        info = migrate(src, dst, uri=ns.uri if ns else None)
        cpu_ms, rss_mib = proc_figures(dst.proc.pid)
    finally:
        for g in (src, dst):
            if g:
                g.close()
    with open(trace) as f:
        text = f.read()
    syncs = [(float(m.group(1)), int(m.group(2))) for m in re.finditer(
        r"@(\d+\.\d+):migration_bitmap_sync_end dirty_pages (\d+)", text)]
    gaps = [round((b[0] - a[0]) * 1000) for a, b in zip(syncs, syncs[1:])]
    ram_us = re.findall(r"type=iterable idstr=ram instance_id=0 downtime=(\d+)",
                        text)
    low = re.findall(r"migration_thread_low_pending (\d+)", text)
    return (f"total {info['total-time']} ms, downtime {info['downtime']} ms "
            f"(RAM in the last stage {int(ram_us[0]) // 1000 if ram_us else '?'}"
            f" ms, {int(low[-1]) >> 20 if low else '?'} MiB pending at the "
            f"switch); syncs found {[n for _, n in syncs]} dirty pages, "
            f"{gaps} ms apart; {info['ram']['duplicate']} zero pages; "
            f"destination {cpu_ms} ms of CPU, {rss_mib} MiB resident")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="our hints", choices=list(VARIANTS))
    ap.add_argument("--mem", type=int, default=2048)
    ap.add_argument("--workload", default="idle",
                    choices=("idle", "freed", "busy"))
    ap.add_argument("--link", default="10g", choices=list(LINKS))
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    accel = probe_accel()
    ns = Netns() if LINKS[args.link] else None
    with tempfile.TemporaryDirectory(prefix="fph-trace-") as tmp:
        try:
            if ns:
                ns.__enter__()
                ns.set_rate(LINKS[args.link])
            for run in range(args.runs):
                log(f"[trace] run {run + 1}/{args.runs}: {args.variant}, "
                    f"{args.mem} MiB {args.workload} guest over {args.link}")
                print(f"run {run + 1}: " +
                      one_run(args, accel, ns, os.path.join(tmp, f"{run}.log")),
                      flush=True)
        finally:
            if ns:
                ns.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
