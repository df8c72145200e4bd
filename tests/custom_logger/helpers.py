"""Shared pieces of the log-module tests: a daemon with an SMTP listener and gateway
domains, Postfix's smtp-sink, a scripted SMTP server (fixed replies per command), a
sender, record builders for the renderers, bounded waits.

Domains (all by Gateway, no DNS): sink.test -> smtp-sink; defer.test -> the scripted
server answering RCPT with 451; fail.test -> the scripted server answering RCPT with 550;
closed.test -> a port where nothing listens. relay_domains accepts those; anything else
from a client outside relay_hosts is refused ("relaying denied").
"""

from __future__ import annotations

import os
import smtplib
import socket
import threading

import pytest

from ecmta.loggers import records
from ecmta.tests import harness
from ecmta.tests.harness import free_port

WAIT = 20.0

BASE = """\
spoolbase = "$home/spool"
hostname = "mx1.ecmta.test"
relay_domains = ( "sink.test" "defer.test" "fail.test" "closed.test" "tls.test" )
retry_interval = 600
host_failure_retry = 0
delayed_queue_scan_interval = 1
connect_timeout = 3
idle_timeout = 0
{glob}
ESMTP_Listener {{
  SMTP_Extensions = ( "ENHANCEDSTATUSCODES" "PIPELINING" "8BITMIME" "SIZE" "AUTH PLAIN" )
  Listen "127.0.0.1:$smtp" {{ }}
{listen}}}
{ec_logger}
Domain "sink.test" {{
  Gateway = "127.0.0.1:$sink"
}}
Domain "defer.test" {{
  Gateway = "127.0.0.1:$defer"
}}
Domain "fail.test" {{
  Gateway = "127.0.0.1:$fail"
}}
Domain "closed.test" {{
  Gateway = "127.0.0.1:$closed"
}}
{tail}
"""


def wait_for(pred, timeout: float = WAIT, interval: float = 0.05, what: str = "condition"):
    """harness.wait_for with this suite's default timeout."""
    return harness.wait_for(pred, timeout, interval, what)


def read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            return fh.read().splitlines()
    except OSError:
        return []


def wait_lines(path: str, pred, what: str, timeout: float = WAIT) -> list[str]:
    """The file's lines once pred(lines) holds."""
    return wait_for(lambda: (lambda ls: ls if pred(ls) else None)(read_lines(path)), timeout,
                    what=f"{what} in {path} (now {read_lines(path)[-8:]})")


# -- servers ------------------------------------------------------------------------------------

SmtpSink = harness.SmtpSink   # Postfix's smtp-sink (tests/harness.py)


class ScriptedSmtp:
    """A tiny SMTP server answering each command from a table ({"RCPT": "451 4.7.1 later"});
    unlisted commands get 250 (DATA 354). Serves until stop()."""

    def __init__(self, port: int, replies: dict) -> None:
        self.replies = {k.upper(): v for k, v in replies.items()}
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn) -> None:
        conn.settimeout(10)
        f = conn.makefile("rwb")
        try:
            f.write(b"220 scripted.test ESMTP\r\n")
            f.flush()
            while True:
                line = f.readline()
                if not line:
                    return
                verb = line.split(b" ", 1)[0].split(b":", 1)[0].strip().upper().decode()
                if verb in ("EHLO", "HELO"):
                    f.write(b"250-scripted.test\r\n250 ENHANCEDSTATUSCODES\r\n")
                elif verb == "QUIT":
                    f.write(b"221 2.0.0 bye\r\n")
                    f.flush()
                    return
                elif verb == "DATA":
                    reply = self.replies.get("DATA", "354 go ahead")
                    f.write(reply.encode() + b"\r\n")
                    f.flush()
                    if reply.startswith("354"):
                        while True:
                            data = f.readline()
                            if not data or data in (b".\r\n", b".\n"):
                                break
                        f.write(self.replies.get("DOT", "250 2.0.0 queued as SCRIPTED").encode() + b"\r\n")
                else:
                    f.write(self.replies.get(verb, "250 2.0.0 ok").encode() + b"\r\n")
                f.flush()
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def stop(self) -> None:
        self.running = False
        self.thread.join(2)
        self.sock.close()


# -- the daemon -----------------------------------------------------------------------------------

class LogMTA:
    def __init__(self, daemon) -> None:
        self.d = daemon

    @property
    def home(self) -> str:
        return self.d.home

    def path(self, *parts) -> str:
        return os.path.join(self.d.home, *parts)

    def send(self, sender: str, rcpts, subject: str = "test", body: str = "hello\r\n",
             message_id: str = "<m1@client.test>", helo: str = "client.test") -> None:
        rcpts = [rcpts] if isinstance(rcpts, str) else list(rcpts)
        msg = (f"From: <{sender}>\r\nTo: <{rcpts[0]}>\r\nSubject: {subject}\r\n"
               f"Message-ID: {message_id}\r\n\r\n{body}")
        with smtplib.SMTP("127.0.0.1", self.d.ports["smtp"], local_hostname=helo, timeout=WAIT) as s:
            refused = s.sendmail(sender, rcpts, msg.encode())
            assert not refused, refused

    def refused_rcpt(self, sender: str, rcpt: str, helo: str = "client.test") -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", self.d.ports["smtp"], local_hostname=helo, timeout=WAIT) as s:
            s.ehlo(helo)
            s.mail(sender)
            return s.rcpt(rcpt)


@pytest.fixture
def servers():
    """The receiving side: smtp-sink for sink.test, scripted servers for defer/fail.test,
    a closed port for closed.test. Yields the port map."""
    ports = {"sink": free_port(), "defer": free_port(), "fail": free_port(), "closed": free_port()}
    sink = SmtpSink(ports["sink"])
    defer = ScriptedSmtp(ports["defer"], {"RCPT": "451 4.7.1 greylisted, try later"})
    fail = ScriptedSmtp(ports["fail"], {"RCPT": "550 5.1.1 no such user here"})
    yield ports
    sink.stop()
    defer.stop()
    fail.stop()


EC_LOGGER = """\
ec_logger "ec_logger" {
  mainlog = "$home/log/mainlog.ec"
  paniclog = "$home/log/paniclog.ec"
}"""


def start(daemon_factory, ports: dict, tail: str, glob: str = "", files: dict | None = None,
          wait: bool = True, listen: str = "", ec_logger: str = EC_LOGGER) -> LogMTA:
    all_ports = {"smtp": free_port(), **ports}
    d = daemon_factory(BASE.format(glob=glob, tail=tail, listen=listen, ec_logger=ec_logger),
                       ports=all_ports)
    for name, text in (files or {}).items():
        path = os.path.join(d.home, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as fh:
            fh.write(text)
    d.start(wait=wait)
    return LogMTA(d)


# -- records for the renderer tests ---------------------------------------------------------------

TS = 1339007869            # 2012-06-06 18:37:49 UTC (the page's example time)
MID = "10/00-10012-D88AED05"
CID = "00/00-10012-C88AED05"


def reception(**kw) -> records.Reception:
    base = dict(ts=TS, msg_id=MID, batch_id=MID, conn_id=CID, rcpt_local="bob",
                rcpt_domain="example.net", sender_local="alice", sender_domain="example.com",
                peer_ip="10.0.0.1", size=1234, protocol="esmtp", binding_group="default",
                binding="default",
                ctx_conn={"ehlo_domain": "client.test", "ehlo_string": "EHLO client.test",
                          "pathway": "default"},
                ctx_mess={"customerid": "c42"}, peer_port=4321, local="10.0.0.2:25",
                headers={"message-id": "<m1@client.test>", "subject": "hello there"})
    base.update(kw)
    return records.Reception(**base)


def delivery(**kw) -> records.Delivery:
    base = dict(ts=TS + 1, msg_id=MID, batch_id=MID, conn_id=CID, domain="example.net", size=1234,
                binding_group="default", binding="default", retries=0, seconds=1.25,
                remote_ip="192.0.2.25", rcpt_local="bob", rcpt_domain="example.net",
                sender_local="alice", sender_domain="example.com", protocol="esmtp",
                peer_ip="10.0.0.1", response="250 2.0.0 Ok: queued as 4F1AB",
                mx_host="mx.example.net", remote_port=25,
                ctx_mess={"customerid": "c42"})
    base.update(kw)
    return records.Delivery(**base)


def failure(permanent: bool, **kw) -> records.Failure:
    base = dict(ts=TS + 2, msg_id=MID, batch_id=MID, conn_id=CID, domain="example.net",
                bytes_sent=0, binding_group="default", binding="default", stage=4, retries=1,
                seconds=65.5, remote_ip="192.0.2.25",
                response=("550 5.1.1 no such user" if permanent else "451 4.7.1 greylisted"),
                permanent=permanent, rcpt_local="bob", rcpt_domain="example.net",
                sender_local="alice", sender_domain="example.com", size=1234, protocol="esmtp",
                mx_host="mx.example.net", remote_port=25)
    base.update(kw)
    return records.Failure(**base)


def rejection(**kw) -> records.Rejection:
    base = dict(ts=TS, remote="10.79.11.157:40587", local="10.0.0.2:25", conn_id=CID,
                pathway="default", pathway_group="default", phase="connect", code=550,
                module="core", ctx_conn={}, ctx_mess={}, text="relaying denied",
                peer_ip="10.79.11.157", command="Connect")
    base.update(kw)
    return records.Rejection(**base)


def rcpt_rejection(**kw) -> records.Rejection:
    base = dict(phase="awaiting rcptto", code=550, command="RcptTo", text="5.7.1 relaying denied",
                ctx_conn={"ehlo_domain": "client.test", "ehlo_string": "EHLO client.test"},
                ctx_mess={"rcptto_localpart": "x", "rcptto_domain": "elsewhere.test"},
                batch_id="20/00-10012-D88AED05", mailfrom="alice@example.com")
    base.update(kw)
    return rejection(**base)
