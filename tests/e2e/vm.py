"""Run the project's guest in QEMU and migrate it: the end-to-end harness.

Shared by the demo (tests/demo.py), the end-to-end tests (tests/e2e/) and
the benchmark (bench/).  QMP goes through QEMU's own python/qemu package
from the prepared work tree; the guest's memagent answers on the serial
console (guest/memagent.c).
"""

import os
import socket
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("BUILD", os.path.join(TOP, "build"))
sys.path.insert(0, os.path.join(BUILD, "qemu", "python"))

from qemu.qmp.legacy import QEMUMonitorProtocol  # noqa: E402

QEMU = {
    "ours": os.path.join(BUILD, "qemu", "build", "qemu-system-x86_64"),
    "stock": os.path.join(BUILD, "qemu-stock", "build", "qemu-system-x86_64"),
    # Debian's own QEMU 10.0 package (bookworm-backports), see make deps
    "debian": "/usr/bin/qemu-system-x86_64",
}
GUEST = os.path.join(BUILD, "guest")
BOOT_TIMEOUT = 120
MIGRATION_TIMEOUT = 600


class HarnessError(Exception):
    """A step of the harness failed; the message says which and what to do."""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Console:
    """A guest's serial console (a connected unix socket): memagent's
    protocol, replies on lines "@@<reply>".  check: called while waiting,
    raises when the guest can no longer answer (its QEMU exited)."""

    def __init__(self, sock, name, check=None):
        self.sock = sock
        self.name = name
        self.check = check
        self.buf = b""

    def sendall(self, data):
        self.sock.sendall(data)

    def expect(self, prefix, timeout):
        """Wait for a console line starting with @@<prefix>; return its rest."""
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                text = line.decode(errors="replace").strip()
                i = text.find("@@")
                if i < 0:
                    continue
                text = text[i + 2:]
                if text.startswith("ERR"):
                    raise HarnessError(f"guest ({self.name}): {text}")
                if text.startswith("EXIT"):
                    # guest/init: the agent died (the OOM killer, a crash)
                    raise HarnessError(f"guest ({self.name}): its agent "
                                       f"exited ({text}; the guest's console "
                                       "says why, e.g. out of memory)")
                if text.startswith(prefix):
                    return text[len(prefix):].strip()
            left = deadline - time.monotonic()
            if left <= 0:
                raise HarnessError(f"guest ({self.name}) did not answer "
                                   f"'{prefix}' within {timeout} s")
            if self.check:
                self.check()
            self.sock.settimeout(min(left, 1.0))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                raise HarnessError(f"guest ({self.name}) console closed")
            self.buf += data

    def agent(self, command, timeout=300):
        """Run one memagent command; return the key=value pairs it reported."""
        self.sock.sendall(command.encode() + b"\n")
        reply = self.expect("OK " + command.split()[0], timeout)
        return dict(kv.split("=", 1) for kv in reply.split() if "=" in kv)

    def close(self):
        self.sock.close()


class Guest:
    """One QEMU process running the test guest (or waiting for it)."""

    def __init__(self, qemu="ours", mem_mib=2048, hints=True, incoming=False,
                 accel="tcg", smp=2, name="src", extra=(), reboot=False,
                 wrapper=(), cmdline=""):
        """wrapper: a command prefix for QEMU, e.g. ("ip", "netns", "exec",
        NAME) to run it in another network namespace.  cmdline: more
        options for the guest's kernel."""
        binary = QEMU[qemu]
        if not os.access(binary, os.X_OK):
            raise HarnessError(f"{binary} is missing: run 'make build'"
                               + (" and 'make stock'" if qemu == "stock" else "")
                               + (" and 'make deps'" if qemu == "debian" else ""))
        self.dir = tempfile.mkdtemp(prefix=f"fph-{name}-")
        self.name = name
        self.qmp_path = os.path.join(self.dir, "qmp.sock")
        self.serial_path = os.path.join(self.dir, "serial.sock")
        self.log_path = os.path.join(self.dir, "qemu.log")
        balloon = "virtio-balloon-pci,id=balloon,iothread=io0"
        if hints:
            balloon += ",free-page-hint=on"
        args = [*wrapper, binary, "-machine", "q35", "-accel", accel,
                "-m", str(mem_mib), "-smp", str(smp),
                "-nodefaults", "-display", "none",
                "-kernel", os.path.join(GUEST, "vmlinuz"),
                "-initrd", os.path.join(GUEST, "initrd.gz"),
                "-append", "console=ttyS0 quiet loglevel=1 panic=-1 " + cmdline,
                "-chardev", f"socket,id=s0,path={self.serial_path},server=on,wait=off",
                "-serial", "chardev:s0",
                "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
                "-object", "iothread,id=io0",
                "-device", balloon, *extra]
        if not reboot:
            args.append("-no-reboot")  # a guest panic ends QEMU
        if incoming:
            args += ["-incoming", "defer"]
        self.logf = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=subprocess.STDOUT)
        self.qmp = self._connect_qmp()
        self.serial = None

    def _wait_path(self, path, what):
        deadline = time.monotonic() + 30
        while not os.path.exists(path):
            if self.proc.poll() is not None:
                raise HarnessError(f"QEMU ({self.name}) exited before {what}: "
                                   f"{self.log_tail()}")
            if time.monotonic() > deadline:
                raise HarnessError(f"QEMU ({self.name}) did not open {what}")
            time.sleep(0.02)

    def _connect_qmp(self):
        self._wait_path(self.qmp_path, "its QMP socket")
        qmp = QEMUMonitorProtocol(self.qmp_path)
        qmp.connect()
        return qmp

    def log_tail(self):
        self.logf.flush()
        with open(self.log_path) as f:
            return f.read()[-2000:].strip() or "(no output)"

    def cmd(self, name, **args):
        return self.qmp.cmd(name, **args)

    # -- serial console: memagent's protocol -------------------------------

    def _serial(self):
        if self.serial is None:
            self._wait_path(self.serial_path, "its serial socket")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(self.serial_path)
            self.serial = Console(sock, self.name, self._check_alive)
        return self.serial

    def _check_alive(self):
        if self.proc.poll() is not None:
            raise HarnessError(f"QEMU ({self.name}) exited: {self.log_tail()}")

    def expect(self, prefix, timeout):
        """Wait for a console line starting with @@<prefix>; return its rest."""
        return self._serial().expect(prefix, timeout)

    def boot(self, timeout=BOOT_TIMEOUT):
        """Wait until the guest is up; return its balloon feature bits."""
        features = self.expect("FEATURES", timeout)
        self.expect("READY", 30)
        return features

    def agent(self, command, timeout=300):
        """Run one memagent command; return the key=value pairs it reported."""
        return self._serial().agent(command, timeout)

    def attach_serial(self):
        """After an incoming migration: talk to the guest through us."""
        self.serial = None
        # The first byte written to a migrated guest's console is
        # sometimes lost (seen over the benchmark's 1g link): let that
        # be an empty line, which memagent ignores
        self._serial().sendall(b"\n")

    def close(self):
        try:
            if self.proc.poll() is None:
                try:
                    self.qmp.cmd("quit")
                except Exception:  # already going away
                    pass
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            try:
                self.qmp.close()
            except Exception:
                pass
            if self.serial:
                self.serial.close()
            self.logf.close()


def hint_negotiated(features):
    """Bit 3 (F_FREE_PAGE_HINT) of the driver's feature string from sysfs."""
    return len(features) > 3 and features[3] == "1"


def probe_accel():
    """KVM only if it really runs our guest here, within a bounded time."""
    cache = os.path.join(BUILD, "accel-probe")
    if os.path.exists(cache):
        with open(cache) as f:
            return f.read().strip()
    accel = "tcg"
    if os.access("/dev/kvm", os.R_OK | os.W_OK):
        log("[accel] probing KVM with the test guest (bounded to 20 s)")
        g = None
        try:
            g = Guest(mem_mib=256, hints=False, accel="kvm", name="kvmprobe")
            g.boot(timeout=20)
            accel = "kvm"
        except HarnessError as e:
            log(f"[accel] KVM does not run the guest here ({str(e)[:80]}); using TCG")
        finally:
            if g:
                g.proc.kill()
                g.close()
    with open(cache, "w") as f:
        f.write(accel + "\n")
    log(f"[accel] using {accel}")
    return accel


def migrate(src, dst, bandwidth=100 << 30, downtime_ms=2000, caps=(),
            params=None, timeout=MIGRATION_TIMEOUT, uri=None):
    """Migrate src to dst over a unix socket (or uri, e.g. tcp:ADDR:PORT);
    return query-migrate's result."""
    uri = uri or "unix:" + os.path.join(dst.dir, "migrate.sock")
    if caps:
        for who in (src, dst):
            who.cmd("migrate-set-capabilities",
                    capabilities=[{"capability": c, "state": True} for c in caps])
    dst.cmd("migrate-incoming", uri=uri)
    src.cmd("migrate-set-parameters", **{"max-bandwidth": bandwidth,
                                         "downtime-limit": downtime_ms,
                                         **(params or {})})
    src.cmd("migrate", uri=uri)
    return wait_migration(src, timeout)


def wait_migration(g, timeout=MIGRATION_TIMEOUT, what="migration"):
    """Poll g's query-migrate until the migration completed; return it.
    A failed, cancelled or overdue migration raises, naming @what."""
    deadline = time.monotonic() + timeout
    while True:
        info = g.cmd("query-migrate")
        status = info.get("status")
        if status == "completed":
            return info
        if status in ("failed", "cancelled"):
            raise HarnessError(f"{what} {status}: {info.get('error-desc', '')}")
        if time.monotonic() > deadline:
            g.cmd("migrate_cancel")
            raise HarnessError(f"{what} did not complete in {timeout} s")
        time.sleep(0.05)
