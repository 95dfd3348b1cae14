#!/usr/bin/python3
"""KVM's lazy dirty log clearing under TCG: does a guest's write to a page
that its balloon driver had hinted free, and then took back, survive a
migration?

    kvm_semantics.py [--qemu KEY]... [--hints on|off|both] [--runs N]
                     [--iothread pause|idle|normal] [--shift N] [--mem MIB]
                     [--pressure MIB] [--pressure-at reporting|held]
                     [--bandwidth MIB_S] [--downtime-ms MS] [--churn MIB]
                     [--plain-tcg] [--json FILE]

With KVM's manual dirty log protection (KVM_CLEAR_DIRTY_LOG), a page that
was dirty at the last sync stays writable and unlogged until migration
clears its chunk of the log.  If a free page hint clears that chunk after
the guest took the page back and wrote it, the write is never sent
(QEMU 10.0's qemu_guest_free_page_hint() clears from the hint path; our
series never does, and arms every chunk before a round).  KVM does not run
guests here, so the QEMUs run under TCG with the test aid of testaid/
(-accel tcg,x-lazy-dirty-clear=on), which gives TCG those semantics.

Each run boots the Debian guest, keeps 64 MiB of checksummed memory,
writes most of the rest and frees it, and migrates it slowly (16 MiB/s)
with hints.  Once the driver has taken half of what was free (and goes on
taking), the guest keeps --pressure MiB more, which it no longer has:
the driver's shrinker gives hinted pages back and the guest writes them.
The race also needs the device to process those hints only after the
guest wrote the pages: by default the source's iothread is stopped
(ptrace, that thread only) from before the migration until the pressure
is over, a host on which the iothread lags behind by a few seconds;
--iothread idle only makes it SCHED_IDLE on vCPU 0's host CPU (it lags
by up to a second or so, and the race is won only sometimes).  The guest
then idles, churns a little, the migration completes at full speed, and
the destination verifies every kept page: a page whose check fails lost
a write.  Prints one line per run, a table and a summary.
"""

import argparse
import ctypes
import json
import os
import sys
import time

from harness import vm
from harness.combos.base import agent_retry
from harness.scenario import KEEP_MIB, mem_free
from harness.vm import Guest, HarnessError, hint_negotiated, log

MIB = 1 << 20
PAGE = 4096
# The QEMUs with the test aid (`make testaid` builds them): QEMU
# 10.0.13 as Debian ships it, and our series, each with testaid/ applied
AID = {
    "stock-aid": os.path.join(vm.BUILD, "qemu-aid-stock", "build",
                              "qemu-system-x86_64"),
    "ours-aid": os.path.join(vm.BUILD, "qemu-aid-ours", "build",
                             "qemu-system-x86_64"),
}
vm.QEMU.update(AID)
LAZY = "tcg,x-lazy-dirty-clear=on"
# Slow enough that the bulk round is still running (and the sender has
# not reached most chunks) while the guest is under pressure
SLOW_BANDWIDTH = 16 << 20
# Seconds the guest idles after the pressure, before its churn starts
DRAIN_S = 3
# Our series waits this long for the guest's first report
HINT_WAIT_MS = 5000


class RunFailed(Exception):
    """A step of a run failed (not a lost write: those are counted)."""


def aid_missing():
    """The aid's binaries that are not built, as a list of paths."""
    return [p for p in AID.values() if not os.access(p, os.X_OK)]


def threads(pid):
    """(tid, name) of every thread of process @pid."""
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                out.append((int(tid), f.read().strip()))
        except OSError:
            pass  # the thread ended
    return out


# ptrace(2), to stop one thread of QEMU (its iothread) and nothing else
PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
WALL = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.argtypes = (ctypes.c_long, ctypes.c_int, ctypes.c_void_p,
                         ctypes.c_void_p)
_libc.ptrace.restype = ctypes.c_long


def _ptrace(req, tid):
    if _libc.ptrace(req, tid, None, None) < 0:
        e = ctypes.get_errno()
        raise RunFailed(f"ptrace({req:#x}, {tid}): {os.strerror(e)}")


class PausedThread:
    """Stop thread @tid of a child process (PTRACE_SEIZE, PTRACE_INTERRUPT:
    that thread only, no signal), until resume() (or this process ends)."""

    def __init__(self, tid):
        self.tid = tid
        _ptrace(PTRACE_SEIZE, tid)
        _ptrace(PTRACE_INTERRUPT, tid)
        _, status = os.waitpid(tid, WALL)
        if not os.WIFSTOPPED(status):
            raise RunFailed(f"thread {tid} did not stop (status {status})")
        self.t0 = time.monotonic()

    def resume(self):
        """Let it run again; returns for how long it was stopped."""
        if self.tid is not None:
            _ptrace(PTRACE_DETACH, self.tid)
            self.tid = None
        return time.monotonic() - self.t0


def iothread_tid(g):
    io = [t for t, n in threads(g.proc.pid) if n == "IO io0"]
    if len(io) != 1:
        raise RunFailed(f"no single iothread 'IO io0' among "
                        f"{threads(g.proc.pid)} (-name debug-threads=on?)")
    return io[0]


def starve_iothread(g):
    """Make @g's iothread lag: SCHED_IDLE, on the host CPU of vCPU 0 (also
    pinned there), so that it runs only when vCPU 0 does not.  Returns
    what was done, for the notes."""
    ts = threads(g.proc.pid)
    io = [t for t, n in ts if n == "IO io0"]
    cpu0 = [t for t, n in ts if n.startswith("CPU 0/")]
    if not io or not cpu0:
        raise RunFailed(f"no iothread or vCPU 0 thread among {ts} "
                        "(is -name debug-threads=on given?)")
    cpu = min(os.sched_getaffinity(0))
    for t in io + cpu0:
        os.sched_setaffinity(t, {cpu})
    for t in io:
        os.sched_setscheduler(t, os.SCHED_IDLE, os.sched_param(0))
    return f"iothread {io} SCHED_IDLE, with vCPU 0 {cpu0} on host CPU {cpu}"


def wait_driver_took(g, free0, part=4, timeout=120):
    """Wait until the guest's balloon driver has taken a part of what was
    free (MemFree below @free0 / @part), or MemFree has not moved for 5 s.
    Returns MemFree."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while True:
        free = mem_free(g)
        if free < free0 // part:
            return free
        if last is None or abs(free - last) > 4 * MIB:
            last, since = free, time.monotonic()
        elif time.monotonic() - since > 5:
            return free
        if time.monotonic() > deadline:
            return free
        time.sleep(0.2)


def aid_trace(g):
    """What the aid traced on @g: log_clear calls that cleared pages, the
    pages they cleared, and the syncs."""
    clears = pages = syncs = 0
    with open(g.log_path, errors="replace") as f:
        for ln in f:
            if "lazy_dirty_log_clear " in ln:
                clears += 1
                pages += int(ln.rsplit(": ", 1)[1].split()[0])
            elif "lazy_dirty_sync " in ln:
                syncs += 1
    return {"aid_log_clears": clears, "aid_pages_cleared": pages,
            "aid_syncs": syncs}


def wait_completed(g, timeout=vm.MIGRATION_TIMEOUT):
    return vm.wait_migration(g, timeout)


def run_once(qemu, hints, lazy=True, mem=1024, pressure=512,
             iothread="pause",
             shift=None, churn=64, label=None, bandwidth=SLOW_BANDWIDTH,
             downtime_ms=2000, pressure_at="reporting"):
    """One migration; returns its row.  lost: kept and churned pages whose
    content the destination got wrong (a write that was never sent)."""
    accel = LAZY if lazy else "tcg"
    extra = ["-name", "src,debug-threads=on"]
    if lazy:
        # The aid's trace: a log_clear that cleared pages (and the syncs)
        extra += ["-trace", "lazy_dirty_*"]
    if shift is not None:
        extra += ["-global", f"migration.x-clear-bitmap-shift={shift}"]
    row = {"qemu": qemu, "hints": hints, "lazy": lazy, "mem": mem,
           "pressure": pressure, "iothread": iothread, "shift": shift,
           "churn": churn, "bandwidth": bandwidth,
           "downtime_ms": downtime_ms, "pressure_at": pressure_at,
           "lost": None,
           "verified": 0, "notes": []}
    if label:
        vm.artifact_label(label)
    t0 = time.monotonic()
    src = dst = paused = None
    try:
        src = Guest(qemu, mem, hints, accel=accel, name="src", extra=extra)
        feats = src.boot()
        if hint_negotiated(feats) != hints:
            raise RunFailed(f"driver features {feats}, hints {hints}")
        src.agent(f"keep {KEEP_MIB}")
        src.agent(f"fill {mem - 256}", timeout=600)
        time.sleep(1)
        free0 = mem_free(src)
        dst = Guest(qemu, mem, hints, accel=accel, name="dst", incoming=True)
        if iothread == "idle":
            row["notes"].append(starve_iothread(src))
        uri = "unix:" + os.path.join(dst.dir, "migrate.sock")
        dst.cmd("migrate-incoming", uri=uri)
        params = {"max-bandwidth": bandwidth or 100 << 30,
                  "downtime-limit": downtime_ms}
        if hints and qemu.startswith("ours"):
            params["free-page-hint-wait"] = HINT_WAIT_MS
        src.cmd("migrate-set-parameters", **params)
        if iothread == "pause":
            # From before the round until the pressure is over: every hint
            # reported until then is processed after the guest's writes
            paused = PausedThread(iothread_tid(src))
        src.cmd("migrate", uri=uri)
        if hints:
            # "reporting": the driver has taken half of what was free and
            # goes on taking; "held": it holds most of it
            free1 = wait_driver_took(src, free0,
                                     2 if pressure_at == "reporting" else 4)
        else:
            time.sleep(2)
            free1 = mem_free(src)
        row["memfree_before_pressure"] = free1
        tk = time.monotonic()
        src.agent(f"keep {pressure}", timeout=600)
        row["pressure_s"] = round(time.monotonic() - tk, 1)
        row["memfree_after_pressure"] = mem_free(src)
        if paused:
            row["iothread_paused_s"] = round(paused.resume(), 1)
            paused = None
        # The guest idles: its vCPUs halt and the lagging iothread catches
        # up with the hints queued while the round still runs (QEMU 10.0
        # drops the hints still queued at the next sync)
        time.sleep(DRAIN_S)
        if churn:
            src.agent(f"churn {churn}")
            time.sleep(3)
        st = src.cmd("query-migrate")["status"]
        row["status_after_pressure"] = st
        src.cmd("migrate-set-parameters", **{"max-bandwidth": 100 << 30,
                                             "downtime-limit": 2000})
        info = wait_completed(src)
        row["total_ms"] = info["total-time"]
        row["transferred"] = info["ram"]["transferred"]
        if info.get("free-page-hint"):
            row["free_page_hint"] = info["free-page-hint"]
        src.close()
        row.update(aid_trace(src))
        src = None
        dst.attach_serial()
        c = agent_retry(dst, "churnstop", 120) if churn else {}
        v = agent_retry(dst, "verify", 300)
        row["verified"] = int(v["pages"]) + int(c.get("pages", 0))
        row["lost"] = int(v["mismatches"]) + int(c.get("mismatches", 0))
        row["lost_kept"] = int(v["mismatches"])
        want = (KEEP_MIB + pressure) * MIB // PAGE
        if int(v["pages"]) != want:
            raise RunFailed(f"the destination verified {v['pages']} kept "
                            f"pages, not {want}")
        row["outcome"] = "completed"
    except (HarnessError, RunFailed) as e:
        row["outcome"] = f"error: {type(e).__name__}: {e}"
    finally:
        if paused:
            paused.resume()
        for g in (src, dst):
            if g:
                g.kill()
    row["seconds"] = round(time.monotonic() - t0, 1)
    log(f"[kvm-semantics] {describe(row)}: {row['outcome']}, lost "
        f"{row['lost']} of {row['verified']} pages ({row['seconds']} s)")
    return row


def describe(row):
    """The run's configuration in words (what differs from the default)."""
    out = [row["qemu"], f"hints {'on' if row['hints'] else 'off'}"]
    if not row["lazy"]:
        out.append("plain TCG")
    if row["iothread"] != "normal":
        out.append({"pause": "iothread paused",
                    "idle": "iothread SCHED_IDLE"}[row["iothread"]])
    if row["shift"] is not None:
        out.append(f"shift {row['shift']}")
    if row["mem"] != 1024:
        out.append(f"{row['mem']} MiB guest")
    bw = row.get("bandwidth", SLOW_BANDWIDTH)
    if bw != SLOW_BANDWIDTH:
        out.append(f"{bw >> 20} MiB/s" if bw else "unlimited bandwidth")
    if row.get("pressure_at", "reporting") != "reporting":
        out.append("pressure when the driver holds its hints")
    if row.get("downtime_ms", 2000) != 2000:
        out.append(f"downtime-limit {row['downtime_ms']} ms")
    return ", ".join(out)


def table(rows):
    out = ["| QEMU | hints | dirty log | iothread | clear-bitmap-shift "
           "| run | outcome | pages verified | pages lost | seconds |",
           "|---|---|---|---|---:|---:|---|---:|---:|---:|"]
    for i, r in enumerate(rows):
        out.append(f"| {r['qemu']} | {'on' if r['hints'] else 'off'} "
                   f"| {'lazy (KVM)' if r['lazy'] else 'TCG'} "
                   f"| {r['iothread']} "
                   f"| {18 if r['shift'] is None else r['shift']} "
                   f"| {r.get('run', i + 1)} | {r['outcome']} "
                   f"| {r['verified']} | {r['lost']} | {r['seconds']} |")
    return "\n".join(out)


def summary(rows):
    """Per configuration: runs, runs that lost writes, pages lost each."""
    groups = {}
    for r in rows:
        groups.setdefault(describe(r), []).append(r)
    out = []
    for name, rs in groups.items():
        done = [r for r in rs if r["lost"] is not None]
        lost = [r["lost"] for r in done]
        out.append(f"{name}: {len(done)} runs completed of {len(rs)}, "
                   f"{sum(1 for n in lost if n)} lost writes, pages lost "
                   f"per run {lost}")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--qemu", action="append", choices=sorted(vm.QEMU),
                    help="QEMU to run (repeatable; default stock-aid and "
                    "ours-aid)")
    ap.add_argument("--hints", choices=("on", "off", "both"), default="both")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--mem", type=int, default=1024, help="guest MiB")
    ap.add_argument("--pressure", type=int, default=512,
                    help="MiB the guest keeps while the driver holds "
                    "its hinted pages")
    ap.add_argument("--churn", type=int, default=64,
                    help="MiB of churn after the pressure (0: none)")
    ap.add_argument("--shift", type=int,
                    help="migration.x-clear-bitmap-shift (default 18)")
    ap.add_argument("--bandwidth", type=int, default=SLOW_BANDWIDTH >> 20,
                    help="max-bandwidth in MiB/s until the pressure is "
                    "over (0: unlimited)")
    ap.add_argument("--pressure-at", choices=("reporting", "held"),
                    default="reporting", help="the guest allocates once its "
                    "driver took half of what was free and goes on "
                    "reporting (reporting), or once it holds most (held)")
    ap.add_argument("--downtime-ms", type=int, default=2000,
                    help="downtime-limit until the pressure is over (a "
                    "small one keeps precopy iterating, round after round)")
    ap.add_argument("--iothread", choices=("pause", "idle", "normal"),
                    default="pause", help="the source's iothread: stopped "
                    "from before the migration until the pressure is over "
                    "(pause), SCHED_IDLE on vCPU 0's host CPU (idle), or "
                    "left alone")
    ap.add_argument("--plain-tcg", dest="lazy", action="store_false",
                    help="without x-lazy-dirty-clear (TCG's own dirty log)")
    ap.add_argument("--json", help="write every row here")
    args = ap.parse_args()
    qemus = args.qemu or ["stock-aid", "ours-aid"]
    missing = [vm.QEMU[q] for q in qemus
               if not os.access(vm.QEMU[q], os.X_OK)]
    if missing:
        print(f"missing: {', '.join(missing)}: run make testaid",
              file=sys.stderr)
        return 2
    hints = {"on": [True], "off": [False], "both": [True, False]}[args.hints]
    rows = []
    for n in range(args.runs):
        # Interleaved, so that the machine's load hits all alike
        for q in qemus:
            for h in hints:
                r = run_once(q, h, args.lazy, args.mem, args.pressure,
                             args.iothread, args.shift, args.churn,
                             label=f"{q}-hints-{'on' if h else 'off'}-{n + 1}",
                             bandwidth=args.bandwidth << 20,
                             downtime_ms=args.downtime_ms,
                             pressure_at=args.pressure_at)
                r["run"] = n + 1
                rows.append(r)
                if args.json:
                    with open(args.json, "w") as f:
                        json.dump(rows, f, indent=2)
    print(table(rows))
    print(summary(rows))
    return 0 if all(r["lost"] is not None for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
