"""Shared pieces of the local delivery tests: one daemon with maildir and pipe_transport
stanzas for several test domains, an SMTP client that returns the DATA reply, log and
spool readers. Every wait is bounded (WAIT seconds)."""

from __future__ import annotations

import os
import re
import smtplib
import stat

from ecmta.tests import harness
from ecmta.tests.harness import Daemon, free_port

WAIT = 15.0
ID_RE = r"[0-9A-F]{2}/[0-9A-F]{2}-\d{5}-[0-9A-F]{8}"
UNIQ_RE = re.compile(r"^(\d+)\.M(\d+)P(\d+)Q(\d+)R([0-9a-f]+)\.([^/:]+)$")

CODES_SH = """#!/bin/sh
cat > /dev/null
case "$RECIPIENT" in
  hard@*) exit 100 ;;
  soft@*) exit 111 ;;
  odd@*) exit 3 ;;
  env@*) echo "S=$SENDER R=$RECIPIENT L=$LOCAL H=$HOST" >> "$1" ;;
esac
exit 0
"""
SLOW_SH = """#!/bin/sh
echo $$ > "$1"
exec sleep 60
"""

CONFIG = """\
spoolbase = "$home/spool"
hostname = "mx.ecmta.test"
relay_domains = ( "in.test" "flat.test" "strict.test" "cat.test" "codes.test" "slow.test"
                  "okmap.test" "broken.test" "off.test" "remote.test" "shell.test" )
ESMTP_Listener {
  # 0 = the kernel's buffer: the documented 4096 makes large DATA crawl on loopback
  TCP_Recv_Buffer_Size = 0
  Listen "127.0.0.1:$smtp" { }
}
ec_logger "ec_logger" {
  mainlog = "$home/log/mainlog.ec"
  rejectlog = "$home/log/rejectlog.ec"
  paniclog = "$home/log/paniclog.ec"
}
maildir "inpath" {
  basedir = "$home/popbase"
  dirmode = 775
  filemode = 664
  create_users = true
  domain_in_path = true
  all_domains = false
  domains = ( "in.test" )
}
maildir "flat" {
  basedir = "$home/flatbase"
  createusers = true
  domain = "flat.test"
}
maildir "strict" {
  basedir = "$home/strictbase"
  createusers = false
  dirmode = 0750
  filemode = 0640
  domain_in_path = true
  domain = ( "strict.test" )
}
maildir "broken" {
  domain = "broken.test"
}
maildir "off" {
  enabled = false
  basedir = "$home/offbase"
  createusers = true
  domain = "off.test"
}
pipe_transport "cat" {
  program_name = "/bin/cat"
  output_file = "$home/pipe.stdout"
  error_file = "$home/pipe.stderr"
  domain = ( "cat.test" )
}
pipe_transport "codes" {
  program_name = "$home/codes.sh $home/env.out"
  domain = "codes.test"
  code = [
    100 = "550 command failed"
    111 = "450 try again later"
  ]
}
pipe_transport "shell" {
  program_name = "/bin/sh -c 'cat >/dev/null; exit 7'"
  domain = "shell.test"
}
pipe_transport "okmap" {
  program_name = "/bin/true"
  domain = "okmap.test"
  code = [
    "0" = "250 ok"
  ]
}
pipe_transport "slow" {
  program_name = "$home/slow.sh $home/slow.pid"
  domain = "slow.test"
  program_timeout = 2
}
"""


def message(subject: str = "hi", body: str = "hello\r\n") -> bytes:
    """A complete message (Date and Message-ID present, so reception adds only trace headers)."""
    return (f"From: a@sender.test\r\nTo: x@in.test\r\nSubject: {subject}\r\n"
            f"Date: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{subject}@sender.test>\r\n"
            f"\r\n{body}").encode()


def wait_for(pred, timeout: float = WAIT, interval: float = 0.05, what: str = "condition"):
    """harness.wait_for with this suite's default timeout."""
    return harness.wait_for(pred, timeout, interval, what)


class MTA:
    def __init__(self, d: Daemon) -> None:
        self.d = d

    @property
    def home(self) -> str:
        return self.d.home

    def path(self, *parts: str) -> str:
        return os.path.join(self.d.home, *parts)

    def send(self, rcpts, data: bytes | None = None, sender: str = "a@sender.test") -> tuple[int, str]:
        """One transaction; the reply to DATA (or to the first refused RCPT) as (code, text)."""
        with smtplib.SMTP("127.0.0.1", self.d.ports["smtp"], local_hostname="client.test",
                          timeout=WAIT) as s:
            s.ehlo()
            s.mail(sender)
            for r in rcpts:
                code, text = s.rcpt(r)
                if code >= 400:
                    return code, text.decode()
            code, text = s.data(message() if data is None else data)
            return code, text.decode()

    def lines(self, name: str) -> list[str]:
        try:
            with open(self.path("log", name), encoding="utf-8", errors="replace") as fh:
                return [ln for ln in fh.read().splitlines() if not ln.endswith("@@@@M")
                        and not ln.endswith(": Marker 1")]
        except OSError:
            return []

    def mainlog(self, kind: str | None = None, domain: str | None = None) -> list[list[str]]:
        out = []
        for ln in self.lines("mainlog.ec"):
            # fields split on unescaped @, then unescaped (loggers/formats.py esc)
            f = [re.sub(r"\\(.)", r"\1", x) for x in re.split(r"(?<!\\)@", ln)]
            if kind and f[4] != kind:
                continue
            if domain and domain not in f:
                continue
            out.append(f)
        return out

    def wait_mainlog(self, kind: str, domain: str, n: int = 1, where=None) -> list[list[str]]:
        """The `kind` lines naming `domain` (and passing `where`) once there are n of them."""
        def found():
            got = [f for f in self.mainlog(kind, domain) if where is None or where(f)]
            return got if len(got) >= n else None
        return wait_for(found, what=f"{n} {kind} lines for {domain}")

    def spooled(self) -> list:
        from ecmta.actors.spool_store import SpoolReader
        base = self.path("spool")
        if not os.path.exists(os.path.join(base, "spool.db")):
            return []
        reader = SpoolReader(base)
        try:
            return [m for m, bad in reader.rows() if m is not None]
        finally:
            reader.conn.close()

    def maildir_files(self, mailbox: str, sub: str = "new") -> list[str]:
        d = os.path.join(mailbox, sub)
        return sorted(os.listdir(d)) if os.path.isdir(d) else []


def start(extra_files: dict | None = None) -> MTA:
    d = Daemon(CONFIG, ports={"smtp": free_port()}, skip=("queue",))
    for name, text in {"codes.sh": CODES_SH, "slow.sh": SLOW_SH, **(extra_files or {})}.items():
        p = os.path.join(d.home, name)
        with open(p, "w") as fh:
            fh.write(text)
        os.chmod(p, 0o755)
    d.start()
    return MTA(d)


def mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)
