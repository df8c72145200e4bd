"""Shared pieces of the log consumer daemon tests: the config (ESMTP listener, x.test
delivered to Postfix's smtp-sink by Gateway, mainlog/bouncelog, log_streams), a sender,
mainlog readers, consumer processes, bounded waits."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import subprocess
import sys
import time

from ecmta.tests.custom_logger.helpers import SmtpSink, wait_for  # noqa: F401  (re-exported)

WAIT = 30.0

CONFIG = """\
spoolbase = "$home/spool"
hostname = "mx.ecmta.test"
relay_domains = ( "x.test" "later.test" )
retry_interval = 600
host_failure_retry = 0
connect_timeout = 3
ESMTP_Listener {
  Listen "127.0.0.1:$smtp" { }
}
ec_logger "ec_logger" {
  mainlog = "log/mainlog.ec"
  rejectlog = "log/rejectlog.ec"
  heartbeat = 0
}
bounce_logger "bounce_logger" {
  bouncelog = "log/bouncelog.ec"
  heartbeat = 0
}
Domain "x.test" {
  Gateway = "127.0.0.1:$sink"
}
Domain "later.test" {
  Gateway = "127.0.0.1:$late"
}
"""

MAIN_LINE = re.compile(r"^\d+@(?P<id>[^@]+)@[^@]*@[^@]*@(?P<type>[RDTP])@")


def send(port: int, rcpts: list[str], sender: str = "sender@client.test") -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        for rcpt in rcpts:
            s.sendmail(sender, [rcpt], f"Subject: to {rcpt}\r\n\r\nhello\r\n")


def mainlog(home: str, name: str = "mainlog.ec") -> list[tuple[str, str, str]]:
    """(type, message id, line) of the mainlog's R/D/T/P lines."""
    try:
        with open(os.path.join(home, "log", name), encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        m = MAIN_LINE.match(line)
        if m:
            out.append((m.group("type"), m.group("id"), line))
    return out


def wait_mainlog(home: str, pred, what: str, timeout: float = WAIT, name: str = "mainlog.ec"):
    return wait_for(lambda: (lambda ls: ls if pred(ls) else None)(mainlog(home, name)), timeout,
                    what=f"{what} (mainlog now {mainlog(home, name)[-4:]})")


def count(lines, kind: str) -> int:
    return sum(1 for t, _i, _l in lines if t == kind)


def stream_path(home: str, name: str) -> str:
    return os.path.join(home, "streams", f"{name}.jlog")


class ConsumerProc:
    """tests/log_consumers/consumer_proc.py in a process of its own."""

    def __init__(self, home: str, stream: str, subscriber: str, out: str, *args: str) -> None:
        self.out = out
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ecmta.tests.log_consumers.consumer_proc", home, stream,
             subscriber, out, *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def lines(self) -> list[tuple[str, str, str]]:
        try:
            with open(self.out) as fh:
                return [tuple(ln.split(" ", 2)) for ln in fh.read().splitlines() if ln]
        except OSError:
            return []

    def wait_lines(self, n: int, timeout: float = WAIT) -> list:
        def enough():
            if self.proc.poll() is not None and len(self.lines()) < n:
                raise AssertionError(f"consumer exited {self.proc.returncode}: "
                                     f"{self.proc.stderr.read().decode(errors='replace')}")
            got = self.lines()
            return got if len(got) >= n else None
        return wait_for(enough, timeout, what=f"{n} consumer lines (now {len(self.lines())})")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def wait_exit(self, timeout: float = WAIT) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("consumer did not finish in time")


def monotonic_ms() -> float:
    return time.monotonic() * 1000
