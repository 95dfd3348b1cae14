#!/usr/bin/python3
"""make bench: no hints vs upstream's hints vs ours, in one run on one machine.

Each case boots the test guest, brings it into the workload's state,
migrates it over a loopback unix socket (max-bandwidth 100G, downtime-limit
2 s) and has the guest verify its memory on the destination.  Writes
bench/results.md (Markdown table, median and min-max of --runs runs) and
bench/results.png (time and bytes against guest size, per variant).

    bench.py [--sizes 1024,2048,4096,8192] [--workloads idle,freed,busy]
             [--runs 3] [--variants "no hints,upstream hints,our hints"]
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "e2e"))

from scenario import BENCH_VARIANTS, VARIANTS, run_logged  # noqa: E402
from vm import HarnessError, log, probe_accel  # noqa: E402


def machine():
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") >> 30
    return (f"{cpu}, {os.cpu_count()} cores, {mem} GiB, "
            f"{platform.system()} {platform.release()}")


def spread(values, fmt):
    med = statistics.median(values)
    if len(values) == 1:
        return fmt(med)
    return f"{fmt(med)} ({fmt(min(values))}-{fmt(max(values))})"


def summarize(results, runs):
    lines = ["| workload | guest | variant | total time (ms) | downtime (ms) "
             "| transferred (MiB) | pages not sent | verified |",
             "|---|---:|---|---:|---:|---:|---:|---|"]
    for key, rows in results.items():
        workload, mem, variant = key
        ok = [r for r in rows if "error" not in r]
        if not ok:
            lines.append(f"| {workload} | {mem} MiB | {variant} | "
                         f"{rows[0]['error']} | | | | |")
            continue
        bad = sum(r["mismatches"] for r in ok)
        failed = len(rows) - len(ok)
        lines.append(
            f"| {workload} | {mem} MiB | {variant} "
            f"| {spread([r['total_ms'] for r in ok], str)} "
            f"| {spread([r['downtime_ms'] for r in ok], str)} "
            f"| {spread([r['transferred'] / (1 << 20) for r in ok], lambda v: f'{v:.0f}')} "
            f"| {spread([r['not_sent'] for r in ok], str)} "
            f"| {'ok' if bad == 0 else f'{bad} MISMATCHES'}"
            f"{f', {failed} of {runs} runs failed' if failed else ''} |")
    return "\n".join(lines)


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = sorted({k[0] for k in results})
    fig, axes = plt.subplots(2, len(workloads), figsize=(5 * len(workloads), 7),
                             squeeze=False)
    for col, workload in enumerate(workloads):
        for variant in BENCH_VARIANTS:
            pts = sorted((k[1], [r for r in v if "error" not in r])
                         for k, v in results.items()
                         if k[0] == workload and k[2] == variant)
            pts = [(m, rows) for m, rows in pts if rows]
            if not pts:
                continue
            sizes = [m / 1024 for m, _ in pts]
            t = [statistics.median(r["total_ms"] for r in rows) for _, rows in pts]
            b = [statistics.median(r["transferred"] for r in rows) / (1 << 20)
                 for _, rows in pts]
            axes[0][col].plot(sizes, t, marker="o", label=variant)
            axes[1][col].plot(sizes, b, marker="o", label=variant)
        axes[0][col].set_title(f"{workload} guest")
        axes[0][col].set_ylabel("total migration time (ms)")
        axes[1][col].set_ylabel("transferred (MiB)")
        for row in (0, 1):
            axes[row][col].set_xlabel("guest RAM (GiB)")
            axes[row][col].grid(True, alpha=0.3)
            axes[row][col].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1024,2048,4096,8192")
    ap.add_argument("--workloads", default="idle,freed,busy")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--variants", default=",".join(BENCH_VARIANTS))
    ap.add_argument("--out", default=HERE)
    args = ap.parse_args()
    variants = [v.strip() for v in args.variants.split(",")]
    for v in variants:
        if v not in VARIANTS:
            sys.exit(f"[bench] unknown variant '{v}': one of {', '.join(VARIANTS)}")
    accel = probe_accel()
    sizes = [int(s) for s in args.sizes.split(",")]
    workloads = args.workloads.split(",")
    results = {}
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    total = len(sizes) * len(workloads) * len(variants) * args.runs
    n = 0
    # Runs interleave the variants, so that drift in the machine's load
    # spreads over all of them.
    for run in range(args.runs):
        for workload in workloads:
            for mem in sizes:
                for variant in variants:
                    n += 1
                    log(f"[bench] {n}/{total}")
                    key = (workload, mem, variant)
                    try:
                        r = run_logged(variant, mem, workload, accel)
                    except HarnessError as e:
                        log(f"[bench]   failed: {e}")
                        r = {"error": f"failed: {str(e)[:60]}"}
                    results.setdefault(key, []).append(r)
    head = (f"Measured {started} on {machine()}; {accel.upper()}, 2 vCPUs, "
            f"loopback unix socket, max-bandwidth 100G, downtime-limit 2 s; "
            f"median (min-max) of {args.runs} run(s).\n"
            f"Command: `make bench BENCH_ARGS='--sizes {args.sizes} "
            f"--workloads {args.workloads} --runs {args.runs}'`\n")
    md = head + "\n" + summarize(results, args.runs) + "\n"
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(md)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"|".join(map(str, k)): v for k, v in results.items()}, f,
                  indent=1)
    plot(results, os.path.join(args.out, "results.png"))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
