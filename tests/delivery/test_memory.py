"""Memory stays bounded with a large queue: queued messages do not keep their bodies
(max_resident_active_queue, drop_body_after_trans_fail); a destaged body is read back from
the spool when the message is finally sent.

The bounded check: 5 000 messages of 8 KB (40 MB of bodies) to down.test, whose MX refuses
connections; once all are delayed the daemon's VmRSS has grown far less than the bodies.
(Measured: +12 MB; +94 MB while delayed messages kept their bodies.)
"""

import threading
import time

from ecmta.tests.delivery.helpers import domain_port, wait_for

SENDER = "alice@sender.test"
N, CLIENTS, SIZE = 5000, 10, 8000
MAX_GROWTH_KB = 30_000


def test_large_queue_to_an_unreachable_domain_keeps_rss_modest(mta):
    a = mta(glob="retry_interval = 600\nmax_retry_interval = 600")
    wait_for(lambda: a.console("summary")[0], what="the console")
    before = a.rss_kb()
    errors = []

    def client(k):
        try:
            a.send_many(SENDER, [f"u{k}-{i}@down.test" for i in range(N // CLIENTS)], size=SIZE)
        except Exception as exc:            # reported below, with the others
            errors.append(repr(exc))
    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))
    assert not errors, errors[:3]
    assert not any(t.is_alive() for t in threads), "injection did not finish in 120 s"

    def all_tried():
        ok, text = a.console("summary")
        return ok and _delayed(text) == N
    wait_for(all_tried, 60, interval=0.5, what=f"{N} delayed messages")
    grown = a.rss_kb() - before
    assert grown < MAX_GROWTH_KB, f"VmRSS grew {grown} kB for {N} queued messages"
    assert len(a.spooled()) == N


def _delayed(text: str) -> int:
    for ln in text.splitlines():
        if "Delayed Queue Size:" in ln:
            return int(ln.split(":")[1])
    return -1


def test_destaged_bodies_are_read_back_from_the_spool(mta, sink):
    """max_resident_active_queue = 0 and drop_body_after_trans_fail = 0: no body is held;
    messages that failed once are sent from the spool, byte for byte."""
    rcpts = [f"d{i}@sink.test" for i in range(5)]
    script = {r: ["451 4.3.0 once", "250 2.1.5 ok"] for r in rcpts}
    script["gone@sink.test"] = ["451 4.3.0 once", "550 5.1.1 gone now"]
    s = sink(rcpt=script)
    a = mta(glob="retry_interval = 1\nmax_resident_active_queue = 0\ndrop_body_after_trans_fail = 0",
            tail=domain_port("sink.test", s.port) + domain_port("sender.test", s.port))
    a.send_many(SENDER, rcpts + ["gone@sink.test"], subject="destaged", size=3000)
    spooled = {m.rcptto: m.body for m in a.spooled()}
    wait_for(lambda: len([m for m in s.messages() if m["rcpts"][0] in rcpts]) == 5, 30,
             what="5 messages at the sink")
    msgs = [m for m in s.messages() if m["rcpts"][0] in rcpts]
    assert len(a.records("T")) == 6
    # the bounce of the sixth quotes the original's headers, read back from the spool
    [dsn] = wait_for(lambda: [m for m in s.messages() if m["mailfrom"] == "MAIL FROM:<>"],
                     what="the DSN")
    text = s.body(dsn).decode()
    assert "Final-Recipient: rfc822; gone@sink.test" in text and "Subject: destaged 5" in text
    for m in msgs:
        body = s.body(m)
        [r] = m["rcpts"]
        stored = spooled[r]
        # the remote got the stored message (our Received line and all), CRLF preserved
        assert body == stored, r
    wait_for(lambda: not a.spooled(), what="the spool to empty")
