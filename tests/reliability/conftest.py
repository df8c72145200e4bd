import os
import shutil
import socket
import subprocess
import time

import pytest

from ecmta.tests.reception.helpers import close_wires, make_certs
from ecmta.tests.reliability.helpers import SMTP_SINK, SmtpSink


@pytest.fixture
def daemon_factory(daemon_factory):
    """The suite's daemon_factory, closing the test's raw client connections before the
    daemons stop (an open session would hold a graceful stop for its grace period)."""
    yield daemon_factory
    close_wires()


@pytest.fixture
def smtp_sink():
    """smtp_sink() -> a started SmtpSink (Postfix smtp-sink dumping every message)."""
    if SMTP_SINK is None:
        pytest.skip("smtp-sink is not installed (./run-tests installs postfix)")
    made = []

    def make(**kw) -> SmtpSink:
        s = SmtpSink(**kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.stop()


@pytest.fixture
def small_fs():
    """A 4 MB tmpfs (needs root); skipped where mount is not allowed."""
    import tempfile
    mnt = tempfile.mkdtemp(prefix="ecfs", dir="/tmp")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        os.rmdir(mnt)
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()})")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", mnt], check=False)
        shutil.rmtree(mnt, ignore_errors=True)


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    return make_certs(str(tmp_path_factory.mktemp("relcerts")))


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _ServfailDNS:
    """A UDP DNS responder that answers SERVFAIL to everything (dnsmasq forwards to it)."""

    def __init__(self) -> None:
        import threading
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import dns.message
        import dns.rcode
        while not self.stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
                r = dns.message.make_response(dns.message.from_wire(data))
                r.set_rcode(dns.rcode.SERVFAIL)
                self.sock.sendto(r.to_wire(), peer)
            except (socket.timeout, OSError, Exception):
                continue

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture(scope="session")
def fault_dns():
    """A dnsmasq on 127.0.0.1:<port> for the remote-fault tests (zone in faults.DNS_ZONE):
    every fault domain has MX 10 mx.<domain> -> 127.0.0.1; servfail.test (and below) is
    forwarded to a responder that answers SERVFAIL, timeout.test to a UDP port that never
    answers; nx.test is NXDOMAIN; nullmx.test has MX 0 "."; noaddr.test's MX host has no
    address; private.test's MX is 10.0.0.1 and loop.test's 127.0.0.2; a name outside every
    zone is REFUSED (dnsmasq without upstream servers).
    Returns (port, silent_port): silent_port is a UDP socket that reads and never answers."""
    from ecmta.tests.reliability.faults import FAULT_DOMAINS
    exe = shutil.which("dnsmasq", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if exe is None:
        pytest.skip("dnsmasq is not installed (./run-tests installs it)")
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    silent_port = silent.getsockname()[1]
    servfail = _ServfailDNS()
    zone = ["--local=/ok.test/", "--mx-host=ok.test,mx.ok.test,10", "--host-record=mx.ok.test,127.0.0.1",
            f"--server=/servfail.test/127.0.0.1#{servfail.port}",
            f"--server=/timeout.test/127.0.0.1#{silent_port}",
            "--local=/nx.test/",
            "--local=/private.test/", "--mx-host=private.test,mx.private.test,10",
            "--host-record=mx.private.test,10.0.0.1",
            "--local=/loop.test/", "--mx-host=loop.test,mx.loop.test,10",
            "--host-record=mx.loop.test,127.0.0.2",
            "--local=/nullmx.test/", "--mx-host=nullmx.test,.,0",
            "--local=/noaddr.test/", "--mx-host=noaddr.test,mx.noaddr.test,10"]
    for name in FAULT_DOMAINS:
        zone += [f"--local=/{name}/", f"--mx-host={name},mx.{name},10", f"--host-record=mx.{name},127.0.0.1"]
    import dns.resolver
    for attempt in range(5):          # a free UDP port may be taken on TCP: try another
        port = _free_udp_port()
        proc = subprocess.Popen(
            [exe, "--no-daemon", "--conf-file=/dev/null", f"--port={port}", "--listen-address=127.0.0.1",
             "--bind-interfaces", "--no-resolv", "--no-hosts", "--pid-file=", "--local-ttl=60", *zone],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        res = dns.resolver.Resolver(configure=False)
        res.nameservers, res.port, res.lifetime = ["127.0.0.1"], port, 0.5
        deadline = time.monotonic() + 10
        while True:
            try:
                res.resolve("ok.test", "MX")
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        if proc.poll() is None:
            break
        err = proc.stderr.read().decode()[-2000:]
    else:
        raise RuntimeError("dnsmasq did not start: " + err)
    yield port, silent_port
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    silent.close()
    servfail.close()
