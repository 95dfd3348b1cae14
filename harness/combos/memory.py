"""Cases on guest memory backends: a hotplugged DIMM (online and movable),
hugetlbfs (precopy and postcopy), virtio-mem."""

import json
import time

from harness import postcopy
from harness.combos.base import (CaseFailed, MIB, PAGE, Skip, agent_retry,
                                 block_hinted, boot, check, hinted_blocks, hop,
                                 mib, postcopy_switch, sh, verify,
                                 wait_hint_status)
from harness.scenario import KEEP_MIB


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
