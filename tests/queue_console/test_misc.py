"""unlink stats, trace smtp, spool_in, spool import against a live daemon."""

from __future__ import annotations

import re

from ecmta.tests.harness import free_port
from ecmta.tests.queue_console.helpers import gateway, wait_for


def test_unlink_stats_trace_and_spool_commands(qmta, smtp_sink):
    port = free_port()
    smtp_sink(port)
    m = qmta(tail=gateway("u.test", "u"), ports={"u": port})
    m.send("a@s.test", ["u1@u.test", "u2@u.test"])
    m.wait_queue("u.test", 0, 0)
    wait_for(lambda: m.summary()["Successfully Delivered Messages"] == "2", what="two deliveries")

    # unlink stats: the page's rows and columns (console_commands.unlink_stats)
    def settled():
        text = m.ok("unlink stats")
        return text if re.search(r"^Current Backlog: +0$", text, re.M) else None
    lines = wait_for(settled, what="the removals to finish").splitlines()
    assert lines[0] == "                   Messages    Headers    Bodies"
    for line, label in zip(lines[1:5], ("Submissions    ", "Attempts       ", "  Failures     ",
                                        "  Successes    ")):
        assert re.fullmatch(rf"{label}:( +\d+){{3}}", line) and len(line) == 48, line
    assert int(lines[1].split(":")[1].split()[0]) >= 2 and lines[3].split(":")[1].split() == ["0"] * 3
    assert re.fullmatch(r"  Success Rate :( +\d+\.\d\d%){3}", lines[5]) and len(lines[5]) == 49
    assert lines[6:] == ["Current Backlog:      0", "Batch Backlog  :      0"]
    assert "usage: unlink stats" in m.err("unlink stats now")

    # trace smtp: bookkeeping only; adding a tracer is refused, not pretended
    assert m.err("trace smtp add * u.test /tmp/smtp.trace") == \
        "trace smtp add: outbound SMTP tracing is not available in this version"
    assert "usage: trace smtp add" in m.err("trace smtp add u.test")
    assert m.ok("trace smtp list") == ""
    assert m.err("trace smtp remove 1") == "No smtp tracer #1"
    assert "usage: trace smtp" in m.err("trace smtp")

    # spool_in: delivered messages are gone from the spool; ids are checked
    unknown = "00/00-00001-00000001"
    assert m.err(f"spool_in {unknown}") == f"Message {unknown} is not in the spool."
    assert "is not a message id" in m.err("spool_in 42")
    assert m.err("spool import /var/spool/ecelerity") == \
        "spool import: importing another spool is not available in this version"
    assert "not available in this version" in m.err("spool import_poll /var/spool/ecelerity")

    # help knows the commands
    text = m.ok("help")
    for name in ("mailq", "showqueue", "binding summary", "reroute queue", "show outbound"):
        assert name in text
