#!/usr/bin/python3
"""make demo: migrate a guest that wrote and freed most of its memory, with
free page hints off and on, and print what it cost.

    demo.py [--mem MiB]
"""

import argparse
import json
import sys

from harness.scenario import run_logged
from harness.vm import HarnessError, log, probe_accel


def pages_table(rows, title):
    """What happened to the guest's pages, one column per variant, in words."""
    def cell(r, what):
        if "error" in r:
            return r["error"] if what == "time" else ""
        fph = r.get("free_page_hint") or {}
        mib = r["transferred"] / (1 << 20)
        return {
            "time": f"{r['total_ms']} ms ({r['downtime_ms']} ms)",
            "bytes": f"{mib:.0f} MiB",
            "data": str(r["normal"]),
            "zero": str(r["zero"]),
            "none": str(r["not_sent"]),
            "hinted": (f"{fph['bytes-hinted'] >> 20} MiB" if fph
                       else "none (hints off)"),
            "cleared": str(fph["pages-cleared"]) if fph else "-",
            "verified": ("ok" if r["mismatches"] == 0
                         else f"{r['mismatches']} MISMATCHES")
            + f" ({r['verified_pages']} pages)",
        }[what]
    lines = [
        ("migration took (of it, the guest paused)", "time"),
        ("sent over the link", "bytes"),
        ("pages sent with their data, 4 KiB each", "data"),
        ("pages sent as zero pages, a few bytes each", "zero"),
        ("pages not sent at all", "none"),
        ("free memory the guest reported, all rounds (hints)", "hinted"),
        ("pages whose old data the hints kept off the link", "cleared"),
        ("memory the guest checked on the destination", "verified"),
    ]
    out = [f"**{title}**", "",
           "| | " + " | ".join(r["variant"] for r in rows) + " |",
           "|---|" + "---:|" * len(rows)]
    out += [f"| {text} | " + " | ".join(cell(r, what) for r in rows) + " |"
            for text, what in lines]
    out += ["",
            "With hints, the guest reports the memory it does not use and "
            "migration does not send those pages' old data.  The guest's "
            "kernel zeroes each page its balloon driver takes to report it "
            "(init_on_alloc, on by default in Debian), so these pages go once "
            "more as zero pages, a few bytes each instead of 4 KiB: that is "
            "why hardly any page is \"not sent at all\", and why the data "
            "and zero pages can add up to more than the guest's pages (a "
            "page may go more than once)."]
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mem", type=int, default=2048, help="guest RAM in MiB")
    args = ap.parse_args()
    accel = probe_accel()
    rows = []
    for variant in ("no hints", "our hints"):
        try:
            rows.append(run_logged(variant, args.mem, "freed", accel))
        except HarnessError as e:
            log(f"[demo] {variant}: {e}")
            rows.append({"variant": variant, "mem_mib": args.mem,
                         "workload": "freed", "error": f"failed: {e}"})
    print()
    print(pages_table(rows, f"A {args.mem} MiB guest ({args.mem * 256} pages "
                      f"of 4 KiB) wrote {max(args.mem - 512, 64)} MiB and "
                      f"freed it, then migrated; {accel.upper()}, loopback "
                      "unix socket"))
    for r in rows:
        if r.get("free_page_hint"):
            print(f"\nquery-migrate's free-page-hint member ({r['variant']}):")
            print(json.dumps(r["free_page_hint"], indent=2))
    return 0 if all("error" not in r and r["mismatches"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
