"""A real daemon logs its mainlog to a jlog (`jlog:///...=>reader`) and its rejectlog to a
`cluster://` one; mail arrives over ESMTP; a second process reads the records back through
the reader API, checkpoints them, and sees the later ones after that."""

from __future__ import annotations

import json
import os
import re
import smtplib
import subprocess
import sys
import textwrap
import time

from ecmta.loggers.jlog import Jlog
from ecmta.tests.harness import free_port
from ecmta.tests.jlog.helpers import run_cli

CONFIG = """\
spoolbase = "$home/spool"
hostname = "mx.ecmta.test"
relay_domains = ( "example.com" )
ESMTP_Listener {
  Listen "127.0.0.1:$smtp" { }
}
ec_logger "ec_logger" {
  mainlog = "jlog:///$home/mainlog.jlog=>reader"
  rejectlog = "cluster:///$home/rejectlog.cluster"
  heartbeat = 0
}
"""

READER = textwrap.dedent("""
    import json, sys
    from ecmta.loggers.jlog import Jlog
    path, sub, checkpoint = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    r = Jlog(path).open_reader(sub)
    out, last = [], None
    for id, (ts, data) in r.pending():
        out.append([str(id), ts, data.decode()])
        last = id
    if checkpoint and last is not None:
        r.checkpoint(last)
    r.close()
    print(json.dumps({"records": out, "lag": Jlog(path).lag(sub)}))
""")

MAIN_R = re.compile(r"^(\d+)@([0-9A-F/-]+)@[0-9A-F/-]+@[0-9A-F/-]+@R@(\w+)@example\.com@sender@"
                    r"client\.test@127\.0\.0\.1@\d+@esmtp@default@default\n$")


def _read(path: str, sub: str, checkpoint: bool) -> dict:
    p = subprocess.run([sys.executable, "-c", READER, path, sub, "1" if checkpoint else "0"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def _send(port: int, rcpts: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=15) as s:
        for rcpt in rcpts:
            s.sendmail("sender@client.test", [rcpt], f"Subject: to {rcpt}\r\n\r\nhello\r\n")
        try:
            s.sendmail("sender@client.test", ["nobody@elsewhere.test"], "Subject: x\r\n\r\nx\r\n")
        except smtplib.SMTPRecipientsRefused:
            pass


def _wait(pred, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_mainlog_jlog_read_by_another_process(daemon_factory):
    d = daemon_factory(CONFIG, ports={"smtp": free_port()}, skip=("queue",)).start()
    mainlog = os.path.join(d.home, "mainlog.jlog")
    rejectlog = os.path.join(d.home, "rejectlog.cluster")
    # created on open, with the subscriber of the URI (and `master` by default)
    assert Jlog(mainlog).list_subscribers() == ["reader"]
    assert Jlog(rejectlog).list_subscribers() == ["master"]

    _send(d.ports["smtp"], ["alice@example.com", "bob@example.com"])
    first = _wait(lambda: (r := _read(mainlog, "reader", True))["records"] and r)
    if len(first["records"]) < 2:
        more = _wait(lambda: _read(mainlog, "reader", True)["records"])
        first["records"] += more
    lines = [data for _id, _ts, data in first["records"]]
    assert [MAIN_R.match(x).group(3) for x in lines] == ["alice", "bob"], lines
    ids = [i for i, _ts, _d in first["records"]]
    assert ids == ["00000000:00000001", "00000000:00000002"]
    for _i, ts, data in first["records"]:
        assert abs(ts - int(data.split("@")[0])) < 2      # the record's time is the line's

    # checkpointed: the next read sees only what came after
    assert _read(mainlog, "reader", False)["records"] == []
    _send(d.ports["smtp"], ["carol@example.com"])
    later = _wait(lambda: _read(mainlog, "reader", False)["records"])
    assert [MAIN_R.match(x).group(3) for _i, _t, x in later] == ["carol"]
    assert later[0][0] == "00000000:00000003"

    rejects = _wait(lambda: _read(rejectlog, "master", False)["records"])
    assert "nobody@elsewhere.test" in rejects[0][2] or "elsewhere.test" in rejects[0][2]

    assert d.stop() == 0
    for path in (mainlog, rejectlog):
        check = run_cli("jlog_sanity_check", sys.byteorder[0] + "e", path)
        assert (check.returncode, check.stdout) == (0, ""), check.stdout + check.stderr
    assert _read(mainlog, "reader", True)["lag"] == 0
