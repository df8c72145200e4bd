"""Shared pieces of the queue console tests: a daemon that queues mail for gateway domains,
Postfix's smtp-sink as the receiving side, an smtplib sender, bounded waits.

Every wait is bounded (WAIT seconds unless told).
"""

from __future__ import annotations

import os
import re
import smtplib

from ecmta.tests import harness
from ecmta.tests.harness import Daemon, free_port

WAIT = 20.0
ID_RE = r"[0-9A-F]{2}/[0-9A-F]{2}-\d{5}-[0-9A-F]{8}"

BASE = """\
spoolbase = "$home/spool"
hostname = "mx.ecmta.test"
relay_hosts = ( "127.0.0.0/8" )
retry_interval = 600
host_failure_retry = 0
delayed_queue_scan_interval = 1
connect_timeout = 5
idle_timeout = 1
{glob}
ESMTP_Listener {{
  Listen "127.0.0.1:$smtp" {{ }}
}}
ec_logger "ec_logger" {{
  mainlog = "$home/log/mainlog.ec"
  paniclog = "$home/log/paniclog.ec"
}}
{tail}
"""


def wait_for(pred, timeout: float = WAIT, interval: float = 0.05, what: str = "condition"):
    """harness.wait_for with this suite's default timeout."""
    return harness.wait_for(pred, timeout, interval, what)


def gateway(domain: str, port_name: str, extra: str = "") -> str:
    """A Domain stanza sending `domain`'s mail to 127.0.0.1:$<port_name>."""
    return f'Domain "{domain}" {{\n  Gateway = "127.0.0.1:${port_name}"\n{extra}}}\n'


class QMTA:
    """A running daemon with one SMTP listener on 127.0.0.1:$smtp."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon

    @property
    def ports(self) -> dict:
        return self.d.ports

    def ok(self, line: str) -> str:
        return self.d.ok(line)

    def err(self, line: str) -> str:
        ok, text = self.d.console(line)
        assert not ok, f"console {line!r} should have failed: {text}"
        return text

    def send(self, sender: str, rcpts, subject: str = "test", body: str = "hello\r\n") -> None:
        msg = f"From: <{sender}>\r\nTo: <{rcpts[0]}>\r\nSubject: {subject}\r\n\r\n{body}"
        with smtplib.SMTP("127.0.0.1", self.ports["smtp"], local_hostname="client.test",
                          timeout=WAIT) as s:
            refused = s.sendmail(sender, list(rcpts), msg.encode())
            assert not refused, refused

    # -- reading the queues through the console ------------------------------------------
    def mailq(self) -> dict[tuple, tuple[int, int]]:
        """(group/binding, domain) -> (AQ, DQ) from `mailq`."""
        out = {}
        for line in self.ok("mailq --limit 1000").splitlines()[2:]:
            gb, domain, aq, dq = line.split()
            out[(gb, domain)] = (int(aq), int(dq))
        return out

    def wait_queue(self, domain: str, aq: int, dq: int, gb: str = "default/default",
                   timeout: float = WAIT):
        return wait_for(lambda: self.mailq().get((gb, domain)) == (aq, dq), timeout,
                        what=f"{gb} {domain} to hold AQ {aq} DQ {dq} (now {self.mailq()})")

    def queued_ids(self, domain: str, binding: str = "default") -> list[str]:
        text = self.ok(f"showqueue binding {binding} {domain}")
        return re.findall(r"^\[\w+/[^]]+\] (" + ID_RE + ") Created:", text, re.M)

    def summary(self) -> dict[str, str]:
        out = {}
        for line in self.ok("summary").splitlines()[1:]:
            label, _, value = line.strip().partition(": ")
            out[label] = value.strip()
        return out

    def mainlog(self) -> list[str]:
        try:
            with open(os.path.join(self.d.home, "log", "mainlog.ec"), errors="replace") as fh:
                return [ln for ln in fh.read().splitlines() if not ln.endswith("@@@@M")]
        except OSError:
            return []


def start_qmta(factory, *, glob: str = "", tail: str = "", ports: dict | None = None,
               files: dict | None = None) -> QMTA:
    all_ports = {"smtp": free_port()}
    all_ports.update(ports or {})
    d = factory(BASE.format(glob=glob, tail=tail), ports=all_ports)
    for name, text in (files or {}).items():
        path = os.path.join(d.home, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as fh:
            fh.write(text)
    d.start()
    return QMTA(d)


# -- Postfix smtp-sink --------------------------------------------------------------------------

SmtpSink = harness.SmtpSink   # Postfix's smtp-sink (tests/harness.py)
