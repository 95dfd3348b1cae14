"""Rate-limited links for the benchmark.

"loopback" is what the rest of the harness does: a unix socket, no limit.
The other links put the destination QEMU into its own network namespace,
joined to this one by a veth pair whose two ends are shaped with tc's
token bucket filter (tbf) at the link's rate; migration then goes over
tcp:ADDR:PORT.  QMP and the serial console stay unix sockets on the file
system, which work across network namespaces.

    with Netns() as ns:
        ns.set_rate(LINKS["1g"])
        dst = Guest(..., wrapper=ns.wrapper)
        migrate(src, dst, uri=ns.uri)

The namespace (and with it the veth pair) is deleted on exit, also after
an error or Ctrl-C; one left behind by a killed run is deleted by the next.
"""

import os
import socket
import subprocess
import time

from harness.vm import HarnessError, log

# Link name -> rate in bit/s (None: loopback unix socket, no limit)
LINKS = {"loopback": None, "1g": 1_000_000_000, "10g": 10_000_000_000}
PREFIX = "fph-bench-"
PORT = 4444


def _run(*cmd, ns=None, check=True):
    if ns:
        cmd = ("ip", "netns", "exec", ns) + cmd
    p = subprocess.run(cmd, capture_output=True, text=True)
    if check and p.returncode:
        raise HarnessError(
            f"'{' '.join(cmd)}' failed: {p.stderr.strip() or p.returncode}. "
            "Rate-limited links need root (CAP_NET_ADMIN), iproute2 ('make "
            "deps') and the kernel's veth and sch_tbf; or use '--links "
            "loopback'")
    return p


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def cleanup_stale():
    """Delete namespaces left by benchmark runs that no longer exist."""
    out = _run("ip", "netns", "list", check=False).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        pid = name[len(PREFIX):]
        if name.startswith(PREFIX) and pid.isdigit() and not _alive(int(pid)):
            log(f"[netns] deleting {name}, left by an earlier run")
            _run("ip", "netns", "del", name, check=False)


class Netns:
    """A network namespace for the destination, a shaped veth pair to it."""

    def __init__(self):
        pid = os.getpid()
        self.name = f"{PREFIX}{pid}"
        self.host_if = f"fphb{pid}h"[:15]
        self.ns_if = f"fphb{pid}d"[:15]
        subnet = self._free_subnet(pid)
        self.host_addr = f"{subnet}.1"
        self.ns_addr = f"{subnet}.2"
        self.wrapper = ("ip", "netns", "exec", self.name)
        self.uri = f"tcp:{self.ns_addr}:{PORT}"
        self.rate = None
        self.up = False

    @staticmethod
    def _free_subnet(pid):
        used = _run("ip", "-o", "-4", "addr", "show", check=False).stdout
        for i in range(256):
            subnet = f"10.213.{(pid + i) % 256}"
            if f" {subnet}." not in used:
                return subnet
        raise HarnessError("no free 10.213.x.0/30 subnet for the benchmark's "
                           "veth pair: remove addresses in 10.213.0.0/16")

    def __enter__(self):
        cleanup_stale()
        log(f"[netns] creating {self.name}: {self.host_if} {self.host_addr} "
            f"<-> {self.ns_if} {self.ns_addr}")
        self.up = True
        try:
            _run("ip", "netns", "add", self.name)
            _run("ip", "link", "add", self.host_if, "type", "veth",
                 "peer", "name", self.ns_if)
            _run("ip", "link", "set", self.ns_if, "netns", self.name)
            _run("ip", "addr", "add", f"{self.host_addr}/30", "dev", self.host_if)
            _run("ip", "link", "set", self.host_if, "up")
            _run("ip", "addr", "add", f"{self.ns_addr}/30", "dev", self.ns_if,
                 ns=self.name)
            _run("ip", "link", "set", self.ns_if, "up", ns=self.name)
            _run("ip", "link", "set", "lo", "up", ns=self.name)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.up:
            self.up = False
            log(f"[netns] deleting {self.name}")
            _run("ip", "netns", "del", self.name, check=False)
            # The host end goes with its peer; make sure of it
            _run("ip", "link", "del", self.host_if, check=False)

    def set_rate(self, rate):
        """Shape both directions of the veth pair to rate bit/s."""
        if rate == self.rate:
            return
        # A bucket of 4 ms at the rate (at least 256 KiB): enough for the
        # timer's resolution and GSO packets, small against a migration.
        burst = max(rate // 8 // 250, 256 << 10)
        for dev, ns in ((self.host_if, None), (self.ns_if, self.name)):
            _run("tc", "qdisc", "replace", "dev", dev, "root", "tbf",
                 "rate", f"{rate}bit", "burst", str(burst),
                 "latency", "20ms", ns=ns)
        self.rate = rate

    def measure(self, seconds=2.0):
        """TCP throughput over the link in bit/s, as a plain stream sees it."""
        server = subprocess.Popen(
            [*self.wrapper, "/usr/bin/python3", "-c", _SINK,
             self.ns_addr, str(PORT + 1)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    s = socket.create_connection((self.ns_addr, PORT + 1), 1)
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise HarnessError(
                            "cannot reach the benchmark's namespace over its "
                            f"veth pair ({server.stderr.read().strip()}): "
                            "check 'ip netns exec "
                            f"{self.name} ip addr' and the host's firewall")
                    time.sleep(0.1)
            buf = b"\0" * (1 << 20)
            t0 = time.monotonic()
            sent = 0
            while time.monotonic() - t0 < seconds:
                sent += s.send(buf)
            s.shutdown(socket.SHUT_WR)
            received = int(server.stdout.read().strip() or 0)
            elapsed = time.monotonic() - t0
            s.close()
        finally:
            if server.poll() is None:
                server.kill()
            server.wait()
        return received * 8 / elapsed


# Accept one connection, read it to its end, print the byte count
_SINK = """
import socket, sys
ls = socket.socket()
ls.bind((sys.argv[1], int(sys.argv[2])))
ls.listen(1)
c, _ = ls.accept()
n = 0
while True:
    d = c.recv(1 << 20)
    if not d:
        break
    n += len(d)
print(n)
"""
