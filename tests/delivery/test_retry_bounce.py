"""Transient failures are retried on Momentum's schedule, permanent ones and expiry bounce:
the remote's RCPT arrival times measure the schedule; the DSN arrives at the original
sender's domain (a second ecmta, or the recording sink); mainlog T, P, D and the bounce's
R line are checked field by field (log_formats.mainlog).
"""

import time

from ecmta.tests.delivery.helpers import domain_port, parse_mail, wait_for

SENDER = "alice@sender.test"


def rcpt_times(sink, addr):
    return [e["t"] for e in sink.events("rcpt") if e["addr"] == addr]


def test_4xx_then_2xx_is_retried_on_schedule(mta, sink):
    """retry_interval 1, max_retry_interval 4: the waits after the 1st and 2nd failures are
    1 s and 2 s (retry_interval * 2**(n-1), conf.ref.retry_interval); the third attempt
    delivers. T lines count retries from 0; the D line says 2 retries."""
    addr = "later@retry.test"
    s = sink(rcpt={addr: ["451 4.3.0 try again later", "452 4.2.2 mailbox busy", "250 2.1.5 ok"]})
    a = mta(glob="retry_interval = 1\nmax_retry_interval = 4", tail=domain_port("retry.test", s.port))
    a.send(SENDER, [addr])
    [m] = s.wait_messages(1, timeout=30)
    assert m["rcpts"] == [addr]
    t = rcpt_times(s, addr)
    assert len(t) == 3, t
    w1, w2 = t[1] - t[0], t[2] - t[1]
    assert 0.9 <= w1 <= 2.5, (w1, w2)
    assert 1.9 <= w2 <= 3.5, (w1, w2)

    [r] = a.records("R")
    ts = a.wait_records("T", 2)
    [d] = a.wait_records("D", 1)
    for n, (row, text) in enumerate(zip(ts, ("451 4.3.0 try again later", "452 4.2.2 mailbox busy"))):
        assert (row["id"], row["batch"], row["conn"]) == (r["id"], r["batch"], r["conn"])
        assert (row["type"], row["domain"], row["group"], row["binding"], row["stage"],
                row["retries"], row["ip"], row["text"]) == \
            ("T", "retry.test", "default", "default", "4", str(n), "127.0.0.1", text)
        assert int(row["bytes"]) > 0           # connected: the envelope went out
    assert float(ts[0]["seconds"]) < float(ts[1]["seconds"]) < float(d["seconds"])
    assert (d["domain"], d["size"], d["group"], d["binding"], d["retries"], d["ip"]) == \
        ("retry.test", r["size"], "default", "default", "2", "127.0.0.1")
    assert not a.records("P")
    wait_for(lambda: not a.spooled(), what="A's spool to empty")


def test_5xx_bounces_to_the_senders_domain_on_a_second_ecmta(mta, sink):
    """A 550 at RCPT: P line (stage 4, retries 0, the remote's text); a DSN from <> is
    generated (R line, protocol internal), delivered (D line) to sender.test's MX, a second
    ecmta, which holds an RFC 3464 report naming the recipient, status and remote reply."""
    addr = "nobody@bounce.test"
    s = sink(rcpt={addr: ["550 5.1.1 no such user here"]})
    b = mta(hostname="b.ecmta.test", relay='"sender.test"',
            tail='Domain "sender.test" {\n  suspend_delivery = true\n}\n')
    a = mta(tail=domain_port("bounce.test", s.port) + domain_port("sender.test", b.port))
    a.send(SENDER, [addr], subject="will bounce")
    [p] = a.wait_records("P", 1)
    [r_orig, r_bounce] = a.wait_records("R", 2)
    assert (p["id"], p["batch"], p["conn"]) == (r_orig["id"], r_orig["batch"], r_orig["conn"])
    assert (p["domain"], p["group"], p["binding"], p["stage"], p["retries"], p["ip"], p["text"]) == \
        ("bounce.test", "default", "default", "4", "0", "127.0.0.1", "550 5.1.1 no such user here")
    assert int(p["bytes"]) > 0
    # the bounce: R with protocol internal, null sender, to the original sender
    assert (r_bounce["rl"], r_bounce["rd"], r_bounce["sl"], r_bounce["sd"], r_bounce["proto"]) == \
        ("alice", "sender.test", "", "", "internal")
    d = a.wait_records("D", 1, pred=lambda x: x["id"] == r_bounce["id"])[0]
    assert (d["domain"], d["size"], d["retries"], d["ip"]) == ("sender.test", r_bounce["size"], "0", "127.0.0.1")
    # the second ecmta received it from <>
    [rb] = b.wait_records("R", 1)
    assert (rb["rl"], rb["rd"], rb["sl"], rb["sd"]) == ("alice", "sender.test", "", "")
    [m] = wait_for(lambda: b.spooled(), what="the DSN in B's spool")
    assert (m.mailfrom, m.rcptto) == ("", SENDER)
    dsn = parse_mail(m.body)
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    text = m.body.decode("utf-8", "replace")
    assert "Final-Recipient: rfc822; " + addr in text
    assert "Action: failed" in text
    assert "Status: 5.1.1" in text
    assert "550 5.1.1 no such user here" in text
    assert "Subject: will bounce" in text           # headers of the original (default)
    assert dsn["From"] and "mailer-daemon@a.ecmta.test" in dsn["From"].lower()
    wait_for(lambda: not a.spooled(), what="A's spool to empty")


def test_expiry_fails_and_bounces(mta, sink):
    """message_expiration 3 s with retries every 1-2 s against a remote that always answers
    451: T lines, then the message fails with 554 5.4.7 [internal] exceeded max time without
    delivery (P line) and the sender (sender.test, the recording sink) gets the DSN."""
    addr = "stuck@expire.test"
    s = sink(rcpt={addr: ["451 4.3.0 not now"]})
    a = mta(glob="retry_interval = 1\nmax_retry_interval = 2",
            tail=domain_port("expire.test", s.port, "  message_expiration = 3\n") +
            domain_port("sender.test", s.port))
    t0 = time.time()
    a.send(SENDER, [addr], subject="will expire")
    [p] = a.wait_records("P", 1, timeout=30)
    took = time.time() - t0
    assert 2.5 <= took <= 10, took
    [r] = a.records("R")[:1]
    ts = a.records("T")
    attempts = len(rcpt_times(s, addr))
    assert attempts >= 2 and len(ts) == attempts - 1, (attempts, ts)
    assert [t["retries"] for t in ts] == [str(i) for i in range(len(ts))]
    assert (p["id"], p["domain"], p["group"], p["binding"], p["text"]) == \
        (r["id"], "expire.test", "default", "default",
         "554 5.4.7 [internal] exceeded max time without delivery")
    # the P line counts the attempts before the last one, like T and D lines do
    assert p["retries"] == str(attempts - 1), (p, attempts)
    assert float(p["seconds"]) >= 3.0
    # the bounce reaches sender.test
    dsns = wait_for(lambda: [m for m in s.messages() if m["mailfrom"] == "MAIL FROM:<>"],
                    what="the expiry DSN at the sink")
    assert dsns[0]["rcpts"] == [SENDER]
    body = s.body(dsns[0]).decode()
    assert "Final-Recipient: rfc822; " + addr in body
    assert "Action: failed" in body
    assert "Status: 5.4.7" in body
    assert "exceeded max time without delivery" in body
    wait_for(lambda: not a.spooled(), what="A's spool to empty")


def test_5xx_at_end_of_data_is_a_permanent_failure_after_the_body(mta, sink):
    """A 554 to the end of data: P line at stage 9 (reading confirmation) with the body's
    bytes counted; bounces go nowhere for a null sender (no DSN for a DSN)."""
    s = sink(data=["554 5.6.0 content refused"])
    a = mta(tail=domain_port("sink.test", s.port))
    a.send("", ["x@sink.test"], subject="null sender, refused")
    [p] = a.wait_records("P", 1)
    [r] = a.records("R")
    assert (p["domain"], p["stage"], p["retries"], p["text"]) == \
        ("sink.test", "9", "0", "554 5.6.0 content refused")
    assert int(p["bytes"]) >= int(r["size"])
    time.sleep(0)  # noqa: the bounce side is checked by its absence below
    wait_for(lambda: not a.spooled(), what="A's spool to empty")
    assert len(a.records("R")) == 1        # no bounce for a null sender


def test_unreachable_domain_is_transient_with_stage_0(mta):
    """Nothing listens at down.test's MX (127.0.0.9): T lines with 0 bytes at stage 0 and
    Momentum's connection failure text; the message stays queued (delayed)."""
    a = mta(glob="retry_interval = 1\nmax_retry_interval = 1")
    a.send(SENDER, ["x@down.test"])
    ts = a.wait_records("T", 2, timeout=20)
    [r] = a.records("R")
    for n, t in enumerate(ts[:2]):
        assert (t["id"], t["domain"], t["bytes"], t["stage"], t["retries"], t["text"]) == \
            (r["id"], "down.test", "0", "0", str(n),
             "451 4.4.1 [internal] No valid hosts (unable to make any connections)"), t
    assert not a.records("P") and not a.records("D")
    assert len(a.spooled()) == 1
