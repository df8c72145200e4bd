import os
import shutil
import socket
import subprocess
import time

import pytest

from ecmta.tests.reception.helpers import close_wires, make_certs, start_mta


@pytest.fixture
def daemon_factory(daemon_factory):
    """The suite's daemon_factory, closing the test's client connections before the daemons
    stop (an open session would hold a graceful stop for its grace period)."""
    yield daemon_factory
    close_wires()


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """CA, server and client certificates made with `cryptography` for this run."""
    return make_certs(str(tmp_path_factory.mktemp("certs")))


@pytest.fixture
def mta(daemon_factory):
    """mta(glob=..., listener=..., listen=..., tail=..., files={...}) -> a started MTA."""
    def make(**parts):
        return start_mta(daemon_factory, **parts)
    return make


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def dnsmasq():
    """A real DNS server on 127.0.0.1:<port> answering for rx.test."""
    exe = shutil.which("dnsmasq", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if exe is None:
        pytest.skip("dnsmasq is not installed (./run-tests installs it)")
    port = _free_udp_port()
    proc = subprocess.Popen(
        [exe, "--no-daemon", "--conf-file=/dev/null", f"--port={port}",
         "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
         "--pid-file=", "--address=/a.rx.test/192.0.2.7",
         "--mx-host=rx.test,mx2.rx.test,20", "--mx-host=rx.test,mx1.rx.test,10",
         "--txt-record=rx.test,v=spf1 -all", "--ptr-record=1.0.0.127.in-addr.arpa,localhost.rx.test",
         "--local=/nx.rx.test/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    import dns.resolver
    res = dns.resolver.Resolver(configure=False)
    res.nameservers, res.port, res.lifetime = ["127.0.0.1"], port, 0.5
    deadline = time.monotonic() + 10
    while True:
        try:
            res.resolve("a.rx.test", "A")
            break
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("dnsmasq did not start: " + proc.stderr.read().decode()[-2000:])
            time.sleep(0.05)
    yield port
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
