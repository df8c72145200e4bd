"""Shared pieces of the reception tests: a real daemon with an ESMTP listener and its logs,
a byte-exact SMTP client, certificates made with `cryptography`, log and spool readers.

Everything that waits is bounded in time (WAIT seconds unless told) and in count.
"""

from __future__ import annotations

import base64
import datetime
import hmac
import ipaddress
import os
import re
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
import weakref
from dataclasses import dataclass

from ecmta.tests import harness
from ecmta.tests.harness import Daemon, free_port

WAIT = 15.0
EXTENSIONS = ('"ENHANCEDSTATUSCODES" "PIPELINING" "8BITMIME" "SIZE" "DSN" "CHUNKING" "SMTPUTF8" '
              '"XCLIENT" "XREMOTEIP" "XSETCONTEXT" "XDUMPCONTEXT"')
ID_RE = r"[0-9A-F]{2}/[0-9A-F]{2}-\d{5}-[0-9A-F]{8}"
REJECT_RE = re.compile(
    r'^(?P<ts>\d+): R="(?P<R>[^"]*)" L="(?P<L>[^"]*)" C="(?P<C>' + ID_RE + r')" '
    r'PATH="(?P<PATH>[^"]*)" PATH_GRP="(?P<PATH_GRP>[^"]*)" P="(?P<P>[^"]*)" E=(?P<E>\d{3}) '
    r'M=(?P<M>\S+) CTXCONN=\[(?P<CTXCONN>.*?)\] CTXMESS=\[(?P<CTXMESS>.*?)\] (?P<text>.*)$')
MAIN_R_RE = re.compile(
    r"^(?P<ts>\d+)@(?P<id>" + ID_RE + r")@(?P<batch>" + ID_RE + r")@(?P<conn>" + ID_RE + r")@R@"
    r"(?P<rl>[^@]*)@(?P<rd>[^@]*)@(?P<sl>[^@]*)@(?P<sd>[^@]*)@(?P<ip>[^@]*)@(?P<size>\d+)@"
    r"(?P<proto>esmtp)@(?P<group>[^@]*)@(?P<binding>[^@]*)$")


def wait_for(pred, timeout: float = WAIT, interval: float = 0.05, what: str = "condition"):
    """harness.wait_for with this suite's default timeout."""
    return harness.wait_for(pred, timeout, interval, what)


# -- the daemon ----------------------------------------------------------------------------

BASE = """\
spoolbase = "$home/spool"
hostname = "mx.ecmta.test"
relay_domains = ( "example.com" )
{glob}
ESMTP_Listener {{
  SMTP_Extensions = ( {ext} )
{listener}
  Listen "127.0.0.1:$smtp" {{
{listen}
  }}
{more_listens}
}}
ec_logger "ec_logger" {{
  mainlog = "$home/log/mainlog.ec"
  rejectlog = "$home/log/rejectlog.ec"
  paniclog = "$home/log/paniclog.ec"
  acctlog = "$home/log/acctlog.ec"
}}
{tail}
"""


class MTA:
    """A running `ecelerity -d` with one SMTP Listen on 127.0.0.1:<smtp> and ec_logger logs."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon

    @property
    def home(self) -> str:
        return self.d.home

    @property
    def port(self) -> int:
        return self.d.ports["smtp"]

    def path(self, *parts: str) -> str:
        return os.path.join(self.d.home, *parts)

    # -- clients ---------------------------------------------------------------------------
    def smtp(self, timeout: float = WAIT):
        import smtplib
        return smtplib.SMTP("127.0.0.1", self.port, local_hostname="client.test", timeout=timeout)

    def wire(self, port: int | None = None, **kw) -> "Wire":
        return Wire("127.0.0.1", port or self.port, **kw)

    # -- logs ----------------------------------------------------------------------------
    def _lines(self, name: str) -> list[str]:
        try:
            with open(self.path("log", name), encoding="utf-8", errors="replace") as fh:
                return fh.read().splitlines()
        except OSError:
            return []

    def mainlog(self) -> list[str]:
        return [ln for ln in self._lines("mainlog.ec") if not ln.endswith("@@@@M")]

    def receptions(self) -> list[dict]:
        out = []
        for ln in self.mainlog():
            m = MAIN_R_RE.match(ln)
            assert m or "@R@" not in ln, f"malformed R line: {ln!r}"
            if m:
                out.append(m.groupdict())
        return out

    def wait_receptions(self, n: int, timeout: float = WAIT) -> list[dict]:
        wait_for(lambda: len(self.receptions()) >= n, timeout, what=f"{n} R lines")
        return self.receptions()

    def rejections(self) -> list[dict]:
        out = []
        for ln in self._lines("rejectlog.ec"):
            if re.fullmatch(r"\d+: Marker 1", ln):
                continue
            m = REJECT_RE.match(ln)
            assert m, f"rejectlog line not in the documented format: {ln!r}"
            d = m.groupdict()
            d["line"] = ln
            out.append(d)
        return out

    def wait_rejections(self, n: int, timeout: float = WAIT) -> list[dict]:
        wait_for(lambda: len(self.rejections()) >= n, timeout, what=f"{n} rejectlog lines")
        return self.rejections()

    def paniclog(self) -> list[str]:
        return self._lines("paniclog.ec")

    def acctlog(self) -> list[str]:
        return self._lines("acctlog.ec")

    # -- spool ---------------------------------------------------------------------------
    def spooled(self, base: str | None = None) -> list:
        """Every message in the spool (MailMessage, body loaded as bytes in .body)."""
        from ecmta.actors.spool_store import SpoolReader
        base = base or self.path("spool")
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

    def spooled_by_rcpt(self) -> dict:
        return {m.rcptto: m for m in self.spooled()}

    def body_keys(self) -> dict:
        conn = sqlite3.connect(f"file:{self.path('spool', 'spool.db')}?mode=ro", uri=True)
        try:
            return dict(conn.execute("SELECT id, body_key FROM messages"))
        finally:
            conn.close()

    def ec_show(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "ecmta.cli.ec_show", "-c", self.d.conf, *args],
                              capture_output=True, text=True, timeout=60, env=self.d.env)

    # -- console -------------------------------------------------------------------------
    def console(self, line: str) -> tuple[bool, str]:
        return self.d.console(line)

    def ok(self, line: str) -> str:
        return self.d.ok(line)


def config(glob: str = "", listener: str = "", listen: str = "", more_listens: str = "",
           tail: str = "", ext: str = EXTENSIONS) -> str:
    return BASE.format(glob=glob, listener=listener, listen=listen, more_listens=more_listens,
                       tail=tail, ext=ext)


# Reception tests run the daemon without its delivery service (`ecelerity -n queue`): what
# was received stays in the spool for the test to read, whatever the recipient domains.
NO_DELIVERY = ("queue",)


def start_mta(factory, *, ports: dict | None = None, files: dict | None = None,
              skip: tuple = NO_DELIVERY, **parts) -> MTA:
    """Start a daemon built from `config(**parts)`; `files` are written under $home first
    (relative names; text may use $home/$smtp placeholders)."""
    all_ports = {"smtp": free_port()}
    all_ports.update(ports or {})
    d = factory(config(**parts), ports=all_ports, skip=skip)
    for name, text in (files or {}).items():
        path = os.path.join(d.home, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as fh:
            fh.write(d.fmt(text) if isinstance(text, str) else text)
    d.start()
    return MTA(d)


# -- a byte-exact client -----------------------------------------------------------------------

@dataclass
class Reply:
    code: int
    lines: list[str]
    raw: bytes

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def __str__(self) -> str:
        return self.raw.decode("utf-8", "replace").rstrip("\r\n")


OPEN_WIRES: "weakref.WeakSet[Wire]" = weakref.WeakSet()


def close_wires() -> None:
    """Close every client connection a test left open, so its daemon stops at once."""
    for w in list(OPEN_WIRES):
        w.close()


class Wire:
    """An SMTP client that sends exactly the bytes it is given and reads whole replies."""

    def __init__(self, host: str, port: int, *, tls: ssl.SSLContext | None = None,
                 timeout: float = WAIT, banner: bool = True, source: str | None = None) -> None:
        OPEN_WIRES.add(self)
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname="localhost")
        self.buf = b""
        self.banner = self.reply() if banner else None

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def _line(self) -> bytes:
        deadline = time.monotonic() + WAIT
        while b"\r\n" not in self.buf:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no complete reply line; have {self.buf!r}")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed; unread {self.buf!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line + b"\r\n"

    def reply(self) -> Reply:
        raw, lines = b"", []
        for _ in range(1000):
            line = self._line()
            raw += line
            assert re.match(rb"^\d{3}[ -]", line), f"not a reply line: {line!r}"
            lines.append(line[4:-2].decode("utf-8", "replace"))
            if line[3:4] == b" ":
                return Reply(int(line[:3]), lines, raw)
        raise AssertionError("reply longer than 1000 lines")

    def replies(self, n: int) -> list[Reply]:
        return [self.reply() for _ in range(n)]

    def cmd(self, line: str | bytes) -> Reply:
        self.send((line if isinstance(line, bytes) else line.encode()) + b"\r\n")
        return self.reply()

    def starttls(self, ctx: ssl.SSLContext) -> None:
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")

    def closed(self, timeout: float = 5.0) -> bool:
        """True when the server closed the connection (EOF) within `timeout`."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (ConnectionError, ssl.SSLError):
            return True
        except socket.timeout:
            return False
        self.buf += data
        return data == b""

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def auth_plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def cram_response(user: str, password: str, challenge_b64: str) -> str:
    challenge = base64.b64decode(challenge_b64)
    digest = hmac.new(password.encode(), challenge, "md5").hexdigest()
    return b64(f"{user} {digest}")


# -- certificates --------------------------------------------------------------------------------

@dataclass
class Certs:
    dir: str
    ca: str              # CA certificate (PEM) that signed the server and the good client
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    rogue_cert: str      # self-signed client certificate (not from the CA)
    rogue_key: str

    def client_context(self, cert: bool = False, rogue: bool = False) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca)
        if cert:
            ctx.load_cert_chain(self.client_cert, self.client_key)
        if rogue:
            ctx.load_cert_chain(self.rogue_cert, self.rogue_key)
        return ctx


def make_certs(directory: str) -> Certs:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ecmta tests"),
                          x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(stem: str, cert, key) -> tuple[str, str]:
        cpath, kpath = os.path.join(directory, stem + ".pem"), os.path.join(directory, stem + ".key")
        with open(cpath, "wb") as fh:
            fh.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(kpath, "wb") as fh:
            fh.write(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
        return cpath, kpath

    def issue(subject: str, issuer_name, issuer_key, *, ca: bool = False, server: bool = False,
              key=None):
        key = key or ec.generate_private_key(ec.SECP256R1())
        b = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(issuer_name or name(subject))
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(days=1))
             .not_valid_after(now + datetime.timedelta(days=30))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ca:
            b = b.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                                critical=True)
        if server:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        elif not ca:
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        cert = b.sign(issuer_key or key, hashes.SHA256())
        return cert, key

    ca_cert, ca_key = issue("ecmta test CA", None, None, ca=True)
    ca_path, _ = write("ca", ca_cert, ca_key)
    srv = write("server", *issue("localhost", ca_cert.subject, ca_key, server=True))
    cli = write("client", *issue("client.test", ca_cert.subject, ca_key))
    rogue = write("rogue", *issue("rogue.test", None, None))
    return Certs(directory, ca_path, srv[0], srv[1], cli[0], cli[1], rogue[0], rogue[1])


def ctx_pairs(text: str) -> dict:
    """The k=v pairs of a rejectlog CTXCONN/CTXMESS block (quoted values unquoted)."""
    out = {}
    for m in re.finditer(r'([^=,\[\]]+)=("(?:[^"\\]|\\.)*"|[^,\]]*)', text):
        v = m.group(2)
        if v.startswith('"'):
            v = v[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        out[m.group(1)] = v
    return out


def message(subject: str = "test", body: str = "hello\r\n", headers: str = "") -> bytes:
    return (f"From: a@sender.test\r\nTo: b@example.com\r\nSubject: {subject}\r\n{headers}\r\n{body}").encode()


class Shared:
    """Daemons that live for a whole test module (module-scoped fixtures)."""

    def __init__(self) -> None:
        self.made: list[Daemon] = []

    def factory(self, body: str, **kw) -> Daemon:
        d = Daemon(body, **kw)
        self.made.append(d)
        return d

    def close(self) -> None:
        close_wires()
        for d in self.made:
            try:
                d.stop(timeout=15)
            except Exception:
                pass
            d.cleanup()


def queue_id(reply) -> str:
    m = re.search(ID_RE, reply if isinstance(reply, str) else reply.text)
    assert m, f"no queue id in {reply}"
    return m.group(0)


def local_port(w) -> int:
    return w.sock.getsockname()[1]
