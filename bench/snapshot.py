#!/usr/bin/python3
"""make snapshot-bench: a live snapshot to a file, no hints vs upstream vs ours.

Each run boots the test guest, brings it into the "freed" state (keeps
64 MiB of checksummed memory, writes most of the rest and frees it),
reads its MemFree, then `migrate`s it to a `file:` URI while it runs
(max-bandwidth 100G, downtime-limit 2 s), plain or with the mapped-ram
capability.  It measures the file (apparent size, allocated size), then
restores it into a new QEMU (`-incoming defer`, `migrate-incoming` from
the file, same capabilities), lets the guest continue and has it verify
its kept memory: any mismatch fails the run.  The file is deleted after.

The goal checked: the file is at most 1.25x the guest's non-free memory
(RAM minus MemFree) plus the device state, and ours is never larger than
upstream's hints.  "Device state" is what the file holds besides guest
RAM pages: plain, the file's size minus the RAM bytes query-migrate
counted (pages and their headers); mapped-ram, the allocated bytes
outside the RAM blocks' page regions (headers, bitmaps, devices), read
from the file's own mapped-ram block headers.

Writes a new run folder (--out, by default
bench/runs/DATE-VERSION-snapshot-MEMmib): results.md, results.json (every
run, each case an object), results.png and manifest.json (series commit,
sha256 of patches/, command, machine); then bench/runs/index.md.

    snapshot.py [--mem 1024] [--runs 3] [--modes plain,mapped-ram]
                [--variants "no hints,upstream hints,our hints"]
"""

import argparse
import json
import os
import statistics
import struct
import sys
import time

from bench import STOP, index, machine, spread, stop_on_sigterm
from harness.common import TOP
from harness.scenario import (KEEP_MIB, PAGE, fill_mib, mem_free,
                              prepare_workload)
from harness.variant import BENCH_VARIANTS, VARIANTS, lookup
from harness.vm import (BUILD, MIGRATION_TIMEOUT, Guest, HarnessError,
                        hint_negotiated, log, probe_accel, wait_migration)
from runs import (SNAPSHOT_KEYS, cases_json, machine_info, new_run_dir,
                  provenance, write_manifest)

MODES = {"plain": (), "mapped-ram": ("mapped-ram",)}
WORKLOAD = "freed"
BANDWIDTH = 100 << 30
DOWNTIME_MS = 2000
GOAL_RATIO = 1.25
MiB = 1 << 20


# -- the guest ---------------------------------------------------------------

def set_caps(g, caps):
    if caps:
        g.cmd("migrate-set-capabilities",
              capabilities=[{"capability": c, "state": True} for c in caps])


# -- the file ----------------------------------------------------------------

def file_sizes(path):
    """(apparent, allocated) bytes, after the data reached the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return st.st_size, st.st_blocks * 512


def data_bytes(fd, start, end):
    """Allocated (data) bytes of the file within [start, end)."""
    total, pos = 0, start
    while pos < end:
        try:
            d = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:          # ENXIO: no data after pos
            break
        if d >= end:
            break
        h = os.lseek(fd, d, os.SEEK_HOLE)
        total += min(h, end) - d
        pos = h
    return total


# MappedRamHeader (migration/ram.c): be32 version, be64 page_size,
# be64 bitmap_offset, be64 pages_offset, packed; written right after each
# block's idstr and be64 used_length, and bitmap_offset is the offset just
# after the header itself, which finds the first one without parsing the
# stream before the RAM section.
MR_HEADER = struct.Struct(">IQQQ")
RAM_SAVE_FLAG_MEM_SIZE = 0x04


def mapped_ram_layout(fd):
    """The RAM blocks of a mapped-ram file: [(idstr, used_length,
    bitmap_offset, pages_offset)]."""
    head = os.pread(fd, 4 << 20, 0)
    first = None
    for p in range(0, len(head) - MR_HEADER.size):
        if head[p:p + 4] != b"\0\0\0\1":
            continue
        version, page_size, bmap, pages = MR_HEADER.unpack_from(head, p)
        if page_size == PAGE and bmap == p + MR_HEADER.size and pages > bmap:
            first = p
            break
    if first is None:
        raise HarnessError("no mapped-ram block header in the snapshot file's "
                           "first 4 MiB: was the mapped-ram capability set?")
    # Walk back over the first block's used_length and idstr to the
    # RAM_SAVE_FLAG_MEM_SIZE word: the total of all blocks
    for n in range(1, 256):
        start = first - 8 - n - 1
        if start >= 8 and head[start] == n:
            total = struct.unpack_from(">Q", head, start - 8)[0]
            if total & 0xfff == RAM_SAVE_FLAG_MEM_SIZE:
                total &= ~0xfff
                break
    else:
        raise HarnessError("mapped-ram file: no RAM size before the first "
                           "block header")
    blocks, pos, seen = [], start, 0
    while seen < total:
        n = os.pread(fd, 1, pos)[0]
        idstr = os.pread(fd, n, pos + 1).decode(errors="replace")
        used = struct.unpack(">Q", os.pread(fd, 8, pos + 1 + n))[0]
        hdr = os.pread(fd, MR_HEADER.size, pos + 1 + n + 8)
        _, page_size, bmap, pages = MR_HEADER.unpack(hdr)
        if page_size != PAGE or bmap != pos + 1 + n + 8 + MR_HEADER.size:
            raise HarnessError(f"mapped-ram file: bad block header at {pos}")
        blocks.append((idstr, used, bmap, pages))
        seen += used
        pos = pages + used
    return blocks


def mapped_ram_contents(path):
    """Bytes allocated inside the RAM blocks' page regions, and pages the
    bitmaps mark as present (what a restore reads)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        ram_alloc = present = 0
        for idstr, used, bmap, pages in mapped_ram_layout(fd):
            ram_alloc += data_bytes(fd, pages, pages + used)
            nbits = used // PAGE
            bits = os.pread(fd, (nbits + 63) // 64 * 8, bmap)
            present += sum(bin(b).count("1") for b in bits)
        return ram_alloc, present
    finally:
        os.close(fd)


# -- one run -----------------------------------------------------------------

class BootError(HarnessError):
    """The source guest did not come up: nothing measured yet, retry."""


def wait_restored(g, timeout=MIGRATION_TIMEOUT):
    """Until the restored guest runs (continue it if it stays paused)."""
    def exited():
        if g.proc.poll() is not None:
            raise HarnessError("restore: QEMU exited while loading the file "
                               f"(a damaged or mismatched file?): {g.log_tail()}")

    wait_migration(g, timeout=timeout, what="restore: migrate-incoming",
                   fail=("failed",), cancel=False, check=exited)
    status = g.cmd("query-status")["status"]
    if status in ("paused", "prelaunch"):
        g.cmd("cont")
    deadline = time.monotonic() + 30
    while status != "running":
        exited()
        if time.monotonic() > deadline:
            raise HarnessError(f"restore: guest not running after the load "
                               f"(status {status})")
        time.sleep(0.05)
        status = g.cmd("query-status")["status"]


def snapshot_to_file(src, mode, path):
    """Migrate @src to the file @path while it runs; return the row's
    figures of the file and of query-migrate."""
    if os.path.exists(path):
        os.unlink(path)
    set_caps(src, MODES[mode])
    src.cmd("migrate-set-parameters", **{"max-bandwidth": BANDWIDTH,
                                         "downtime-limit": DOWNTIME_MS})
    t0 = time.monotonic()
    src.cmd("migrate", uri="file:" + path)
    info = wait_migration(src, what="snapshot: migration to the file")
    wall = time.monotonic() - t0
    apparent, allocated = file_sizes(path)
    ram = info["ram"]
    ram_bytes = (ram.get("precopy-bytes", 0) + ram.get("downtime-bytes", 0)
                 + ram.get("postcopy-bytes", 0))
    if mode == "mapped-ram":
        ram_in_file, present = mapped_ram_contents(path)
        size = allocated
    else:
        ram_in_file, present = ram_bytes, None
        size = apparent
    return {
        "apparent": apparent, "allocated": allocated,
        "size": size,               # what the goal compares
        "ram_in_file": ram_in_file,  # of size: guest RAM pages
        "device": size - ram_in_file,  # of size: the rest
        "pages_present": present,    # mapped-ram: bits set in bitmaps
        "total_ms": info["total-time"], "downtime_ms": info["downtime"],
        "wall_s": wall,
        "normal": ram["normal"], "zero": ram["duplicate"],
        "ram_total": ram["total"], "ram_bytes": ram_bytes,
        "free_page_hint": info.get("free-page-hint"),
    }


def snapshot_case(variant, mode, mem_mib, accel, path):
    """Boot, load, snapshot to path while running, restore, verify."""
    v = lookup(variant)
    qemu, hints = v.qemu, v.hints
    caps = MODES[mode]
    src = dst = None
    try:
        src = Guest(qemu, mem_mib, hints, accel=accel, name="snap-src")
        try:
            features = src.boot()
        except HarnessError as e:
            raise BootError(f"boot: {e}") from e
        if hints and not hint_negotiated(features):
            raise HarnessError("the guest's virtio_balloon did not negotiate "
                               f"F_FREE_PAGE_HINT (features {features})")
        prepare_workload(src, WORKLOAD, mem_mib)
        time.sleep(1)   # let the guest settle after its writes
        nonfree = mem_mib * MiB - mem_free(src)

        # The snapshot: migrate to the file while the guest runs
        row = snapshot_to_file(src, mode, path)
        src.close()
        src = None
        # The restore: a new QEMU loads the file, the guest continues
        dst = Guest(qemu, mem_mib, hints, incoming=True, accel=accel,
                    name="snap-dst")
        set_caps(dst, caps)
        t1 = time.monotonic()
        dst.cmd("migrate-incoming", uri="file:" + path)
        wait_restored(dst)
        restore_s = time.monotonic() - t1
        dst.attach_serial()
        verify = dst.agent("verify", timeout=300)
        return {
            "variant": variant, "mode": mode, "mem_mib": mem_mib,
            "workload": WORKLOAD, "fill_mib": fill_mib(mem_mib),
            "nonfree": nonfree, **row, "restore_s": restore_s,
            "verified_pages": int(verify["pages"]),
            "mismatches": int(verify["mismatches"]),
        }
    finally:
        for g in (src, dst):
            if g:
                g.close()
        if os.path.exists(path):
            os.unlink(path)


# -- summary -----------------------------------------------------------------

def f1(v):
    return f"{v:.1f}"


def f2(v):
    return f"{v:.2f}"


def goal_row(rows):
    """Per run: size <= 1.25 x non-free + device state."""
    return [r["size"] <= GOAL_RATIO * r["nonfree"] + r["device"] for r in rows]


def summarize(results, runs):
    lines = ["| mode | variant | file, apparent (MiB) | file, allocated (MiB) "
             "| non-free (MiB) | file / non-free | RAM pages in file (MiB) "
             "| device state etc. (MiB) | snapshot time (ms) | restore (s) "
             "| goal (<= 1.25x + dev) | verified |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for (mode, variant), rows in results.items():
        ok = [r for r in rows if "error" not in r]
        failed = len(rows) - len(ok)
        if not ok:
            lines.append(f"| {mode} | {variant} | {rows[0]['error']} "
                         "| | | | | | | | | |")
            continue
        bad = sum(r["mismatches"] for r in ok)
        met = goal_row(ok)
        lines.append(
            f"| {mode} | {variant} "
            f"| {spread([r['apparent'] / MiB for r in ok])} "
            f"| {spread([r['allocated'] / MiB for r in ok])} "
            f"| {spread([r['nonfree'] / MiB for r in ok])} "
            f"| {spread([r['size'] / r['nonfree'] for r in ok], f2)} "
            f"| {spread([r['ram_in_file'] / MiB for r in ok])} "
            f"| {spread([r['device'] / MiB for r in ok], f1)} "
            f"| {spread([r['total_ms'] for r in ok])} "
            f"| {spread([r['restore_s'] for r in ok], f1)} "
            f"| {'met' if all(met) else f'missed in {met.count(False)} of {len(met)}'} "
            f"| {'ok' if bad == 0 else f'{bad} MISMATCHES'}"
            f"{f', {failed} of {runs} runs failed' if failed else ''} |")
    return "\n".join(lines)


def pages_table(results):
    """Which pages went: query-migrate's counts, and what our hints did."""
    lines = ["| mode | variant | pages as data (normal) | zero pages "
             "| pages in the file's bitmaps | hinted (MiB) | pages cleared "
             "| hint rounds requested / completed | wait (ms) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for (mode, variant), rows in results.items():
        ok = [r for r in rows if "error" not in r]
        if not ok:
            continue
        fph = [r["free_page_hint"] for r in ok if r.get("free_page_hint")]
        present = [r["pages_present"] for r in ok
                   if r["pages_present"] is not None]
        if fph:
            hint = (f"| {spread([h['bytes-hinted'] / MiB for h in fph])} "
                    f"| {spread([h['pages-cleared'] for h in fph])} "
                    f"| {spread([h['rounds-requested'] for h in fph])} / "
                    f"{spread([h['rounds-completed'] for h in fph])} "
                    f"| {spread([h['wait-time'] for h in fph])} |")
        else:
            hint = "| - | - | - | - |"
        lines.append(f"| {mode} | {variant} "
                     f"| {spread([r['normal'] for r in ok])} "
                     f"| {spread([r['zero'] for r in ok])} "
                     f"| {spread(present) if present else '-'} " + hint)
    return "\n".join(lines)


def verdict(results, modes):
    """The goal, per mode, in words."""
    out = []
    for mode in modes:
        ours_all = results.get((mode, "our hints"), [])
        up_all = results.get((mode, "upstream hints"), [])
        ours = [r for r in ours_all if "error" not in r]
        up = [r for r in up_all if "error" not in r]
        if not ours:
            continue
        what = "allocated" if mode == "mapped-ram" else "apparent"
        size = statistics.median(r["size"] for r in ours)
        limit = statistics.median(GOAL_RATIO * r["nonfree"] + r["device"]
                                  for r in ours)
        met = goal_row(ours)
        s = (f"- {mode}: ours {size / MiB:.0f} MiB {what} (median) against "
             f"a limit of {limit / MiB:.0f} MiB (1.25x non-free + device "
             f"state): ")
        if all(met):
            s += "met in every run"
        else:
            s += (f"missed in {met.count(False)} of {len(met)} runs, by "
                  f"{(size - limit) / MiB:+.0f} MiB "
                  f"({size / limit:.2f}x the limit) at the median")
        if up:
            u = statistics.median(r["size"] for r in up)
            s += (f"; upstream's hints {u / MiB:.0f} MiB "
                  f"({min(r['size'] for r in up) / MiB:.0f}-"
                  f"{max(r['size'] for r in up) / MiB:.0f}), ours "
                  + ("smaller at the median" if size <= u else
                     f"LARGER at the median by {(size - u) / MiB:.1f} MiB")
                  + "; per non-free memory ours "
                  f"{statistics.median(r['size'] / r['nonfree'] for r in ours):.2f}"
                  ", upstream's "
                  f"{statistics.median(r['size'] / r['nonfree'] for r in up):.2f}"
                  " (median)")
            # Runs of one round (same index) ran one after the other
            larger = [(i, a, b) for i, (a, b) in enumerate(zip(ours_all, up_all))
                      if "error" not in a and "error" not in b
                      and a["size"] > b["size"]]
            if not larger:
                s += "; smaller in every run of the same round"
            for i, a, b in larger:
                s += (f"; larger in run {i + 1} by "
                      f"{(a['size'] - b['size']) / MiB:.1f} MiB ("
                      f"{a['size'] / MiB:.0f} against {b['size'] / MiB:.0f}; "
                      f"per non-free memory {a['size'] / a['nonfree']:.2f} "
                      f"against {b['size'] / b['nonfree']:.2f})")
        out.append(s + ".")
    return "\n".join(out)


def plot(results, modes, variants, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("[snapshot] no matplotlib (Debian: python3-matplotlib, run with "
            "/usr/bin/python3): no plot")
        return False
    fig, axes = plt.subplots(1, len(modes), figsize=(5 * len(modes), 4),
                             squeeze=False)
    for ax, mode in zip(axes[0], modes):
        xs, ram, dev, lim, nonfree, err = [], [], [], [], [], [[], []]
        for v in variants:
            ok = [r for r in results.get((mode, v), []) if "error" not in r]
            if not ok:
                continue
            xs.append(v)
            ram.append(statistics.median(r["ram_in_file"] for r in ok) / MiB)
            dev.append(statistics.median(r["device"] for r in ok) / MiB)
            sizes = [r["size"] / MiB for r in ok]
            med = statistics.median(sizes)
            err[0].append(med - min(sizes))
            err[1].append(max(sizes) - med)
            nonfree.append(statistics.median(r["nonfree"] for r in ok) / MiB)
            lim.append(statistics.median(GOAL_RATIO * r["nonfree"]
                                         + r["device"] for r in ok) / MiB)
        if not xs:
            continue
        idx = range(len(xs))
        ax.bar(idx, ram, color="C0", label="guest RAM pages")
        ax.bar(idx, dev, bottom=ram, color="C7", label="device state etc.",
               yerr=err, capsize=4, ecolor="0.4")
        ax.scatter(idx, nonfree, marker="_", s=900, color="k", zorder=3,
                   label="guest non-free memory")
        ax.scatter(idx, lim, marker="_", s=900, color="C3", zorder=3,
                   label="goal: 1.25x non-free + device")
        ax.set_xticks(list(idx))
        ax.set_xticklabels(xs)
        what = "allocated" if mode == "mapped-ram" else "size"
        ax.set_title(f"{mode}: file {what}")
        ax.set_ylabel("MiB (median, bars: min-max of the file)")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mem", type=int, default=1024, help="guest MiB")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--variants", default=",".join(BENCH_VARIANTS))
    ap.add_argument("--out", help="the run's folder (default: a new one "
                    "in bench/runs)")
    args = ap.parse_args()
    args.variant_list = [v.strip() for v in args.variants.split(",")]
    for v in args.variant_list:
        if v not in VARIANTS:
            sys.exit(f"[snapshot] unknown variant '{v}': one of "
                     f"{', '.join(VARIANTS)}")
    args.mode_list = [m.strip() for m in args.modes.split(",")]
    for m in args.mode_list:
        if m not in MODES:
            sys.exit(f"[snapshot] unknown mode '{m}': one of {', '.join(MODES)}")
    if args.mem < KEEP_MIB + 256:
        sys.exit(f"[snapshot] --mem {args.mem}: at least {KEEP_MIB + 256} MiB")
    return args


def one_case(variant, mode, mem, accel, path):
    """One snapshot and restore (a guest that did not boot gets a second
    try); a failure becomes the row's error."""
    try:
        try:
            r = snapshot_case(variant, mode, mem, accel, path)
        except BootError as e:
            # A guest that does not come up (seen once in 60 boots here,
            # under load) says nothing about snapshots: once more, and say
            # so in the results
            log(f"[snapshot]   {e}; booting once more")
            r = snapshot_case(variant, mode, mem, accel, path)
            r["boot_retried"] = str(e)[:120]
        log(f"[snapshot]   file {r['apparent'] / MiB:.0f} MiB "
            f"({r['allocated'] / MiB:.0f} MiB allocated), non-free "
            f"{r['nonfree'] / MiB:.0f} MiB, {r['total_ms']} ms, "
            f"restored in {r['restore_s']:.1f} s, "
            f"{r['mismatches']} mismatches")
        if r["mismatches"]:
            r["error"] = f"{r['mismatches']} mismatches after the restore"
    except HarnessError as e:
        log(f"[snapshot]   failed: {e}")
        r = {"error": f"failed: {str(e)[:60]}"}
    return r


def run_all(args, accel):
    """Every case, args.runs times; the results by (mode, variant)."""
    modes, variants = args.mode_list, args.variant_list
    workdir = os.path.join(BUILD, "snapshot")
    os.makedirs(workdir, exist_ok=True)
    total = args.runs * len(modes) * len(variants)
    results = {(m, v): [] for m in modes for v in variants}
    n = 0
    # Runs interleave the variants and modes, so that drift in the
    # machine's load spreads over all of them
    for run in range(args.runs):
        for mode in modes:
            for variant in variants:
                if STOP:
                    raise SystemExit(128 + STOP[0])
                n += 1
                slug = variant.replace(" ", "-")
                path = os.path.join(workdir, f"{slug}-{mode}-{os.getpid()}.img")
                log(f"[snapshot] {n}/{total} run {run + 1}: {variant}, {mode}, "
                    f"{args.mem} MiB guest, {WORKLOAD} ...")
                results[(mode, variant)].append(
                    one_case(variant, mode, args.mem, accel, path))
    return results


def report(args, results, started, accel, cmd, minutes):
    """results.md's text, but the plot."""
    head = (f"Measured {started} on {machine()}; {accel.upper()}, 2 vCPUs; "
            f"{args.mem} MiB guest, workload {WORKLOAD} (keeps {KEEP_MIB} MiB, "
            f"wrote and freed {fill_mib(args.mem)} MiB); live `migrate` to a "
            f"`file:` URI, max-bandwidth 100G, downtime-limit 2 s; restored "
            f"with `-incoming defer` + `migrate-incoming`, kept memory "
            f"verified; median (min-max) of {args.runs} run(s); took "
            f"{minutes:.0f} min.\n"
            f"Command: `python3 bench/snapshot.py {cmd}` "
            f"(`make snapshot-bench SNAPSHOT_ARGS='{cmd}'`)\n")
    notes = ("\"file / non-free\": the file's apparent size (plain) or "
             "allocated size (mapped-ram) over the guest's RAM minus "
             "MemFree just before the snapshot. \"device state etc.\": the "
             "rest of that size besides the guest's RAM pages (plain: "
             "minus query-migrate's RAM bytes, page headers included; "
             "mapped-ram: allocated bytes outside the RAM blocks' page "
             "regions). Goal: size <= 1.25x non-free + device state, in "
             "every run.\n")
    md = (head + "\n" + summarize(results, args.runs) + "\n\n" + notes
          + "\nWhich pages went (query-migrate on the source; the "
          "free-page-hint member is our QEMU's):\n\n"
          + pages_table(results) + "\n\n" + verdict(results, args.mode_list)
          + "\n")
    retried = [f"run {i + 1} {v}, {m}" for (m, v), rows in results.items()
               for i, r in enumerate(rows) if r.get("boot_retried")]
    if retried:
        md += ("\nThe source guest did not come up the first time, booted "
               f"once more (nothing measured yet): {'; '.join(retried)}.\n")
    return md


def main():
    args = parse_args()
    modes, variants = args.mode_list, args.variant_list
    stop_on_sigterm("snapshot")
    accel = probe_accel()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out = args.out or new_run_dir(f"snapshot-{args.mem}mib")
    cmd = f"--mem {args.mem} --runs {args.runs} --modes {','.join(modes)}"
    if variants != list(BENCH_VARIANTS):
        cmd += f' --variants "{",".join(variants)}"'
    if args.out:
        cmd += f" --out {os.path.relpath(args.out, TOP)}"
    log(f"[snapshot] results go to {os.path.relpath(out, os.getcwd())}")
    write_manifest(out, new=True, tool="bench/snapshot.py", measured=started,
                   status="running", **provenance(),
                   command=f"make snapshot-bench SNAPSHOT_ARGS='{cmd}'",
                   what=f"snapshot: {args.mem} MiB; {','.join(modes)}; "
                   f"{args.runs} runs", machine=machine_info(), accel=accel)
    t_start = time.monotonic()
    results = run_all(args, accel)
    minutes = (time.monotonic() - t_start) / 60
    md = report(args, results, started, accel, cmd, minutes)
    os.makedirs(out, exist_ok=True)
    if plot(results, modes, variants, os.path.join(out, "results.png")):
        md += "\n![file sizes](results.png)\n"
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(md)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"measured": started, "machine": machine(), "accel": accel,
                   "command": cmd, "mem_mib": args.mem, "workload": WORKLOAD,
                   "goal_ratio": GOAL_RATIO,
                   "cases": cases_json(results, SNAPSHOT_KEYS)},
                  f, indent=1)
    write_manifest(out, status="complete", minutes=round(minutes, 1),
                   link_tcp_bits_per_s={})
    index(out)
    print(md)
    failed = sum(1 for rows in results.values() for r in rows if "error" in r)
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(main())
