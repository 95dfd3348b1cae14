#!/usr/bin/python3
"""make demo: migrate a guest that wrote and freed most of its memory, with
free page hints off and on, and print what it cost.

    demo.py [--mem MiB]
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "e2e"))

from scenario import run_logged, table  # noqa: E402
from vm import HarnessError, log, probe_accel  # noqa: E402


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
    print(table(rows, f"Guest wrote {max(args.mem - 512, 64)} MiB and freed it; "
                f"{accel.upper()}, loopback unix socket"))
    for r in rows:
        if r.get("free_page_hint"):
            print(f"\nquery-migrate's free-page-hint member ({r['variant']}):")
            print(json.dumps(r["free_page_hint"], indent=2))
    return 0 if all("error" not in r and r["mismatches"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
