"""A daemon with an SMTP listener and a scriptlet policy for the audit series tests; SMTP
sessions from chosen loopback addresses (127.0.0.1, 127.0.0.2...). Mail is relayed to
queue.test, whose gateway is a port nothing listens on: accepted messages wait in the
queue (retry_interval 600 s), only the reception matters here."""

from __future__ import annotations

import os
import smtplib

from ecmta.tests import harness
from ecmta.tests.harness import free_port

WAIT = 20.0

BASE = """\
spoolbase = "$home/spool"
hostname = "mx1.ecmta.test"
relay_domains = ( "queue.test" )
retry_interval = 600
connect_timeout = 3
ESMTP_Listener {
  SMTP_Extensions = ( "ENHANCEDSTATUSCODES" "PIPELINING" )
  Listen "127.0.0.1:$smtp" { }
}
Domain "queue.test" {
  Gateway = "127.0.0.1:$closed"
}
scriptlet "scriptlet" {
  script "series" {
    source = "policy/series"
  }
}
"""


def wait_for(pred, timeout: float = WAIT, what: str = "condition"):
    return harness.wait_for(pred, timeout, 0.05, what)


class MTA:
    def __init__(self, daemon) -> None:
        self.d = daemon

    def path(self, *parts) -> str:
        return os.path.join(self.d.home, *parts)

    def smtp(self, source: str = "127.0.0.1", helo: str = "client.test") -> smtplib.SMTP:
        s = smtplib.SMTP("127.0.0.1", self.d.ports["smtp"], local_hostname=helo, timeout=WAIT,
                         source_address=(source, 0))
        s.ehlo(helo)
        return s

    def send(self, source: str = "127.0.0.1", sender: str = "alice@client.test",
             helo: str = "client.test") -> tuple[int, bytes]:
        """One message in its own session: the MAIL FROM reply if refused, else the reply
        to the end of data."""
        with self.smtp(source, helo) as s:
            code, text = s.mail(sender)
            if code != 250:
                return code, text
            assert s.rcpt("bob@queue.test")[0] == 250
            return s.data(b"Subject: t\r\n\r\nhello\r\n")


def start(daemon_factory, policy: str, tail: str = "", home: str | None = None) -> MTA:
    d = daemon_factory(BASE + tail, ports={"smtp": free_port(), "closed": free_port()}, home=home)
    write(d.home, "policy/series.lua", policy)
    d.start()
    return MTA(d)


def write(home: str, rel: str, text: str) -> None:
    path = os.path.join(home, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(text)
