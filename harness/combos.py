#!/usr/bin/python3
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
"""

import argparse
import json
import os
import re
import sys
import time

from harness import postcopy
from harness.scenario import KEEP_MIB, mem_free
from harness.vm import (Guest, HarnessError, artifact_label, hint_negotiated,
                        log, migrate, probe_accel)
from harness.waits import wait_migration

BALLOON = "/machine/peripheral/balloon/virtio-backend"
PAGE = 4096
MIB = 1 << 20
KEEP_PAGES = KEEP_MIB * MIB // PAGE


class Skip(Exception):
    """The case cannot run on this machine; the message says why."""


class CaseFailed(Exception):
    """The case ran and something it checks did not hold."""


def check(cond, what):
    if not cond:
        raise CaseFailed(what)


# -- helpers on top of vm.Guest ------------------------------------------

def hint_status(g):
    return g.cmd("qom-get", path=BALLOON, property="free-page-hint-status")


def wait_hint_status(g, want=("done",), timeout=30):
    """Poll the balloon's hint status until it is one of @want; return it
    (or what it is after @timeout: the caller asserts)."""
    deadline = time.monotonic() + timeout
    while True:
        st = hint_status(g)
        if st in want or time.monotonic() > deadline:
            return st
        time.sleep(0.05)


def wait_round(g, timeout=60, want=("requested", "start")):
    """Wait until the balloon of @g is in a hint round (@want: "start",
    the guest is reporting, or also "requested")."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = hint_status(g)
        if st in want:
            return st
        time.sleep(0.01)
    raise CaseFailed(f"no hint round started within {timeout} s "
                     f"(status {hint_status(g)})")


def sh(g, command, timeout=120):
    """Run a shell command in the guest (memagent 'sh'); return (status,
    output with newlines as '|')."""
    g._serial().sendall(b"sh " + command.encode() + b"\n")
    reply = g.expect("OK sh", timeout)
    m = re.match(r"status=(-?\d+) out=(.*)", reply)
    if not m:
        raise HarnessError(f"guest: bad sh reply '{reply}'")
    return int(m.group(1)), m.group(2)


def agent_retry(g, command, timeout=300):
    """A memagent command right after an incoming migration: the console
    may have lost the first byte (see vm.Guest.attach_serial)."""
    for attempt in range(3):
        try:
            return g.agent(command, timeout=timeout)
        except HarnessError as e:
            if "unknown command" not in str(e) or attempt == 2:
                raise
            log(f"[combos]   retrying '{command}': {e}")


def boot(g, hints=True):
    feats = g.boot()
    if hint_negotiated(feats) != hints:
        raise CaseFailed(f"driver negotiation: features {feats}, hints {hints}")
    return feats


def set_caps(guests, caps):
    for g in guests:
        g.cmd("migrate-set-capabilities",
              capabilities=[{"capability": c, "state": s}
                            for c, s in caps.items()])


def postcopy_switch(c, src, dst, caps):
    """Migrate with postcopy capabilities caps; switch to postcopy once the
    hints cleared pages, and wait until the destination runs the guest.
    Returns the hint statistics at the switch."""
    set_caps((src, dst), caps)
    uri = "unix:" + os.path.join(dst.dir, "migrate.sock")
    src.cmd("migrate-set-parameters", **{
        "max-bandwidth": postcopy.PRECOPY_BANDWIDTH,
        "max-postcopy-bandwidth": postcopy.POSTCOPY_BANDWIDTH})
    dst.cmd("migrate-incoming", uri=uri)
    src.cmd("migrate", uri=uri)
    at_switch = postcopy.wait_hinted(src, postcopy.HINT_TIMEOUT)
    src.cmd("migrate-start-postcopy")
    postcopy.wait_status(src, ("postcopy-active",))
    c.note(f"switched with pages-cleared {at_switch.get('pages-cleared')}")
    deadline = time.monotonic() + 60
    while not dst.cmd("query-status")["running"]:
        check(time.monotonic() < deadline, "destination did not start the guest")
        time.sleep(0.02)
    return at_switch


def wait_status(g, want, timeout=300):
    """query-migrate until its status is in @want; failed/cancelled end
    the wait too unless wanted.  Returns the info."""
    try:
        return wait_migration(g, timeout, want=want, cancel=False)
    except HarnessError as e:
        raise CaseFailed(str(e)) from None


def verify(g, row, churn=False):
    """Verify the kept memory (and the churn) on @g; add to @row."""
    c = agent_retry(g, "churnstop", 120) if churn else {}
    v = agent_retry(g, "verify", 300)
    row["verified"] += int(v["pages"]) + int(c.get("pages", 0))
    row["mismatches"] += int(v["mismatches"]) + int(c.get("mismatches", 0))
    return int(v["pages"])


def trace_lines(g, event):
    if not g.logf.closed:
        g.logf.flush()
    with open(g.log_path) as f:
        return [ln for ln in f if event in ln]


def hinted_blocks(g):
    """RAM block name -> pages hinted, from the ram_free_page_hint trace."""
    out = {}
    for ln in trace_lines(g, "ram_free_page_hint "):
        m = re.search(r"ram_free_page_hint (\S+): pages 0x([0-9a-f]+)\+0x([0-9a-f]+)", ln)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0) + int(m.group(3), 16)
    return out


def block_hinted(blocks, memdev):
    """Pages hinted in the RAM block of memory backend @memdev (named
    after it, or "<device path>/<id>" for a device's memory)."""
    return sum(n for b, n in blocks.items()
               if b == memdev or b.endswith("/" + memdev))


def mib(n):
    return f"{n / MIB:.0f} MiB"


class Case:
    """One case's guests and result row; closes every QEMU it started."""

    def __init__(self, name, accel, mem=1024):
        self.name = name
        self.accel = accel
        self.mem = mem
        self.guests = []
        self.row = {"case": name, "outcome": "?", "verified": 0,
                    "mismatches": 0, "hint": "?", "seconds": 0.0,
                    "notes": [], "facts": {}}
        self.t0 = time.monotonic()

    def guest(self, name, incoming=False, hints=True, **kw):
        kw.setdefault("mem_mib", self.mem)
        g = Guest("ours", hints=hints, incoming=incoming, accel=self.accel,
                  name=name, **kw)
        self.guests.append(g)
        return g

    def note(self, text):
        log(f"[{self.name}] {text}")
        self.row["notes"].append(text)

    def fact(self, **kw):
        self.row["facts"].update(kw)

    def drop(self, g):
        if g in self.guests:
            self.guests.remove(g)
        g.close()

    def close(self):
        for g in self.guests:
            g.kill()
        self.guests = []


def hop(case, src, dst, caps=None, params=None, dst_params=None, churn=False,
        label="migration"):
    """Migrate @src to @dst (vm.migrate), verify on @dst, record the hint
    status there; return query-migrate's info."""
    if caps:
        set_caps((src, dst), caps)
    if dst_params:
        dst.cmd("migrate-set-parameters", **dst_params)
    t0 = time.monotonic()
    info = migrate(src, dst, params=params)
    fph = info.get("free-page-hint") or {}
    case.note(f"{label}: {info['status']} in {info['total-time']} ms "
              f"(wall {time.monotonic() - t0:.1f} s), "
              f"{mib(info['ram']['transferred'])} sent, downtime "
              f"{info.get('downtime')} ms, pages-cleared "
              f"{fph.get('pages-cleared', 0)}")
    case.drop(src)
    dst.attach_serial()
    verify(dst, case.row, churn)
    case.row["hint"] = wait_hint_status(dst)
    return info


# -- the cases -----------------------------------------------------------

def case_zero_page_none(c):
    """zero-page-detection=none: hints off, hints on, and hints on with
    init_on_alloc=0, same guest and workload (1 GiB, wrote and freed
    768 MiB)."""
    res = {}
    runs = (("off", False, ""), ("on", True, ""),
            ("on, init_on_alloc=0", True, postcopy.INIT_ON_ALLOC_OFF))
    for label, hints, cmdline in runs:
        src = c.guest("src", hints=hints, cmdline=cmdline)
        boot(src, hints)
        src.agent(f"keep {KEEP_MIB}")
        src.agent(f"fill {c.mem - 256}", timeout=600)
        time.sleep(1)
        dst = c.guest("dst", incoming=True, hints=hints, cmdline=cmdline)
        info = hop(c, src, dst, params={"zero-page-detection": "none"},
                   label=f"hints {label}")
        sp = info["ram"]
        res[label] = {"total_ms": info["total-time"],
                      "transferred": sp["transferred"],
                      "normal": sp["normal"], "zero": sp["duplicate"],
                      "pages_cleared": (info.get("free-page-hint") or {})
                      .get("pages-cleared", 0),
                      "hint": c.row["hint"] if hints else None}
        c.drop(dst)
    c.fact(**res)
    off, on, on0 = (res[r[0]] for r in runs)
    # With zero-page-detection=none no page goes as a zero page
    check(off["zero"] == 0 and on["zero"] == 0,
          f"zero pages sent with detection off: {off['zero']}, {on['zero']}")
    for r in (on, on0):
        check(r["pages_cleared"] > 0, "no page cleared by hints")
        check(r["hint"] == "done", f"hint status {r['hint']}")
    # Debian's kernel zeroes every page its driver takes for a hint
    # (init_on_alloc): those writes dirty the hinted pages again, and
    # without zero page detection they go as full pages.  Hints must not
    # make it worse (5% for the noise of the guest's own writes) ...
    check(on["transferred"] <= off["transferred"] * 1.05,
          f"hints on sent {mib(on['transferred'])}, off "
          f"{mib(off['transferred'])}")
    # ... nor slower: hints may wait free-page-hint-wait (1 s) for the
    # guest; hints off took from 0.5 to 2.2 s on this shared machine
    for r in (on, on0):
        check(r["total_ms"] <= off["total_ms"] * 1.5 + 2000,
              f"hints on took {r['total_ms']} ms, off {off['total_ms']} ms")
    # Without init_on_alloc the hinted pages stay clean: not sent at all
    check(on0["transferred"] < off["transferred"] / 2,
          f"init_on_alloc=0: hints on sent {mib(on0['transferred'])}, off "
          f"{mib(off['transferred'])}")
    c.row["outcome"] = "completed"


def case_multifd_cancel(c):
    """multifd with 4 channels and hints; migrate_cancel during a hint
    round (the guest gets DONE, keeps running), then a migration with 4
    channels completes."""
    chans = 4
    caps = {"multifd": True}
    mp = {"multifd-channels": chans}
    src = c.guest("src", extra=("-trace", "multifd_send_thread_start"))
    boot(src)
    src.agent(f"keep {KEEP_MIB}")
    src.agent(f"fill {c.mem - 256}", timeout=600)
    src.agent("churn 64")
    # 1: cancel during a hint round
    dst = c.guest("dst1", incoming=True)
    set_caps((src, dst), caps)
    for g in (src, dst):
        g.cmd("migrate-set-parameters", **mp)
    uri = "unix:" + os.path.join(dst.dir, "migrate.sock")
    dst.cmd("migrate-incoming", uri=uri)
    src.cmd("migrate-set-parameters", **{"max-bandwidth": 1 << 20,
                                         "free-page-hint-wait": 5000})
    src.cmd("migrate", uri=uri)
    c.note(f"hint status when cancelling: {wait_round(src, want=('start',))}")
    src.cmd("migrate_cancel")
    info = wait_status(src, ("cancelled",), 60)
    st = wait_hint_status(src)
    c.note(f"after migrate_cancel: migration {info['status']}, hint status {st}")
    check(st == "done", f"hint status after cancel: {st}")
    check(src.cmd("query-status")["status"] == "running",
          "source not running after cancel")
    c.drop(dst)
    verify(src, c.row, churn=True)
    src.agent("churn 64")
    # 2: a full migration with 4 channels
    dst = c.guest("dst2", incoming=True)
    info = hop(c, src, dst, caps=caps,
               params={"multifd-channels": chans, "free-page-hint-wait": 1000},
               dst_params=mp, churn=True, label="multifd migration")
    threads = _multifd_threads(src)
    ram = info["ram"]
    c.fact(send_threads=sorted(threads),
           multifd_bytes=ram.get("multifd-bytes", 0),
           pages_cleared=(info.get("free-page-hint") or {}).get("pages-cleared", 0),
           dst_channels=dst.cmd("query-migrate-parameters")["multifd-channels"])
    check(ram.get("multifd-bytes", 0) > 0, "no multifd bytes")
    check(threads == set(range(chans)), f"multifd send threads {threads}")
    check(c.row["facts"]["pages_cleared"] > 0, "hints cleared no page")
    c.row["outcome"] = "completed (after a cancel)"


def _multifd_threads(g):
    ids = set()
    for ln in trace_lines(g, "multifd_send_thread_start"):
        m = re.search(r"multifd_send_thread_start (\d+)", ln)
        if m:
            ids.add(int(m.group(1)))
    return ids


def case_postcopy_preempt(c):
    """postcopy-ram + postcopy-preempt with hints: switch once hints
    cleared pages; the destination's guest writes 256 MiB meanwhile."""
    src = c.guest("src", cmdline=postcopy.INIT_ON_ALLOC_OFF)
    boot(src)
    src.agent(f"keep {KEEP_MIB}")
    src.agent(f"fill {c.mem - 256}", timeout=600)
    src.agent("churn 128")
    dst = c.guest("dst", incoming=True, cmdline=postcopy.INIT_ON_ALLOC_OFF)
    at_switch = postcopy_switch(c, src, dst, {"postcopy-ram": True,
                                              "postcopy-preempt": True})
    dst.attach_serial()
    agent_retry(dst, "fill 256")
    during = src.cmd("query-migrate")["status"]
    info = postcopy.wait_status(src, ("completed",), timeout=300)
    c.drop(src)
    verify(dst, c.row, churn=True)
    c.row["hint"] = wait_hint_status(dst)
    fph = info.get("free-page-hint") or {}
    caps = {x["capability"]: x["state"]
            for x in dst.cmd("query-migrate-capabilities")}
    c.fact(pages_cleared_at_switch=at_switch.get("pages-cleared", 0),
           postcopy_free_pages=fph.get("postcopy-free-pages", 0),
           status_after_fill=during,
           postcopy_bytes=info["ram"].get("postcopy-bytes", 0),
           preempt=caps.get("postcopy-preempt"))
    c.note(f"{info['total-time']} ms, {mib(info['ram']['transferred'])} sent, "
           f"postcopy-free-pages {fph.get('postcopy-free-pages', 0)}")
    check(caps.get("postcopy-preempt") is True, "preempt not on")
    check(at_switch.get("pages-cleared", 0) > 0, "switched before hints")
    check(fph.get("postcopy-free-pages", 0) > 0, "no postcopy free pages")
    c.row["outcome"] = "completed"


DIMM_MIB = 1024


def dimm_args(size):
    return ("-m", "slots=2,maxmem=4G",
            "-object", f"memory-backend-ram,id=dimm0,size={size}M",
            "-device", "pc-dimm,id=dimm0dev,memdev=dimm0")


def memory_state(g):
    _, out = sh(g, "cat /sys/devices/system/memory/memory*/state | sort | uniq -c")
    return out


def case_dimm(c):
    """A 1 GiB DIMM hotplugged (object_add + device_add) into a 1 GiB
    guest before migration, onlined by the guest (memhp_default_state=
    online: ZONE_NORMAL); the kept pages sit on it, the guest fills and
    frees 1.4 GiB so hints cover it; the destination has it on its
    command line."""
    _dimm(c, "online")


def case_dimm_movable(c):
    """The same DIMM onlined to ZONE_MOVABLE (memhp_default_state=
    online_movable): Linux's driver allocates its hint pages without
    __GFP_MOVABLE, so it never hints that memory: correct, but the freed
    memory there is sent."""
    _dimm(c, "online_movable")


def _dimm(c, zone):
    cmdline = f"memhp_default_state={zone}"
    src = c.guest("src", cmdline=cmdline, extra=(
        "-m", "slots=2,maxmem=4G", "-trace", "ram_free_page_hint"))
    boot(src)
    before = memory_state(src)
    src.cmd("object-add", **{"qom-type": "memory-backend-ram", "id": "dimm0",
                             "size": DIMM_MIB * MIB})
    src.cmd("device_add", driver="pc-dimm", id="dimm0dev", memdev="dimm0")
    devs = src.cmd("query-memory-devices")
    d = devs[0]["data"]
    lo, hi = d["addr"], d["addr"] + d["size"]
    deadline = time.monotonic() + 60
    while True:
        after = memory_state(src)
        if after != before and "offline" not in after:
            break
        if time.monotonic() > deadline:
            _, dmesg = sh(src, "dmesg | tail -20")
            raise CaseFailed(f"DIMM not online in the guest: '{after}' "
                             f"(before: '{before}'); dmesg: {dmesg}")
        time.sleep(1)
    _, total = sh(src, "grep MemTotal /proc/meminfo")
    c.note(f"DIMM at 0x{lo:x}+{mib(d['size'])}; memory blocks {before} -> "
           f"{after}; {total}")
    src.agent(f"keep {KEEP_MIB}")
    placed = src.agent(f"placed {lo} {hi}")
    src.agent(f"fill {c.mem + DIMM_MIB - 600}", timeout=600)
    time.sleep(1)
    dst = c.guest("dst", incoming=True, cmdline=cmdline,
                  extra=dimm_args(DIMM_MIB))
    info = hop(c, src, dst, label="migration")
    placed_dst = agent_retry(dst, f"placed {lo} {hi}")
    blocks = hinted_blocks(src)
    ram = info["ram"]
    c.fact(kept_on_dimm=int(placed["inside"]),
           kept_on_dimm_dst=int(placed_dst["inside"]),
           hinted_pages_by_block=blocks, transferred=ram["transferred"],
           guest_memory_blocks=after)
    c.note(f"kept pages on the DIMM: {placed['inside']} of {placed['pages']} "
           f"(destination: {placed_dst['inside']}); hinted pages by block "
           f"{blocks}")
    check(int(placed_dst["inside"]) == int(placed["inside"]),
          "placement changed across migration")
    check(int(placed["inside"]) > 0, "no kept page on the DIMM")
    check("offline" not in after, f"memory blocks: {after}")
    if zone == "online_movable":
        c.row["outcome"] = ("completed; the DIMM (ZONE_MOVABLE) got no hint"
                            if not block_hinted(blocks, "dimm0") else "completed")
        return
    check(block_hinted(blocks, "dimm0") > 0, f"no hint covered the DIMM: {blocks}")
    check(ram["transferred"] < (c.mem + DIMM_MIB - 600) * MIB / 2,
          f"sent {mib(ram['transferred'])}: the freed memory went")
    c.row["outcome"] = "completed"


def hugepages_needed(mib_total):
    return mib_total // 2


class NrHugepages:
    """Reserve 2 MiB pages for the test; restore the old count after."""

    PATH = "/proc/sys/vm/nr_hugepages"

    def __init__(self, pages):
        self.pages = pages
        self.old = None

    def __enter__(self):
        try:
            with open(self.PATH) as f:
                self.old = int(f.read())
            with open(self.PATH, "w") as f:
                f.write(str(self.old + self.pages))
            with open(self.PATH) as f:
                got = int(f.read())
        except OSError as e:
            raise Skip(f"cannot reserve 2 MiB pages ({self.PATH}: {e})")
        if got < self.old + self.pages:
            self.__exit__()
            raise Skip(f"only {got - self.old} of {self.pages} 2 MiB pages "
                       "could be reserved")
        return self

    def __exit__(self, *exc):
        if self.old is not None:
            with open(self.PATH, "w") as f:
                f.write(str(self.old))


def huge_args(mem):
    return ("-object", f"memory-backend-memfd,id=ram0,size={mem}M,"
            "hugetlb=on,hugetlbsize=2M",
            "-machine", "memory-backend=ram0")


def hugetlb_mapped(g):
    """kB of the QEMU process's 2 MiB-page hugetlb mappings (smaps)."""
    total = 0
    cur = None
    with open(f"/proc/{g.proc.pid}/smaps") as f:
        for ln in f:
            if ln.startswith("Size:"):
                cur = int(ln.split()[1])
            elif ln.startswith("KernelPageSize:") and ln.split()[1] == "2048":
                total += cur or 0
    return total


def _huge(c, post):
    with NrHugepages(hugepages_needed(2 * c.mem) + 16):
        cmdline = postcopy.INIT_ON_ALLOC_OFF if post else ""
        src = c.guest("src", extra=huge_args(c.mem), cmdline=cmdline)
        boot(src)
        hp = src.cmd("qom-get", path="/objects/ram0", property="hugetlb")
        kb = hugetlb_mapped(src)
        c.note(f"backend hugetlb={hp}, {kb} kB mapped with 2 MiB pages")
        check(hp is True and kb >= c.mem * 1024, "guest RAM not on hugetlbfs")
        src.agent(f"keep {KEEP_MIB}")
        src.agent(f"fill {c.mem - 256}", timeout=600)
        src.agent("churn 64")
        dst = c.guest("dst", incoming=True, extra=huge_args(c.mem),
                      cmdline=cmdline)
        if not post:
            info = hop(c, src, dst, churn=True)
        else:
            postcopy_switch(c, src, dst, {"postcopy-ram": True})
            dst.attach_serial()
            agent_retry(dst, "fill 256")
            info = postcopy.wait_status(src, ("completed",), timeout=300)
            c.drop(src)
            verify(dst, c.row, churn=True)
            c.row["hint"] = wait_hint_status(dst)
        fph = info.get("free-page-hint") or {}
        c.fact(dst_hugetlb_kb=hugetlb_mapped(dst),
               pages_cleared=fph.get("pages-cleared", 0),
               postcopy_free_pages=fph.get("postcopy-free-pages", 0),
               transferred=info["ram"]["transferred"])
        c.note(f"{info['total-time']} ms, {mib(info['ram']['transferred'])} "
               f"sent, free-page-hint {json.dumps(fph)}")
        check(c.row["facts"]["dst_hugetlb_kb"] >= c.mem * 1024,
              "destination RAM not on hugetlbfs")
        check(fph.get("pages-cleared", 0) > 0, "hints cleared no page")
        c.row["outcome"] = "completed"


def case_hugepages(c):
    """Guest RAM on 2 MiB hugetlb pages (memfd), precopy."""
    _huge(c, post=False)


def case_hugepages_postcopy(c):
    """Guest RAM on 2 MiB hugetlb pages (memfd), postcopy after hints."""
    _huge(c, post=True)


VMEM_MIB = 1024


def vmem_args(requested):
    return ("-m", "maxmem=4G",
            "-object", f"memory-backend-ram,id=vmem0,size={VMEM_MIB}M",
            "-device", f"virtio-mem-pci,id=vm0,memdev=vmem0,"
            f"requested-size={requested}M")


def vmem_size(g):
    return g.cmd("qom-get", path="/machine/peripheral/vm0", property="size")


def case_virtio_mem(c):
    """virtio-mem (1 GiB region) beside the balloon: 256 MiB plugged, one
    migration; requested-size 384 MiB, a second migration.  Unplugged
    memory is not sent (zero-page-detection=none and init_on_alloc=0: a
    page that went, went whole, so the bytes tell); the plugged memory
    (onlined to ZONE_NORMAL, where the driver's hints reach) holds kept
    pages and gets hints."""
    cmdline = "memhp_default_state=online " + postcopy.INIT_ON_ALLOC_OFF
    extra = ("-trace", "ram_free_page_hint")
    src = c.guest("src", cmdline=cmdline, extra=vmem_args(256) + extra)
    boot(src)
    devs = src.cmd("query-memory-devices")
    d = [x for x in devs if x["type"] == "virtio-mem"][0]["data"]
    lo, hi = d["memaddr"], d["memaddr"] + d["max-size"]
    sizes = []
    for n, requested in enumerate((256, 384)):
        deadline = time.monotonic() + 120
        while vmem_size(src) != requested * MIB:
            check(time.monotonic() < deadline,
                  f"virtio-mem size {vmem_size(src)} != {requested} MiB")
            time.sleep(0.5)
        _, st = sh(src, "cat /sys/devices/system/memory/memory*/state | "
                   "sort | uniq -c; grep MemTotal /proc/meminfo")
        c.note(f"plugged {requested} MiB; guest: {st}")
        src.agent(f"keep {KEEP_MIB}")
        placed = src.agent(f"placed {lo} {hi}")
        # What the agent keeps adds up over the migrations: with 128 MiB
        # kept, a fill of 1008 MiB in the 1280 MiB guest met the OOM killer
        kept = (n + 1) * KEEP_MIB
        src.agent(f"fill {c.mem + requested - 400 - kept}", timeout=600)
        time.sleep(1)
        dst = c.guest(f"dst{n}", incoming=True, cmdline=cmdline,
                      extra=vmem_args(requested) + extra)
        info = hop(c, src, dst, params={"zero-page-detection": "none"},
                   label=f"migration {n + 1}")
        ram = info["ram"]
        sent = ram["normal"] + ram["duplicate"]
        unplugged = (VMEM_MIB - requested) * MIB // PAGE
        placed_dst = agent_retry(dst, f"placed {lo} {hi}")
        blocks = hinted_blocks(src)
        sizes.append({"requested_mib": requested,
                      "size_dst": vmem_size(dst),
                      "kept_in_vmem": int(placed["inside"]),
                      "kept_in_vmem_dst": int(placed_dst["inside"]),
                      "pages_sent": sent, "ram_total_pages": ram["total"] // PAGE,
                      "unplugged_pages": unplugged,
                      "hinted_vmem0": block_hinted(blocks, "vmem0"),
                      "transferred": ram["transferred"]})
        c.note(f"{sizes[-1]}")
        check(sizes[-1]["size_dst"] == requested * MIB, "size on destination")
        check(ram["transferred"] < unplugged * PAGE,
              f"{mib(ram['transferred'])} sent, {mib(unplugged * PAGE)} "
              "unplugged: unplugged memory was sent")
        check(int(placed_dst["inside"]) == int(placed["inside"]), "placement")
        check(block_hinted(blocks, "vmem0") > 0, f"no hint covered virtio-mem: {blocks}")
        src = dst
        if n == 0:
            src.cmd("qom-set", path="/machine/peripheral/vm0",
                    property="requested-size", value=384 * MIB)
    c.fact(migrations=sizes)
    check(sum(s["kept_in_vmem"] for s in sizes) > 0,
          "no kept page in plugged virtio-mem memory")
    c.row["outcome"] = "completed (2 migrations)"


def _converge(c, hints):
    src = c.guest("src", hints=hints)
    boot(src, hints)
    src.agent(f"keep {KEEP_MIB}")
    src.agent(f"fill {c.mem - 256}", timeout=600)
    src.agent("churn 256")
    dst = c.guest("dst", incoming=True, hints=hints)
    set_caps((src, dst), {"auto-converge": True})
    uri = "unix:" + os.path.join(dst.dir, "migrate.sock")
    dst.cmd("migrate-incoming", uri=uri)
    src.cmd("migrate-set-parameters", **{
        "max-bandwidth": 96 << 20, "downtime-limit": 100,
        "cpu-throttle-initial": 20, "cpu-throttle-increment": 10})
    t0 = time.monotonic()
    src.cmd("migrate", uri=uri)
    throttle = 0
    deadline = time.monotonic() + 300
    while True:
        info = src.cmd("query-migrate")
        throttle = max(throttle, info.get("cpu-throttle-percentage", 0))
        if info["status"] == "completed":
            break
        if info["status"] in ("failed", "cancelled"):
            raise CaseFailed(f"migration {info['status']}: {info.get('error-desc')}")
        check(time.monotonic() < deadline, "did not converge in 300 s")
        time.sleep(0.1)
    wall = time.monotonic() - t0
    c.drop(src)
    dst.attach_serial()
    verify(dst, c.row, churn=True)
    st = wait_hint_status(dst) if hints else "n/a"
    c.drop(dst)
    return {"total_ms": info["total-time"], "wall_s": round(wall, 1),
            "throttle_max": throttle, "transferred": info["ram"]["transferred"],
            "dirty_sync": info["ram"].get("dirty-sync-count"),
            "hint": st,
            "pages_cleared": (info.get("free-page-hint") or {}).get("pages-cleared", 0)}


def case_auto_converge(c):
    """auto-converge, churning guest, 96 MiB/s and 100 ms downtime: hints
    on against hints off.  Then what dirty-limit says under this
    accelerator."""
    off = _converge(c, False)
    c.note(f"hints off: {off}")
    on = _converge(c, True)
    c.note(f"hints on: {on}")
    c.row["hint"] = on["hint"]
    c.fact(off=off, on=on)
    # dirty-limit needs KVM's dirty ring
    g = c.guest("dl")
    try:
        g.cmd("migrate-set-capabilities",
              capabilities=[{"capability": "dirty-limit", "state": True}])
        dl = "accepted"
    except Exception as e:
        dl = f"refused: {e}"
    c.drop(g)
    c.note(f"dirty-limit capability under {c.accel}: {dl}")
    c.fact(dirty_limit=dl)
    check(on["total_ms"] <= off["total_ms"] * 1.25 + 2000,
          f"hints on converged in {on['total_ms']} ms, off {off['total_ms']}")
    c.row["outcome"] = "completed"


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


if __name__ == "__main__":
    sys.exit(main())
