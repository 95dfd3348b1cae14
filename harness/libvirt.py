"""Two libvirt daemons on one machine, and the test guest as their domain.

libvirt refuses to migrate a domain to the host it runs on: it compares
the host UUIDs of source and destination.  Each Daemon here is a root
libvirtd with its own host_uuid, config, sockets, state, cache and logs:
it runs in a mount namespace of its own (unshare --mount) where
/etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/cache/libvirt and
/var/log/libvirt are bind mounts of directories under its run directory.
The mounts are private to the namespace and go away with it; the
system's own libvirt, if any, is not touched.  Clients (virsh) reach a
daemon through its socket, which is visible outside the namespace:
qemu+unix:///system?socket=RUNDIR/run/libvirt-sock.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

from harness import vm
from harness.common import TOP
from harness.vm import GUEST, QEMU, HarnessError

LIBVIRTD = "/usr/sbin/libvirtd"
VIRSH = "/usr/bin/virsh"
TEMPLATE = os.path.join(TOP, "libvirt", "domain.xml.in")
# The directories each daemon gets a private copy of
PRIVATE = ("/etc/libvirt", "/run/libvirt", "/var/lib/libvirt",
           "/var/cache/libvirt", "/var/log/libvirt")

LIBVIRTD_CONF = """\
# Written by harness/libvirt.py: one of two daemons on this machine
host_uuid = "{uuid}"
listen_tls = 0
listen_tcp = 0
auth_unix_rw = "none"
auth_unix_ro = "none"
unix_sock_rw_perms = "0700"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""

# QEMU as root, no security driver, no cgroups and no /dev namespace: the
# emulator and the guest's files live in the project's build tree, which
# libvirt's default confinement (AppArmor profile, dynamic ownership for
# the libvirt-qemu user) would not let it read.  The console log goes to a
# file (no virtlogd needed).
QEMU_CONF = """\
# Written by harness/libvirt.py
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
namespaces = [ ]
cgroup_controllers = [ ]
stdio_handler = "file"
"""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def need_libvirt():
    """The libvirt the demo needs, or an error that says how to get it."""
    for f in (LIBVIRTD, VIRSH, "/usr/bin/unshare"):
        if not os.access(f, os.X_OK):
            raise HarnessError(f"{f} is missing: run 'make deps' (as root), which "
                               "installs libvirt-daemon-system and libvirt-clients")
    if os.geteuid() != 0:
        raise HarnessError("the libvirt demo runs two system (root) libvirt "
                           "daemons: run it as root")
    for f in (QEMU["ours"], os.path.join(GUEST, "vmlinuz")):
        if not os.path.exists(f):
            raise HarnessError(f"{f} is missing: run 'make build guest'")
    out = subprocess.run([VIRSH, "--version"], capture_output=True, text=True)
    version = out.stdout.strip()
    v = tuple(int(x) for x in re.findall(r"\d+", version)[:2])
    if v < (8, 2):
        raise HarnessError(
            f"libvirt {version} cannot pass the balloon's free-page-hint and "
            "iothread properties: <qemu:override> needs libvirt >= 8.2 "
            "(Debian 12 has 9.0).  On an older libvirt, <qemu:commandline> "
            "with -global virtio-balloon-device.free-page-hint=on and "
            "-global virtio-balloon-device.iothread=iothread1 is the fallback")
    return version


class Daemon:
    """A root libvirtd with private config, sockets and state."""

    def __init__(self, name, top):
        self.name = name
        self.dir = os.path.join(top, name)
        self.uuid = str(uuid.uuid4())
        self.seen_qemu = set()   # PIDs of every QEMU it ran (for the tests)
        for d in PRIVATE:
            os.makedirs(self.dir + d, exist_ok=True)
        with open(self.dir + "/etc/libvirt/libvirtd.conf", "w") as f:
            f.write(LIBVIRTD_CONF.format(uuid=self.uuid))
        with open(self.dir + "/etc/libvirt/qemu.conf", "w") as f:
            f.write(QEMU_CONF)
        self.uri = f"qemu+unix:///system?socket={self.dir}/run/libvirt/libvirt-sock"
        self.log_path = self.dir + "/libvirtd.out"
        self.pidfile = self.dir + "/run/libvirtd.pid"
        # The mount points must exist outside (they do once libvirt is
        # installed, but /run/libvirt is a tmpfs directory made at boot)
        for d in PRIVATE:
            os.makedirs(d, exist_ok=True)
        binds = " && ".join(f"mount --bind {self.dir}{d} {d}" for d in PRIVATE)
        script = f'{binds} && exec {LIBVIRTD} --config {self.dir}/etc/libvirt/libvirtd.conf ' \
                 f'--pid-file {self.pidfile}'
        self.logf = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            stdin=subprocess.DEVNULL, stdout=self.logf, stderr=subprocess.STDOUT,
            start_new_session=True)
        self._wait_ready()

    def _wait_ready(self):
        sock = f"{self.dir}/run/libvirt/libvirt-sock"
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise HarnessError(f"libvirtd ({self.name}) exited at start: "
                                   f"{self.tail()}")
            if os.path.exists(sock):
                r = subprocess.run([VIRSH, "-c", self.uri, "version"],
                                   capture_output=True, text=True)
                if r.returncode == 0:
                    return
            if time.monotonic() > deadline:
                raise HarnessError(f"libvirtd ({self.name}) did not answer within "
                                   f"60 s: {self.tail()}")
            time.sleep(0.2)

    def tail(self, n=1500):
        text = ""
        for f in (self.log_path, self.dir + "/var/log/libvirt/libvirtd.log"):
            try:
                with open(f) as fh:
                    text += fh.read()[-n:]
            except OSError:
                pass
        return text.strip() or "(no output)"

    def virsh(self, *args, check=True, timeout=600):
        """Run virsh against this daemon; return its stdout."""
        r = subprocess.run([VIRSH, "-c", self.uri, *args], capture_output=True,
                           text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise HarnessError(f"virsh {' '.join(args[:2])} ({self.name}) failed: "
                               f"{r.stderr.strip() or r.stdout.strip()}")
        return r.stdout if check else r

    def qmp(self, dom, command, **arguments):
        """A QMP command through libvirt (virsh qemu-monitor-command)."""
        cmd = {"execute": command}
        if arguments:
            cmd["arguments"] = arguments
        out = self.virsh("qemu-monitor-command", dom, json.dumps(cmd))
        reply = json.loads(out)
        if "error" in reply:
            raise HarnessError(f"{command} ({self.name}): {reply['error']}")
        return reply["return"]

    def qemu_pids(self):
        """PIDs of the QEMUs this daemon started (its pid files)."""
        pids = []
        d = self.dir + "/run/libvirt/qemu"
        for f in os.listdir(d) if os.path.isdir(d) else ():
            if f.endswith(".pid"):
                try:
                    with open(os.path.join(d, f)) as fh:
                        pids.append(int(fh.read().strip()))
                except (OSError, ValueError):
                    pass
        self.seen_qemu.update(pids)
        return pids

    def close(self):
        """Destroy the daemon's domains, stop it, kill what is left."""
        if self.proc.poll() is None:
            r = self.virsh("list", "--name", check=False, timeout=60)
            for dom in (r.stdout.split() if r.returncode == 0 else ()):
                self.virsh("destroy", dom, check=False, timeout=60)
        pids = self.qemu_pids()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for pid in pids:  # QEMUs survive their daemon: end ours
            kill_pid(pid, "guest=fph-")
        self.logf.close()


def kill_pid(pid, marker):
    """Kill @pid if it is still a process whose command line names @marker."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if marker.encode() not in f.read():
                return
        os.kill(pid, signal.SIGKILL)
        log(f"[libvirt] killed QEMU {pid} left behind")
    except (OSError, ProcessLookupError):
        pass


# The fallback for a libvirt without <qemu:override> (< 8.2): -global sets
# the property on every virtio-balloon-device, the balloon's backend (its
# properties are not the PCI proxy's).  Works with libvirt 9.0 as well.
COMMANDLINE = """
  <qemu:commandline>
    <qemu:arg value='-global'/>
    <qemu:arg value='virtio-balloon-device.free-page-hint=@HINTS_ONOFF@'/>
    <qemu:arg value='-global'/>
    <qemu:arg value='virtio-balloon-device.iothread=iothread1'/>
  </qemu:commandline>"""


def domain_xml(name, serial, mem_mib=2048, hints=True, iothread=True,
               cmdline="", mechanism="override", alias="balloon0"):
    """The domain XML from the template, paths filled in.
    iothread=False drops the balloon's iothread property (an error case).
    mechanism="commandline": <qemu:commandline> -global instead of
    <qemu:override>.  alias: the alias <qemu:device> names (libvirt
    ignores an override for an alias no device has)."""
    with open(TEMPLATE) as f:
        xml = f.read()
    subst = {"NAME": name, "MEM_MIB": str(mem_mib), "QEMU": QEMU["ours"],
             "KERNEL": os.path.join(GUEST, "vmlinuz"),
             "INITRD": os.path.join(GUEST, "initrd.gz"),
             "SERIAL": serial, "HINTS": "true" if hints else "false",
             "CMDLINE": (" " + cmdline) if cmdline else ""}
    for k, v in subst.items():
        xml = xml.replace(f"@{k}@", v)
    if mechanism == "commandline":
        block = COMMANDLINE.replace("@HINTS_ONOFF@", "on" if hints else "off")
        xml = re.sub(r"\n  <qemu:override>.*</qemu:override>", lambda m: block,
                     xml, flags=re.S)
    xml = xml.replace("<qemu:device alias='balloon0'>",
                      f"<qemu:device alias='{alias}'>")
    if not iothread:
        xml = re.sub(r"\n *<qemu:(property name='iothread'|arg value='virtio-balloon-device"
                     r"\.iothread)[^\n]*", "", xml)
        xml = re.sub(r"\n *<qemu:arg value='-global'/>(?=\n *</qemu:commandline>)", "", xml)
    return xml


class Console(vm.Console):
    """The guest's serial console (a unix socket QEMU listens on):
    memagent's protocol, as harness/vm.py speaks it."""

    def __init__(self, path, name, timeout=30):
        deadline = time.monotonic() + timeout
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                raise HarnessError(f"{name}: no serial socket {path}")
            time.sleep(0.05)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        super().__init__(sock, name)


def make_rundir():
    d = tempfile.mkdtemp(prefix="fph-libvirt-")
    os.chmod(d, 0o755)
    return d


def remove_rundir(d):
    shutil.rmtree(d, ignore_errors=True)
