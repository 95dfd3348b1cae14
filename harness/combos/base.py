"""What the cases of harness.combos share: the case's guests and row, the
helpers on top of vm.Guest, one verified hop."""

import os
import re
import time

from harness import postcopy
from harness.scenario import KEEP_MIB
from harness.vm import Guest, HarnessError, hint_negotiated, log, migrate
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
