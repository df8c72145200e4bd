import os
import shutil
import socket
import subprocess
import time

import pytest


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def dnsmasq():
    """A real DNS server on 127.0.0.1:<port> with the zone the DNS tests expect."""
    exe = shutil.which("dnsmasq", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if exe is None:
        pytest.skip("dnsmasq is not installed (./run-tests installs it)")
    port = _free_udp_port()
    proc = subprocess.Popen(
        [exe, "--no-daemon", "--conf-file=/dev/null", f"--port={port}",
         "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
         "--pid-file=", "--address=/test.example/127.0.0.5",
         "--mx-host=test.example,mx1.test.example,20", "--mx-host=test.example,mx0.test.example,10",
         "--txt-record=test.example,v=spf1 -all", "--txt-record=test.example,second",
         "--ptr-record=5.0.0.127.in-addr.arpa,host.test.example", "--local=/nx.invalid/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    import dns.resolver
    res = dns.resolver.Resolver(configure=False)
    res.nameservers, res.port, res.lifetime = ["127.0.0.1"], port, 0.5
    deadline = time.monotonic() + 10
    while True:
        try:
            res.resolve("test.example", "A")
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
