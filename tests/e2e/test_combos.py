#!/usr/bin/python3
"""Free page hints combined with other memory and migration features: the
cases of harness/combos/ that take under about 2 minutes each (the
other, auto-converge, runs in `make reliability`).  Every case has
the Debian guest verify its memory on the destination, and checks its
own point (hugetlbfs really backs the RAM, the DIMM is online, ...)."""

import sys
import unittest

from harness import combos
from harness.scenario import KEEP_MIB
from harness.vm import probe_accel

KEEP_PAGES = KEEP_MIB * 256


class Combos(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.accel = probe_accel()

    def run_case(self, name, hint=("done",), min_pages=KEEP_PAGES):
        r = combos.run_case(name, self.accel)
        print(combos.table([r]), file=sys.stderr)
        if r["outcome"].startswith("skipped"):
            self.skipTest(r["outcome"])
        self.assertTrue(r["outcome"].startswith("completed"),
                        f"{name}: {r['outcome']}; notes: {r['notes']}")
        self.assertEqual(r["mismatches"], 0)
        self.assertGreaterEqual(r["verified"], min_pages)
        self.assertIn(r["hint"], hint)
        return r["facts"]

    def test_zero_page_detection_none(self):
        f = self.run_case("zero-page-none", min_pages=3 * KEEP_PAGES)
        self.assertEqual(f["off"]["zero"], 0)
        self.assertLess(f["on, init_on_alloc=0"]["transferred"],
                        f["off"]["transferred"] / 2)

    def test_multifd_cancel(self):
        f = self.run_case("multifd-cancel", min_pages=2 * KEEP_PAGES)
        self.assertEqual(f["send_threads"], [0, 1, 2, 3])
        self.assertEqual(f["dst_channels"], 4)
        self.assertGreater(f["multifd_bytes"], 0)
        self.assertGreater(f["pages_cleared"], 0)

    def test_postcopy_preempt(self):
        f = self.run_case("postcopy-preempt")
        self.assertTrue(f["preempt"])
        self.assertGreater(f["pages_cleared_at_switch"], 0)
        self.assertGreater(f["postcopy_free_pages"], 0)

    def test_dimm(self):
        f = self.run_case("dimm")
        self.assertEqual(f["kept_on_dimm"], KEEP_PAGES)
        self.assertEqual(f["kept_on_dimm_dst"], KEEP_PAGES)
        self.assertGreater(combos.block_hinted(f["hinted_pages_by_block"],
                                               "dimm0"), 0)

    def test_dimm_movable(self):
        f = self.run_case("dimm-movable")
        self.assertGreater(f["kept_on_dimm"], 0)

    def test_hugepages(self):
        f = self.run_case("hugepages")
        self.assertGreaterEqual(f["dst_hugetlb_kb"], 1024 * 1024)
        self.assertGreater(f["pages_cleared"], 0)

    def test_hugepages_postcopy(self):
        f = self.run_case("hugepages-postcopy")
        self.assertGreaterEqual(f["dst_hugetlb_kb"], 1024 * 1024)
        self.assertGreater(f["postcopy_free_pages"], 0)

    def test_virtio_mem(self):
        """256 then 384 MiB plugged, a migration each: unplugged memory is
        not sent (the case checks), the pages kept in plugged memory
        arrive, and hints reach plugged memory."""
        f = self.run_case("virtio-mem", min_pages=2 * KEEP_PAGES)
        self.assertEqual([m["requested_mib"] for m in f["migrations"]],
                         [256, 384])
        for m in f["migrations"]:
            self.assertEqual(m["size_dst"], m["requested_mib"] << 20)
            self.assertEqual(m["kept_in_vmem_dst"], m["kept_in_vmem"])
            self.assertGreater(m["hinted_vmem0"], 0)

    def test_pressure(self):
        """512 MiB allocated while the driver holds hinted pages and less
        than that is free (the case checks): written pages all arrive."""
        f = self.run_case("pressure")
        self.assertLess(f["memfree_before_keep"], 512 << 20)
        self.assertEqual(f["kept_pages"], (KEEP_MIB + 512) * 256)

    def test_s3(self):
        """Suspended to RAM during a round, migrated suspended, woken on
        the destination: the next migration's round is a new one for the
        guest's driver (the command id migrated), and spares pages."""
        f = self.run_case("s3", min_pages=2 * KEEP_PAGES)
        self.assertEqual(f["dst_state"], "suspended")
        self.assertGreater(f["pages_cleared_after_resume"], 0)

    def test_reset_no_driver(self):
        # The last migration's guest has no driver: its device was reset
        # by rmmod ("stop": no round open, no page held); the migration
        # that followed ended hinting ("done"), and since v3 that state
        # migrates while no driver has the feature
        f = self.run_case("reset-no-driver", hint=("stop", "done"),
                          min_pages=2 * KEEP_PAGES)
        self.assertEqual(f["no_driver_fph"].get("pages-cleared", 0), 0)


if __name__ == "__main__":
    unittest.main()
