"""Test drivers for the sans-IO SMTP client: a scripted server and an in-memory link to
ecmta's own SMTPServer machine. No sockets, no sleeps.

Imported by the test_smtp_client*.py modules as
`ecmta.tests.transports.test_smtp_client_helpers`; it holds no tests itself.
"""
from __future__ import annotations

from ecmta.actors.mail import DsnParams
from ecmta.tests.transports.test_smtp_server_helpers import Client as ServerSide
from ecmta.tests.transports.test_smtp_server_helpers import opts as server_opts
from ecmta.transports.smtp_client import (
    CLOSED, IDLE, NEED_DATA, PAUSED, ClientOptions, SessionFailed, SMTPClient, Transaction,
    TransactionDone, UpgradeTLS)

BANNER = b"220 mx.example.test ESMTP\r\n"
EHLO_ALL = (b"250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 10000000\r\n250-8BITMIME\r\n"
            b"250-DSN\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250 STARTTLS\r\n")
EHLO_PLAIN = b"250-mx.example.test\r\n250 ENHANCEDSTATUSCODES\r\n"
EHLO_PIPE = b"250-mx.example.test\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n"
BODY = b"Subject: test\r\nFrom: a@example.org\r\n\r\nHello\r\n"


def txn(*rcpts: str, sender: str = "a@example.org", **kw) -> Transaction:
    rcpts = rcpts or ("r@example.net",)
    return Transaction(sender, [(r, None) for r in rcpts], **kw)


def dsn_txn(*rcpts: str, **kw) -> Transaction:
    return Transaction("a@example.org",
                       [(r, DsnParams(("SUCCESS", "FAILURE"), f"rfc822;{r}")) for r in rcpts],
                       **kw)


class Scripted:
    """Plays the server by hand: `feed()` server bytes, read what the client wrote with
    `take()`. Events the client produced accumulate in `events`."""

    def __init__(self, opts: ClientOptions | None = None, **kw) -> None:
        self.cli = SMTPClient(opts or ClientOptions(**kw))
        self.events: list = []
        self.last = None

    def pump(self):
        """Run the client until it needs input, is idle, paused or closed."""
        for _ in range(1000):
            ev = self.cli.next_event()
            if ev in (NEED_DATA, IDLE, CLOSED, PAUSED):
                self.last = ev
                return ev
            self.events.append(ev)
        raise AssertionError("client machine does not settle")

    def feed(self, data: bytes):
        self.cli.receive_data(data)
        return self.pump()

    def take(self) -> bytes:
        return self.cli.data_to_send()

    def setup(self, ehlo: bytes = EHLO_PIPE) -> None:
        """Banner and EHLO: the session is idle afterwards."""
        assert self.feed(BANNER) is NEED_DATA
        assert self.take().startswith(b"EHLO ")
        assert self.feed(ehlo) is IDLE, self.events

    def send(self, t: Transaction, body: bytes = BODY):
        self.cli.send_mail(t, body)
        return self.pump()

    def done(self) -> list:
        """Outcomes of the last finished transaction."""
        dones = [e for e in self.events if isinstance(e, TransactionDone)]
        assert dones, f"no TransactionDone in {self.events}"
        return dones[-1].outcomes

    def failed(self):
        fails = [e for e in self.events if isinstance(e, SessionFailed)]
        assert fails, f"no SessionFailed in {self.events}"
        return fails[-1].failure


class Link:
    """The client machine wired to ecmta's SMTPServer machine in memory.

    `server` is the server-side test driver (policy dict of Decision class -> Reply);
    TLS handshakes are simulated on both sides.
    """

    def __init__(self, copts: ClientOptions | None = None, *, policy: dict | None = None,
                 **server_kw) -> None:
        self.server = ServerSide(server_opts(**server_kw), policy)
        self.cli = SMTPClient(copts or ClientOptions(ehlo_hostname="client.example"))
        self.events: list = []
        self.wire: list[bytes] = []          # everything the client wrote, in order
        self.cli.receive_data(self.server.banner)

    def run(self):
        """Pump until the client is idle or closed; returns IDLE or CLOSED."""
        for _ in range(10000):
            ev = self.cli.next_event()
            if ev is NEED_DATA:
                out = self.cli.data_to_send()
                assert out, "client waits for a reply but sent nothing"
                self.wire.append(out)
                reply = self.server.send(out)
                if reply:
                    self.cli.receive_data(reply)
                if self.server.closed:
                    self.cli.receive_data(b"")
                continue
            if isinstance(ev, UpgradeTLS):
                out = self.cli.data_to_send()
                if out:
                    self.wire.append(out)
                    self.server.send(out)
                self.cli.tls_started({"protocol": "TEST"})
                continue
            if ev in (IDLE, CLOSED):
                out = self.cli.data_to_send()
                if out:
                    self.wire.append(out)
                    self.server.send(out)
                return ev
            self.events.append(ev)
        raise AssertionError("link does not settle")

    def deliver(self, t: Transaction, body: bytes = BODY) -> list:
        self.cli.send_mail(t, body)
        assert self.run() in (IDLE, CLOSED)
        dones = [e for e in self.events if isinstance(e, TransactionDone)]
        return dones[-1].outcomes


__all__ = ["BANNER", "BODY", "EHLO_ALL", "EHLO_PIPE", "EHLO_PLAIN", "Link", "Scripted",
           "dsn_txn", "txn"]
