#!/usr/bin/python3
"""KVM's lazy dirty log clearing, under TCG with the test aid (testaid/,
-accel tcg,x-lazy-dirty-clear=on): the short form of kvm_semantics.py.

With KVM's manual dirty log protection, a free page hint that clears a
chunk of the dirty log after the guest took a hinted page back and wrote
it loses that write.  QEMU 10.0.13 loses such writes here; our series,
which never clears the log from a hint, must lose none; with hints off
the aid itself must lose nothing.  Each test is one kvm_semantics.py run
(about 40 s) with the race set up as it says: the guest writes pages its
driver's shrinker gave back while the source's iothread is stopped, and
the smallest chunks of the dirty log (x-clear-bitmap-shift=6).

Needs the QEMUs with the aid (make testaid).  Without them the tests
are skipped, unless FPH_REQUIRE_AID=1 (make check sets it once it builds
them), which makes their absence a failure.
"""

import os
import sys
import unittest

import kvm_semantics as ks

# The race-widening configuration of every test here
SHIFT = 6
# Runs of stock QEMU before concluding that it does not lose writes (it
# lost writes in every run of this configuration so far, see
# kvm_semantics.py)
STOCK_ATTEMPTS = 2


def setUpModule():
    missing = ks.aid_missing()
    if missing:
        what = (f"the QEMUs with the test aid are not built "
                f"({', '.join(missing)}): run make testaid")
        if os.environ.get("FPH_REQUIRE_AID") == "1":
            raise RuntimeError(what)
        raise unittest.SkipTest(what)


class KVMSemantics(unittest.TestCase):
    def run_case(self, qemu, hints, label):
        r = ks.run_once(qemu, hints, shift=SHIFT, label=label)
        print(ks.table([r]), file=sys.stderr)
        self.assertEqual(r["outcome"], "completed", r)
        # The guest wrote under pressure while the migration ran
        self.assertEqual(r["status_after_pressure"], "active", r)
        # The aid was on: its log_clear cleared pages during the migration
        self.assertGreater(r["aid_pages_cleared"], 0, r)
        return r

    def test_stock_loses_writes(self):
        """QEMU 10.0.13's hints clear the log of the hinted pages' chunk:
        under KVM's semantics, writes are lost (the test can fail)."""
        lost = []
        for n in range(STOCK_ATTEMPTS):
            r = self.run_case("stock-aid", True, f"stock-hints-{n + 1}")
            lost.append(r["lost"])
            if r["lost"]:
                break
        self.assertTrue(any(lost), f"stock lost no write in {len(lost)} "
                        f"runs: the race was not reproduced ({lost})")

    def test_ours_keeps_writes(self):
        """Our series under the same race: every write arrives, while the
        hints did spare pages."""
        r = self.run_case("ours-aid", True, "ours-hints")
        self.assertEqual(r["lost"], 0, r)
        self.assertGreater(r["free_page_hint"]["pages-cleared"], 0, r)

    def test_hints_off_lose_nothing(self):
        """The aid alone loses nothing: hints off, stock and ours."""
        for qemu in ("stock-aid", "ours-aid"):
            with self.subTest(qemu=qemu):
                r = self.run_case(qemu, False, f"{qemu}-hints-off")
                self.assertEqual(r["lost"], 0, r)


if __name__ == "__main__":
    unittest.main()
