"""Shared pieces of the delivery tests: the sending MTA, the recording sink, mainlog parsers,
certificates, bounded waits.

Every domain of the tests has an MX record in the suite's dnsmasq (conftest.py); every MX
host resolves to a loopback address, so a domain's `remote_smtp_port` (a Domain stanza)
picks the server that receives its mail: the sink, a second ecmta, or nothing.
"""

from __future__ import annotations

import datetime
import email
import email.policy
import json
import os
import re
import smtplib
import subprocess
import sys
import time
from dataclasses import dataclass

from ecmta.tests import harness
from ecmta.tests.harness import Daemon, free_port, short_tmpdir

WAIT = 20.0
ID_RE = r"[0-9A-F]{2}/[0-9A-F]{2}-\d{5}-[0-9A-F]{8}"
_IDS = rf"(?P<ts>\d+)@(?P<id>{ID_RE})@(?P<batch>{ID_RE})@(?P<conn>{ID_RE})"
MAIN_R = re.compile(
    rf"^{_IDS}@R@(?P<rl>[^@]*)@(?P<rd>[^@]*)@(?P<sl>[^@]*)@(?P<sd>[^@]*)@(?P<ip>[^@]*)@"
    r"(?P<size>\d+)@(?P<proto>esmtp|internal)@(?P<group>[^@]*)@(?P<binding>[^@]*)$")
MAIN_D = re.compile(
    rf"^{_IDS}@D@(?P<domain>[^@]*)@(?P<size>\d+)@(?P<group>[^@]*)@(?P<binding>[^@]*)@"
    r"(?P<retries>\d+)@(?P<seconds>\d+\.\d{3})@(?P<ip>[^@]*)$")
MAIN_TP = re.compile(
    rf"^{_IDS}@(?P<type>[TP])@(?P<domain>[^@]*)@(?P<bytes>\d+)@(?P<group>[^@]*)@"
    r"(?P<binding>[^@]*)@(?P<stage>\d+)@(?P<retries>\d+)@(?P<seconds>\d+\.\d{2})@"
    r"(?P<ip>[^@]*)@(?P<text>.*)$")


def wait_for(pred, timeout: float = WAIT, interval: float = 0.05, what: str = "condition"):
    """harness.wait_for with this suite's default timeout."""
    return harness.wait_for(pred, timeout, interval, what)


# -- the sending (and receiving) MTA ---------------------------------------------------------

BASE = """\
spoolbase = "$home/spool"
hostname = "{hostname}"
resolv_conf = "$home/resolv.conf"
relay_hosts = ( "127.0.0.0/8" )
relay_domains = ( {relay} )
retry_interval = 2
max_retry_interval = 4
delayed_queue_scan_interval = 1
host_failure_retry = 0
connect_timeout = 5
idle_timeout = 1
{glob}
ESMTP_Listener {{
  SMTP_Extensions = ( "ENHANCEDSTATUSCODES" "PIPELINING" "8BITMIME" "SIZE" "DSN" )
  Listen "{listen_ip}:$smtp" {{ }}
}}
ec_logger "ec_logger" {{
  mainlog = "$home/log/mainlog.ec"
  rejectlog = "$home/log/rejectlog.ec"
  paniclog = "$home/log/paniclog.ec"
}}
{tail}
"""


class MTA:
    """A running `ecelerity -d` with an SMTP listener and ec_logger logs."""

    def __init__(self, daemon: Daemon, listen_ip: str = "127.0.0.1") -> None:
        self.d = daemon
        self.listen_ip = listen_ip

    @property
    def home(self) -> str:
        return self.d.home

    @property
    def port(self) -> int:
        return self.d.ports["smtp"]

    @property
    def pid(self) -> int:
        return self.d.proc.pid

    def path(self, *parts: str) -> str:
        return os.path.join(self.d.home, *parts)

    # -- sending -------------------------------------------------------------------------
    def send(self, mailfrom: str, rcpts, subject: str = "test", body: str = "hello\r\n",
             size: int = 0, mail_options=(), rcpt_options=()) -> None:
        """One message over SMTP; refused recipients or a refused message fail the test."""
        rcpts = [rcpts] if isinstance(rcpts, str) else list(rcpts)
        msg = make_message(mailfrom, rcpts[0], subject, body, size)
        with smtplib.SMTP(self.listen_ip, self.port, local_hostname="client.test", timeout=WAIT) as s:
            refused = s.sendmail(mailfrom, rcpts, msg, mail_options=list(mail_options),
                                 rcpt_options=list(rcpt_options))
            assert not refused, refused

    def send_many(self, mailfrom: str, rcpts, subject: str = "bulk", size: int = 0) -> None:
        """One message per recipient down one SMTP session (distinct bodies)."""
        with smtplib.SMTP(self.listen_ip, self.port, local_hostname="client.test", timeout=60) as s:
            for i, r in enumerate(rcpts):
                assert not s.sendmail(mailfrom, [r], make_message(mailfrom, r, f"{subject} {i}", size=size))

    # -- logs ----------------------------------------------------------------------------
    def _lines(self, name: str) -> list[str]:
        try:
            with open(self.path("log", name), encoding="utf-8", errors="replace") as fh:
                return fh.read().splitlines()
        except OSError:
            return []

    def mainlog(self) -> list[str]:
        return [ln for ln in self._lines("mainlog.ec") if not ln.endswith("@@@@M")]

    def records(self, kind: str) -> list[dict]:
        """Parsed mainlog lines of one kind (R, D, T, P); a malformed line fails the test."""
        out = []
        for ln in self.mainlog():
            typ = ln.split("@")[4] if ln.count("@") >= 4 else ""
            if typ != kind:
                continue
            rx = {"R": MAIN_R, "D": MAIN_D, "T": MAIN_TP, "P": MAIN_TP}[kind]
            m = rx.match(ln)
            assert m, f"mainlog {kind} line not in the documented format: {ln!r}"
            d = m.groupdict()
            d["line"] = ln
            out.append(d)
        return out

    def wait_records(self, kind: str, n: int, timeout: float = WAIT, pred=None) -> list[dict]:
        def have():
            rows = [r for r in self.records(kind) if pred is None or pred(r)]
            return rows if len(rows) >= n else None
        return wait_for(have, timeout, what=f"{n} mainlog {kind} lines in {self.home}")

    def paniclog(self) -> list[str]:
        return self._lines("paniclog.ec")

    # -- spool and console ---------------------------------------------------------------
    def spooled(self) -> list:
        """Every message in the spool (MailMessage, body loaded as bytes in .body)."""
        from ecmta.actors.spool_store import SpoolReader
        base = self.path("spool")
        if not os.path.exists(base):
            return []
        reader = SpoolReader(base)
        try:
            out = []
            for m, bad in reader.rows():
                assert bad is None, f"unreadable spool record {bad}"
                m.body = reader.body(m.id)
                out.append(m)
            return out
        finally:
            reader.close()

    def ec_show(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "ecmta.cli.ec_show", "-c", self.d.conf, *args],
                              capture_output=True, text=True, timeout=60, env=self.d.env)

    def console(self, line: str) -> tuple[bool, str]:
        return self.d.console(line)

    def rss_kb(self) -> int:
        with open(f"/proc/{self.pid}/status") as fh:
            for ln in fh:
                if ln.startswith("VmRSS:"):
                    return int(ln.split()[1])
        raise AssertionError("no VmRSS")


def mta_config(hostname: str = "a.ecmta.test", relay: str = "", glob: str = "", tail: str = "",
               listen_ip: str = "127.0.0.1") -> str:
    relay = relay or '"nothing.invalid"'
    return BASE.format(hostname=hostname, relay=relay, glob=glob, tail=tail, listen_ip=listen_ip)


def start_mta(factory, dns_port: int, *, ports: dict | None = None, files: dict | None = None,
              start: bool = True, listen_ip: str = "127.0.0.1", **parts) -> MTA:
    all_ports = {"smtp": free_port(listen_ip)}
    all_ports.update(ports or {})
    d = factory(mta_config(listen_ip=listen_ip, **parts), ports=all_ports)
    files = dict(files or {})
    files.setdefault("resolv.conf", f"nameserver 127.0.0.1#{dns_port}\n")
    for name, text in files.items():
        path = os.path.join(d.home, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as fh:
            fh.write(d.fmt(text))
    if start:
        d.start()
    return MTA(d, listen_ip)


def domain_port(domain: str, port: int, extra: str = "") -> str:
    """A Domain stanza sending `domain`'s mail to `port` (its MX resolves to loopback)."""
    return f'Domain "{domain}" {{\n  remote_smtp_port = {port}\n{extra}}}\n'


def make_message(mailfrom: str, rcpt: str, subject: str = "test", body: str = "hello\r\n",
                 size: int = 0) -> bytes:
    head = (f"From: <{mailfrom}>\r\nTo: <{rcpt}>\r\nSubject: {subject}\r\n"
            f"Date: Tue, 24 Nov 2026 12:00:00 +0000\r\nMessage-ID: <{time.time_ns()}.{abs(hash(subject))}@client.test>\r\n\r\n")
    text = body
    if size:
        line = ("x" * 70) + "\r\n"
        text += line * max(0, (size - len(head) - len(body)) // len(line))
    return (head + text).encode()


# -- the recording sink ----------------------------------------------------------------------

class Sink:
    """A scripted SMTP server in a subprocess (tests/delivery/sink.py) and its records."""

    def __init__(self, **cfg) -> None:
        self.dir = short_tmpdir("ecsink")
        self.record = os.path.join(self.dir, "events.jsonl")
        self.cfg = dict(cfg)
        self.cfg.setdefault("host", "127.0.0.1")
        self.cfg.setdefault("port", 0)
        self.cfg.update(record=self.record, ready=os.path.join(self.dir, "port"),
                        dump=os.path.join(self.dir, "dump"))
        if "rcpt" in self.cfg:
            self.cfg["rcpt"] = {k.lower(): v for k, v in self.cfg["rcpt"].items()}
        path = os.path.join(self.dir, "sink.json")
        with open(path, "w") as fh:
            json.dump(self.cfg, fh)
        self._err = open(os.path.join(self.dir, "stderr.log"), "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "ecmta.tests.delivery.sink", path],
                                     stdin=subprocess.DEVNULL, stdout=self._err, stderr=self._err)
        wait_for(lambda: os.path.exists(self.cfg["ready"]) or self.proc.poll() is not None,
                 15, what="the sink to listen")
        if self.proc.poll() is not None:
            raise RuntimeError("sink exited: " + open(os.path.join(self.dir, "stderr.log")).read())
        with open(self.cfg["ready"]) as fh:
            self.port = int(fh.read())

    def events(self, kind: str | None = None) -> list[dict]:
        try:
            with open(self.record) as fh:
                rows = [json.loads(ln) for ln in fh if ln.endswith("\n")]
        except OSError:
            return []
        return [r for r in rows if kind is None or r["ev"] == kind]

    def messages(self) -> list[dict]:
        return [m for m in self.events("message") if m["reply"].startswith("2")]

    def wait_messages(self, n: int, timeout: float = WAIT) -> list[dict]:
        return wait_for(lambda: (lambda m: m if len(m) >= n else None)(self.messages()),
                        timeout, what=f"{n} messages at the sink")

    def body(self, m: dict) -> bytes:
        with open(m["file"], "rb") as fh:
            return fh.read()

    def max_concurrent(self) -> int:
        return max((e["concurrent"] for e in self.events("connect")), default=0)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._err.close()


# -- certificates ----------------------------------------------------------------------------

@dataclass
class Certs:
    dir: str
    ca: str             # the CA that signed `server`
    server_cert: str    # SAN mx.tls.test
    server_key: str
    other_ca: str       # an unrelated CA (the wrong one to trust)
    wrong_cert: str     # signed by `ca`, SAN wrong.invalid (name mismatch)
    wrong_key: str


def make_certs(directory: str) -> Certs:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(stem: str, cert, key) -> tuple[str, str]:
        cpath, kpath = os.path.join(directory, stem + ".pem"), os.path.join(directory, stem + ".key")
        with open(cpath, "wb") as fh:
            fh.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(kpath, "wb") as fh:
            fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
        return cpath, kpath

    def issue(cn: str, issuer=None, *, ca: bool = False, san: str | None = None):
        key = ec.generate_private_key(ec.SECP256R1())
        b = (x509.CertificateBuilder().subject_name(name(cn))
             .issuer_name(issuer[0].subject if issuer else name(cn))
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(days=1))
             .not_valid_after(now + datetime.timedelta(days=30))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ca:
            b = b.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                                critical=True)
        else:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(san or cn)]), critical=False)
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        cert = b.sign(issuer[1] if issuer else key, hashes.SHA256())
        return cert, key

    ca = issue("delivery test CA", ca=True)
    other = issue("some other CA", ca=True)
    ca_path, _ = write("ca", *ca)
    other_path, _ = write("other-ca", *other)
    srv = write("server", *issue("mx.tls.test", ca))
    wrong = write("wrong", *issue("wrong.invalid", ca))
    return Certs(directory, ca_path, srv[0], srv[1], other_path, wrong[0], wrong[1])


def parse_mail(data: bytes):
    return email.message_from_bytes(data, policy=email.policy.compat32)
