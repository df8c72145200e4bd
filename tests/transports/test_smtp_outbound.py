"""The outbound driver over real loopback sockets: against Postfix's smtp-sink and
against a scripted server built on ecmta's SMTPServer (4xx/5xx, hangs, garbage, closes),
each run in a gevent child process."""
import socket

import pytest

from ecmta.tests.transports.test_smtp_outbound_helpers import (  # noqa: F401 (fixtures)
    deliver, free_port, peer_factory, pki, sink_factory)
from ecmta.transports import smtp_client as C

OK = "delivered"
BODY = "Subject: t\r\nFrom: s@example.org\r\n\r\nhello\r\n.leading dot\r\nbare\nlf\r\n"


def outcome(facts, i=0, j=0) -> dict:
    return facts["outcomes"][i][j]


# --- smtp-sink ------------------------------------------------------------------------------


def test_sink_delivery_reused_connection(sink_factory, tmp_path):
    sink = sink_factory()
    facts = deliver(tmp_path, sink.port, [{"rcpts": ["a@x.example", "b@x.example"]}] * 5)
    assert [[o["status"] for o in r] for r in facts["outcomes"]] == [[OK, OK]] * 5
    assert outcome(facts)["text"].startswith("250 2.0.0 Ok") and outcome(facts)["stage"] == 9
    assert facts["transactions"] == 5 and facts["deliveries"] == 10
    assert {"PIPELINING", "8BITMIME", "DSN", "XCLIENT"} <= set(facts["capabilities"])
    assert facts["usable"] and facts["closed"] and facts["connect_time"] > 0
    assert facts["local"][0] == "127.0.0.1" and facts["tls_info"] is None


def test_sink_deliver_many_pipelined(sink_factory, tmp_path):
    sink = sink_factory()
    facts = deliver(tmp_path, sink.port, [{"rcpts": [f"r{i}@x.example"]} for i in range(50)],
                    many=True)
    assert all(r[0]["status"] == OK for r in facts["outcomes"]) and facts["transactions"] == 50


def test_sink_without_pipelining(sink_factory, tmp_path):
    sink = sink_factory("-p")
    facts = deliver(tmp_path, sink.port, [{}] * 3, many=True)
    assert "PIPELINING" not in facts["capabilities"]
    assert all(r[0]["status"] == OK for r in facts["outcomes"])


def test_sink_lmtp(sink_factory, tmp_path):
    sink = sink_factory("-L")
    facts = deliver(tmp_path, sink.port, [{"rcpts": ["a@x.example", "b@x.example"]}],
                    opts={"client": {"delivery_method": "LMTP"}})
    assert [o["status"] for o in facts["outcomes"][0]] == [OK, OK]


def test_sink_hard_rcpt_and_soft_mail_rejections(sink_factory, tmp_path):
    sink = sink_factory("-f", "RCPT")
    o = outcome(deliver(tmp_path, sink.port))
    assert (o["status"], o["code"], o["stage"]) == ("permanent", 500, C.ST_RCPT)
    sink = sink_factory("-r", "MAIL")
    o = outcome(deliver(tmp_path, sink.port))
    assert (o["status"], o["code"], o["stage"]) == ("transient", 450, C.ST_MAIL)


def test_sink_disconnect_and_421(sink_factory, tmp_path):
    sink = sink_factory("-q", "DATA")
    o = outcome(deliver(tmp_path, sink.port))
    assert (o["text"], o["stage"]) == (C.CONNECTION_CLOSED, C.ST_DATA)
    sink = sink_factory("-Q", ".")
    facts = deliver(tmp_path, sink.port, [{}, {}])
    o = outcome(facts)
    assert (o["status"], o["code"], o["stage"]) == ("transient", 421, C.ST_CONFIRM)
    assert outcome(facts, 1)["text"] == C.CONNECTION_CLOSED   # the connection is gone
    assert outcome(facts, 1)["stage"] == C.ST_IDLE


def test_sink_xclient(sink_factory, tmp_path):
    sink = sink_factory()
    facts = deliver(tmp_path, sink.port,
                    [{"xclient": {"NAME": "c.example", "ADDR": "192.0.2.1", "HELO": "h"}}],
                    opts={"client": {"xclient": "required"}})
    assert outcome(facts)["status"] == OK


def test_sink_starttls_required_not_advertised(sink_factory, tmp_path):
    sink = sink_factory()
    o = outcome(deliver(tmp_path, sink.port, opts={"client": {"tls": "required"}}))
    assert (o["text"], o["stage"], o["status"]) == (C.STARTTLS_NOT_OFFERED, 11, "transient")


# --- connecting ---------------------------------------------------------------------------------


def test_connection_refused(tmp_path):
    o = outcome(deliver(tmp_path, free_port()))
    assert (o["text"], o["stage"], o["bytes_sent"]) == (C.NO_VALID_HOSTS, C.ST_NOT_CONNECTED, 0)


def test_connect_timeout(tmp_path):
    # A listener that never accepts, its backlog filled: further SYNs are dropped.
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        facts = deliver(tmp_path, port, opts={"connect_timeout": 1, "ehlo_timeout": 1})
        o = outcome(facts)
        # Either the connect itself times out or it lands in the queue and no banner comes.
        assert (o["text"], o["stage"]) in ((C.CONNECT_TIMED_OUT, 0), (C.NO_BANNER, 12))
        assert facts["elapsed"] < 10
    finally:
        for s in fillers:
            s.close()
        lsock.close()


def test_bind_address(peer_factory, tmp_path):
    peer = peer_factory()
    facts = deliver(tmp_path, peer.port, opts={"bind_address": "127.0.0.2"})
    assert outcome(facts)["status"] == OK and facts["local"][0] == "127.0.0.2"
    assert peer.events("connect")[0]["peer"][0] == "127.0.0.2"


# --- the scripted peer: replies, hangs, garbage, closes -------------------------------------------


def test_peer_gets_exact_body_and_envelope(peer_factory, tmp_path):
    peer = peer_factory(extensions=["PIPELINING", "8BITMIME", "SIZE", "DSN",
                                    "ENHANCEDSTATUSCODES"])
    facts = deliver(tmp_path, peer.port, [{"body": BODY, "rcpts": ["a@x.example"]}])
    assert outcome(facts)["text"] == "250 2.0.0 OK"
    # The stored bare LF goes out as CRLF (RFC 5321 2.3.8); dots round-trip.
    assert peer.events("body")[0]["data"] == BODY.replace("bare\nlf", "bare\r\nlf")
    assert peer.events("mail")[0]["raw"].startswith("MAIL FROM:<s@example.org> SIZE=")


def test_peer_policy_replies(peer_factory, tmp_path):
    peer = peer_factory(rules={"RcptTo": {"gone@x.example": [550, "5.1.1 no such user"],
                                          "full@x.example": [452, "4.2.2 mailbox full"]},
                               "DataEnd": [250, "2.0.0 queued as ABC"]})
    facts = deliver(tmp_path, peer.port,
                    [{"rcpts": ["ok@x.example", "gone@x.example", "full@x.example"]}])
    assert [(o["status"], o["text"], o["stage"]) for o in facts["outcomes"][0]] == [
        (OK, "250 2.0.0 queued as ABC", 9), ("permanent", "550 5.1.1 no such user", 4),
        ("transient", "452 4.2.2 mailbox full", 4)]


@pytest.mark.parametrize("stage,text,code", [
    ("banner", C.NO_BANNER, 12),
    ("ehlo", "451 4.4.2 [internal] no HELO/EHLO response", 10),
    ("mail", "451 4.4.2 [internal] no MAIL FROM response", 2),
    ("rcpt", "451 4.4.2 [internal] no RCPT TO response", 4),
    ("data", "451 4.4.2 [internal] no DATA response", 6),
    ("dot", "451 4.4.2 [internal] no BODY response", 9),
])
def test_peer_hangs_hit_the_stage_timeouts(peer_factory, tmp_path, stage, text, code):
    peer = peer_factory(at={stage: "hang"}, hang_for=8)
    timeouts = {"ehlo_timeout": 1, "mailfrom_timeout": 1, "rcptto_timeout": 1,
                "data_timeout": 1, "body_timeout": 1}
    facts = deliver(tmp_path, peer.port, opts=timeouts)
    o = outcome(facts)
    assert (o["text"], o["stage"], o["status"]) == (text, code, "transient")
    assert facts["elapsed"] < 6 and not facts["usable"]


@pytest.mark.parametrize("stage,code", [("mail", 2), ("rcpt", 4), ("data", 6), ("dot", 9)])
def test_peer_closes_mid_transaction(peer_factory, tmp_path, stage, code):
    peer = peer_factory(at={stage: "close"})
    o = outcome(deliver(tmp_path, peer.port))
    assert (o["text"], o["stage"]) == (C.CONNECTION_CLOSED, code)


@pytest.mark.parametrize("stage,prefix", [
    ("banner", '451 4.4.2 [internal] invalid banner: "'),
    ("mail", '451 4.4.2 [internal] invalid MAIL FROM response: "'),
])
def test_peer_garbage(peer_factory, tmp_path, stage, prefix):
    peer = peer_factory(at={stage: "garbage"})
    o = outcome(deliver(tmp_path, peer.port))
    assert o["text"].startswith(prefix) and o["status"] == "transient"


def test_peer_refusing_banner(peer_factory, tmp_path):
    peer = peer_factory(banner="554 5.7.1 go away")
    o = outcome(deliver(tmp_path, peer.port))
    assert (o["status"], o["text"], o["stage"]) == ("permanent", "554 5.7.1 go away", 12)


def test_body_loader_failure_keeps_connection(peer_factory, tmp_path):
    peer = peer_factory()
    facts = deliver(tmp_path, peer.port, [{"loader_fails": True}, {}])
    assert outcome(facts)["text"] == C.BODY_MISSING and outcome(facts)["status"] == "permanent"
    assert outcome(facts, 1)["status"] == OK and facts["transactions"] == 1
    assert "spool file vanished" in facts["last_error"]


def test_usable_sees_the_peer_hang_up(peer_factory, tmp_path):
    peer = peer_factory(close_after_messages=1, idle_421=True)
    facts = deliver(tmp_path, peer.port, [{}], pause_between=0.3)
    assert outcome(facts)["status"] == OK
    assert not facts["usable"] and facts["closed_reason"].startswith("421 4.4.2")


def test_reply_before_hangup_is_the_outcome(peer_factory, tmp_path):
    """A server that refuses a large body mid-stream and hangs up: the client reports
    its reply (read after the failed write), not just `send BODY failed`."""
    peer = peer_factory(at={"body_first_chunk": "552 5.3.4 message too big"})
    big = "Subject: big\r\n\r\n" + ("x" * 998 + "\r\n") * 30000
    o = outcome(deliver(tmp_path, peer.port, [{"body": big}]))
    assert o["status"] in ("permanent", "transient")
    assert o["text"] in ("552 5.3.4 message too big", "451 4.4.2 [internal] send BODY failed",
                         C.CONNECTION_CLOSED)
    assert o["stage"] in (C.ST_BODY, C.ST_CONFIRM)
