#!/usr/bin/python3
"""Summarize bench/profile.sh's callgrind profiles: instructions per 4 MiB
hinted against instructions per 4 MiB sent (and received).

    profile_report.py HINT_SRC NOHINT_SRC NOHINT_DST

Each argument is the prefix of a callgrind profile for which profile.sh
wrote PREFIX.calling.txt (callgrind_annotate --inclusive=yes
--tree=calling).
"""

import re
import sys

CHUNK_PAGES = 1024           # 4 MiB of 4 KiB pages
LINE = re.compile(r"^\s*([\d,]+) \([\s\d.]+%\)\s+(\*|>)?\s*(\S+?):(\S+)"
                  r"(?: \(([\d,]+)x\))?(?: \[(.*)\])?\s*$")


def num(s):
    return int(s.replace(",", ""))


def calls(prefix):
    """From the call arcs: function -> inclusive Ir of the calls to it,
    function -> times called, (caller, callee) -> (Ir, times).  (The arcs
    count a function's inlined parts with it, which callgrind_annotate's
    flat list splits by source file.)"""
    cost, count, arcs = {}, {}, {}
    caller = None
    with open(prefix + ".calling.txt") as f:
        for line in f:
            m = LINE.match(line)
            if not m:
                continue
            if m.group(2) == "*":
                caller = m.group(4)
            elif m.group(2) == ">" and m.group(5):
                callee, n = m.group(4), num(m.group(5))
                count[callee] = count.get(callee, 0) + n
                cost[callee] = cost.get(callee, 0) + num(m.group(1))
                ir, k = arcs.get((caller, callee), (0, 0))
                arcs[(caller, callee)] = (ir + num(m.group(1)), k + n)
    return cost, count, arcs


def need(table, fn, where):
    if fn not in table:
        sys.exit(f"[profile] ERROR: {fn} is not in {where}\n"
                 "[profile] what to do: check that the profiled QEMU has the "
                 "series ('make build') and re-run bench/profile.sh")
    return table[fn]


def main():
    hint, plain, dst = sys.argv[1:4]
    hi, hc, harcs = calls(hint)
    pi, pc, _ = calls(plain)
    di, _, _ = calls(dst)

    hints = need(hc, "qemu_guest_free_page_hint", hint)
    elems = need(hc, "virtqueue_alloc_element", hint)
    device = {fn: need(hi, fn, hint) for fn in (
        "virtio_balloon_free_page_pop_bh", "virtio_balloon_free_page_bh",
        "virtio_balloon_free_page_push_bh")}
    clear = need(hi, "qemu_guest_free_page_hint", hint)
    pop_memset = harcs.get(("virtqueue_split_pop",
                            "__memset_avx2_unaligned_erms"), (0, 0))
    pops = hc.get("virtqueue_split_pop", 0)
    dev_total = sum(device.values())

    pages = need(pc, "ram_save_target_page", plain)
    send = {fn: need(pi, fn, plain) for fn in (
        "ram_find_and_save_block", "ram_save_target_page")}
    flush = pi.get("qemu_fflush.part.0", 0)
    load = need(di, "ram_load", dst)

    per = CHUNK_PAGES / pages
    hint_per = dev_total / hints
    send_per = send["ram_find_and_save_block"] * per
    load_per = load * per
    rows = [
        ("**hint, whole device path** (pop, handle, return; "
         f"{elems} elements for {hints} hints)", hint_per),
        ("  of which virtqueue_pop zeroing its on-stack arrays "
         f"({pops} pops, memset)", pop_memset[0] / hints),
        ("  of which qemu_guest_free_page_hint (bitmap clear)",
         clear / hints),
        ("  virtio_balloon_free_page_pop_bh",
         device["virtio_balloon_free_page_pop_bh"] / hints),
        ("  virtio_balloon_free_page_bh (takes the hints)",
         device["virtio_balloon_free_page_bh"] / hints),
        ("  virtio_balloon_free_page_push_bh (returns the elements)",
         device["virtio_balloon_free_page_push_bh"] / hints),
        (f"**send, source** ram_find_and_save_block ({pages} pages)", send_per),
        ("  of which ram_save_target_page",
         send["ram_save_target_page"] * per),
        ("  qemu_fflush (user space of the socket writes)", flush * per),
        ("**receive, destination** ram_load", load_per),
    ]
    print("| per 4 MiB | instructions (Ir) |")
    print("|---|---:|")
    for what, v in rows:
        print(f"| {what} | {v:,.0f} |")
    print()
    print(f"A 4 MiB hint costs {hint_per:,.0f} instructions in QEMU; sending "
          f"4 MiB costs the source {send_per:,.0f} and the destination "
          f"{load_per:,.0f} (user space only: the socket's copies in the "
          f"kernel come on top). Hint / send (source): "
          f"{100 * hint_per / send_per:.1f}%; hint / (send + receive): "
          f"{100 * hint_per / (send_per + load_per):.1f}%.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
