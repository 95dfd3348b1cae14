#!/usr/bin/python3
"""Free page hints through libvirt (harness/libvirt_demo.py --short): what an
operator relies on.  Two private libvirt daemons, virsh migrate --live of
a 1 GiB guest that wrote and freed 512 MiB, live snapshots hints on and
off, the hints-on snapshot restored, free-page-hint without an iothread.
About 2 minutes under TCG; needs root and make deps' libvirt."""

import os
import re
import unittest

from harness import libvirt_demo as demo

UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
KEPT_PAGES = demo.KEEP_MIB * 256


def size(text):
    """'171.706 MiB' (virsh domjobinfo) -> bytes"""
    m = re.fullmatch(r"([\d.]+) (B|KiB|MiB|GiB)", text)
    if not m:
        raise AssertionError(f"unexpected size {text!r} in virsh domjobinfo")
    return float(m.group(1)) * UNITS[m.group(2)]


def alive(pid):
    """@pid still runs a process of ours (a libvirtd or a demo QEMU)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
    except OSError:
        return False
    return b"guest=fph-" in cmd or b"fph-libvirt-" in cmd


class LibvirtFreePageHints(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.res = demo.run(short=True)
        cls.fill = demo.fill_mib(cls.res["mem_mib"]) << 20

    def test_migration_completed_and_memory_verified(self):
        m = self.res["migration"]
        self.assertEqual(m["jobinfo"].get("Job type"), "Completed")
        self.assertEqual(m["verified_pages"], KEPT_PAGES)
        self.assertEqual(m["mismatches"], 0)

    def test_libvirt_passed_the_properties(self):
        m = self.res["migration"]
        self.assertIs(m["balloon"]["free-page-hint"], True)
        self.assertEqual(m["balloon"]["iothread"], "/objects/iothread1")
        self.assertTrue(m["negotiated"], m["features"])

    def test_migration_hints_cleared_pages(self):
        m = self.res["migration"]
        fph = m["free_page_hint"]
        self.assertGreater(fph.get("bytes-hinted", 0), 0, fph)
        self.assertGreater(fph.get("pages-cleared", 0), 0, fph)
        # The guest freed fill MiB of written pages: with hints, far less
        # than that crosses (libvirt's own count of what it sent)
        sent = size(m["jobinfo"]["Memory processed"])
        self.assertLess(sent, self.fill * 0.6, m["jobinfo"])

    def test_live_snapshot_smaller_with_hints(self):
        on, off = self.res["snapshot_on"], self.res["snapshot_off"]
        for s in (on, off):
            self.assertEqual(s["status"], "completed")
            self.assertEqual(s["state_after"], "running")  # it was live
        # Without hints the freed pages' old content is in the file
        self.assertGreater(off["size"], self.fill)
        self.assertLess(on["size"], off["size"] * 0.5,
                        f"hints on {on['size']} bytes, off {off['size']}")
        self.assertGreater(on["free_page_hint"].get("pages-cleared", 0), 0,
                           f"query-migrate after the snapshot: {on}")

    def test_snapshot_restores(self):
        r = self.res["restore"]
        self.assertEqual(r["verified_pages"], KEPT_PAGES)
        self.assertEqual(r["mismatches"], 0)

    def test_free_page_hint_needs_an_iothread(self):
        e = self.res["no_iothread"]
        self.assertTrue(e["refused"])
        self.assertIn("'free-page-hint' requires 'iothread' to be set", e["message"])

    def test_torn_down(self):
        self.assertFalse(os.path.exists(self.res["rundir"]))
        self.assertEqual(len(self.res["daemon_pids"]), 2)
        self.assertGreaterEqual(len(self.res["qemu_pids"]), 4)
        left = [p for p in self.res["daemon_pids"] + self.res["qemu_pids"]
                if alive(p)]
        self.assertEqual(left, [], "processes left behind")


if __name__ == "__main__":
    unittest.main()
