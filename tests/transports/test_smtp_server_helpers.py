"""Test driver for the sans-IO SMTP server: plays the session driver, bytes in, bytes out.

Imported by the other test_smtp_server*.py modules as
`ecmta.tests.transports.test_smtp_server_helpers`; it holds no tests itself.
"""
from __future__ import annotations

from ecmta.transports import smtp_replies as R
from ecmta.transports.smtp_replies import Reply
from ecmta.transports.smtp_server import (
    CLOSED, NEED_DATA, PAUSED, DataChunk, Decision, ProtocolError, ServerOptions, SMTPServer,
    UpgradeTLS)

ALL_EXTENSIONS = ("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SIZE", "DSN", "CHUNKING",
                  "BINARYMIME", "SMTPUTF8", "AUTH LOGIN PLAIN CRAM-MD5", "STARTTLS", "XCLIENT",
                  "XREMOTEIP", "XSETCONTEXT", "XDUMPCONTEXT")
HOST = "mx.example.test"
PEER = ("192.0.2.7", 40000)
LOCAL = ("198.51.100.1", 25)


def opts(**kw) -> ServerOptions:
    """ServerOptions with every extension on (override with smtp_extensions=...)."""
    kw.setdefault("hostname", HOST)
    kw.setdefault("smtp_extensions", ALL_EXTENSIONS)
    kw.setdefault("tls_available", True)
    return ServerOptions(**kw)


class Client:
    """Feeds bytes to an SMTPServer and answers its decisions like a session driver.

    `policy` maps a Decision class to a Reply, a (Reply, close) pair, or a callable taking
    the event and returning one of those (None = the default reply).
    """

    def __init__(self, options: ServerOptions | None = None, policy: dict | None = None,
                 *, auto_tls: bool = True, peer=PEER, banner: bool = True, **kw) -> None:
        self.srv = SMTPServer(options or opts(**kw), peer=peer, local=LOCAL)
        self.policy = dict(policy or {})
        self.auto_tls = auto_tls
        self.events: list = []
        self.body = bytearray()
        self.closed = False
        self.tls_waiting = False
        self.max_buffered = 0
        self.banner = self.pump() if banner else b""

    def answer(self, ev: Decision):
        rule = self.policy.get(type(ev))
        if callable(rule) and not isinstance(rule, Reply):
            rule = rule(ev)
        if isinstance(rule, tuple):
            return rule
        return rule, False

    def pump(self) -> bytes:
        srv = self.srv
        while True:
            ev = srv.next_event()
            if ev is NEED_DATA:
                break
            if ev is CLOSED:
                self.closed = True
                break
            if ev is PAUSED:
                assert self.tls_waiting, "PAUSED with no decision outstanding"
                break
            self.events.append(ev)
            if isinstance(ev, DataChunk):
                self.body += ev.data
            elif isinstance(ev, UpgradeTLS):
                if self.auto_tls:
                    srv.tls_started({"cipher": "TEST"})
                else:
                    self.tls_waiting = True
            elif isinstance(ev, Decision):
                reply, close = self.answer(ev)
                srv.respond(reply, close=close)
        self.max_buffered = max(self.max_buffered, srv.buffered())
        return srv.data_to_send()

    def send(self, data: bytes) -> bytes:
        self.srv.receive_data(data)
        return self.pump()

    def cmd(self, line: str) -> str:
        """One command line (CRLF added); the replies as text."""
        return self.send(line.encode("utf-8") + b"\r\n").decode("utf-8")

    def eof(self) -> bytes:
        self.srv.receive_data(b"")
        return self.pump()

    def errors(self) -> list[ProtocolError]:
        return [e for e in self.events if isinstance(e, ProtocolError)]

    def of(self, cls) -> list:
        return [e for e in self.events if isinstance(e, cls)]

    def start_mail(self, sender: str = "<s@example.org>", rcpt: str = "<r@example.net>") -> str:
        return self.cmd("EHLO client.example") + self.cmd(f"MAIL FROM:{sender}") + \
            self.cmd(f"RCPT TO:{rcpt}")


def wire(reply: Reply, esc: bool = True) -> str:
    """The reply as the client sees it."""
    return reply.render(esc).decode()


__all__ = ["ALL_EXTENSIONS", "Client", "HOST", "LOCAL", "PEER", "R", "Reply", "opts", "wire"]
