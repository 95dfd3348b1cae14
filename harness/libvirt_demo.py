#!/usr/bin/python3
"""Free page hints through libvirt, as an operator gets them.

Two private libvirt daemons on this machine (see harness/libvirt.py), the test
guest as a domain whose balloon has free-page-hint=on and an iothread
(<qemu:override>, see domain.xml.in), then:

  1. virsh migrate --live from one daemon to the other; the guest's kept
     memory verified on the destination; the migration's statistics
     through libvirt (virsh domjobinfo --completed, and query-migrate's
     free-page-hint member through virsh qemu-monitor-command);
  2. a live external snapshot (virsh snapshot-create-as --live --memspec
     ...,snapshot=external: the memory goes to a file while the guest
     runs) with hints on and off, the files' sizes compared, and the
     hints-on file restored (virsh restore) and its memory verified;
  3. what operators get wrong: free-page-hint without an iothread (QEMU
     refuses to start), and (full run only) a guest without the
     virtio_balloon driver: the hints then do nothing.

Usage: demo.py [--short] [--mem MIB] [--rundir DIR] [--json FILE] [--keep]
               [--commandline]
       demo.py print-xml [--commandline]   the domain XML with this tree's paths
--commandline: <qemu:commandline> -global instead of <qemu:override>.
--short: the form make check runs (1 GiB guest, no driver-less case).
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time

from harness.libvirt import (QEMU, Console, Daemon, HarnessError,
                               domain_xml, make_rundir, need_libvirt,
                               remove_rundir)
from harness.vm import hint_negotiated

DOM = "fph-demo"
KEEP_MIB = 64
BOOT_TIMEOUT = 180
BALLOON = "/machine/peripheral/balloon0/virtio-backend"
# How the domain XML passes the balloon's properties: "override"
# (<qemu:override>) or "commandline" (<qemu:commandline> -global)
MECHANISM = ["override"]
# How often the source's query-migrate is read during virsh migrate
POLL_S = 0.1


def log(msg):
    print(f"[libvirt] {msg}", file=sys.stderr, flush=True)


def show(cmd, out=""):
    """What the operator types and what they see."""
    print(f"$ {cmd}")
    out = out.rstrip()
    if out:
        print(out)
    sys.stdout.flush()


def fill_mib(mem):
    return max(mem - 512, 64)


def start(daemon, rundir, name, mem, hints=True, iothread=True, cmdline="",
          serial=None):
    """Create the domain paused, attach to its console, run it; return
    the console and the balloon's feature bits the guest reported."""
    serial = serial or os.path.join(rundir, f"{daemon.name}-{name}.sock")
    xml = domain_xml(name, serial, mem, hints, iothread, cmdline,
                     mechanism=MECHANISM[0])
    path = os.path.join(rundir, f"{name}-{daemon.name}.xml")
    with open(path, "w") as f:
        f.write(xml)
    out = daemon.virsh("create", path, "--paused")
    show(f"virsh -c {daemon.name} create {os.path.basename(path)}", out)
    con = Console(serial, f"{name}@{daemon.name}")
    daemon.qemu_pids()
    daemon.virsh("resume", name)
    log(f"booting {name} on {daemon.name} ({mem} MiB, TCG)")
    features = con.expect("FEATURES", BOOT_TIMEOUT)
    con.expect("READY", 60)
    return con, features


def balloon_state(daemon, name):
    """What QEMU's balloon really got from libvirt (QOM, through libvirt)."""
    st = {p: daemon.qmp(name, "qom-get", path=BALLOON, property=p)
          for p in ("free-page-hint", "iothread")}
    show(f"virsh -c {daemon.name} qemu-monitor-command {name} "
         f"'{{\"execute\":\"qom-get\",\"arguments\":{{\"path\":\"{BALLOON}\","
         "\"property\":\"free-page-hint\"}}'",
         json.dumps({"return": st["free-page-hint"]}))
    return st


def load(con, mem):
    """Keep KEEP_MIB of checksummed memory, write and free most of the rest."""
    con.agent(f"keep {KEEP_MIB}")
    log(f"guest writes {fill_mib(mem)} MiB and frees it")
    con.agent(f"fill {fill_mib(mem)}", timeout=600)
    time.sleep(1)


def dedup(text):
    """virsh migrate --verbose's progress lines, each shown once."""
    lines = []
    for line in text.splitlines():
        if line.strip() and (not lines or lines[-1] != line):
            lines.append(line)
    return "\n".join(lines)


def parse_jobinfo(text):
    info = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            info[k.strip()] = " ".join(v.split())
    return info


def dst_domain_xml(src, rundir):
    """The destination's XML: the same domain with a console socket of its
    own; return that socket's path and the XML file's."""
    xml = src.virsh("dumpxml", "--migratable", DOM)
    dst_serial = os.path.join(rundir, f"dst-{DOM}.sock")
    xml = re.sub(r"(<serial type='unix'>\s*<source mode='bind' path=')[^']*",
                 r"\g<1>" + dst_serial, xml)
    dst_xml = os.path.join(rundir, f"{DOM}-dst.xml")
    with open(dst_xml, "w") as f:
        f.write(xml)
    return dst_serial, dst_xml


def virsh_migrate(src, dst, dst_xml):
    """virsh migrate --live, polling the source's query-migrate meanwhile;
    return the ended virsh process, its output and the last query-migrate
    answer that had a free-page-hint member (None if none had)."""
    cmd = ["migrate", "--live", "--verbose", DOM, dst.uri,
           "--migrateuri", "tcp://127.0.0.1", "--listen-address", "127.0.0.1",
           "--xml", dst_xml]
    log("migrating (virsh migrate --live), polling query-migrate on the source")
    t0 = time.monotonic()
    proc = subprocess.Popen(["virsh", "-c", src.uri, *cmd], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    last = None
    while proc.poll() is None:
        try:
            q = src.qmp(DOM, "query-migrate")
            if "free-page-hint" in q:
                last = q
        except (HarnessError, subprocess.TimeoutExpired):
            pass  # the source is going away
        if time.monotonic() - t0 > 900:
            proc.kill()
            raise HarnessError("virsh migrate did not end within 900 s")
        time.sleep(POLL_S)
    return proc, proc.stdout.read(), last


def migrate(src, dst, rundir, mem):
    """virsh migrate --live of a loaded guest with hints on; verify."""
    con, features = start(src, rundir, DOM, mem)
    r = {"negotiated": hint_negotiated(features), "features": features}
    if not r["negotiated"]:
        raise HarnessError(f"the guest's virtio_balloon did not negotiate free page "
                           f"hinting (features {features})")
    r["balloon"] = balloon_state(src, DOM)
    if r["balloon"]["free-page-hint"] is not True:
        raise HarnessError("libvirt did not pass free-page-hint=on to QEMU: "
                           "check the <qemu:override> block (alias balloon0)")
    load(con, mem)
    con.close()
    dst_serial, dst_xml = dst_domain_xml(src, rundir)
    src.virsh("migrate-setmaxdowntime", DOM, "2000")
    show(f"virsh -c {src.name} migrate-setmaxdowntime {DOM} 2000")
    t0 = time.monotonic()
    proc, out, last = virsh_migrate(src, dst, dst_xml)
    r["wall_s"] = time.monotonic() - t0
    show(f"virsh -c {src.name} migrate --live --verbose {DOM} {dst.name} "
         f"--migrateuri tcp://127.0.0.1 --listen-address 127.0.0.1 --xml {DOM}-dst.xml",
         dedup(out.replace("\r", "\n")))
    if proc.returncode != 0:
        raise HarnessError(f"virsh migrate failed: {out.strip()}")
    jobinfo = dst.virsh("domjobinfo", DOM, "--completed")
    show(f"virsh -c {dst.name} domjobinfo {DOM} --completed", jobinfo)
    r["jobinfo"] = parse_jobinfo(jobinfo)
    if last is None:
        raise HarnessError("query-migrate never showed a free-page-hint member: "
                           "is the emulator our QEMU?")
    r["query_migrate_status"] = last["status"]
    r["free_page_hint"] = last["free-page-hint"]
    r["ram"] = last.get("ram", {})
    r["qemu_total_ms"] = last.get("total-time")
    r["qemu_downtime_ms"] = last.get("downtime")
    show(f"virsh -c {src.name} qemu-monitor-command {DOM} "
         "'{\"execute\":\"query-migrate\"}'   # last answer before the source went, "
         f"status {last['status']}",
         json.dumps({"free-page-hint": last["free-page-hint"]}))
    # The guest, now on the destination, checks the memory it kept
    con = Console(dst_serial, f"{DOM}@{dst.name}")
    con.sock.sendall(b"\n")  # the first byte after a migration may be lost
    v = con.agent("verify", timeout=300)
    con.close()
    r["verified_pages"] = int(v["pages"])
    r["mismatches"] = int(v["mismatches"])
    print(f"guest on the destination: verify pages={v['pages']} "
          f"mismatches={v['mismatches']}")
    return r


def snapshot(daemon, rundir, name, hints, mem, fill=True, con=None):
    """A live external snapshot of a loaded guest to a file; its size and
    the free-page-hint member of the migration that wrote it."""
    if con is None:
        con, features = start(daemon, rundir, name, mem, hints=hints)
    if fill:
        load(con, mem)
    path = os.path.join(rundir, f"{name}-{'on' if hints else 'off'}.mem")
    log(f"live snapshot of {name} ({'hints on' if hints else 'hints off'})")
    t0 = time.monotonic()
    out = daemon.virsh("snapshot-create-as", name, "--name", "live", "--live",
                       "--memspec", f"file={path},snapshot=external",
                       "--no-metadata", timeout=900)
    wall = time.monotonic() - t0
    show(f"virsh -c {daemon.name} snapshot-create-as {name} --name live --live "
         f"--memspec file={os.path.basename(path)},snapshot=external --no-metadata",
         out)
    q = daemon.qmp(name, "query-migrate")
    state = daemon.virsh("domstate", name).strip()
    size = os.path.getsize(path)
    show(f"ls -l {os.path.basename(path)}", f"{size} bytes ({size / (1 << 20):.0f} MiB)")
    fph = q.get("free-page-hint", {})
    if hints:
        show(f"virsh -c {daemon.name} qemu-monitor-command {name} "
             "'{\"execute\":\"query-migrate\"}'",
             json.dumps({"status": q.get("status"), "free-page-hint": fph}))
    return con, {"file": path, "size": size, "wall_s": wall,
                 "state_after": state, "status": q.get("status"),
                 "total_ms": q.get("total-time"), "free_page_hint": fph,
                 "transferred": q.get("ram", {}).get("transferred")}


def restore_verify(daemon, rundir, path, name):
    """virsh restore of a snapshot's memory file; the guest verifies."""
    out = daemon.virsh("restore", path, "--paused", timeout=900)
    show(f"virsh -c {daemon.name} restore {os.path.basename(path)}", out)
    xml = daemon.virsh("dumpxml", name)
    serial = re.search(r"<serial type='unix'>\s*<source mode='bind' path='([^']*)'",
                       xml).group(1)
    daemon.qemu_pids()
    con = Console(serial, f"{name}@{daemon.name} restored")
    daemon.virsh("resume", name)
    con.sock.sendall(b"\n")
    v = con.agent("verify", timeout=300)
    con.close()
    print(f"restored guest: verify pages={v['pages']} mismatches={v['mismatches']}")
    return {"verified_pages": int(v["pages"]), "mismatches": int(v["mismatches"])}


def no_iothread(daemon, rundir):
    """free-page-hint=on without iothread: QEMU refuses, libvirt says why."""
    name = "fph-no-iothread"
    xml = domain_xml(name, os.path.join(rundir, f"{name}.sock"), 256,
                     iothread=False, mechanism=MECHANISM[0])
    path = os.path.join(rundir, f"{name}.xml")
    with open(path, "w") as f:
        f.write(xml)
    r = daemon.virsh("create", path, check=False)
    show(f"virsh -c {daemon.name} create {name}.xml   "
         "# free-page-hint=true, no iothread property", r.stderr)
    if r.returncode == 0:
        daemon.virsh("destroy", name, check=False)
    return {"refused": r.returncode != 0, "message": r.stderr.strip()}


def wrong_alias(daemon, rundir):
    """<qemu:device alias=...> naming no device: libvirt starts the domain
    without a word and the balloon has no hints.  Check with qom-get."""
    name = "fph-wrong-alias"
    xml = domain_xml(name, os.path.join(rundir, f"{name}.sock"), 256,
                     alias="balloon")
    path = os.path.join(rundir, f"{name}.xml")
    with open(path, "w") as f:
        f.write(xml)
    out = daemon.virsh("create", path, "--paused")
    show(f"virsh -c {daemon.name} create {name}.xml   "
         "# <qemu:device alias='balloon'>, but the balloon is balloon0", out)
    try:
        hint = daemon.qmp(name, "qom-get", path=BALLOON, property="free-page-hint")
    finally:
        daemon.virsh("destroy", name, check=False)
    show(f"virsh -c {daemon.name} qemu-monitor-command {name} "
         "'{\"execute\":\"qom-get\",\"arguments\":{\"path\":\"" + BALLOON
         + "\",\"property\":\"free-page-hint\"}}'", json.dumps({"return": hint}))
    print("libvirt ignores an override for an alias no device has: the domain "
          "runs without hints.  The alias is in 'virsh dumpxml' "
          "(<memballoon ...><alias name='balloon0'/>).")
    return {"started": True, "free_page_hint": hint}


def no_driver(daemon, rundir, mem):
    """A guest without virtio_balloon (module_blacklist): the device offers
    hints, nobody gives any, the snapshot is as big as without hints."""
    name = "fph-no-driver"
    con, features = start(daemon, rundir, name, mem,
                          cmdline="module_blacklist=virtio_balloon")
    print(f"guest's balloon features: '{features}' (empty: no driver bound)")
    status = daemon.qmp(name, "qom-get", path=BALLOON,
                        property="free-page-hint-status")
    con, s = snapshot(daemon, rundir, name, True, mem, con=con)
    con.close()
    daemon.virsh("destroy", name)
    s.update(features=features, status_before=status)
    print(f"no driver: the balloon offered hints (free-page-hint-status was "
          f"'{status}'), the guest gave none "
          f"({s['free_page_hint'].get('bytes-hinted', 0)} bytes hinted): the "
          f"snapshot is {s['size'] >> 20} MiB, as without hints.  Check the "
          "guest: /sys/bus/virtio/drivers/virtio_balloon must list the device, "
          "bit 3 of its features set.")
    return s


def run(short=False, mem=None, rundir=None, keep=False, mechanism="override"):
    """The whole demo; returns its results.  Tears down what it started."""
    version = need_libvirt()
    MECHANISM[0] = mechanism
    mem = mem or (1024 if short else 2048)
    own_rundir = rundir is None
    rundir = rundir or make_rundir()
    res = {"libvirt": version, "qemu": QEMU["ours"], "mem_mib": mem,
           "mechanism": mechanism}
    daemons = []
    t0 = time.monotonic()
    try:
        log(f"libvirt {version}; starting two private libvirtd (run dir {rundir})")
        src = Daemon("src", rundir)
        daemons.append(src)
        dst = Daemon("dst", rundir)
        daemons.append(dst)
        print(f"source      {src.uri}  host UUID {src.uuid}")
        print(f"destination {dst.uri}  host UUID {dst.uuid}")

        print("\n== 1. live migration with free page hints ==")
        res["migration"] = migrate(src, dst, rundir, mem)

        dst.virsh("destroy", DOM)

        print("\n== 2. live external snapshot, hints on and off ==")
        # Fresh guests, loaded as above.  (Not the migrated one: a guest
        # migrated in with hints has pages that came as zero pages, and
        # the series then judges its next round futile; see the report.)
        con, on = snapshot(src, rundir, DOM, True, mem)
        con.close()
        src.virsh("destroy", DOM)
        res["snapshot_on"] = on
        con, off = snapshot(src, rundir, "fph-nohints", False, mem)
        con.close()
        src.virsh("destroy", "fph-nohints")
        res["snapshot_off"] = off
        print(f"snapshot file: hints on {on['size'] / (1 << 20):.0f} MiB, "
              f"hints off {off['size'] / (1 << 20):.0f} MiB")
        # The hints-on file restored on the other daemon, memory verified
        res["restore"] = restore_verify(dst, rundir, on["file"], DOM)
        dst.virsh("destroy", DOM)

        print("\n== 3. what goes wrong ==")
        res["no_iothread"] = no_iothread(src, rundir)
        if MECHANISM[0] == "override":
            res["wrong_alias"] = wrong_alias(src, rundir)
        if not short:
            res["no_driver"] = no_driver(src, rundir, mem)
        return res
    finally:
        for d in reversed(daemons):
            try:
                d.close()
            except Exception as e:  # go on tearing down the others
                log(f"stopping libvirtd ({d.name}): {e}")
        if own_rundir and not keep:
            remove_rundir(rundir)
        res["rundir"] = rundir
        res["daemon_pids"] = [d.proc.pid for d in daemons]
        res["qemu_pids"] = sorted(p for d in daemons for p in d.seen_qemu)
        res["wall_s"] = time.monotonic() - t0
        log(f"torn down after {res['wall_s']:.0f} s")


def summary(res):
    m, on, off = res["migration"], res["snapshot_on"], res["snapshot_off"]
    fph = m["free_page_hint"]
    lines = [
        "", "== summary ==",
        f"libvirt {res['libvirt']}, {res['mem_mib']} MiB guest, TCG",
        f"migration: {m['jobinfo'].get('Memory processed', '?')} sent, "
        f"total {m['jobinfo'].get('Time elapsed', '?')}, downtime "
        f"{m['jobinfo'].get('Total downtime', '?')} (QEMU's: "
        f"{m.get('qemu_downtime_ms', '?')} ms); free page hints: "
        f"{fph.get('bytes-hinted', 0) >> 20} MiB hinted, "
        f"{fph.get('pages-cleared', 0)} pages cleared; memory verified: "
        f"{m['mismatches']} mismatches in {m['verified_pages']} pages",
        f"live snapshot file: hints on {on['size'] >> 20} MiB "
        f"({on['free_page_hint'].get('pages-cleared', 0)} pages cleared), "
        f"hints off {off['size'] >> 20} MiB; restored: "
        f"{res['restore']['mismatches']} mismatches",
        f"free-page-hint=on without iothread: "
        f"{'refused' if res['no_iothread']['refused'] else 'NOT refused'}: "
        f"{res['no_iothread']['message'].splitlines()[-1] if res['no_iothread']['message'] else ''}",
    ]
    if "wrong_alias" in res:
        lines.append("<qemu:device> with a wrong alias: domain started, "
                     f"free-page-hint={res['wrong_alias']['free_page_hint']}")
    if "no_driver" in res:
        nd = res["no_driver"]
        lines.append(f"guest without virtio_balloon: snapshot {nd['size'] >> 20} MiB, "
                     f"{nd['free_page_hint'].get('bytes-hinted', 0)} bytes hinted")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", nargs="?", choices=("demo", "print-xml"), default="demo")
    ap.add_argument("--short", action="store_true",
                    help="1 GiB guest, no driver-less case (make check)")
    ap.add_argument("--mem", type=int, help="guest MiB (2048; 1024 with --short)")
    ap.add_argument("--rundir", help="daemons' state, sockets and files (a new "
                    "temporary directory by default, removed at the end)")
    ap.add_argument("--keep", action="store_true", help="keep the run directory")
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("--commandline", action="store_true",
                    help="pass the balloon's properties with <qemu:commandline> "
                    "-global (the fallback for libvirt < 8.2) instead of "
                    "<qemu:override>")
    a = ap.parse_args()
    if a.what == "print-xml":
        print(domain_xml(DOM, "/path/to/serial.sock", a.mem or 2048,
                         mechanism="commandline" if a.commandline else "override"),
              end="")
        return 0
    # SIGTERM tears down like an error does
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        res = run(a.short, a.mem, a.rundir, a.keep,
                  "commandline" if a.commandline else "override")
    except HarnessError as e:
        print(f"[libvirt] ERROR: {e}", file=sys.stderr)
        return 1
    print(summary(res))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
