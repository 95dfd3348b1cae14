"""Cases on what the guest does meanwhile: memory pressure during a round,
S3, a guest without its driver."""

import json
import os
import time

from harness.combos.base import (MIB, PAGE, boot, check, hint_status, hop, mib,
                                 sh, trace_lines, verify, wait_hint_status,
                                 wait_round, wait_status)
from harness.scenario import KEEP_MIB, mem_free
from harness.vm import hint_negotiated


def case_pressure(c):
    """The guest allocates hard while its driver holds hinted pages: in a
    1 GiB guest that had freed 768 MiB, once the driver has taken most of
    the free memory for a round (it keeps it until migration ends), the
    guest 'keep's 512 MiB more than it has free: the driver's shrinker
    must give hinted pages back, and the guest writes them while the
    migration runs.  Everything written must arrive."""
    src = c.guest("src", extra=("-trace", "virtio_balloon_free_page_*"))
    boot(src)
    src.agent(f"keep {KEEP_MIB}")
    src.agent(f"fill {c.mem - 256}", timeout=600)
    free0 = mem_free(src)
    dst = c.guest("dst", incoming=True)
    uri = "unix:" + os.path.join(dst.dir, "migrate.sock")
    dst.cmd("migrate-incoming", uri=uri)
    src.cmd("migrate-set-parameters", **{"max-bandwidth": 32 << 20,
                                         "free-page-hint-wait": 5000})
    src.cmd("migrate", uri=uri)
    wait_round(src, want=("start",))
    # The driver has taken all but 128 MiB of what was free, or all it
    # could (the round is over)
    deadline = time.monotonic() + 120
    while True:
        fph = src.cmd("query-migrate").get("free-page-hint") or {}
        if (fph.get("bytes-hinted", 0) >= free0 - (128 << 20) or
                hint_status(src) != "start"):
            break
        check(time.monotonic() < deadline,
              f"the guest hinted only {mib(fph.get('bytes-hinted', 0))} of "
              f"{mib(free0)} free in 120 s")
        time.sleep(0.05)
    free = mem_free(src)
    st = hint_status(src)
    check(free < 512 * MIB, f"the guest still had {mib(free)} free: its "
          "shrinker would not be needed")
    t0 = time.monotonic()
    src.agent("keep 512", timeout=300)
    after = hint_status(src)
    src.agent("churn 128")
    c.note(f"kept 512 MiB more with {mib(free)} free (driver holding "
           f"{mib(fph.get('bytes-hinted', 0))} hinted; status '{st}' before, "
           f"'{after}' after; took {time.monotonic() - t0:.1f} s)")
    c.fact(memfree_before_keep=free, hinted_before_keep=fph.get("bytes-hinted"),
           status_after_keep=after)
    src.cmd("migrate-set-parameters", **{"max-bandwidth": 100 << 30})
    info = wait_status(src, ("completed",))
    fph = info.get("free-page-hint") or {}
    c.note(f"{info['total-time']} ms, {mib(info['ram']['transferred'])} sent, "
           f"free-page-hint {json.dumps(fph)}")
    c.drop(src)
    dst.attach_serial()
    pages = verify(dst, c.row, churn=True)
    c.row["hint"] = wait_hint_status(dst)
    c.fact(kept_pages=pages, pages_cleared=fph.get("pages-cleared", 0),
           bytes_hinted=fph.get("bytes-hinted", 0))
    check(pages == (KEEP_MIB + 512) * MIB // PAGE, f"{pages} kept pages")
    c.row["outcome"] = "completed"


def case_s3(c):
    """S3 during a hint round: the guest suspends (echo mem >
    /sys/power/state) while the source asks for hints; the migration
    completes with the guest suspended; system_wakeup on the destination;
    memory verified."""
    extra = ("-global", "ICH9-LPC.disable_s3=0",
             "-trace", "virtio_balloon_free_page_*")
    src = c.guest("src", extra=extra)
    boot(src)
    src.agent(f"keep {KEEP_MIB}")
    src.agent(f"fill {c.mem - 256}", timeout=600)
    dst = c.guest("dst", incoming=True, extra=extra)
    uri = "unix:" + os.path.join(dst.dir, "migrate.sock")
    dst.cmd("migrate-incoming", uri=uri)
    src.cmd("migrate-set-parameters", **{"max-bandwidth": 32 << 20,
                                         "free-page-hint-wait": 3000})
    src.cmd("migrate", uri=uri)
    wait_round(src)
    # memagent's sh waits for the shell: that answers after the resume
    src._serial().sendall(b"sh echo mem > /sys/power/state; echo resumed\n")
    deadline = time.monotonic() + 60
    while src.cmd("query-status")["status"] != "suspended":
        check(time.monotonic() < deadline,
              f"guest did not suspend: {src.cmd('query-status')}")
        time.sleep(0.1)
    c.note(f"guest suspended during the round; hint status {hint_status(src)}")
    src.cmd("migrate-set-parameters", **{"max-bandwidth": 100 << 30})
    info = wait_status(src, ("completed",))
    fph = info.get("free-page-hint") or {}
    c.note(f"{info['total-time']} ms, {mib(info['ram']['transferred'])} sent, "
           f"free-page-hint {json.dumps(fph)}; destination "
           f"{dst.cmd('query-status')['status']}")
    src_hint = hint_status(src)
    c.drop(src)
    dst.attach_serial()
    dst_state = dst.cmd("query-status")["status"]
    dst.cmd("system_wakeup")
    reply = dst.expect("OK sh", 120)
    c.note(f"destination was '{dst_state}'; after system_wakeup: {reply}")
    verify(dst, c.row)
    # The driver's freeze reset the device ("stop": no round, no page
    # held; Linux's driver takes its hinted pages back itself when it
    # freezes).  After the resume, hints must work again: a second
    # migration whose round completes and ends with "done"
    after_wake = hint_status(dst)
    _, feats = sh(dst, "cat /sys/bus/virtio/drivers/virtio_balloon/virtio*/features")
    c.note(f"hint status after the wakeup: {after_wake}; features {feats}")
    check(hint_negotiated(feats.strip("|")), f"driver features after resume {feats}")
    dst.agent(f"fill {c.mem - 256}", timeout=600)
    dst2 = c.guest("dst2", incoming=True, extra=extra)
    info2 = hop(c, dst, dst2, label="migration after the resume")
    fph2 = info2.get("free-page-hint") or {}
    c.fact(src_hint_after=src_hint, dst_state=dst_state, resumed=reply,
           hint_after_wake=after_wake,
           pages_cleared_after_resume=fph2.get("pages-cleared", 0))
    check("resumed" in reply, f"guest did not resume: {reply}")
    check(dst_state == "suspended", f"destination state {dst_state}")
    if not fph2.get("pages-cleared", 0):
        c.note("balloon trace of the guest's QEMU after the resume: " + " | ".join(
            ln.strip() for ln in trace_lines(dst, "virtio_balloon_free_page")[-12:]))
    check(fph2.get("pages-cleared", 0) > 0, "no hints after the resume")
    c.row["outcome"] = "completed (suspended guest), then hints again"


def case_reset_no_driver(c):
    """A migration, then system_reset on the destination; the rebooted
    guest unloads virtio_balloon (no driver) and migrates again: the
    migration must not wait on hints, memory arrives."""
    src = c.guest("src", reboot=True)
    boot(src)
    src.agent(f"keep {KEEP_MIB}")
    src.agent(f"fill {c.mem - 256}", timeout=600)
    dst = c.guest("dst1", incoming=True, reboot=True)
    hop(c, src, dst, label="migration 1")
    c.note(f"hint status after migration 1: {c.row['hint']}")
    check(c.row["hint"] == "done", f"hint status {c.row['hint']}")
    src = dst
    src.cmd("system_reset")
    src.attach_serial()
    boot(src)
    st, out = sh(src, "rmmod virtio_balloon; ls /sys/bus/virtio/drivers")
    c.note(f"after reboot, rmmod virtio_balloon: status {st}, drivers: {out}")
    check(st == 0 and "virtio_balloon" not in out, "driver still loaded")
    src.agent(f"keep {KEEP_MIB}")
    src.agent(f"fill {c.mem - 256}", timeout=600)
    dst = c.guest("dst2", incoming=True, reboot=True)
    info = hop(c, src, dst, params={"free-page-hint-wait": 5000},
               label="migration 2 (no driver)")
    fph = info.get("free-page-hint") or {}
    c.fact(no_driver_total_ms=info["total-time"], no_driver_fph=fph,
           hint_after_no_driver=c.row["hint"])
    # Without a driver no round can complete, and migration must not
    # wait for one; the device was reset by rmmod: "stop", no page held,
    # or "done" once the migration that followed ended hinting (the
    # hint state migrates while no driver has the feature, series v3)
    check(fph.get("rounds-completed", 0) == 0 and
          fph.get("pages-cleared", 0) == 0, f"hints without a driver: {fph}")
    check(fph.get("wait-time", 0) < 1000, f"waited for a missing driver: {fph}")
    check(c.row["hint"] in ("stop", "done"), f"hint status {c.row['hint']}")
    c.row["outcome"] = "completed (2 migrations, reboot, no driver)"
