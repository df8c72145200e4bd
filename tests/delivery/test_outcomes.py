"""Outcomes of one transaction and of a session, and the options that decide what a
failure leads to: per-recipient D/T/P lines of one batch, MX fallback, a 421 banner,
max_deliveries_per_connection, never_retry, max_retries, DSN NOTIFY=NEVER.
"""

from ecmta.tests.delivery.helpers import domain_port, wait_for

SENDER = "alice@sender.test"


def test_one_transaction_with_mixed_recipient_outcomes(mta, sink):
    """250, 451 and 550 to three recipients of one message in one transaction: one D, one
    T, one P line, each for its own recipient; only the 550 bounces; the 451 is retried
    alone and delivered."""
    ok, soft, hard = "ok@sink.test", "soft@sink.test", "hard@sink.test"
    s = sink(rcpt={soft: ["451 4.2.1 soft", "250 2.1.5 ok"], hard: ["550 5.1.1 hard"]})
    a = mta(glob="retry_interval = 1", tail=domain_port("sink.test", s.port) +
            domain_port("sender.test", s.port))
    a.send(SENDER, [ok, soft, hard], subject="mixed")
    rs = {f'{r["rl"]}@{r["rd"]}': r for r in a.wait_records("R", 3)}
    [t] = a.wait_records("T", 1)
    [p] = a.wait_records("P", 1)
    assert (t["id"], t["stage"], t["retries"], t["text"]) == (rs[soft]["id"], "4", "0", "451 4.2.1 soft")
    assert (p["id"], p["stage"], p["retries"], p["text"]) == (rs[hard]["id"], "4", "0", "550 5.1.1 hard")
    # the first transaction carried all three; the message went to the one accepted
    first = s.events("message")[0]
    assert first["rcpts"] == [ok]
    ds = a.wait_records("D", 3)          # ok, soft on retry, and the bounce to sender.test
    by_id = {d["id"]: d for d in ds}
    assert by_id[rs[ok]["id"]]["retries"] == "0"
    assert by_id[rs[soft]["id"]]["retries"] == "1"
    bounces = [m for m in s.messages() if m["mailfrom"] == "MAIL FROM:<>"]
    assert len(bounces) == 1 and bounces[0]["rcpts"] == [SENDER]
    text = s.body(bounces[0]).decode()
    assert "Final-Recipient: rfc822; " + hard in text
    assert "Final-Recipient: rfc822; " + soft not in text
    assert "Final-Recipient: rfc822; " + ok not in text
    wait_for(lambda: not a.spooled(), what="the spool to empty")


def test_mx_fallback_to_the_next_preference(mta, sink):
    """backup.test: MX 10 refuses connections, MX 20 is the sink: delivered at once through
    the second, no T line."""
    s = sink()
    a = mta(tail=domain_port("backup.test", s.port))
    a.send(SENDER, ["x@backup.test"])
    [d] = a.wait_records("D", 1)
    assert (d["domain"], d["retries"], d["ip"]) == ("backup.test", "0", "127.0.0.1")
    assert not a.records("T")


def test_421_banner_is_a_transient_failure_and_retried(mta, sink):
    s = sink(banner=["421 busy, try later", "220 sink.test ready"])
    a = mta(glob="retry_interval = 1", tail=domain_port("sink.test", s.port))
    a.send(SENDER, ["x@sink.test"])
    [t] = a.wait_records("T", 1)
    assert (t["stage"], t["retries"], t["ip"], t["text"]) == ("12", "0", "127.0.0.1", "421 busy, try later")
    [d] = a.wait_records("D", 1)
    assert d["retries"] == "1"


def test_max_deliveries_per_connection(mta, sink):
    """Counts successful deliveries, then the connection closes (conf.ref.
    max_deliveries_per_connection): 6 messages, 2 per connection, one connection at a time."""
    s = sink()
    a = mta(glob="max_deliveries_per_connection = 2\nmax_outbound_connections = 1\nidle_timeout = 5",
            tail=domain_port("sink.test", s.port))
    a.send_many(SENDER, [f"m{i}@sink.test" for i in range(6)])
    msgs = s.wait_messages(6)
    per_conn = {}
    for m in msgs:
        per_conn[m["conn"]] = per_conn.get(m["conn"], 0) + 1
    assert max(per_conn.values()) <= 2, per_conn
    assert len(per_conn) >= 3, per_conn


def test_never_retry_fails_on_the_first_transient_failure(mta, sink):
    s = sink(rcpt={"x@sink.test": ["451 4.3.0 later"]})
    a = mta(glob="never_retry = true", tail=domain_port("sink.test", s.port) +
            domain_port("sender.test", s.port))
    a.send(SENDER, ["x@sink.test"])
    [p] = a.wait_records("P", 1)
    assert (p["stage"], p["retries"], p["text"]) == \
        ("4", "0", "554 5.4.7 [internal] exceeded max retries without delivery")
    assert not a.records("T")
    wait_for(lambda: [m for m in s.messages() if m["mailfrom"] == "MAIL FROM:<>"], what="the DSN")


def test_max_retries_counts_retries(mta, sink):
    """max_retries = 2: the first attempt and two retries fail transiently (T lines 0, 1),
    the third failure is permanent (P, retries 2)."""
    s = sink(rcpt={"x@sink.test": ["451 4.3.0 later"]})
    a = mta(glob="max_retries = 2\nretry_interval = 1\nmax_retry_interval = 1",
            tail=domain_port("sink.test", s.port) + domain_port("sender.test", s.port))
    a.send(SENDER, ["x@sink.test"])
    [p] = a.wait_records("P", 1, timeout=20)
    ts = a.records("T")
    assert [t["retries"] for t in ts] == ["0", "1"]
    assert (p["retries"], p["text"]) == ("2", "554 5.4.7 [internal] exceeded max retries without delivery")
    assert len([e for e in s.events("rcpt") if e["addr"] == "x@sink.test"]) == 3


def test_notify_never_suppresses_the_bounce(mta, sink):
    s = sink(rcpt={"x@sink.test": ["550 5.1.1 unknown"]})
    a = mta(tail=domain_port("sink.test", s.port) + domain_port("sender.test", s.port))
    a.send(SENDER, ["x@sink.test", "y@sink.test"], rcpt_options=["NOTIFY=NEVER"])
    a.wait_records("P", 1)
    a.wait_records("D", 1)
    wait_for(lambda: not a.spooled(), what="the spool to empty")
    assert len(a.records("R")) == 2          # no bounce was generated


def test_connection_lost_after_the_body_is_transient_and_delivers_again(mta, sink):
    """The remote hangs up instead of answering the end of data: the delivery is unknown,
    so it is a transient failure (stage 9, reading confirmation, the body's bytes counted)
    and the message is sent again (at-least-once)."""
    s = sink(data=["drop", "250 2.0.0 OK"])
    a = mta(glob="retry_interval = 1", tail=domain_port("sink.test", s.port))
    a.send(SENDER, ["x@sink.test"])
    [t] = a.wait_records("T", 1)
    [r] = a.records("R")
    assert (t["stage"], t["retries"], t["ip"], t["text"]) == \
        ("9", "0", "127.0.0.1", "451 4.4.2 [internal] connection closed by remote host")
    assert int(t["bytes"]) >= int(r["size"])
    [d] = a.wait_records("D", 1)
    assert d["retries"] == "1"
    assert len(s.events("dropped")) == 1 and len(s.messages()) == 1


def test_nxdomain_fails_permanently_and_bounces(mta, sink):
    s = sink()
    a = mta(tail=domain_port("sender.test", s.port))
    a.send(SENDER, ["x@nx.test"])
    [p] = a.wait_records("P", 1)
    assert (p["domain"], p["bytes"], p["stage"], p["retries"], p["ip"], p["text"]) == \
        ("nx.test", "0", "0", "0", "", "554 5.4.4 [internal] Domain Lookup Failed")
    [m] = s.wait_messages(1)
    assert (m["mailfrom"], m["rcpts"]) == ("MAIL FROM:<>", [SENDER])
    assert "Final-Recipient: rfc822; x@nx.test" in s.body(m).decode()
