#!/usr/bin/python3
"""make bench: no hints vs upstream's hints vs ours, in one run on one machine.

Each case boots the test guest, brings it into the workload's state,
migrates it (max-bandwidth 100G, QEMU's default downtime-limit of 300 ms
unless --downtime-limit says otherwise) over a link and has
the guest verify its memory on the destination.  Links: "loopback", a unix
socket at full speed; "1g" and "10g", TCP to a destination QEMU in another
network namespace behind a veth pair shaped with tc tbf (harness/netns.py).
The busy guest's churn rate is measured at rest (--rest seconds) and
during the migration.  Writes a new run folder (--out, by default
bench/runs/DATE-VERSION-LINKS-SIZES): results.md (Markdown tables,
median and min-max of --runs runs), results.json (every run, each case
an object), results.png (time and bytes against guest size, per
variant) and manifest.json (series commit, sha256 of patches/, command,
machine, measured link rates); then bench/runs/index.md (bench/runs.py).

    bench.py [--sizes 1024,2048,4096,8192] [--workloads idle,freed,busy]
             [--links loopback,1g,10g] [--runs 3] [--rest 3]
             [--variants "no hints,upstream hints,our hints"]
             [--init-on-alloc 1,0] [--downtime-limit 300] [--ablation]

--ablation (make ablation): the series with each of its mechanisms
switched off or on in turn (harness/variant.py's ABLATION, the QEMU of
bench/ablation/) beside no hints, upstream's hints and the whole series,
in the cells ABLATION_CELLS names unless --sizes, --workloads or --links
are given; results.md then has "What each mechanism buys".

--init-on-alloc: the guest kernel's init_on_alloc (1 is Debian's default:
the kernel zeroes every page it allocates, the balloon driver's too, so
the pages a guest hints free are dirty again after the next sync).

Columns: "bound" is the time the guest's non-free memory (RAM minus
MemFree just before the migration) takes at the link's measured TCP rate,
what a migration that sends nothing else would take; "normal" and "zero"
are the pages sent with data and as zero pages; "revisits" is at least
how many pages were sent more than once (normal + zero - guest pages).
"""

import argparse
import json
import os
import platform
import signal
import statistics
import sys
import time

from harness.netns import LINKS, Netns
from harness.scenario import run_logged
from harness.variant import (ABLATION_VARIANTS, BENCH_VARIANTS, VARIANTS,
                             lookup)
from harness.vm import HarnessError, log, probe_accel
from runs import (cases_json, load_results, machine_info, new_run_dir,
                  provenance, write_index, write_manifest)

HERE = os.path.dirname(os.path.abspath(__file__))

# The ablation's cells (link, workload, MiB), in the order a run takes
# them.  A busy 2 GiB guest over 1g is not one: with QEMU's
# downtime-limit no variant converged within 60 s in the v5 ablation
# (bench/runs/2026-12-07-v5-ablation-1g-10g-2048-8192mib), so it only
# costs the whole --timeout per variant; --links 1g --workloads busy runs
# it.  "no hints" runs in the idle cells only (hints must not make an
# idle guest slower); the other cells' no-hints numbers are make bench's.
ABLATION_CELLS = [("1g", "freed", 2048), ("1g", "idle", 2048),
                  ("10g", "freed", 2048), ("10g", "idle", 2048),
                  ("10g", "busy", 2048), ("10g", "freed", 8192)]

LINK_TEXT = {"loopback": "loopback unix socket",
             "1g": "1 Gbit/s (veth, tc tbf)", "10g": "10 Gbit/s (veth, tc tbf)"}


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


def f0(v):
    return f"{v:.0f}"


def spread(values, fmt=f0):
    med = statistics.median(values)
    if len(values) == 1:
        return fmt(med)
    return f"{fmt(med)} ({fmt(min(values))}-{fmt(max(values))})"


def kpages(n):
    return f"{n / 1000:.0f}k"


def bound_ms(r, measured):
    """The guest's non-free memory at the link's measured rate, in ms."""
    rate = r.get("link_rate") or measured.get(r["link"])
    if not rate or "nonfree" not in r:
        return None
    return r["nonfree"] * 8 / rate * 1000


def summarize(results, runs, measured, keys=None):
    lines = ["| link | workload | guest | variant | total time (ms) "
             "| downtime (ms) | transferred (MiB) | bound (ms) "
             "| normal pages | zero pages | revisits | verified |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for key in keys or results:
        if key not in results:
            continue
        rows = results[key]
        link, workload, mem, variant = key
        ok = [r for r in rows if "error" not in r]
        if not ok:
            lines.append(f"| {link} | {workload} | {mem} MiB | {variant} | "
                         f"{rows[0]['error']} | | | | | | | |")
            continue
        bad = sum(r["mismatches"] for r in ok)
        failed = len(rows) - len(ok)
        bounds = [b for b in (bound_ms(r, measured) for r in ok) if b]
        lines.append(
            f"| {link} | {workload} | {mem} MiB | {variant} "
            f"| {spread([r['total_ms'] for r in ok])} "
            f"| {spread([r['downtime_ms'] for r in ok])} "
            f"| {spread([r['transferred'] / (1 << 20) for r in ok])} "
            f"| {spread(bounds) if bounds else '-'} "
            f"| {spread([r['normal'] for r in ok], kpages)} "
            f"| {spread([r['zero'] for r in ok], kpages)} "
            f"| {spread([r.get('revisits', 0) for r in ok], kpages)} "
            f"| {'ok' if bad == 0 else f'{bad} MISMATCHES'}"
            f"{f', {failed} of {runs} runs failed' if failed else ''} |")
    return "\n".join(lines)


def ratios(results, keys=None):
    """Ours against upstream's hints and against no hints, per case."""
    lines = ["| link | workload | guest | time / upstream's | bytes / upstream's "
             "| time / no hints | bytes / non-free memory |",
             "|---|---|---:|---:|---:|---:|---:|"]
    cases = sorted({k[:3] for k in (keys or results)},
                   key=lambda c: (c[0], c[1], c[2]))
    for link, workload, mem in cases:
        def med(variant, what):
            rows = [r for r in results.get((link, workload, mem, variant), [])
                    if "error" not in r]
            return statistics.median(what(r) for r in rows) if rows else None
        ours_t = med("our hints", lambda r: r["total_ms"])
        ours_b = med("our hints", lambda r: r["transferred"])
        if ours_t is None:
            continue
        up_t = med("upstream hints", lambda r: r["total_ms"])
        up_b = med("upstream hints", lambda r: r["transferred"])
        no_t = med("no hints", lambda r: r["total_ms"])
        nf = med("our hints", lambda r: r.get("nonfree", 0))

        def q(a, b):
            return f"{a / b:.2f}" if a is not None and b else "-"
        lines.append(f"| {link} | {workload} | {mem} MiB | {q(ours_t, up_t)} "
                     f"| {q(ours_b, up_b)} | {q(ours_t, no_t)} "
                     f"| {q(ours_b, nf)} |")
    return "\n".join(lines)


def ablation_table(results):
    """What each mechanism buys: per cell, each of the ablation's variants
    against the variant it changes (medians; the spread is the variant's
    own min-max over that median of the other)."""
    lines = ["| link | workload | guest | variant | against | time ratio "
             "(spread) | bytes ratio | downtime (ms), variant vs against |",
             "|---|---|---:|---|---|---:|---:|---:|"]
    for link, workload, mem in sorted({k[:3] for k in results}):
        def ok(variant):
            return [r for r in results.get((link, workload, mem, variant), [])
                    if "error" not in r]
        for v in (lookup(label) for label in ABLATION_VARIANTS[3:]):
            rows, ref = ok(v.label), ok(v.against)
            failed = len(results.get((link, workload, mem, v.label), [])) - len(rows)
            if not ref or not (rows or failed):
                continue
            if not rows:
                lines.append(f"| {link} | {workload} | {mem} MiB | {v.label} "
                             f"| {v.against} | failed ({failed} runs) | | |")
                continue
            rt = statistics.median(r["total_ms"] for r in ref)
            rb = statistics.median(r["transferred"] for r in ref)
            rd = statistics.median(r["downtime_ms"] for r in ref)
            t = [r["total_ms"] / rt for r in rows]
            b = statistics.median(r["transferred"] for r in rows) / rb
            d = statistics.median(r["downtime_ms"] for r in rows)
            lines.append(f"| {link} | {workload} | {mem} MiB | {v.label} "
                         f"| {v.against} "
                         f"| {spread(t, lambda x: f'{x:.2f}')} | {b:.2f} "
                         f"| {d:.0f} vs {rd:.0f} |")
    return "\n".join(lines)


def rate_mbit(r):
    """Bytes transferred over the whole migration time, in Mbit/s."""
    return r["transferred"] * 8 / max(r["total_ms"], 1) / 1000


def summarize_work(results):
    """The busy guest's own work: its churn rate at rest and in migration."""
    lines = ["| link | guest | variant | churn at rest (MiB/s) "
             "| churn during migration (MiB/s) | during / at rest "
             "| work lost (MiB) |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for (link, workload, mem, variant), rows in results.items():
        ok = [r for r in rows if "churn_mib_s_migration" in r]
        if workload != "busy" or not ok:
            continue
        lost = [r["churn_mib_lost"] for r in ok if "churn_mib_lost" in r]
        lines.append(
            f"| {link} | {mem} MiB | {variant} "
            f"| {spread([r['churn_mib_s_rest'] for r in ok])} "
            f"| {spread([r['churn_mib_s_migration'] for r in ok])} "
            f"| {spread([100 * r['churn_mib_s_migration'] / r['churn_mib_s_rest'] for r in ok], lambda v: f'{v:.0f}%')} "
            f"| {spread(lost) if lost else '-'} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = sorted({k[1] for k in results})
    links = [k for k in LINKS if any(r[0] == k for r in results)]
    styles = dict(zip(LINKS, ("-", "--", ":")))
    colors = dict(zip(BENCH_VARIANTS, ("C0", "C1", "C2")))
    fig, axes = plt.subplots(2, len(workloads), figsize=(5 * len(workloads), 7),
                             squeeze=False)
    for col, workload in enumerate(workloads):
        for link, variant in ((li, v) for li in links for v in BENCH_VARIANTS):
            pts = sorted((k[2], [r for r in v if "error" not in r])
                         for k, v in results.items()
                         if k[0] == link and k[1] == workload
                         and k[3] == variant)
            pts = [(m, rows) for m, rows in pts if rows]
            if not pts:
                continue
            label = variant if len(links) == 1 else f"{variant}, {link}"
            style = dict(marker="o", label=label, linestyle=styles[link],
                         color=colors.get(variant))
            sizes = [m / 1024 for m, _ in pts]
            t = [statistics.median(r["total_ms"] for r in rows) for _, rows in pts]
            b = [statistics.median(r["transferred"] for r in rows) / (1 << 20)
                 for _, rows in pts]
            axes[0][col].plot(sizes, t, **style)
            axes[1][col].plot(sizes, b, **style)
        axes[0][col].set_title(f"{workload} guest")
        axes[0][col].set_ylabel("total migration time (ms)")
        axes[1][col].set_ylabel("transferred (MiB)")
        for row in (0, 1):
            axes[row][col].set_xlabel("guest RAM (GiB)")
            axes[row][col].grid(True, alpha=0.3)
            axes[row][col].legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def merge(dirs, out):
    """One table and plot of several runs' results (their results.json):
    a matrix that ran in more than one sitting.  Each case keeps the link
    rate its own run measured."""
    results, heads = {}, []
    for d in dirs:
        saved, cases = load_results(os.path.join(d, "results.json"))
        rates = saved["link_tcp_bits_per_s"]
        for k, runs in cases.items():
            if k in results:
                sys.exit(f"[bench] {k} is in more than one of {dirs}")
            for r in runs:
                if k[0] in rates:
                    r["link_rate"] = rates[k[0]]
            results[k] = runs
        heads.append(f"- [{d}]({os.path.relpath(d, out)}/results.md): "
                     f"{saved['measured']} on {saved['machine']}; "
                     f"`make {saved.get('make', 'bench')} "
                     f"BENCH_ARGS='{saved['command']}'`")
    order = {v: i for i, v in enumerate(BENCH_VARIANTS)}
    keys = sorted(results, key=lambda k: (k[0], k[1], k[2], order.get(k[3], 9)))
    runs = max(len(v) for v in results.values())
    md = ("Merged with `bench/bench.py --merge " + ",".join(dirs)
          + f" --out {out}` from these runs (the same machine kind; each "
          "one's header has the link rates it measured, and its cases' "
          "bound column uses them):\n\n" + "\n".join(heads)
          + "\n\nOurs against the others (medians):\n\n" + ratios(results, keys)
          + "\n\nEvery case:\n\n" + summarize(results, runs, {}, keys) + "\n")
    work = summarize_work({k: results[k] for k in keys})
    if work:
        md += ("\nThe busy guest's own work (see each run's results.md):"
               "\n\n" + work + "\n")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(md)
    plot(results, os.path.join(out, "results.png"))
    write_manifest(out, new=True, tool="bench/bench.py --merge", **provenance(),
                   measured=time.strftime("%Y-%m-%d %H:%M UTC (merged)",
                                          time.gmtime()),
                   what="merge of " + ", ".join(os.path.basename(os.path.normpath(d))
                                                for d in dirs),
                   command=f"/usr/bin/python3 bench/bench.py --merge "
                   f"{','.join(dirs)} --out {out}",
                   sources=[os.path.basename(os.path.normpath(d)) for d in dirs],
                   machine=machine_info(), link_tcp_bits_per_s={},
                   link_rates_note="each source run's manifest")
    index(out)
    print(md)
    return 0


def index(out):
    """Rewrite bench/runs/index.md when out is a folder in it."""
    runs_dir = os.path.join(HERE, "runs")
    if os.path.dirname(os.path.abspath(out)) == runs_dir:
        log(f"[bench] wrote {os.path.relpath(write_index(), os.getcwd())}")


def default_out(links, sizes, ablation=False):
    """bench/runs/DATE-VERSION-LINKS-SIZES, e.g. 2026-12-07-v4-loopback-1024mib
    (DATE-VERSION-ablation-... for an ablation)."""
    return new_run_dir(("ablation-" if ablation else "") + "-".join(links)
                       + "-" + "-".join(map(str, sizes)) + "mib")


def check_links(links, ns):
    """Measure each shaped link with a plain TCP stream: the tc rate applies."""
    measured = {}
    for link in links:
        rate = LINKS[link]
        if rate is None:
            continue
        ns.set_rate(rate)
        got = ns.measure()
        measured[link] = got
        log(f"[bench] link {link}: a TCP stream gets {got / 1e6:.0f} Mbit/s "
            f"(limit {rate / 1e6:.0f})")
        if got > rate * 1.1:
            raise HarnessError(f"link {link}: {got / 1e6:.0f} Mbit/s is above "
                               "its limit, tc's shaping did not apply; check "
                               f"'tc qdisc show' in namespace {ns.name}")
    return measured


STOP = []


def stop_on_sigterm(name):
    """On SIGTERM, unwind (the case's guests are closed, the namespace
    deleted) and note it in STOP: where a library swallows the exception,
    the loop stops before the next case."""
    def terminate(signum, frame):
        STOP.append(signum)
        log(f"[{name}] signal {signum}: stopping after cleaning up")
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, terminate)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes")
    ap.add_argument("--workloads")
    ap.add_argument("--links")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rest", type=float, default=3,
                    help="seconds to measure the busy guest's rate at rest")
    ap.add_argument("--variants")
    ap.add_argument("--ablation", action="store_true",
                    help="the series with each mechanism switched off "
                    "(make ablation)")
    ap.add_argument("--init-on-alloc", default="1",
                    help="the guest kernel's init_on_alloc values, e.g. 1,0")
    ap.add_argument("--downtime-limit", type=int, default=300,
                    help="migration's downtime-limit in ms (QEMU's default, "
                    "300)")
    ap.add_argument("--timeout", type=int,
                    help="seconds a migration may take before it is "
                    "cancelled and reported as not converging (default 600; "
                    "60 with --ablation)")
    ap.add_argument("--hint-wait", type=int,
                    help="free-page-hint-wait in ms for the variants that "
                    "run our QEMU (default: QEMU's, 0)")
    ap.add_argument("--out", help="the run's folder (default: a new one "
                    "in bench/runs, named by date, series version, links "
                    "and sizes)")
    ap.add_argument("--merge", metavar="DIR,DIR,...",
                    help="only write --out's results.md and results.png from "
                    "these runs' results.json")
    ap.add_argument("--replot", action="store_true",
                    help="only draw --out's results.png again from its "
                    "results.json")
    args = ap.parse_args()
    if args.timeout is None:
        args.timeout = 60 if args.ablation else 600
    grid = args.sizes or args.workloads or args.links
    args.cells = ABLATION_CELLS if args.ablation and not grid else None
    args.sizes = args.sizes or "1024,2048,4096,8192"
    args.workloads = args.workloads or "idle,freed,busy"
    args.links = args.links or "loopback,1g,10g"
    if args.cells:
        args.sizes = ",".join(sorted({str(c[2]) for c in args.cells}, key=int))
        args.workloads = ",".join(dict.fromkeys(c[1] for c in args.cells))
        args.links = ",".join(dict.fromkeys(c[0] for c in args.cells))
    args.variants = args.variants or ",".join(
        ABLATION_VARIANTS if args.ablation else BENCH_VARIANTS)
    return args


def matrix(args):
    """The run's variants, links and cells (link, (label, workload, kernel
    options), size) from the options; exits on an unknown one."""
    variants = [v.strip() for v in args.variants.split(",")]
    for v in variants:
        if v not in VARIANTS:
            sys.exit(f"[bench] unknown variant '{v}': one of {', '.join(VARIANTS)}")
    links = [li.strip() for li in args.links.split(",")]
    for li in links:
        if li not in LINKS:
            sys.exit(f"[bench] unknown link '{li}': one of {', '.join(LINKS)}")
    sizes = [int(s) for s in args.sizes.split(",")]
    # (label, workload, kernel options): init_on_alloc=1 is the default
    workloads = []
    for ioa in args.init_on_alloc.split(","):
        if ioa not in ("0", "1"):
            sys.exit(f"[bench] --init-on-alloc takes 0 and 1, not '{ioa}'")
        for w in args.workloads.split(","):
            workloads.append((w if ioa == "1" else f"{w}, init_on_alloc=0",
                              w, "" if ioa == "1" else "init_on_alloc=0"))
    cells = [(li, wl, mem) for li in links for wl in workloads for mem in sizes
             if not args.cells or (li, wl[1], mem) in args.cells]
    if args.cells:
        cells.sort(key=lambda c: args.cells.index((c[0], c[1][1], c[2])))
    return variants, links, cells


def one_case(args, link, variant, mem, workload, cmdline, accel, kw):
    """One migration of the matrix over @link (run_case's options in @kw);
    a failure becomes the row's error."""
    try:
        vkw = dict(kw)
        if args.hint_wait is not None and lookup(variant).qemu in ("ours",
                                                                  "ablate"):
            vkw["params"] = {"free-page-hint-wait": args.hint_wait}
        r = run_logged(variant, mem, workload, accel, cmdline=cmdline, **vkw)
        r["link"] = link
    except HarnessError as e:
        log(f"[bench]   failed: {e}")
        r = {"error": f"failed: {str(e)[:60]}"}
    return r


def run_matrix(args, variants, links, cells, accel, save):
    """Every case, args.runs times; return the results by (link, workload
    label, size, variant) and each shaped link's measured rate.  save(results,
    measured) after each case: a run stopped early keeps what it did."""
    results = {}

    def wanted(variant, workload):
        return not (args.cells and variant == "no hints" and workload != "idle")
    total = args.runs * sum(wanted(v, c[1][1]) for c in cells for v in variants)
    n = 0
    t_start = time.monotonic()
    ns = Netns() if any(LINKS[li] for li in links) else None
    try:
        if ns:
            ns.__enter__()
        measured = check_links(links, ns) if ns else {}
        # Runs interleave the variants, so that drift in the machine's load
        # spreads over all of them.
        for run in range(args.runs):
            for link, (label, workload, cmdline), mem in cells:
                kw = {"rest_s": args.rest, "timeout": args.timeout,
                      "downtime_ms": args.downtime_limit}
                if LINKS[link]:
                    ns.set_rate(LINKS[link])
                    kw.update(dst_wrapper=ns.wrapper, uri=ns.uri)
                for variant in (v for v in variants if wanted(v, workload)):
                    if STOP:
                        raise SystemExit(128 + STOP[0])
                    n += 1
                    elapsed = time.monotonic() - t_start
                    eta = (f", about {elapsed / (n - 1) * (total - n + 1) / 60:.0f} min left"
                           if n > 1 else "")
                    log(f"[bench] {n}/{total} run {run + 1}, link {link}{eta}")
                    r = one_case(args, link, variant, mem, workload,
                                 cmdline, accel, kw)
                    results.setdefault((link, label, mem, variant),
                                       []).append(r)
                    save(results, measured)
    finally:
        if ns:
            ns.close()
    return results, measured


def report(args, results, measured, links, started, accel, cmd, minutes):
    """results.md's text."""
    link_text = "; ".join(
        LINK_TEXT[li] + (f", a TCP stream measured {measured[li] / 1e6:.0f} "
                         "Mbit/s" if li in measured else "") for li in links)
    head = (f"Measured {started} on {machine()}; {accel.upper()}, 2 vCPUs, "
            f"max-bandwidth 100G, downtime-limit {args.downtime_limit} ms, "
            f"a migration not done after {args.timeout} s is cancelled"
            + (f", free-page-hint-wait {args.hint_wait} ms (ours)"
               if args.hint_wait is not None else "") + "; "
            f"links: {link_text}; "
            f"median (min-max) of {args.runs} run(s); took {minutes:.0f} min.\n"
            f"Command: `make {'ablation' if args.ablation else 'bench'} "
            f"BENCH_ARGS='{cmd}'`\n")
    md = head + "\nOurs against the others (medians):\n\n" + ratios(results)
    if any(k[3] in ABLATION_VARIANTS[3:] for k in results):
        md += ("\n\nWhat each mechanism buys: each variant against the "
               "one it changes (time and bytes, variant / against: below 1 "
               "the change saves, above 1 it costs; compare with the "
               "spread):\n\n" + ablation_table(results))
    md += ("\n\nEvery case:\n\n" + summarize(results, args.runs, measured)
           + "\n")
    work = summarize_work(results)
    if work:
        md += ("\nThe busy guest's own work (MiB its churn wrote and checked "
               f"per second): over {args.rest:g} s at rest just before the "
               "migration, and from the migration's start until the "
               "destination answered; work lost is what the churn would "
               "have done over that time at its rate at rest, less what it "
               "did (a migration that slows the guest as much for less "
               "time loses less):\n\n" + work + "\n")
    return md


def early_modes(args):
    """--merge and --replot; None when neither is asked for."""
    try:
        import matplotlib  # noqa: F401  (the plot, after hours of runs)
    except ImportError:
        sys.exit("[bench] no matplotlib for this python: run 'make bench' "
                 "(Debian's python3 with python3-matplotlib, 'make deps')")
    if (args.merge or args.replot) and not args.out:
        sys.exit("[bench] --merge and --replot need --out DIR (a run folder, "
                 "e.g. bench/runs/2026-11-28-v4-matrix)")
    if args.merge:
        return merge(args.merge.split(","), args.out)
    if args.replot:
        _, results = load_results(os.path.join(args.out, "results.json"))
        plot(results, os.path.join(args.out, "results.png"))
        return 0
    return None


def main():
    args = parse_args()
    rc = early_modes(args)
    if rc is not None:
        return rc
    variants, links, cells = matrix(args)
    stop_on_sigterm("bench")
    accel = probe_accel()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out = args.out or default_out(links, args.sizes.split(","), args.ablation)
    cmd = command(args, variants)
    log(f"[bench] results go to {os.path.relpath(out, os.getcwd())}")
    write_manifest(out, new=True, tool="bench/bench.py", measured=started,
                   status="running", **provenance(),
                   command=f"make {'ablation' if args.ablation else 'bench'} "
                   f"BENCH_ARGS='{cmd}'",
                   what=f"{args.sizes} MiB; {args.workloads}; {args.links}; "
                   f"{args.runs} run(s)", machine=machine_info(), accel=accel)
    t_start = time.monotonic()

    def save(results, measured):
        """results.json and results.md as they stand"""
        minutes = (time.monotonic() - t_start) / 60
        md = report(args, results, measured, links, started, accel, cmd,
                    minutes)
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "results.md"), "w") as f:
            f.write(md)
        with open(os.path.join(out, "results.json"), "w") as f:
            json.dump({"measured": started, "machine": machine(),
                       "accel": accel, "command": cmd,
                       "make": "ablation" if args.ablation else "bench",
                       "downtime_limit_ms": args.downtime_limit,
                       "link_tcp_bits_per_s": measured,
                       "cases": cases_json(results)}, f, indent=1)
        return md

    results, measured = run_matrix(args, variants, links, cells, accel, save)
    minutes = (time.monotonic() - t_start) / 60
    md = save(results, measured)
    plot(results, os.path.join(out, "results.png"))
    write_manifest(out, status="complete", minutes=round(minutes, 1),
                   link_tcp_bits_per_s=measured)
    index(out)
    print(md)
    return 0


def command(args, variants):
    """The options of this run, as BENCH_ARGS would give them."""
    if args.cells:
        cmd = f"--runs {args.runs}"
    else:
        cmd = " ".join(f"--{k} {getattr(args, k)}" for k in
                       ("sizes", "workloads", "links", "runs"))
    if args.init_on_alloc != "1":
        cmd += f" --init-on-alloc {args.init_on_alloc}"
    if args.timeout != (60 if args.ablation else 600):
        cmd += f" --timeout {args.timeout}"
    if args.downtime_limit != 300:
        cmd += f" --downtime-limit {args.downtime_limit}"
    if args.hint_wait is not None:
        cmd += f" --hint-wait {args.hint_wait}"
    if variants != list(ABLATION_VARIANTS if args.ablation
                        else BENCH_VARIANTS):
        cmd += f' --variants "{args.variants}"'
    if args.out:
        cmd += f" --out {os.path.relpath(args.out, os.path.dirname(HERE))}"
    return cmd


if __name__ == "__main__":
    sys.exit(main())
