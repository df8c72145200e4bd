"""pytest-side helpers for the outbound driver tests: Postfix's smtp-sink, the scripted
peer and the client runner (both gevent children, see test_smtp_outbound_child.py), and
a throw-away PKI made with `cryptography`. Holds no tests.

Every child is started here and stopped by its own pid; every wait is bounded.
"""
from __future__ import annotations

import datetime
import ipaddress
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import time

import pytest

SMTP_SINK = "/usr/sbin/smtp-sink"
CHILD = "ecmta.tests.transports.test_smtp_outbound_child"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


class Sink:
    """Postfix smtp-sink on a free loopback port (`args`: its options, e.g. ["-L"])."""

    def __init__(self, *args: str) -> None:
        if not os.path.exists(SMTP_SINK):
            pytest.skip("smtp-sink is not installed")
        self.port = free_port()
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        # -t bounds each read/write of the sink; counters (-c) would flood the pipe.
        self.proc = subprocess.Popen([SMTP_SINK, *user, "-t", "30", *args,
                                      f"127.0.0.1:{self.port}", "256"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_port(self.port)
        except TimeoutError:
            self.stop()
            raise

    def stop(self) -> None:
        _stop(self.proc)
        if self.proc.stderr:
            self.proc.stderr.close()


class Peer:
    """The scripted SMTPServer peer (a gevent child); `events()` reads its log."""

    def __init__(self, tmp_path, **spec) -> None:
        self.log = tmp_path / f"peer-{time.monotonic_ns()}.jsonl"
        spec.setdefault("log", str(self.log))
        path = tmp_path / f"peer-{time.monotonic_ns()}.json"
        path.write_text(json.dumps(spec))
        self.proc = subprocess.Popen([sys.executable, "-m", CHILD, "peer", str(path)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"peer did not start: {line!r} "
                               f"{self.proc.stderr.read().decode()[-2000:]}")
        self.port = int(line.split()[1])

    def events(self, kind: str | None = None) -> list[dict]:
        if not self.log.exists():
            return []
        evs = [json.loads(x) for x in self.log.read_text().splitlines() if x.strip()]
        return [e for e in evs if kind is None or e["event"] == kind]

    def stop(self) -> None:
        _stop(self.proc)
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()


def run_child(mode: str, spec: dict, tmp_path, timeout: float = 90) -> dict:
    path = tmp_path / f"{mode}-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(spec))
    res = subprocess.run([sys.executable, "-m", CHILD, mode, str(path)],
                         capture_output=True, timeout=timeout)
    if res.returncode != 0 or not res.stdout.strip():
        raise AssertionError(f"{mode} child failed ({res.returncode}):\n"
                             f"{res.stderr.decode()[-4000:]}")
    return json.loads(res.stdout.decode().strip().splitlines()[-1])


def deliver(tmp_path, port: int, txns: list | None = None, **spec) -> dict:
    """Run OutboundConnection in a child against 127.0.0.1:port; its facts as a dict.
    Timeouts default to a few seconds so a broken peer cannot stall the suite."""
    opts = spec.pop("opts", {})
    for name in ("connect_timeout", "ehlo_timeout", "mailfrom_timeout", "rcptto_timeout",
                 "data_timeout", "body_timeout", "rset_timeout"):
        opts.setdefault(name, 10)
    opts.setdefault("client", {}).setdefault("ehlo_hostname", "client.test")
    spec.update(host=spec.get("host", "127.0.0.1"), port=port, opts=opts,
                txns=txns if txns is not None else [{}])
    return run_child("client", spec, tmp_path)


# --- a throw-away PKI --------------------------------------------------------------------------


class PKI:
    """A CA, server certificates for localhost and a wrong name, a certificate from an
    unknown CA, and a client certificate; PEM files under `dir`."""

    def __init__(self, dir) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec

        self.dir = dir
        self._ec = ec
        self.ca_key, self.ca = self._make("ecmta test CA", None, None, ca=True)
        self.ca_pem = self._write("ca.pem", self.ca)
        other_key, other = self._make("another CA", None, None, ca=True)
        self.server = self._leaf("server", "localhost", ["localhost"], ["127.0.0.1"])
        self.wrong = self._leaf("wrong", "wrong.example", ["wrong.example"], [])
        self.wildcard = self._leaf("wild", "*.example.test", ["*.example.test"], [])
        self.untrusted = self._leaf("untrusted", "localhost", ["localhost"], [],
                                    issuer=(other_key, other))
        self.client = self._leaf("client", "ecmta-client", [], [], client=True)

    def _make(self, cn, issuer, sans, *, ca=False, client=False):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        key = self._ec.generate_private_key(self._ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        signer_key, signer = issuer if issuer else (key, None)
        now = datetime.datetime.now(datetime.timezone.utc)
        b = (x509.CertificateBuilder().subject_name(name)
             .issuer_name(signer.subject if signer else name)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(days=1))
             .not_valid_after(now + datetime.timedelta(days=30))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        if not ca:
            usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
            b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        return key, b.sign(signer_key, hashes.SHA256())

    def _leaf(self, stem, cn, dns, ips, *, issuer=None, client=False):
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        sans = [x509.DNSName(d) for d in dns] + \
            [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        key, cert = self._make(cn, issuer or (self.ca_key, self.ca), sans, client=client)
        cert_path = self._write(f"{stem}.pem", cert)
        key_path = self.dir / f"{stem}.key"
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return str(cert_path), str(key_path)

    def _write(self, name, cert) -> str:
        from cryptography.hazmat.primitives import serialization

        path = self.dir / name
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return str(path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def peer_factory(tmp_path):
    made = []

    def make(**spec) -> Peer:
        p = Peer(tmp_path, **spec)
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()


@pytest.fixture
def sink_factory():
    made = []

    def make(*args: str) -> Sink:
        s = Sink(*args)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


def have_sink() -> bool:
    return os.path.exists(SMTP_SINK) and shutil.which("true") is not None


__all__ = ["PKI", "Peer", "Sink", "deliver", "free_port", "have_sink", "peer_factory",
           "pki", "run_child", "sink_factory", "wait_port"]
