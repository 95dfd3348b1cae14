#!/usr/bin/python3
"""make profile, part 2: where a freed guest's migration spends its time.

Boots the test guest (2 GiB by default), has it write and free most of
its memory (the benchmark's "freed" workload), and migrates it over a
unix socket while `perf record` samples the source QEMU and the
destination QEMU (on-CPU time, call graphs).  Prints, for each side, the
threads by samples and the symbols that take the most, and query-migrate's
counters; bench/profile.md says what the numbers meant when they were
taken.

    profile_freed.py [--variant "our hints"] [--mem 2048] [--out DIR]
"""

import argparse
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "e2e"))

from scenario import VARIANTS, prepare_workload  # noqa: E402
from vm import BUILD, Guest, HarnessError, log, migrate, probe_accel  # noqa: E402


def perf_report(data, sort, limit):
    out = subprocess.run(["perf", "report", "-i", data, "--stdio",
                          "--no-children", "-g", "none", "--sort", sort],
                         capture_output=True, text=True).stdout
    rows = [ln for ln in out.splitlines() if ln.strip() and not ln.startswith("#")]
    return rows[:limit]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="our hints", choices=list(VARIANTS))
    ap.add_argument("--mem", type=int, default=2048)
    ap.add_argument("--out", default=os.path.join(BUILD, "profile-freed"))
    args = ap.parse_args()
    if not shutil.which("perf"):
        sys.exit("[profile] perf is missing: run 'make deps' (Debian's linux-perf)")
    os.makedirs(args.out, exist_ok=True)
    qemu, hints = VARIANTS[args.variant]
    accel = probe_accel()
    src = dst = None
    perfs = []
    try:
        log(f"[profile] {args.variant}, {args.mem} MiB guest, freed: booting")
        src = Guest(qemu, args.mem, hints, accel=accel, name="src")
        src.boot()
        prepare_workload(src, "freed", args.mem)
        time.sleep(1)
        dst = Guest(qemu, args.mem, hints, incoming=True, accel=accel,
                    name="dst")
        for side, g in (("source", src), ("destination", dst)):
            data = os.path.join(args.out, f"{side}.perf.data")
            perfs.append((side, data, subprocess.Popen(
                ["perf", "record", "-F", "999", "-g", "-o", data,
                 "-p", str(g.proc.pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
        time.sleep(0.5)
        log("[profile] migrating under perf record")
        info = migrate(src, dst)
    finally:
        for _, _, p in perfs:
            p.send_signal(2)
            p.wait()
        for g in (src, dst):
            if g:
                g.close()
    ram = info["ram"]
    print(f"{args.variant}, {args.mem} MiB guest that freed memory: "
          f"{info['total-time']} ms, downtime {info['downtime']} ms, "
          f"{ram['transferred'] >> 20} MiB, {ram['normal']} normal pages, "
          f"{ram['duplicate']} zero pages; free-page-hint "
          f"{info.get('free-page-hint')}")
    for side, data, _ in perfs:
        if not os.path.exists(data):
            raise HarnessError(f"perf wrote no {data}: is perf_event_paranoid "
                               "too strict? (run as root)")
        print(f"\n{side}: samples by thread (999 Hz, on-CPU)")
        for ln in perf_report(data, "comm,tid", 6):
            print("  " + ln.strip())
        print(f"{side}: top symbols")
        for ln in perf_report(data, "sym", 12):
            print("  " + ln.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
