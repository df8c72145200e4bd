"""The queue views and the message commands against a real daemon: mail for gateway
domains whose port is closed sits in the delayed queue (retry_interval 600), so every
number the commands print is known; outputs are compared with the pages' layouts line by
line, with this test's values."""

from __future__ import annotations

import re
import time

from ecmta.tests.queue_console.helpers import ID_RE, gateway, wait_for

HEADER = """\
Group/Binding                                       Domain      AQ      DQ
--------------------------------------------------------------------------"""
TAIL = gateway("q.test", "q") + gateway("r.test", "r") + gateway("s.test", "s")
NO_VALID_HOSTS = "451 4.4.1 [internal] No valid hosts (unable to make any connections)"


def _start(qmta):
    from ecmta.tests.harness import free_port
    m = qmta(tail=TAIL, ports={"q": free_port(), "r": free_port(), "s": free_port()})
    m.send("a@s.test", ["x1@q.test", "x2@q.test", "x3@q.test"], subject="to q")
    m.send("a@s.test", ["y1@r.test", "y2@r.test"], subject="to r")
    m.wait_queue("q.test", 0, 3)
    m.wait_queue("r.test", 0, 2)
    return m


def test_listings(qmta):
    m = _start(qmta)
    assert m.ok("mailq") == HEADER + """
default/default                                     q.test       0       3
default/default                                     r.test       0       2"""
    assert m.ok("mailq -d r.test") == HEADER + """
default/default                                     r.test       0       2"""
    assert m.ok("mailq --domain r.test q.test --limit 1") == HEADER + """
default/default                                     q.test       0       3"""
    assert m.ok("mailq -b default -l 5").count("\n") == 3
    assert m.ok("mailq --binding other") == HEADER
    assert "usage: mailq" in m.err("mailq q.test")

    total = "                                Total:  C:   0  A:      0  D:     5  S:     0"
    q_row = "Domain:                         q.test  C:  0  A:      0  D:     3  S:     0"
    r_row = "Domain:                         r.test  C:  0  A:      0  D:     2  S:     0"
    assert m.ok("active 0") == total
    assert m.ok("active") == total
    assert m.ok("delayed 0") == "\n".join([q_row, r_row, total])
    assert m.ok("delayed 2") == "\n".join([q_row, total])
    assert m.ok("binding delayed default 0") == "\n".join([q_row, r_row, total])
    assert m.ok("binding active default 0") == total
    assert m.err("binding active nosuch 1") == "Binding 'nosuch' not found."
    assert "usage: delayed" in m.err("delayed lots")
    # domain all: the configured domains too (s.test has no queue yet)
    assert m.ok("domain all") == "\n".join([
        "Domain summary:", q_row, r_row,
        "Domain:                         s.test  C:  0  A:      0  D:     0  S:     0",
        "Totals: C:   0  A:      0  D:     5  S:     0"])
    assert m.ok("domains") == m.ok("domain all")

    # showqueue: queue order, From/To, Created = arrival (unix time)
    text = m.ok("showqueue q.test")
    lines = text.splitlines()
    assert len(lines) == 6
    ids = []
    for i, rcpt in enumerate(["x1@q.test", "x2@q.test", "x3@q.test"]):
        g = re.fullmatch(r"\[delayed/default\] (" + ID_RE + r") Created: (\d+)", lines[2 * i])
        assert g, lines[2 * i]
        assert abs(int(g.group(2)) - time.time()) < 60
        ids.append(g.group(1))
        assert lines[2 * i + 1] == f"  From: <a@s.test> To: <{rcpt}>"
    assert m.ok("showqueue q.test 1,1") == "\n".join(lines[2:4])
    assert m.ok("showqueue q.test 2") == "\n".join(lines[:4])
    assert m.ok("showqueue binding all q.test") == text
    assert m.ok("showqueue binding default q.test 100,0") == text
    assert m.err("showqueue none.test") == "Domain 'none.test' has no queue on binding 'default'."
    assert m.err("showqueue binding nosuch q.test") == "Binding 'nosuch' not found."

    # the ids are the R lines' ids
    wait_for(lambda: set(ids) <= {ln.split("@")[1] for ln in m.mainlog() if "@R@" in ln},
             what="the R lines (mainlog lines may wait 20 ms for company)")
    r_ids = {ln.split("@")[1] for ln in m.mainlog() if "@R@" in ln}
    assert set(ids) <= r_ids


def test_message_details(qmta):
    m = _start(qmta)
    msg_id = m.queued_ids("q.test")[0]
    size = wait_for(lambda: [ln.split("@")[10] for ln in m.mainlog() if f"@{msg_id}@" in ln and "@R@" in ln],
                    what="the R line")[0]
    text = m.ok(f"message details {msg_id}")
    lines = text.splitlines()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
    assert lines[:2] == [f"Message: {msg_id}", "Message Type: full message"]
    assert re.fullmatch(rf"               Created: {stamp}", lines[2]), lines[2]
    assert re.fullmatch(rf"          Next Attempt: {stamp}", lines[3]), lines[3]
    created = time.mktime(time.strptime(lines[2].split(": ")[1], "%Y-%m-%d %H:%M:%S"))
    next_at = time.mktime(time.strptime(lines[3].split(": ")[1], "%Y-%m-%d %H:%M:%S"))
    assert 590 <= next_at - created <= 610              # retry_interval = 600
    assert lines[4:] == [
        "               Retries: 1",
        "          Received Via: SMTP 127.0.0.1 (IPv4)",
        "                Sender: a@s.test",
        "             Recipient: x1@q.test",
        f"                  Code: {NO_VALID_HOSTS}",
        f"                  Size: {size}"]
    body = m.ok(f"message details body {msg_id}")
    assert body.startswith("Return-Path: <a@s.test>\nReceived: from [127.0.0.1]")
    assert "\nSubject: to q\n" in body and body.endswith("\n\nhello")
    assert m.ok(f"message details full {msg_id}") == text + "\n" + body
    unknown = "00/00-00001-00000001"
    assert m.err(f"message details {unknown}") == f"Message {unknown} not found in the queue."
    assert "is not a message id" in m.err("message details banana")
    assert "usage: message details" in m.err("message details")


def test_summary_and_domain(qmta):
    m = _start(qmta)
    text = m.ok("summary")
    lines = text.splitlines()
    assert lines[0] == "Summary Statistics"
    labels = [ln.split(":")[0].strip() for ln in lines[1:]]
    assert labels == [
        "Outbound Concurrency", "Inbound Concurrency", "Active Domains", "Active Queue Size",
        "Delayed Queue Size", "Destaged Queue Size", "Total Queue Size", "DNS A Queries",
        "DNS MX Queries", "Pending DNS Queries", "Query Rate", "Successfully Delivered Messages",
        "Failed Messages", "Rejected Messages", "Received Messages", "Delivery Rate",
        "Reception Rate", "Statistics Last Reset", "Uptime"]
    assert all(ln.startswith("        ") and not ln.startswith("         ") for ln in lines[1:])
    s = m.summary()
    assert lines[1] == "        Outbound Concurrency:       0"
    assert lines[2] == "        Inbound Concurrency:       0"
    assert lines[3] == "        Active Domains:       2"
    assert lines[4:8] == ["        Active Queue Size:      0", "        Delayed Queue Size:      5",
                          "        Destaged Queue Size:      0", "        Total Queue Size:      5"]
    assert lines[12:16] == ["        Successfully Delivered Messages:      0",
                            "        Failed Messages:      0", "        Rejected Messages:      0",
                            "        Received Messages:      5"]
    assert re.fullmatch(r"        Query Rate: +\d+\.\d\d queries/second", lines[11])
    assert re.fullmatch(r"        Delivery Rate:   0\.00 messages/second", lines[16])
    assert re.fullmatch(r"        Reception Rate: +\d+\.\d\d messages/second", lines[17])
    assert re.fullmatch(r"        Statistics Last Reset: +\d+ seconds", lines[18])
    assert re.fullmatch(r"        Uptime: +\d+ seconds", lines[19])
    assert int(s["Uptime"].split()[0]) >= int(s["Statistics Last Reset"].split()[0])
    # an open inbound session counts
    import smtplib
    with smtplib.SMTP("127.0.0.1", m.ports["smtp"], timeout=10) as c:
        c.ehlo("client.test")
        assert m.summary()["Inbound Concurrency"] == "1"

    text = m.ok("domain q.test")
    lines = text.splitlines()
    assert lines[:3] == ["Domain q.test {", f'  gateway = "127.0.0.1:{m.ports["q"]}"', "}"]
    assert re.fullmatch(r"Domain 'q\.test' has 0 MXs and a TTL of \d+ seconds", lines[3]), lines[3]
    assert lines[4] == "  [0 127.0.0.1 TTL:3600]"
    assert lines[5] == " =>     [127.0.0.1] IPv4 (0.00ms con 0.00ms dlv)"
    rest = [ln for ln in lines[6:] if not ln.startswith("                (also used by")]
    assert re.fullmatch(r"Domain has had \d+ consecutive connection failures", rest[0]), rest
    assert rest[1:] == ["Queue:", "        Active:          0", "        Delayed:         3",
                        "Deliveries:         0", "Failures:           0", "Active Connections: 0"]
    also = [ln for ln in lines[6:] if ln.startswith("                (also used by")]
    assert "                (also used by r.test pref 0)" in also
    assert m.err("domain none.test") == "Domain 'none.test' not found."
    # a configured domain without mail: the config block, nothing in the route cache
    assert m.ok("domain s.test").splitlines()[:4] == [
        "Domain s.test {", f'  gateway = "127.0.0.1:{m.ports["s"]}"', "}",
        "Domain 's.test' is not in the DNS cache"]

    assert m.ok("summary reset") == "statistics cleared."
    s = m.summary()
    assert (s["Received Messages"], s["Failed Messages"], s["Delayed Queue Size"]) == ("0", "0", "5")
    assert int(s["Statistics Last Reset"].split()[0]) <= 2
    assert "not available in this version" in m.err("summary with-mobile")


def test_retry_fail_flush(qmta, smtp_sink):
    m = _start(qmta)
    x1, x2, x3 = m.queued_ids("q.test")

    def retries(msg_id):
        ok, text = m.d.console(f"message details {msg_id}")
        if not ok:       # caught while its attempt is on the wire
            assert text.endswith("it is in the process of being delivered."), text
            return None
        return text.splitlines()[4].split(": ")[1]
    assert m.ok(f"message retry {x1}") == "Message requeued for delivery"
    wait_for(lambda: retries(x1) == "2", what="the retried message's second attempt")
    m.wait_queue("q.test", 0, 3)

    # fail quiet: no bounce; fail: a bounce to the sender (s.test, kept queued)
    assert m.ok(f"message fail quiet {x2}") == f"Message {x2} failed."
    assert m.ok(f"message fail {x3}") == f"Message {x3} failed."
    m.wait_queue("q.test", 0, 1)
    m.wait_queue("s.test", 0, 1)
    bounce = m.ok("showqueue s.test").splitlines()
    assert bounce[1] == "  From: <> To: <a@s.test>"
    p_lines = wait_for(lambda: (lambda ls: ls if len(ls) >= 2 else None)(
        [ln for ln in m.mainlog() if "@P@" in ln]), what="two P lines")
    assert {ln.split("@")[1] for ln in p_lines} == {x2, x3}
    assert all(ln.endswith("554 5.0.0 [internal] manually failed.") for ln in p_lines)
    assert m.err(f"message retry {x2}") == f"Message {x2} not found in the queue."
    assert m.err(f"message fail {x2}") == f"Message {x2} not found in the queue."

    # fail domain: every message of the domain, bounced; quiet: none bounced
    assert m.ok("fail domain r.test") == "r.test purged, 2 messages failed."
    m.wait_queue("r.test", 0, 0)
    m.wait_queue("s.test", 0, 3)
    purged = wait_for(lambda: (lambda ls: ls if len(ls) >= 2 else None)(
        [ln for ln in m.mainlog() if "@P@r.test@" in ln]), what="two P lines for r.test")
    assert len(purged) == 2
    assert all(ln.endswith("@554 5.7.0 [internal] Message manually purged") for ln in purged)
    assert m.ok("fail domain quiet s.test") == "s.test purged, 3 messages failed."
    m.wait_queue("s.test", 0, 0)
    assert m.err("fail domain none.test") == "Domain 'none.test' not found."

    # flush: the receiver is back, the delayed message goes at once
    smtp_sink(m.ports["q"])
    assert m.ok("flush domain q.test") == "q.test flushed.  1 messages requeued."
    m.wait_queue("q.test", 0, 0)
    d_lines = wait_for(lambda: [ln for ln in m.mainlog() if "@D@" in ln], what="the D line")
    assert d_lines[0].split("@")[1] == x1
    s = m.summary()
    assert (s["Successfully Delivered Messages"], s["Failed Messages"], s["Received Messages"]) == \
        ("1", "7", "8")                     # 5 received + 3 bounces; 2+2+3 failed
    assert m.ok("flush domain all") == "All domains flushed.  0 messages requeued."
    assert m.err("flush domain none.test") == "Domain 'none.test' not found."
    row = "Domain:                         q.test  C:  0  A:      0  D:     0  S:     1"
    wait_for(lambda: row in m.ok("domain all").splitlines(),   # the idle connection closes
             what="q.test's connection to close")
    lines = m.ok("domain q.test").splitlines()
    assert lines[-3:] == ["Deliveries:         1", "Failures:           2", "Active Connections: 0"]
    g = re.fullmatch(r" =>     \[127\.0\.0\.1\] IPv4 \((\d+\.\d\d)ms con (\d+\.\d\d)ms dlv\)", lines[5])
    assert g and float(g.group(2)) > 0, lines[5]
