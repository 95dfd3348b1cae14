#!/usr/bin/python3
"""End-to-end tests: the Debian 12 kernel's own virtio_balloon driver with
our device, real migrations over a loopback socket, memory verified on the
destination by the guest itself."""

import os
import shutil
import subprocess
import tempfile
import unittest

from harness import chain
from harness import postcopy
from harness import soak
from harness.scenario import run_logged
from harness.vm import (QEMU, Guest, HarnessError, artifact_label,
                        hint_negotiated, log, probe_accel)

MEM = 2048
# The soak's balloon hint status after each kind of event, on the QEMU that
# runs the guest then: "done" (its driver was told to take its hinted
# pages back).  The system_reset fault rebooted the guest, whose new
# driver reset the device: "stop", no round open and no page held.
DONE = {"hop": ("done",), "multifd hop": ("done",), "cancel": ("done",),
        "killed destination": ("done",), "stop/cont": ("done",),
        "system_reset": ("done", "stop")}


class FreePageHintE2E(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.accel = probe_accel()

    def setUp(self):
        artifact_label(self._testMethodName)

    def test_broken_guest_shows_its_console(self):
        """A guest whose init exits (the kernel panics, QEMU ends with
        -no-reboot) fails boot() at once, not after its timeout, and the
        message holds the guest's last console lines."""
        with tempfile.TemporaryDirectory() as d:
            os.makedirs(os.path.join(d, "root", "bin"))
            shutil.copy("/bin/busybox", os.path.join(d, "root", "bin"))
            init = os.path.join(d, "root", "init")
            with open(init, "w") as f:
                f.write("#!/bin/busybox sh\n"
                        "/bin/busybox echo 'broken init: exiting'\n"
                        "exit 3\n")
            os.chmod(init, 0o755)
            initrd = os.path.join(d, "initrd")
            subprocess.run("find . | cpio -o -H newc --quiet > ../initrd",
                           shell=True, check=True, cwd=os.path.join(d, "root"))
            g = Guest("ours", 256, False, accel=self.accel, name="broken",
                      initrd=initrd)
            try:
                with self.assertRaises(HarnessError) as cm:
                    g.boot()
            finally:
                g.close()
        msg = str(cm.exception)
        log(f"[e2e] the broken guest's failure: {msg}")
        self.assertNotIn("did not answer", msg)
        self.assertIn("broken init: exiting", msg)
        self.assertIn("Kernel panic", msg)
        self.assertIn("console.log", msg)

    def test_driver_negotiates_hinting(self):
        for hints in (False, True):
            g = Guest("ours", 512, hints, accel=self.accel)
            try:
                self.assertEqual(hint_negotiated(g.boot()), hints)
            finally:
                g.close()

    def test_freed_memory_is_not_sent(self):
        off = run_logged("no hints", MEM, "freed", self.accel)
        on = run_logged("our hints", MEM, "freed", self.accel)
        for r in (off, on):
            self.assertEqual(r["mismatches"], 0)
            self.assertEqual(r["verified_pages"], 64 * 256)
        self.assertTrue(on["negotiated"])
        # The guest freed 1.5 of its 2 GiB: without hints all of it goes
        self.assertGreater(off["transferred"], 1400 << 20)
        self.assertLess(on["transferred"], off["transferred"] / 2)

    def migrate_between(self, qemu, pairs):
        """Migrate a guest for each (variant, destination QEMU) of @pairs;
        nothing may be lost."""
        if not os.access(QEMU[qemu], os.X_OK):
            self.fail(f"{QEMU[qemu]} is missing: run 'make stock' and 'make deps'")
        for variant, dst in pairs:
            with self.subTest(variant=variant, dst=dst):
                r = run_logged(variant, 1024, "freed", self.accel,
                               dst_qemu=dst)
                self.assertEqual(r["mismatches"], 0)
                self.assertEqual(r["verified_pages"], 64 * 256)

    def test_compat_with_debian_qemu(self):
        """Debian's own qemu-system-x86 10.0 package and ours migrate to
        each other, hints on and off."""
        self.migrate_between("debian", (("debian hints", "ours"),
                                        ("our hints", "debian"),
                                        ("debian no hints", "ours"),
                                        ("no hints", "debian")))

    def test_compat_with_stock_qemu(self):
        """Stock QEMU 10.0.13 (same Debian source, upstream's hints) and
        ours migrate to each other, hints on and off."""
        self.migrate_between("stock", (("upstream hints", "ours"),
                                       ("our hints", "stock"),
                                       ("no hints", "stock")))

    def test_chain_across_versions(self):
        """ours -> stock -> stock and stock -> ours -> ours, 1 GiB guests
        that freed 512 MiB: the first hop with the VM stopped, the last one
        while it runs, after the guest freed memory again.  Nothing is lost
        on any hop, and the last hop (hints on) sends less than half of
        what a hints-off migration of such a guest sends: the hint command
        id that one QEMU migrated lets the next one ask for hints."""
        if not os.access(QEMU["stock"], os.X_OK):
            self.fail(f"{QEMU['stock']} is missing: run 'make stock'")
        off = run_logged("no hints", 1024, "freed", self.accel)
        self.assertEqual(off["mismatches"], 0)
        for path in (("ours", "stock", "stock"), ("stock", "ours", "ours")):
            name = " -> ".join(path)
            with self.subTest(chain=name):
                log(f"[chain] {name}, 1024 MiB guest, freed ...")
                hops = chain.run(path, 1024, accel=self.accel)
                for h in hops:
                    self.assertEqual(h["status"], "completed")
                    self.assertEqual(h["mismatches"], 0)
                    self.assertEqual(h["verified_pages"], 64 * 256)
                last = hops[-1]
                self.assertLess(
                    last["transferred"], off["transferred"] / 2,
                    f"{name}: the last hop sent {last['transferred']} bytes, "
                    f"hints off {off['transferred']}: the guest did not hint")

    def test_busy_guest_keeps_its_memory(self):
        r = run_logged("our hints", 1024, "busy", self.accel)
        self.assertGreater(r["churn_rounds"], 0)
        self.assertEqual(r["mismatches"], 0)

    def check_postcopy(self, r):
        self.assertEqual(r["mismatches"], 0)
        self.assertEqual(r["verified_pages"], 64 * 256)
        self.assertGreater(r["churn_rounds"], 0)

    def test_postcopy(self):
        """Postcopy with hints: the destination's guest writes 256 MiB of
        memory it had hinted free while postcopy runs; nothing is lost.
        With Debian's kernel flags the hinted pages are dirty again at the
        switch; with init_on_alloc=0 they are not, and go as zero pages."""
        for cmdline in ("", postcopy.INIT_ON_ALLOC_OFF):
            with self.subTest(cmdline=cmdline):
                r = postcopy.run(1024, accel=self.accel, cmdline=cmdline)
                self.check_postcopy(r)
                # postcopy.run() switches only once hints cleared pages
                self.assertGreater(
                    r["free_page_hint_at_switch"]["pages-cleared"], 0)
                self.assertGreaterEqual(
                    r["free_page_hint"]["pages-cleared"],
                    r["free_page_hint_at_switch"]["pages-cleared"])
                if cmdline:
                    self.assertGreater(
                        r["free_page_hint"]["postcopy-free-pages"], 0)

    def test_postcopy_recovered(self):
        """The channel breaks in the middle of postcopy (migrate-pause),
        migration resumes on a new one (migrate-recover)."""
        r = postcopy.run(1024, recover=True, accel=self.accel,
                         cmdline=postcopy.INIT_ON_ALLOC_OFF)
        self.check_postcopy(r)
        self.assertGreater(r["free_page_hint"]["postcopy-free-pages"], 0)

    def test_soak_short(self):
        """A few ping-pong hops of a churning guest, and every fault of
        the soak: cancel, killed destination, stop/cont, system_reset."""
        s = soak.run(hops=4, mem=1024, faults=True, accel=self.accel)
        # What happened, in order: each migration's final status
        want = [("hop", "completed")] * 3 + [
            ("multifd hop", "completed"),
            ("cancel", "cancelled"), ("killed destination", "failed"),
            ("stop/cont", "completed"), ("hop", "completed"),
            ("system_reset", "completed")]
        self.assertEqual([(e["kind"], e["status"]) for e in s.events], want)
        for e in s.events:
            with self.subTest(event=e["kind"], after_hop=e["hops"]):
                # The guest verified all it keeps
                self.assertEqual(e["kept_pages"], 64 * 256)
                self.assertEqual(e["mismatches"], 0)
                # No hint round is left open on the QEMU that runs the
                # guest: its driver was told DONE and has its pages back
                self.assertIn(e["hint_status"], DONE[e["kind"]])
        self.assertEqual(s.hops, 7)
        self.assertEqual(s.mismatches, 0)


if __name__ == "__main__":
    unittest.main()
