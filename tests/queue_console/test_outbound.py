"""Open outbound connections seen through the console: show outbound, count outbound,
the connection lines of `domain`, summary's Outbound Concurrency, the refusal to show or
change a message that is on the wire; then the per-IP times `domain` shows. smtp-sink
holds each DATA for a few seconds (-w), so the connection is there to be seen."""

from __future__ import annotations

import re

from ecmta.tests.harness import free_port
from ecmta.tests.queue_console.helpers import ID_RE, gateway, wait_for

HOLD = 3


def test_open_connection(qmta, smtp_sink):
    port = free_port()
    smtp_sink(port, "-w", str(HOLD))
    m = qmta(tail=gateway("w.test", "w"), ports={"w": port})
    m.send("a@s.test", ["w1@w.test"], subject="held")
    line = wait_for(lambda: m.ok("show outbound"), what="the outbound connection")
    g = re.fullmatch(r"(\d+): \[outbound/connection_handleconnect\] 127\.0\.0\.1 IPv4 127\.0\.0\.1", line)
    assert g, line
    fd = int(g.group(1))
    assert m.summary()["Outbound Concurrency"] == "1"
    assert m.ok("count outbound 32") == \
        "Displaying 'outbound' from /32 to /32\n      1" + " " * 33 + "127.0.0.1/32"
    assert m.ok("count outbound 127.0.0.1") == "1 sessions"
    assert m.ok("count outbound/default 127.0.0.0/8") == "1 sessions"
    assert m.ok("count outbound 10.0.0.0/8") == "0 sessions"
    assert m.err("count outbound/nosuch 32") == "Binding 'nosuch' not found."
    assert m.ok("count SMTP 127.0.0.1") == "0 sessions"        # still the inbound command
    assert "usage: count" in m.err("count outbound")

    lines = m.ok("domain w.test").splitlines()
    assert lines[-2] == "Active Connections: 1"
    g = re.fullmatch(r"\[ 1\] FD: +\d+  IP: +127\.0\.0\.1  State: (.+) \((\d+\.\d\d)ms\)", lines[-1])
    assert g, lines[-1]
    assert lines[-1] == f"[ 1] FD: {fd:6d}  IP:       127.0.0.1  State: {g.group(1)} ({g.group(2)}ms)"
    assert g.group(1) in ("during MAIL FROM", "during RCPT TO", "during DATA", "after DATA",
                          "while sending BODY", "reading confirmation")
    assert lines[-7:-1] == ["Queue:", "        Active:          1", "        Delayed:         0",
                            "Deliveries:         0", "Failures:           0", "Active Connections: 1"]
    assert m.ok("active 0") == "\n".join([
        "Domain:                         w.test  C:  1  A:      1  D:     0  S:     0",
        "                                Total:  C:   1  A:      1  D:     0  S:     0"])

    # the message on the wire: listed as active, not shown in detail, not retried or failed
    [row, _] = m.ok("showqueue w.test").splitlines()
    msg_id = re.fullmatch(r"\[active/default\] (" + ID_RE + r") Created: \d+", row).group(1)
    busy = f"Message {msg_id} is in the process of being delivered; try again when the attempt is over."
    assert m.err(f"message details {msg_id}") == \
        f"Cannot show details for message {msg_id}: it is in the process of being delivered."
    assert m.err(f"message retry {msg_id}") == busy
    assert m.err(f"message fail {msg_id}") == busy
    assert m.ok(f"spool_in {msg_id}") == f"Message {msg_id} is already in the queue."

    # delivered; the idle connection closes (idle_timeout 1)
    m.wait_queue("w.test", 0, 0, timeout=HOLD + 15)
    wait_for(lambda: m.ok("show outbound") == "", what="the connection to close")
    assert m.ok("count outbound 32") == "Displaying 'outbound' from /32 to /32"
    lines = m.ok("domain w.test").splitlines()
    g = re.fullmatch(r" =>     \[127\.0\.0\.1\] IPv4 \((\d+\.\d\d)ms con (\d+\.\d\d)ms dlv\)", lines[5])
    assert g, lines[5]
    assert float(g.group(2)) >= (HOLD - 0.5) * 1000        # MAIL FROM to the confirmation
    assert lines[-3:] == ["Deliveries:         1", "Failures:           0", "Active Connections: 0"]
    assert m.summary()["Successfully Delivered Messages"] == "1"
