#!/usr/bin/python3
"""make profile, part 2: where a migration spends the host's CPU.

Boots the test guest (2 GiB by default) with QEMU's threads named
(-name debug-threads=on), brings it into a benchmark workload ("freed":
it wrote and freed most of its memory; "busy": it did so and keeps
rewriting 256 MiB), and migrates it over a unix socket while `perf
record` samples the source QEMU and the destination QEMU (on-CPU time,
call graphs).  Prints query-migrate's counters; for each side the CPU
time of each QEMU thread during the migration (from /proc, in cores:
CPU seconds per second of migration), and perf's threads and symbols;
with "busy", the guest's churn rate at rest and during the migration;
and what a read of never-written memory costs this host (whether its
kernel maps the zero page or allocates a page).
docs/profiling.md says what the numbers meant when they were taken.

    profile_migration.py [--variant "our hints"] [--workload freed]
                         [--mem 2048] [--out DIR]
"""

import argparse
import collections
import mmap
import os
import shutil
import subprocess
import sys
import threading
import time

from harness.scenario import PAGE, churn_work, lost_work, prepare_workload
from harness.variant import VARIANTS, lookup
from harness.vm import BUILD, Guest, HarnessError, log, migrate, probe_accel

REST_S = 3


def perf_report(data, sort, limit):
    out = subprocess.run(["perf", "report", "-i", data, "--stdio",
                          "--no-children", "-g", "none", "--sort", sort],
                         capture_output=True, text=True).stdout
    rows = [ln for ln in out.splitlines() if ln.strip() and not ln.startswith("#")]
    return rows[:limit]


class ThreadCPU(threading.Thread):
    """CPU seconds (user + system) of each thread of a process while it
    runs, by the thread's name ("CPU 0/TCG", "mig/src/main", "IO io0",
    ...).  Polled, so that threads that end (the migration's) count."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.seen = {}      # tid: (comm, seconds), the last reading
        self.first = self._read()
        self.seen.update(self.first)
        self.running = True
        self.start()

    def _read(self):
        tick = os.sysconf("SC_CLK_TCK")
        now = {}
        try:
            tids = os.listdir(f"/proc/{self.pid}/task")
        except FileNotFoundError:
            return now
        for tid in tids:
            try:
                with open(f"/proc/{self.pid}/task/{tid}/stat") as f:
                    stat = f.read()
            except FileNotFoundError:
                continue    # the thread ended
            # comm is in parentheses and may hold spaces
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2:].split()
            now[tid] = (comm, (int(fields[11]) + int(fields[12])) / tick)
        return now

    def run(self):
        while self.running:
            self.seen.update(self._read())
            time.sleep(0.05)

    def stop(self):
        """Stop polling; return CPU seconds since the start, by name."""
        self.running = False
        self.join()
        self.seen.update(self._read())
        cpu = collections.Counter()
        for tid, (comm, secs) in self.seen.items():
            cpu[comm] += secs - self.first.get(tid, (comm, 0))[1]
        return cpu


def host_read_faults(mib=256):
    """Read one byte of each page of never-written anonymous memory, as
    the source's zero-page check reads never-written guest RAM; return
    the seconds it took and the MiB that became resident (0 where the
    host's kernel maps its zero page on a read fault)."""
    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    m = mmap.mmap(-1, mib << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        r0, t0 = rss(), time.monotonic()
        for off in range(0, mib << 20, 4096):
            m[off]
        return time.monotonic() - t0, (rss() - r0) >> 20
    finally:
        m.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="our hints", choices=list(VARIANTS))
    ap.add_argument("--workload", default="freed", choices=("idle", "freed", "busy"))
    ap.add_argument("--mem", type=int, default=2048)
    ap.add_argument("--out", default=None,
                    help="where perf's data goes (build/profile-WORKLOAD)")
    args = ap.parse_args()
    out = args.out or os.path.join(BUILD, f"profile-{args.workload}")
    if not shutil.which("perf"):
        sys.exit("[profile] perf is missing: run 'make deps' (Debian's linux-perf)")
    os.makedirs(out, exist_ok=True)
    v = lookup(args.variant)
    qemu, hints = v.qemu, v.hints
    accel = probe_accel()
    named = ("-name", "debug-threads=on")
    src = dst = None
    perfs = []
    cpu = {}
    work = {}
    rest_wall = None
    try:
        log(f"[profile] {args.variant}, {args.mem} MiB guest, "
            f"{args.workload}: booting")
        src = Guest(qemu, args.mem, hints, accel=accel, name="src", extra=named)
        src.boot()
        prepare_workload(src, args.workload, args.mem)
        time.sleep(1)
        dst = Guest(qemu, args.mem, hints, incoming=True, accel=accel,
                    name="dst", extra=named)
        for side, g in (("source", src), ("destination", dst)):
            data = os.path.join(out, f"{side}.perf.data")
            perfs.append((side, data, subprocess.Popen(
                ["perf", "record", "-F", "999", "-g", "-o", data,
                 "-p", str(g.proc.pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
        time.sleep(0.5)
        if args.workload == "busy":
            log(f"[profile] the churn's rate at rest, over {REST_S} s")
            rest = ThreadCPU(src.proc.pid)
            w0, t0 = churn_work(src)
            time.sleep(REST_S)
            w1, t1 = churn_work(src)
            work["rest"] = (w1 - w0, t1 - t0)
            cpu["source at rest"] = rest.stop()
            rest_wall = t1 - t0
        log("[profile] migrating under perf record")
        polls = {side: ThreadCPU(g.proc.pid)
                 for side, g in (("source", src), ("destination", dst))}
        t_start = time.monotonic()
        info = migrate(src, dst)
        wall = time.monotonic() - t_start
        cpu.update({side: p.stop() for side, p in polls.items()})
        if args.workload == "busy":
            dst.attach_serial()
            w2, t2 = churn_work(dst)
            work["migration"] = (w2 - w1, t2 - t1)
    finally:
        for _, _, p in perfs:
            p.send_signal(2)
            p.wait()
        for g in (src, dst):
            if g:
                g.close()
    print_report(args, info, work, cpu, rest_wall, perfs, wall)
    return 0


def print_report(args, info, work, cpu, rest_wall, perfs, wall):
    """What the migration did, the churn's work, CPU time by thread, and
    perf's threads and symbols."""
    secs, resident = host_read_faults()
    print(f"host: reading 256 MiB of never-written anonymous memory took "
          f"{secs:.2f} s and made {resident} MiB resident")
    ram = info["ram"]
    print(f"{args.variant}, {args.mem} MiB guest, {args.workload}: "
          f"{info['total-time']} ms, downtime {info['downtime']} ms, "
          f"{ram['transferred'] >> 20} MiB, {ram['normal']} normal pages, "
          f"{ram['duplicate']} zero pages, {ram.get('dirty-sync-count')} "
          f"dirty syncs; free-page-hint {info.get('free-page-hint')}")
    if work:
        rates = {k: pages * PAGE / (1 << 20) / secs
                 for k, (pages, secs) in work.items()}
        print(f"churn: {rates['rest']:.0f} MiB/s at rest, "
              f"{rates['migration']:.0f} MiB/s during the migration "
              f"({rates['migration'] / rates['rest']:.0%}), "
              f"work lost {lost_work(work):.0f} MiB")
    if work:
        print(f"\nsource at rest: CPU time by thread over {rest_wall:.2f} s "
              "(cores)")
        for comm, secs in cpu["source at rest"].most_common():
            if secs > 0:
                print(f"  {secs / rest_wall:5.2f}  {secs:6.2f} s  {comm}")
    for side, data, _ in perfs:
        print(f"\n{side}: CPU time by thread over the migration's {wall:.2f} s "
              "(cores)")
        for comm, secs in cpu[side].most_common():
            if secs > 0:
                print(f"  {secs / wall:5.2f}  {secs:6.2f} s  {comm}")
        if not os.path.exists(data):
            raise HarnessError(f"perf wrote no {data}: is perf_event_paranoid "
                               "too strict? (run as root)")
        print(f"{side}: perf samples by thread (999 Hz, on-CPU, whole run)")
        for ln in perf_report(data, "comm", 8):
            print("  " + ln.strip())
        print(f"{side}: top symbols")
        for ln in perf_report(data, "comm,sym", 16):
            print("  " + ln.strip())


if __name__ == "__main__":
    sys.exit(main())
