#!/usr/bin/python3
"""Ping-pong soak and fault injection with free page hints on.

A guest keeps allocating, writing, verifying and freeing memory (memagent
"churn") while it is migrated back and forth between two QEMU processes;
after every hop it verifies all the memory it keeps.  Between hops, faults
are injected: a cancelled migration, a destination killed mid-migration,
stop/cont of the VM and a system_reset during a hint round, multifd.

    soak.py [--hops 50] [--mem 1024] [--faults]
Prints one line per hop and a summary; exits non-zero on any mismatch.
Soak.events says what happened at each hop and fault: the migration's
final status, the balloon's free-page-hint-status afterwards on the QEMU
that runs the guest, and what the guest verified.
"""

import argparse
import os
import sys
import time

from harness.vm import Guest, HarnessError, log, migrate, probe_accel
from harness.waits import wait_migration


class Soak:
    def __init__(self, mem, accel):
        self.mem = mem
        self.accel = accel
        self.hops = 0
        self.verified = 0
        self.mismatches = 0
        self.faults = 0
        self.events = []
        # reboot: the system_reset fault must reboot, not end QEMU
        self.src = Guest("ours", mem, True, accel=accel, name="soak0",
                         reboot=True)
        self.src.boot()
        self.src.agent("keep 64")
        self.src.agent("churn 128")

    def new_dst(self):
        return Guest("ours", self.mem, True, incoming=True, accel=self.accel,
                     name=f"soak{self.hops + 1}", reboot=True)

    def check(self, g, what, kind, status):
        """Verify the kept memory and the churn, then restart the churn;
        record the event: @kind, the migration's final @status and the
        balloon's hint status now."""
        hint_status = self.hint_status(g)
        churn = g.agent("churnstop", timeout=120)
        v = g.agent("verify", timeout=300)
        bad = int(v["mismatches"]) + int(churn["mismatches"])
        self.verified += int(v["pages"]) + int(churn["pages"])
        self.mismatches += bad
        self.events.append({"kind": kind, "status": status,
                            "hint_status": hint_status,
                            "kept_pages": int(v["pages"]),
                            "churn_pages": int(churn["pages"]),
                            "mismatches": bad, "hops": self.hops})
        log(f"[soak] {what}: migration {status}, hint status {hint_status}; "
            f"{v['pages']} kept pages, {churn['pages']} churn pages checked, "
            f"{bad} mismatches")
        g.agent("churn 128")

    def start_in_round(self, bandwidth, wait_ms):
        """Start a plain (not multifd) migration, slowed to @bandwidth, and
        return its destination once the balloon is in a hint round."""
        dst = self.new_dst()
        uri = "unix:" + os.path.join(dst.dir, "migrate.sock")
        self.src.cmd("migrate-set-capabilities", capabilities=[
            {"capability": "multifd", "state": False}])
        dst.cmd("migrate-incoming", uri=uri)
        self.src.cmd("migrate-set-parameters", **{
            "max-bandwidth": bandwidth, "free-page-hint-wait": wait_ms})
        self.src.cmd("migrate", uri=uri)
        self.wait_round()
        return dst

    def finish_hop(self, dst):
        """Let the migration complete and carry on from @dst."""
        self.src.cmd("migrate-set-parameters", **{"max-bandwidth": 100 << 30})
        status = self.wait_status("completed")
        self.src.close()
        self.src = dst
        self.src.attach_serial()
        self.hops += 1
        self.faults += 1
        return status

    def hop(self, caps=(), params=None):
        dst = self.new_dst()
        # The previous hop may have left multifd on in this QEMU
        self.src.cmd("migrate-set-capabilities", capabilities=[
            {"capability": "multifd", "state": "multifd" in caps}])
        try:
            info = migrate(self.src, dst, caps=caps, params=params)
        except BaseException:
            dst.close()
            raise
        self.src.close()
        self.src = dst
        self.src.attach_serial()
        self.hops += 1
        fph = info.get("free-page-hint", {})
        self.check(self.src, f"hop {self.hops} ({info['total-time']} ms, "
                   f"{fph.get('pages-cleared', 0)} pages not sent)",
                   "multifd hop" if "multifd" in caps else "hop",
                   info["status"])

    @staticmethod
    def hint_status(g):
        return g.cmd("qom-get", path="/machine/peripheral/balloon/virtio-backend",
                     property="free-page-hint-status")

    def wait_round(self):
        """Wait until the source's balloon is in a hint round."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            st = self.hint_status(self.src)
            if st in ("requested", "start"):
                return st
            time.sleep(0.01)
        raise HarnessError("no hint round started")

    def fault_cancel(self):
        """migrate_cancel during a hint round: the guest gets DONE."""
        dst = self.start_in_round(1 << 20, 5000)
        self.src.cmd("migrate_cancel")
        status = self.wait_status("cancelled")
        self.wait_hint_status("done")
        dst.proc.kill()
        dst.close()
        self.faults += 1
        self.check(self.src, "after migrate_cancel during a hint round",
                   "cancel", status)

    def fault_kill_dst(self):
        """The destination dies mid-migration: the source runs on."""
        dst = self.start_in_round(8 << 20, 0)
        time.sleep(0.5)
        dst.proc.kill()
        dst.close()
        status = self.wait_status("failed")
        self.wait_hint_status("done")
        if self.src.cmd("query-status")["status"] != "running":
            raise HarnessError("source VM not running after a failed migration")
        self.faults += 1
        self.check(self.src, "after the destination was killed",
                   "killed destination", status)

    def fault_stop_cont_reset(self):
        """stop and cont of the VM while a hint round is in progress."""
        dst = self.start_in_round(16 << 20, 2000)
        self.src.cmd("stop")
        time.sleep(0.2)
        self.src.cmd("cont")
        status = self.finish_hop(dst)
        self.check(self.src, "hop with stop/cont during a hint round",
                   "stop/cont", status)

    def fault_reset(self):
        """system_reset during a hint round: migration completes and the
        rebooted guest comes up on the destination."""
        dst = self.start_in_round(16 << 20, 2000)
        self.src.cmd("system_reset")
        status = self.finish_hop(dst)
        # The guest rebooted: its memory is new; it must come up and work
        self.src.boot()
        self.src.agent("keep 64")
        self.src.agent("churn 128")
        self.check(self.src, "hop with system_reset during a hint round",
                   "system_reset", status)

    def wait_status(self, want, timeout=120):
        """query-migrate until its status is @want, whatever it passes
        through (a fault may be what ends it); return the status."""
        return wait_migration(self.src, timeout, want=(want,), fail=(),
                              cancel=False)["status"]

    def wait_hint_status(self, want, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.hint_status(self.src)
            if st == want:
                return
            time.sleep(0.02)
        raise HarnessError(f"balloon hint status did not become '{want}' "
                           f"(it is '{st}')")

    def close(self):
        self.src.close()


def run(hops, mem, faults, accel=None):
    accel = accel or probe_accel()
    s = Soak(mem, accel)
    try:
        for i in range(hops):
            if i % 4 == 3:
                s.hop(caps=("multifd",))
            else:
                s.hop()
        if faults:
            s.fault_cancel()
            s.fault_kill_dst()
            s.fault_stop_cont_reset()
            s.hop()
            s.fault_reset()
    finally:
        s.close()
    print(f"soak: {s.hops} hops, {s.faults} faults survived, "
          f"{s.verified} pages verified, {s.mismatches} mismatches")
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hops", type=int, default=50)
    ap.add_argument("--mem", type=int, default=1024)
    ap.add_argument("--faults", action="store_true")
    args = ap.parse_args()
    s = run(args.hops, args.mem, args.faults)
    return 1 if s.mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
