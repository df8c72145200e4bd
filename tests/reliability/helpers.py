"""Shared pieces of the reliability tests: a daemon built for them, Postfix's smtp-sink as
the remote that records every message it was given, bounded SMTP injectors, spool and log
readers, VmRSS.

Every loop here is bounded in count and in time; every wait has a deadline.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import smtplib
import socket
import subprocess
import sys
import threading
import time

from ecmta.tests import harness
from ecmta.tests.harness import Daemon, free_port, short_tmpdir

WAIT = 20.0
STOPPED = "was being delivered when ecelerity stopped"
ID_RE = r"[0-9A-F]{2}/[0-9A-F]{2}-\d{5}-[0-9A-F]{8}"
REL_HDR = "X-Rel-Id"
EXTENSIONS = ('"ENHANCEDSTATUSCODES" "PIPELINING" "8BITMIME" "SIZE" "DSN" "CHUNKING" "SMTPUTF8"')


def wait_for(pred, timeout: float = WAIT, interval: float = 0.05, what: str = "condition"):
    """harness.wait_for with this suite's default timeout."""
    return harness.wait_for(pred, timeout, interval, what)


# -- the daemon ----------------------------------------------------------------------------

BASE = """\
spoolbase = "{spool}"
hostname = "mx.rel.test"
relay_domains = ( {relay} )
retry_interval = 1
max_retry_interval = 2
delayed_queue_scan_interval = 1
host_failure_retry = 0
connect_timeout = 5
idle_timeout = 1
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
}}
{tail}
"""


def config(*, relay: str = '"x.test"', glob: str = "", listener: str = "", listen: str = "",
           more_listens: str = "", tail: str = "", ext: str = EXTENSIONS,
           spool: str = "$home/spool") -> str:
    return BASE.format(relay=relay, glob=glob, listener=listener, listen=listen,
                       more_listens=more_listens, tail=tail, ext=ext, spool=spool)


class MTA:
    """A running `ecelerity -d` with one SMTP Listen on 127.0.0.1:<smtp> and ec_logger logs."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon

    @property
    def port(self) -> int:
        return self.d.ports["smtp"]

    @property
    def home(self) -> str:
        return self.d.home

    @property
    def pid(self) -> int:
        return self.d.proc.pid

    def path(self, *parts: str) -> str:
        return os.path.join(self.d.home, *parts)

    def smtp(self, timeout: float = WAIT, source: str | None = None) -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.port, local_hostname="client.test", timeout=timeout,
                            source_address=(source, 0) if source else None)

    # -- logs --------------------------------------------------------------------------
    def _lines(self, name: str) -> list[str]:
        try:
            with open(self.path("log", name), encoding="utf-8", errors="replace") as fh:
                return fh.read().splitlines()
        except OSError:
            return []

    def mainlog(self) -> list[str]:
        return [ln for ln in self._lines("mainlog.ec") if not ln.endswith("@@@@M")]

    def records(self, kind: str) -> list[list[str]]:
        """mainlog lines of one kind (R, D, T, P) split on '@'."""
        out = []
        for ln in self.mainlog():
            parts = ln.split("@")
            if len(parts) > 4 and parts[4] == kind:
                out.append(parts)
        return out

    def paniclog(self) -> list[str]:
        return self._lines("paniclog.ec")

    def rejectlog(self) -> list[str]:
        return [ln for ln in self._lines("rejectlog.ec") if not re.fullmatch(r"\d+: Marker 1", ln)]

    # -- spool -------------------------------------------------------------------------
    def spool_dir(self) -> str:
        m = re.search(r'spoolbase = "([^"]*)"', self.d.fmt(self.d.config_body))
        return m.group(1)

    def spooled(self) -> list:
        """Every message in the spool; an unreadable record fails the test."""
        from ecmta.actors.spool_store import SpoolReader
        base = self.spool_dir()
        if not os.path.exists(os.path.join(base, "spool.db")):
            return []
        reader = SpoolReader(base)
        try:
            out = []
            for m, bad in reader.rows():
                assert bad is None, f"unreadable spool record {bad}"
                out.append(m)
            return out
        finally:
            reader.close()

    def ec_show(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "ecmta.cli.ec_show", "-c", self.d.conf, *args],
                              capture_output=True, text=True, timeout=120, env=self.d.env)

    def rss_kb(self) -> int:
        return rss_kb(self.pid)

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for ln in fh:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    raise AssertionError("no VmRSS")


def start_mta(factory, *, ports: dict | None = None, files: dict | None = None, start: bool = True,
              skip: tuple = (), extra_env: dict | None = None, **parts) -> MTA:
    all_ports = {"smtp": free_port()}
    all_ports.update(ports or {})
    d = factory(config(**parts), ports=all_ports, skip=skip, extra_env=extra_env)
    for name, text in (files or {}).items():
        path = os.path.join(d.home, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as fh:
            fh.write(d.fmt(text))
    if start:
        d.start()
    return MTA(d)


# -- smtp-sink: the remote that records what it was given -------------------------------------

SMTP_SINK = shutil.which("smtp-sink", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


class SmtpSink:
    """Postfix's smtp-sink on 127.0.0.1:<port>, dumping every transaction to its own file
    (`-d`); `received()` reads the X-Rel-Id header of each dumped message."""

    def __init__(self, backlog: int = 256) -> None:
        if SMTP_SINK is None:
            raise RuntimeError("smtp-sink is not installed (./run-tests installs postfix)")
        self.dir = short_tmpdir("ecsk")
        os.chmod(self.dir, 0o777)
        self.port = free_port()
        self._out = open(os.path.join(self.dir, "sink.out"), "wb")
        cmd = [SMTP_SINK, "-d", os.path.join(self.dir, "d", "%H%M%S."), "-c"]
        if os.getuid() == 0:
            cmd += ["-u", "nobody"]
        cmd += [f"127.0.0.1:{self.port}", str(backlog)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._out)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("smtp-sink did not start: " + open(self._out.name).read())
                time.sleep(0.05)
        self._seen: dict[str, tuple[float, list[str]]] = {}

    def files(self) -> list[str]:
        return glob.glob(os.path.join(self.dir, "d", "*"))

    def received(self) -> list[str]:
        """One X-Rel-Id per message the sink accepted (duplicates repeat)."""
        out = []
        for path in self.files():
            try:
                st = os.stat(path)
            except OSError:
                continue
            hit = self._seen.get(path)
            if hit is None or hit[0] != st.st_mtime:
                with open(path, "rb") as fh:
                    data = fh.read()
                ids = re.findall(rb"^" + REL_HDR.encode() + rb": (\S+)\r?$", data, re.M)
                hit = (st.st_mtime, [i.decode() for i in ids])
                if ids:
                    self._seen[path] = hit
            out += hit[1]
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._out.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def rel_message(rel_id: str, rcpt: str, size: int = 0) -> bytes:
    head = (f"From: <sender@client.test>\r\nTo: <{rcpt}>\r\nSubject: reliability {rel_id}\r\n"
            f"Message-ID: <{rel_id}@client.test>\r\n{REL_HDR}: {rel_id}\r\n\r\n")
    body = "hello\r\n"
    if size:
        line = "x" * 70 + "\r\n"
        body += line * max(0, (size - len(head)) // len(line))
    return (head + body).encode()


# -- injectors --------------------------------------------------------------------------------

class Injector:
    """`threads` smtplib clients sending unique messages (X-Rel-Id r<tag>-<thread>-<n>, one
    recipient <id>@<domain>) down sessions of up to `per_session` messages until stopped.
    `acked`: ids answered 250; `unsure`: ids whose DATA was sent but no reply came back;
    `refused`: (id, code, text) for 4xx/5xx answers. Bounded: at most `limit` messages."""

    def __init__(self, port: int, tag: str, *, threads: int = 4, per_session: int = 5,
                 domain: str = "x.test", limit: int = 100000, size: int = 0,
                 timeout: float = 10.0) -> None:
        self.port, self.tag, self.domain = port, tag, domain
        self.per_session, self.limit, self.size, self.timeout = per_session, limit, size, timeout
        self.acked: list[str] = []
        self.replies: dict[str, tuple[float, str]] = {}   # acked id -> (time, reply text)
        self.unsure: list[str] = []
        self.refused: list[tuple[str, int, str]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._n = 0
        self.threads = [threading.Thread(target=self._run, args=(k,), daemon=True) for k in range(threads)]

    def start(self) -> "Injector":
        for t in self.threads:
            t.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        for t in self.threads:
            t.join(timeout)
        assert not any(t.is_alive() for t in self.threads), "an injector thread did not stop"

    def _next(self) -> str | None:
        with self._lock:
            if self._n >= self.limit:
                return None
            self._n += 1
            return f"r{self.tag}-{self._n}"

    def _run(self, k: int) -> None:
        while not self._stop.is_set():
            try:
                s = smtplib.SMTP("127.0.0.1", self.port, local_hostname="client.test",
                                 timeout=self.timeout)
            except OSError:
                self._stop.wait(0.05)
                continue
            try:
                for _ in range(self.per_session):
                    if self._stop.is_set():
                        break
                    rel = self._next()
                    if rel is None:
                        self._stop.wait(0.1)
                        break
                    self._send_one(s, rel)
                try:
                    s.quit()
                except (OSError, smtplib.SMTPException):
                    pass
            except (OSError, smtplib.SMTPException) as exc:
                self.errors.append(repr(exc))
            finally:
                s.close()

    def _send_one(self, s: smtplib.SMTP, rel: str) -> None:
        rcpt = f"{rel}@{self.domain}"
        data = rel_message(rel, rcpt, self.size)
        code, resp = s.mail("sender@client.test")
        if code != 250:
            self.refused.append((rel, code, resp.decode(errors="replace")))
            s.rset()
            return
        code, resp = s.rcpt(rcpt)
        if code not in (250, 251):
            self.refused.append((rel, code, resp.decode(errors="replace")))
            s.rset()
            return
        try:
            code, resp = s.data(data)
        except smtplib.SMTPDataError as exc:
            self.refused.append((rel, exc.smtp_code, exc.smtp_error.decode(errors="replace")))
            return
        except (OSError, smtplib.SMTPException):
            self.unsure.append(rel)        # the reply to the end of data was lost
            raise
        if code == 250:
            self.acked.append(rel)
            self.replies[rel] = (time.time(), resp.decode(errors="replace"))
        else:
            self.refused.append((rel, code, resp.decode(errors="replace")))


def rcpt_ids(messages, domain: str = "x.test") -> list[str]:
    """The X-Rel-Ids of spooled messages (the recipient local part)."""
    return [m.rcptto.rsplit("@", 1)[0] for m in messages if m.rcptto.endswith("@" + domain)]


def stopped_notices(paniclog: list[str]) -> dict[str, int]:
    """X-Rel-Id -> number of 'was being delivered when ecelerity stopped' lines naming it."""
    out: dict[str, int] = {}
    for ln in paniclog:
        if STOPPED in ln:
            m = re.search(r" to (\S+)@", ln)
            if m:
                out[m.group(1)] = out.get(m.group(1), 0) + 1
    return out
