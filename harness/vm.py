"""Run the project's guest in QEMU and migrate it: the end-to-end harness.

Shared by the demo (tests/demo.py), the end-to-end tests (tests/e2e/) and
the benchmark (bench/).  QMP goes through QEMU's own python/qemu package
from the prepared work tree (build/qemu/python, on PYTHONPATH); the
guest's memagent answers on the serial console (guest/memagent.c).
Waiting for a migration is harness.waits (wait_migration, re-exported
here with HarnessError and log).
"""

import json
import os
import re
import shlex
import socket
import subprocess
import tempfile
import time

from qemu.qmp.legacy import QEMUMonitorProtocol

from harness.common import BUILD, HarnessError, log  # noqa: F401
from harness.waits import MIGRATION_TIMEOUT, wait_migration  # noqa: F401

QEMU = {
    "ours": os.path.join(BUILD, "qemu", "build", "qemu-system-x86_64"),
    "stock": os.path.join(BUILD, "qemu-stock", "build", "qemu-system-x86_64"),
    # The series with bench/ablation/ (make ablation)
    "ablate": os.path.join(BUILD, "qemu-ablate", "build", "qemu-system-x86_64"),
    # Debian's own QEMU 10.0 package (bookworm-backports), see make deps
    "debian": "/usr/bin/qemu-system-x86_64",
}
GUEST = os.path.join(BUILD, "guest")
# Booting to guest/init's first line takes about 5 s under TCG here; to
# the agent's prompt, 1-2 s more.  The bounds are hang guards for a
# loaded machine: a guest that panics or whose QEMU exits fails at once.
BOOT_TIMEOUT = 120          # QEMU started -> @@INIT (the kernel ran init)
INIT_TIMEOUT = 60           # @@INIT -> @@FEATURES -> @@READY
# Where each QEMU's logs go: $FPH_ARTIFACTS/<label>/<guest name>/ when set
# (tests/run.sh sets it per test and keeps it when the test fails), else
# the guest's own temporary folder.  Files: cmdline.txt, qemu.log (its
# stdout and stderr), console.log (all the guest printed on its serial
# port, whether or not we were reading), state.json (query-status and
# query-migrate when it was closed).
ARTIFACTS = os.environ.get("FPH_ARTIFACTS")
_label = ["run"]
# A console line that means the guest will never answer (a soft lockup
# warning under a loaded host is not one: the guest goes on)
FATAL = re.compile(r"Kernel panic")


def artifact_label(label):
    """Put the logs of the QEMUs started from now on under @label (a test
    case's name) in $FPH_ARTIFACTS."""
    _label[0] = re.sub(r"[^A-Za-z0-9_.-]", "_", label)


def _artifact_dir(name, fallback):
    if not ARTIFACTS:
        return fallback
    base = os.path.join(ARTIFACTS, _label[0], name)
    path, n = base, 1
    while os.path.exists(path):
        n += 1
        path = f"{base}.{n}"
    os.makedirs(path)
    return path


class Console:
    """A guest's serial console (a connected unix socket): memagent's
    protocol, replies on lines "@@<reply>".  check: called while waiting,
    raises when the guest can no longer answer (its QEMU exited)."""

    def __init__(self, sock, name, check=None, report=None):
        self.sock = sock
        self.name = name
        self.check = check
        self.report = report or (lambda: "")
        self.buf = b""

    def fail(self, what):
        raise HarnessError(f"guest ({self.name}) {what}{self.report()}")

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
                    if FATAL.search(text):
                        self.fail(f"printed '{text}'")
                    continue
                text = text[i + 2:]
                if text.startswith("ERR"):
                    raise HarnessError(f"guest ({self.name}): {text}")
                if text.startswith("EXIT"):
                    # guest/init: the agent died (the OOM killer, a crash)
                    self.fail(f"agent exited ({text})")
                if text.startswith(prefix):
                    return text[len(prefix):].strip()
            left = deadline - time.monotonic()
            if left <= 0:
                self.fail(f"did not answer '{prefix}' within {timeout} s")
            if self.check:
                self.check()
            self.sock.settimeout(min(left, 1.0))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                self.fail("console closed")
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
                 wrapper=(), cmdline="", initrd=None, ablate=""):
        """wrapper: a command prefix for QEMU, e.g. ("ip", "netns", "exec",
        NAME) to run it in another network namespace.  cmdline: more
        options for the guest's kernel.  initrd: another initramfs than
        the test guest's.  ablate: QEMU_FPH_ABLATE (bench/ablation/)."""
        binary = QEMU[qemu]
        if not os.access(binary, os.X_OK):
            raise HarnessError(f"{binary} is missing: run 'make build'"
                               + (" and 'make stock'" if qemu == "stock" else "")
                               + (" and 'make deps'" if qemu == "debian" else "")
                               + (" and 'make ablation'" if qemu == "ablate" else ""))
        # Sockets in a short temporary folder (a unix socket's path is
        # limited to 107 bytes), logs where the artifacts go
        self.dir = tempfile.mkdtemp(prefix=f"fph-{name}-")
        self.art = _artifact_dir(name, self.dir)
        self.name = name
        self.qmp_path = os.path.join(self.dir, "qmp.sock")
        self.serial_path = os.path.join(self.dir, "serial.sock")
        self.log_path = os.path.join(self.art, "qemu.log")
        self.console_path = os.path.join(self.art, "console.log")
        balloon = "virtio-balloon-pci,id=balloon,iothread=io0"
        if hints:
            balloon += ",free-page-hint=on"
        args = [*wrapper, binary, "-machine", "q35", "-accel", accel,
                "-m", str(mem_mib), "-smp", str(smp),
                "-nodefaults", "-display", "none",
                "-kernel", os.path.join(GUEST, "vmlinuz"),
                "-initrd", initrd or os.path.join(GUEST, "initrd.gz"),
                # no_timer_check: the kernel's check that the timer
                # interrupt works fails under TCG on a loaded host ("IO-APIC
                # + timer doesn't work!", a panic at 0.004 s); it is for
                # broken boards, and VMs commonly skip it
                "-append", "console=ttyS0 quiet loglevel=1 panic=-1 "
                "no_timer_check " + cmdline,
                "-chardev", f"socket,id=s0,path={self.serial_path},server=on,"
                f"wait=off,logfile={self.console_path},logappend=on",
                "-serial", "chardev:s0",
                "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
                "-object", "iothread,id=io0",
                "-device", balloon, *extra]
        if not reboot:
            args.append("-no-reboot")  # a guest panic ends QEMU
        if incoming:
            args += ["-incoming", "defer"]
        with open(os.path.join(self.art, "cmdline.txt"), "w") as f:
            f.write(shlex.join(args) + "\n")
        self.logf = open(self.log_path, "w")
        env = dict(os.environ)
        env.pop("QEMU_FPH_ABLATE", None)
        if ablate:
            env["QEMU_FPH_ABLATE"] = ablate
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, env=env,
                                     stdout=self.logf, stderr=subprocess.STDOUT)
        self.serial = None
        self.qmp = None
        try:
            # The console first: what the guest prints before we connect
            # is in console.log only, and the agent's replies are lines
            self._serial()
            self.qmp = self._connect_qmp()
        except BaseException:
            self.kill()
            raise

    def _connect(self, path, what, connect):
        """connect(path) until it succeeds.  QEMU creates a socket's path
        (bind) a moment before it listens on it, and a connect in between
        is refused: seen once in ~60 guests on a loaded machine.  Fails
        when QEMU exits or after 30 s."""
        deadline = time.monotonic() + 30
        while True:
            try:
                return connect(path)
            except Exception as e:  # python/qemu wraps the OSError in .exc
                cause = getattr(e, "exc", e)
                if not isinstance(cause, (FileNotFoundError,
                                          ConnectionRefusedError)):
                    raise
                err = cause
            if self.proc.poll() is not None:
                raise HarnessError(f"QEMU ({self.name}) exited before it "
                                   f"opened {what}{self.report()}")
            if time.monotonic() > deadline:
                raise HarnessError(f"QEMU ({self.name}) did not open {what} "
                                   f"within 30 s ({err}){self.report()}")
            time.sleep(0.02)

    def _connect_qmp(self):
        def connect(path):
            qmp = QEMUMonitorProtocol(path)
            qmp.connect()
            return qmp
        return self._connect(self.qmp_path, "its QMP socket", connect)

    def log_tail(self):
        self.logf.flush()
        with open(self.log_path) as f:
            return f.read()[-2000:].strip() or "(no output)"

    def console_tail(self, lines=15):
        """The last lines the guest printed on its console."""
        try:
            with open(self.console_path, "rb") as f:
                f.seek(max(0, os.path.getsize(self.console_path) - 8192))
                text = f.read().decode(errors="replace")
        except OSError:
            return []
        out = [ln.strip() for ln in text.replace("\r", "\n").split("\n")]
        return [ln for ln in out if ln][-lines:]

    def report(self):
        """What a person needs to see why this guest failed: the console's
        last lines, QEMU's output, and where the files are."""
        cons = "\n".join("    | " + ln for ln in self.console_tail())
        if not self.logf.closed:
            self.logf.flush()
        try:
            with open(self.log_path) as f:
                out = f.read()[-1000:].strip()
        except OSError:
            out = ""
        return (f"\n  console, last lines ({self.console_path}):\n"
                f"{cons or '    (nothing printed)'}\n"
                f"  QEMU's output ({self.log_path}): {out or '(none)'}\n"
                f"  command line: {os.path.join(self.art, 'cmdline.txt')}")

    def cmd(self, name, **args):
        return self.qmp.cmd(name, **args)

    # -- serial console: memagent's protocol -------------------------------

    def _serial(self):
        if self.serial is None:
            def connect(path):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.connect(path)
                except OSError:
                    sock.close()
                    raise
                return sock
            sock = self._connect(self.serial_path, "its serial socket", connect)
            self.serial = Console(sock, self.name, self._check_alive,
                                  self.report)
        return self.serial

    def _check_alive(self):
        if self.proc.poll() is not None:
            raise HarnessError(f"QEMU ({self.name}) exited (status "
                               f"{self.proc.returncode}){self.report()}")

    def expect(self, prefix, timeout):
        """Wait for a console line starting with @@<prefix>; return its rest."""
        return self._serial().expect(prefix, timeout)

    def boot(self, timeout=BOOT_TIMEOUT):
        """Wait until the guest is up; return its balloon feature bits.
        Fails at once if the kernel panics or QEMU exits, and names the
        step the guest did not reach, with its console's last lines."""
        self.expect("INIT", timeout)          # the kernel started init
        features = self.expect("FEATURES", INIT_TIMEOUT)  # modules loaded
        self.expect("READY", INIT_TIMEOUT)    # the agent runs
        return features

    def agent(self, command, timeout=300):
        """Run one memagent command; return the key=value pairs it reported."""
        return self._serial().agent(command, timeout)

    def attach_serial(self):
        """After an incoming migration or a reset: talk to the guest."""
        # The first byte written to a migrated guest's console is
        # sometimes lost (seen over the benchmark's 1g link): let that
        # be an empty line, which memagent ignores
        self._serial().sendall(b"\n")

    def save_state(self):
        """Write query-status and query-migrate to state.json, if QEMU
        answers within a few seconds."""
        state = {"exit-status": self.proc.poll()}
        if self.qmp is not None and state["exit-status"] is None:
            try:
                self.qmp.settimeout(3)
                for c in ("query-status", "query-migrate"):
                    state[c] = self.qmp.cmd(c)
            except Exception as e:  # a wedged or dead monitor: say so
                state["error"] = f"{type(e).__name__}: {e}"
        with open(os.path.join(self.art, "state.json"), "w") as f:
            json.dump(state, f, indent=1)

    def kill(self):
        """End QEMU at once (its state saved first)."""
        if self.proc.poll() is None:
            try:
                self.save_state()
            finally:
                self.proc.kill()
                self.proc.wait()
        self.close()

    def close(self):
        try:
            if self.proc.poll() is None:
                self.save_state()
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
            if self.qmp is not None:
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
            log(f"[accel] KVM does not run the guest here ({str(e).splitlines()[0]}); using TCG")
        finally:
            if g:
                g.kill()
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
    return wait_migration(src, timeout=timeout)

