"""Fixtures of the delivery tests: a dnsmasq serving MX records for the test domains, the
recording sink, the sending MTA, certificates.

DNS (dnsmasq on 127.0.0.1:<free port>, read through `resolv_conf` with a
`nameserver 127.0.0.1#<port>` line): every domain in DOMAINS has `MX 10 mx.<domain>` and
mx.<domain> A 127.0.0.1; lim1.test and lim2.test share `mx.shared.test` (one Host); down.test's
MX is 127.0.0.9 where nothing listens (connections are refused); backup.test has MX 10 on
127.0.0.9 (refused) and MX 20 on 127.0.0.1.
"""

import os
import shutil
import socket
import subprocess
import time

import pytest

from ecmta.tests.delivery.helpers import Sink, make_certs, start_mta

DOMAINS = ("peer.test", "sink.test", "retry.test", "bounce.test", "expire.test", "sender.test",
           "tls.test", "bind.test", "many.test", "slow.test", "thr.test", "crash.test",
           "state.test", "log.test", "conn.test")


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _zone() -> list[str]:
    zone = ["--local=/test/"]
    for d in DOMAINS:
        zone += [f"--mx-host={d},mx.{d},10", f"--host-record=mx.{d},127.0.0.1"]
    zone += ["--mx-host=lim1.test,mx.shared.test,10", "--mx-host=lim2.test,mx.shared.test,10",
             "--host-record=mx.shared.test,127.0.0.1",
             "--mx-host=down.test,mx.down.test,10", "--host-record=mx.down.test,127.0.0.9",
             "--mx-host=backup.test,mx1.backup.test,10", "--host-record=mx1.backup.test,127.0.0.9",
             "--mx-host=backup.test,mx2.backup.test,20", "--host-record=mx2.backup.test,127.0.0.1"]
    return zone


def _start_dnsmasq(exe: str):
    """(proc, port) once it answers, or (None, why) after 10 s."""
    import dns.resolver
    port = _free_udp_port()
    proc = subprocess.Popen(
        [exe, "--no-daemon", "--conf-file=/dev/null", f"--port={port}", "--listen-address=127.0.0.1",
         "--bind-interfaces", "--no-resolv", "--no-hosts", "--pid-file=", "--local-ttl=60", *_zone()],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    res = dns.resolver.Resolver(configure=False)
    res.nameservers, res.port, res.lifetime = ["127.0.0.1"], port, 1.0
    deadline = time.monotonic() + 10
    last = None
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if res.resolve("peer.test", "MX").rrset[0].exchange.to_text() == "mx.peer.test.":
                return proc, port
        except Exception as exc:
            last = exc
        time.sleep(0.1)
    if proc.poll() is None:
        proc.kill()
    proc.wait(5)
    return None, f"port {port}, exit {proc.returncode}, last answer {last!r}: " + \
        proc.stderr.read().decode(errors="replace")[-1000:]


@pytest.fixture(scope="session")
def dns_port():
    exe = shutil.which("dnsmasq", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if exe is None:
        pytest.skip("dnsmasq is not installed (./run-tests installs it)")
    why = []
    for _ in range(3):          # a free port can be taken by someone else before dnsmasq binds
        proc, port = _start_dnsmasq(exe)
        if proc is not None:
            break
        why.append(port)
    else:
        raise RuntimeError("dnsmasq did not start: " + " | ".join(why))
    yield port
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture
def sink():
    """sink(**cfg) -> a started Sink (see tests/delivery/sink.py); stopped after the test."""
    made = []

    def make(**cfg) -> Sink:
        s = Sink(**cfg)
        made.append(s)
        return s
    yield make
    for s in made:
        s.stop()
        shutil.rmtree(s.dir, ignore_errors=True)


@pytest.fixture
def mta(daemon_factory, dns_port):
    """mta(glob=..., tail=..., relay=..., hostname=..., files={...}) -> a started MTA."""
    def make(**parts):
        return start_mta(daemon_factory, dns_port, **parts)
    return make


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    return make_certs(str(tmp_path_factory.mktemp("dcerts")))
