"""Shared pieces of the queue console tests: a daemon that queues mail for gateway domains,
Postfix's smtp-sink as the receiving side, an smtplib sender, bounded waits.

Every wait is bounded (WAIT seconds unless told).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import smtplib
import socket
import subprocess
import time

import pytest

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
    """Poll `pred` until it returns something truthy; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


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

class SmtpSink:
    """`smtp-sink [options] 127.0.0.1:<port> 100`, stopped by `stop()`."""

    def __init__(self, port: int, *options: str) -> None:
        exe = shutil.which("smtp-sink", path=os.environ.get("PATH", "") + ":/usr/sbin")
        if exe is None:
            pytest.skip("smtp-sink is not installed (./run-tests installs postfix)")
        args = [exe]
        if os.geteuid() == 0:
            args += ["-u", pwd.getpwnam("nobody").pw_name]
        args += [*options, f"127.0.0.1:{port}", "100"]
        self.port = port
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)

        def listening():
            if self.proc.poll() is not None:
                return True
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_for(listening, 10, what="smtp-sink to listen")
        assert self.proc.poll() is None, self.proc.stderr.read().decode()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
