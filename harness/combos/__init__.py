"""Free page hints combined with what real deployments combine them with:
zero-page-detection=none, multifd (and a cancel), postcopy-preempt, a
hotplugged DIMM, hugetlbfs, virtio-mem, auto-converge, memory pressure
during a round, S3 and a guest without its driver.

    python3 -m harness.combos [--case NAME]... [--list] [--json FILE]

Each case boots the Debian guest with hints on, migrates it and has the
guest verify its checksummed memory on the destination; it also checks
the case's own point (the backend really is hugetlbfs, the DIMM really is
online, ...) and that the balloon's free-page-hint-status ends "done" on
the QEMU that runs the guest.  Prints a table: case, outcome, pages
verified, mismatches, hint status, seconds.  Exits non-zero when a case
fails (a skipped case does not fail).

The cases by topic: migration.py (migration's own features), memory.py
(memory backends), guest.py (what the guest does meanwhile); base.py
holds what they share.
"""

import argparse
import json
import time

# block_hinted: for tests/e2e/test_combos.py
from harness.combos.base import (Case, CaseFailed, Skip,  # noqa: F401
                                 block_hinted)
from harness.combos.guest import (case_pressure, case_reset_no_driver,
                                  case_s3)
from harness.combos.memory import (case_dimm, case_dimm_movable,
                                   case_hugepages, case_hugepages_postcopy,
                                   case_virtio_mem)
from harness.combos.migration import (case_auto_converge,
                                      case_multifd_cancel,
                                      case_postcopy_preempt,
                                      case_zero_page_none)
from harness.vm import artifact_label, log, probe_accel

CASES = {
    "zero-page-none": case_zero_page_none,
    "multifd-cancel": case_multifd_cancel,
    "postcopy-preempt": case_postcopy_preempt,
    "dimm": case_dimm,
    "dimm-movable": case_dimm_movable,
    "hugepages": case_hugepages,
    "hugepages-postcopy": case_hugepages_postcopy,
    "virtio-mem": case_virtio_mem,
    "auto-converge": case_auto_converge,
    "pressure": case_pressure,
    "s3": case_s3,
    "reset-no-driver": case_reset_no_driver,
}


def run_case(name, accel=None, mem=1024):
    """Run one case; return its row.  Never raises for the case's own
    failure: outcome says 'FAILED: ...', 'skipped: ...' or 'error: ...'."""
    accel = accel or probe_accel()
    artifact_label(name)
    c = Case(name, accel, mem)
    log(f"[combos] {name} ...")
    try:
        CASES[name](c)
    except Skip as e:
        c.row["outcome"] = f"skipped: {e}"
    except CaseFailed as e:
        c.row["outcome"] = f"FAILED: {e}"
    except Exception as e:  # HarnessError, QMP errors
        c.row["outcome"] = f"error: {type(e).__name__}: {e}"
    finally:
        c.close()
    c.row["seconds"] = round(time.monotonic() - c.t0, 1)
    if c.row["mismatches"] and not c.row["outcome"].startswith("FAILED"):
        c.row["outcome"] = f"FAILED: {c.row['mismatches']} mismatches"
    # reset-no-driver may end with the device reset by rmmod ("stop")
    if (c.row["outcome"].startswith("completed") and c.row["hint"] != "done"
            and name != "reset-no-driver"):
        c.row["outcome"] = f"FAILED: hint status {c.row['hint']}"
    log(f"[combos] {name}: {c.row['outcome']} ({c.row['seconds']} s)")
    return c.row


def ok(row):
    return not row["outcome"].startswith(("FAILED", "error"))


def table(rows):
    out = ["| case | outcome | pages verified | mismatches | hint status | seconds |",
           "|---|---|---:|---:|---|---:|"]
    for r in rows:
        out.append(f"| {r['case']} | {r['outcome']} | {r['verified']} "
                   f"| {r['mismatches']} | {r['hint']} | {r['seconds']} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", action="append", choices=list(CASES),
                    help="run only this case (repeatable)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--json", help="write every row, with its notes, here")
    args = ap.parse_args()
    if args.list:
        for n, f in CASES.items():
            print(f"{n}: {f.__doc__.split(chr(10))[0]}")
        return 0
    accel = probe_accel()
    rows = [run_case(n, accel) for n in (args.case or CASES)]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    print(table(rows))
    for r in rows:
        for n in r["notes"]:
            print(f"  {r['case']}: {n}")
    return 0 if all(ok(r) for r in rows) else 1

