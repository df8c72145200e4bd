"""Real DNS servers for the DNS tests: two dnsmasq instances on 127.0.0.1:<free port>.

`dnsmasq` serves the main test zone (ZONE_ARGS below; every local record has TTL 120,
negative answers carry no SOA) and logs every query to a file (`log_count` counts them).
`dnsmasq_auth` is authoritative for `auth.test` with TTL and SOA minimum 45, so negative
answers carry an SOA. Both are stopped at the end of the session.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass

import pytest

LOCAL_TTL = 120
AUTH_TTL = 45
BIG_TXT = 30      # TXT records on big.test: more than 512 bytes, so UDP without EDNS truncates

ZONE_ARGS = [
    "--local=/test/",                           # everything else under .test is NXDOMAIN
    # MX ordering: two at 10, one at 20, one at 30 whose host has no address
    "--mx-host=mx.test,mxa.mx.test,10", "--mx-host=mx.test,mxb.mx.test,10",
    "--mx-host=mx.test,mxc.mx.test,20", "--mx-host=mx.test,mxd.mx.test,30",
    "--host-record=mxa.mx.test,10.0.1.1", "--host-record=mxb.mx.test,10.0.1.2,2001:db8::12",
    "--host-record=mxc.mx.test,10.0.1.3",
    "--txt-record=mxd.mx.test,exists-without-address",
    # no MX: A (and AAAA) fallback
    "--host-record=aonly.test,10.0.2.1,2001:db8::21",
    # neither MX nor address
    "--txt-record=empty.test,nothing-to-deliver-to",
    # RFC 7505 null MX
    "--mx-host=nullmx.test,.,0",
    # an IP written in an MX record (mxip)
    "--mx-host=mxip.test,10.0.3.1,10",
    # MX whose host does not exist
    "--mx-host=dangling.test,gone.dangling.test,10",
    # prohibited / skip hosts
    "--mx-host=loop.test,lo.loop.test,10", "--host-record=lo.loop.test,127.0.0.1",
    "--mx-host=mixed.test,lo.loop.test,10", "--mx-host=mixed.test,mxa.mx.test,20",
    # smarthosts for Gateway / Routes
    "--mx-host=smarthost.test,relay.smarthost.test,5",
    "--host-record=relay.smarthost.test,10.0.4.1",
    "--host-record=plainhost.test,10.0.4.2", "--host-record=backup.test,10.0.4.3",
    # coalescing, TXT, PTR, CNAME
    "--host-record=coal.test,10.0.5.1", "--host-record=clamp.test,10.0.5.2",
    "--host-record=console.test,10.0.5.3",
    "--txt-record=txt.test,first", "--txt-record=txt.test,second",
    "--ptr-record=1.1.0.10.in-addr.arpa,mxa.mx.test",
    "--cname=alias.test,mxa.mx.test",
] + [f"--txt-record=big.test,record-{i:02d}-padding-padding-padding-padding"
      for i in range(BIG_TXT)]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dnsmasq_exe() -> str:
    exe = shutil.which("dnsmasq", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if exe is None:
        pytest.skip("dnsmasq is not installed (./run-tests installs it)")
    return exe


@dataclass
class DnsServer:
    port: int
    log: str | None
    proc: subprocess.Popen

    def log_count(self, needle: str, expect: int | None = None, wait: float = 3.0) -> int:
        """Lines of the query log containing `needle`; waits (bounded) for `expect`."""
        deadline = time.monotonic() + wait
        while True:
            with open(self.log, errors="replace") as fh:
                n = sum(1 for line in fh if needle in line)
            if expect is None or n >= expect or time.monotonic() > deadline:
                return n
            time.sleep(0.05)


def _start(args: list[str], probe: str, log: str | None = None) -> DnsServer:
    port = free_udp_port()
    cmd = [_dnsmasq_exe(), "--no-daemon", "--conf-file=/dev/null", f"--port={port}",
           "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
           "--pid-file=", *args]
    if log:
        cmd += ["--log-queries", f"--log-facility={log}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    import dns.message
    import dns.query
    deadline = time.monotonic() + 10
    while True:
        try:
            dns.query.udp(dns.message.make_query(probe, "A"), "127.0.0.1", port=port, timeout=0.5)
            break
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("dnsmasq did not start: " + proc.stderr.read().decode()[-2000:])
            time.sleep(0.05)
    return DnsServer(port, log, proc)


def _stop(server: DnsServer) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(5)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(5)


@pytest.fixture(scope="session")
def dnsmasq():
    logdir = tempfile.mkdtemp(prefix="ecdns")
    server = _start(ZONE_ARGS + [f"--local-ttl={LOCAL_TTL}"], "aonly.test",
                    log=os.path.join(logdir, "queries.log"))
    yield server
    _stop(server)
    shutil.rmtree(logdir, ignore_errors=True)


@pytest.fixture(scope="session")
def dnsmasq_auth():
    server = _start(["--auth-server=ns.auth.test,127.0.0.1", "--auth-zone=auth.test",
                     "--auth-soa=1,hostmaster.auth.test,1200,120,604800",
                     f"--auth-ttl={AUTH_TTL}", "--host-record=h.auth.test,10.7.7.7"],
                    "h.auth.test")
    yield server
    _stop(server)
