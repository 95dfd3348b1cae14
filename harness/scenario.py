"""One migration of the test guest under a workload, measured."""

import re
import time

from harness.variant import lookup
from harness.vm import (MIGRATION_TIMEOUT, Guest, HarnessError,
                        hint_negotiated, log, migrate)

PAGE = 4096
KEEP_MIB = 64          # checksummed memory the guest keeps and verifies


def fill_mib(mem_mib):
    """How much of its memory the guest writes and frees ("freed")."""
    return max(mem_mib - 512, 64)


def prepare_workload(g, workload, mem_mib):
    """Bring the source guest into the state the workload describes."""
    g.agent(f"keep {KEEP_MIB}")
    if workload in ("freed", "busy"):
        # Write most of memory, then free it: old data in free pages
        g.agent(f"fill {fill_mib(mem_mib)}", timeout=600)
    if workload == "busy":
        g.agent("churn 256")


def run_case(variant, mem_mib, workload, accel, bandwidth=100 << 30,
             downtime_ms=2000, caps=(), params=None, dst_qemu=None,
             dst_wrapper=(), uri=None, rest_s=0, cmdline="",
             timeout=MIGRATION_TIMEOUT):
    """Boot, load, migrate, verify on the destination; return a result row.
    dst_qemu: another QEMU for the destination ("ours" or "stock").
    dst_wrapper, uri: a command prefix for the destination QEMU and the
    migration URI (harness/netns.py: another network namespace, over TCP).
    rest_s: with the busy workload, measure the guest's churn rate over
    rest_s seconds before the migration and compare it with its rate
    during the migration.  cmdline: more options for the guest's kernel
    (e.g. init_on_alloc=0).  timeout: seconds the migration may take
    before it is cancelled and the case fails ("did not converge")."""
    v = lookup(variant)
    qemu, hints, variant = v.qemu, v.hints, v.label
    src = dst = None
    try:
        src = Guest(qemu, mem_mib, hints, accel=accel, name="src",
                    cmdline=cmdline, ablate=v.ablate)
        features = src.boot()
        negotiated = hint_negotiated(features)
        if hints and not negotiated:
            raise HarnessError("the guest's virtio_balloon did not negotiate "
                               f"F_FREE_PAGE_HINT (features {features})")
        prepare_workload(src, workload, mem_mib)
        if workload != "busy":
            time.sleep(1)   # let the guest settle after its writes
        nonfree = (mem_mib << 20) - mem_free(src)
        dst = Guest(dst_qemu or qemu, mem_mib, hints, incoming=True,
                    accel=accel, name="dst", wrapper=dst_wrapper,
                    cmdline=cmdline, ablate=v.ablate)
        work = {}
        if workload == "busy" and rest_s:
            w0, t0 = churn_work(src)
            time.sleep(rest_s)
            w1, t1 = churn_work(src)
            work["rest"] = (w1 - w0, t1 - t0)
        t0 = time.monotonic()
        info = migrate(src, dst, bandwidth, downtime_ms, caps,
                       {**(params or {}), **dict(v.params)}, uri=uri,
                       timeout=timeout)
        wall = time.monotonic() - t0
        dst.attach_serial()
        churn = {}
        if workload == "busy":
            if rest_s:
                w2, t2 = churn_work(dst)
                work["migration"] = (w2 - w1, t2 - t1)
            churn = dst.agent("churnstop", timeout=120)
        verify = dst.agent("verify", timeout=300)
        return {
            "variant": variant, "mem_mib": mem_mib, "workload": workload,
            "cmdline": cmdline, "nonfree": nonfree,
            "negotiated": negotiated, "wall_s": wall,
            **result_row(info, verify, churn, work),
        }
    finally:
        for g in (src, dst):
            if g:
                g.close()


def result_row(info, verify, churn, work):
    """A result row's figures: query-migrate's @info, the guest's verify
    and churnstop replies, the churn's @work at rest and meanwhile."""
    ram = info["ram"]
    sent_pages = ram["normal"] + ram["duplicate"]
    return {
        "total_ms": info["total-time"], "downtime_ms": info["downtime"],
        "transferred": ram["transferred"],
        "normal": ram["normal"], "zero": ram["duplicate"],
        "not_sent": max(ram["total"] // PAGE - sent_pages, 0),
        # Pages sent more than once: at least this many
        "revisits": max(sent_pages - ram["total"] // PAGE, 0),
        "verified_pages": int(verify["pages"]),
        "mismatches": int(verify["mismatches"])
        + int(churn.get("mismatches", 0)),
        "churn_rounds": int(churn.get("rounds", 0)),
        "mbps": ram.get("mbps"),
        # MiB the churn wrote and checked per second, at rest and from
        # just before the migration until the destination answered
        **{f"churn_mib_s_{k}": pages * PAGE / (1 << 20) / secs
           for k, (pages, secs) in work.items()},
        **({"churn_mib_lost": lost_work(work)} if len(work) == 2 else {}),
        "free_page_hint": info.get("free-page-hint"),
    }


def lost_work(work):
    """MiB the churn would have done at its rate at rest over the time
    measured during the migration, and did not."""
    (rest, rest_s), (mig, mig_s) = work["rest"], work["migration"]
    return (rest / rest_s * mig_s - mig) * PAGE / (1 << 20)


def mem_free(g):
    """The guest's MemFree, in bytes."""
    # memagent prints "MemFree=   123 kB": agent()'s key=value split
    # would lose the number
    g._serial().sendall(b"free\n")
    reply = g.expect("OK free", timeout=60)
    m = re.search(r"MemFree=\s*(\d+)", reply)
    if not m:
        raise HarnessError(f"no MemFree in the guest's answer '{reply}'")
    return int(m.group(1)) << 10


def churn_work(g):
    """Pages the busy guest's churn has written and checked, and when."""
    for attempt in range(3):
        try:
            r = g.agent("churnstat", timeout=60)
            break
        except HarnessError as e:
            # Right after a migration, the destination's console has lost
            # the first byte of a command ("unknown command 'hurnstat'")
            if "unknown command" not in str(e) or attempt == 2:
                raise
            log(f"[migrate]   retrying churnstat: {e}")
    return int(r["written"]) + int(r["checked"]), time.monotonic()


def mib(n):
    return f"{n / (1 << 20):.0f} MiB"


def table(rows, title=None):
    """A Markdown table of result rows."""
    out = []
    if title:
        out += [f"**{title}**", ""]
    out += ["| variant | guest | workload | total time | downtime | transferred "
            "| pages not sent | memory verified |",
            "|---|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['variant']} | {r['mem_mib']} MiB | {r['workload']} "
                       f"| {r['error']} | | | | |")
            continue
        ok = "ok" if r["mismatches"] == 0 else f"{r['mismatches']} MISMATCHES"
        out.append(f"| {r['variant']} | {r['mem_mib']} MiB | {r['workload']} "
                   f"| {r['total_ms']} ms | {r['downtime_ms']} ms "
                   f"| {mib(r['transferred'])} | {r['not_sent']} "
                   f"| {ok} ({r['verified_pages']} pages) |")
    return "\n".join(out)


def run_logged(variant, mem_mib, workload, accel, **kw):
    to = f" to {kw['dst_qemu']} QEMU" if kw.get("dst_qemu") else ""
    log(f"[migrate] {variant}, {mem_mib} MiB guest, {workload}{to} ...")
    r = run_case(variant, mem_mib, workload, accel, **kw)
    log(f"[migrate]   {r['total_ms']} ms, {mib(r['transferred'])} sent, "
        f"{r['mismatches']} mismatches")
    return r
