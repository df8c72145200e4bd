"""Sans-IO SMTP client against a scripted server: every reply path of a session and a
transaction, with the stage codes and texts the logs will carry."""
import pytest

from ecmta.tests.transports.test_smtp_client_helpers import (
    BANNER, BODY, EHLO_ALL, EHLO_PIPE, EHLO_PLAIN, Scripted, dsn_txn, txn)
from ecmta.transports import smtp_client as C
from ecmta.transports.smtp_client import (
    CLOSED, DELIVERED, IDLE, NEED_DATA, PAUSED, PERMANENT, TRANSIENT,
    SMTPClientError, UpgradeTLS)

OK_GROUP = b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n"


def ready(ehlo=EHLO_PIPE, **kw) -> Scripted:
    s = Scripted(**kw)
    s.setup(ehlo)
    return s


# --- banner ----------------------------------------------------------------------------


def test_banner_then_ehlo_with_configured_hostname():
    s = Scripted(ehlo_hostname="mta.example.org")
    assert s.pump() is NEED_DATA and s.take() == b""       # nothing before the banner
    assert s.cli.waiting_for == "banner" and s.cli.stage == C.ST_BANNER
    assert s.feed(BANNER) is NEED_DATA
    assert s.take() == b"EHLO mta.example.org\r\n"
    assert s.cli.greeting == "220 mx.example.test ESMTP"


@pytest.mark.parametrize("banner,status,quit_sent", [
    (b"554 5.7.1 no mail from you\r\n", PERMANENT, True),
    (b"450 4.3.2 busy\r\n", TRANSIENT, True),
    (b"421 4.3.2 shutting down\r\n", TRANSIENT, False),
])
def test_banner_refusal_fails_the_session(banner, status, quit_sent):
    s = Scripted()
    assert s.feed(banner) is CLOSED
    f = s.failed()
    assert (f.status, f.code, f.stage) == (status, int(banner[:3]), C.ST_BANNER)
    assert f.text == banner.decode().rstrip("\r\n")
    assert (s.take() == b"QUIT\r\n") is quit_sent


@pytest.mark.parametrize("how", ["eof", "timeout"])
def test_no_banner(how):
    s = Scripted()
    s.pump()
    if how == "eof":
        s.feed(b"")
    else:
        s.cli.timed_out()
        s.pump()
    f = s.failed()
    assert (f.text, f.code, f.stage, f.status) == (C.NO_BANNER, 451, 12, TRANSIENT)
    assert s.last is CLOSED


def test_multiline_banner():
    s = Scripted()
    assert s.feed(b"220-mx.example.test ESMTP\r\n220-second line\r\n") is NEED_DATA
    assert s.take() == b""
    assert s.feed(b"220 last\r\n") is NEED_DATA
    assert s.take().startswith(b"EHLO")
    assert s.cli.greeting == "220-mx.example.test ESMTP 220-second line 220 last"


# --- EHLO / HELO -------------------------------------------------------------------------


def test_capabilities_parsed():
    s = ready(EHLO_ALL + b"")
    caps = s.cli.capabilities
    assert {"PIPELINING", "SIZE", "8BITMIME", "DSN", "SMTPUTF8", "STARTTLS"} <= set(caps)
    assert s.cli.size_limit == 10000000 and s.cli.pipelining and s.cli.esmtp


def test_capabilities_tolerate_empty_last_line_and_auth_forms():
    s = ready(b"250-smtp-sink\r\n250-AUTH=LOGIN,PLAIN\r\n250-XCLIENT NAME HELO\r\n"
              b"250-SIZE x\r\n250 \r\n")
    assert s.cli.capabilities["AUTH"] == "LOGIN PLAIN"
    assert s.cli.capabilities["XCLIENT"] == "NAME HELO"
    assert s.cli.size_limit == 0


def test_ehlo_5xx_falls_back_to_helo():
    s = Scripted(ehlo_hostname="me.example")
    s.feed(BANNER)
    s.take()
    assert s.feed(b"502 5.5.1 EHLO not implemented\r\n") is NEED_DATA
    assert s.take() == b"HELO me.example\r\n"
    assert s.feed(b"250 hello\r\n") is IDLE
    assert not s.cli.esmtp and s.cli.capabilities == {} and not s.cli.pipelining


def test_helo_refused_fails_session_with_remote_text():
    s = Scripted()
    s.feed(BANNER)
    s.take()
    s.feed(b"500 no EHLO\r\n")
    s.take()
    assert s.feed(b"550 5.7.1 go away\r\n") is CLOSED
    f = s.failed()
    assert (f.status, f.code, f.text, f.stage) == (PERMANENT, 550, "550 5.7.1 go away", 10)
    assert s.take() == b"QUIT\r\n"


def test_ehlo_4xx_is_transient_without_helo():
    s = Scripted()
    s.feed(BANNER)
    s.take()
    assert s.feed(b"450 4.7.1 later\r\n") is CLOSED
    assert s.failed().status == TRANSIENT and s.take() == b"QUIT\r\n"


def test_smtp_method_says_helo_and_lmtp_says_lhlo():
    s = Scripted(delivery_method="SMTP", ehlo_hostname="h.example")
    s.feed(BANNER)
    assert s.take() == b"HELO h.example\r\n"
    s = Scripted(delivery_method="lmtp", ehlo_hostname="h.example")
    s.feed(BANNER)
    assert s.take() == b"LHLO h.example\r\n"
    assert s.feed(b"500 no\r\n") is CLOSED          # no HELO fallback in LMTP


def test_unknown_delivery_method_is_refused():
    with pytest.raises(SMTPClientError):
        Scripted(delivery_method="ECSTREAM")


@pytest.mark.parametrize("how,text", [
    ("eof", C.CONNECTION_CLOSED), ("timeout", "451 4.4.2 [internal] no HELO/EHLO response"),
    ("send", "451 4.4.2 [internal] send HELO/EHLO failed")])
def test_ehlo_io_failures(how, text):
    s = Scripted()
    s.feed(BANNER)
    {"eof": lambda: s.cli.receive_data(b""), "timeout": s.cli.timed_out,
     "send": s.cli.send_failed}[how]()
    assert s.pump() is CLOSED
    f = s.failed()
    assert (f.text, f.stage, f.code) == (text, C.ST_EHLO, 451)


# --- STARTTLS ------------------------------------------------------------------------------


def test_starttls_sequencing_nothing_sent_until_handshake():
    s = Scripted(tls="required", ehlo_hostname="me.example")
    s.feed(BANNER)
    s.take()
    assert s.feed(EHLO_ALL) is NEED_DATA
    assert s.take() == b"STARTTLS\r\n"
    # A hostile server appends a fake EHLO reply in plaintext after its 220.
    assert s.feed(b"220 go ahead\r\n250-evil\r\n250 PIPELINING\r\n") is PAUSED
    up = [e for e in s.events if isinstance(e, UpgradeTLS)]
    assert up and up[0].discarded == len(b"250-evil\r\n250 PIPELINING\r\n")
    assert s.take() == b"" and s.cli.stage == C.ST_TLS
    s.cli.tls_started({"protocol": "TLSv1.3"})
    assert s.pump() is NEED_DATA
    assert s.take() == b"EHLO me.example\r\n"            # injected reply was not consumed
    assert s.feed(EHLO_PIPE) is IDLE
    assert s.cli.tls and s.cli.tls_info == {"protocol": "TLSv1.3"}


def test_starttls_not_offered_required_fails():
    s = Scripted(tls="required")
    s.feed(BANNER)
    s.take()
    assert s.feed(EHLO_PIPE) is CLOSED
    f = s.failed()
    assert (f.text, f.stage, f.status) == (C.STARTTLS_NOT_OFFERED, C.ST_AFTER_EHLO, TRANSIENT)
    assert s.take() == b"QUIT\r\n"


def test_starttls_not_offered_ifavailable_goes_on_in_clear():
    s = Scripted(tls="ifavailable")
    s.feed(BANNER)
    s.take()
    assert s.feed(EHLO_PIPE) is IDLE and not s.cli.tls


@pytest.mark.parametrize("mode,result", [("ifavailable", IDLE), ("required", CLOSED)])
def test_starttls_refused(mode, result):
    s = Scripted(tls=mode)
    s.feed(BANNER)
    s.take()
    s.feed(EHLO_ALL)
    assert s.take() == b"STARTTLS\r\n"
    assert s.feed(b"454 4.7.0 TLS not available\r\n") is result
    if result is CLOSED:
        f = s.failed()
        assert (f.text, f.stage) == (C.TLS_NO_GO_AHEAD, C.ST_STARTTLS)
    else:
        assert s.cli.tls_declined and not s.cli.tls


def test_tls_handshake_failure():
    s = Scripted(tls="ifavailable")
    s.feed(BANNER)
    s.take()
    s.feed(EHLO_ALL)
    s.take()
    assert s.feed(b"220 go\r\n") is PAUSED
    s.cli.tls_failed()
    assert s.pump() is CLOSED
    f = s.failed()
    assert (f.text, f.stage, f.code) == (C.TLS_FAILED, C.ST_TLS, 451)
    assert s.take() == b""                  # no QUIT in clear after a broken handshake


def test_tls_certificate_failure_text():
    s = Scripted(tls="required")
    s.feed(BANNER)
    s.take()
    s.feed(EHLO_ALL)
    s.feed(b"220 go\r\n")
    s.cli.tls_failed(C.failure(C.TLS_SUBJECT_MISMATCH, C.ST_TLS))
    s.pump()
    f = s.failed()
    assert (f.code, f.text, f.status) == (451, C.TLS_SUBJECT_MISMATCH, TRANSIENT)


def test_tls_misuse_raises():
    s = ready()
    with pytest.raises(SMTPClientError):
        s.cli.tls_started()
    with pytest.raises(SMTPClientError):
        s.cli.tls_failed()


# --- one transaction ------------------------------------------------------------------------


def test_pipelined_transaction_one_write_per_group():
    s = ready()
    assert s.send(txn("r1@example.net", "r2@example.net")) is NEED_DATA
    assert s.take() == (b"MAIL FROM:<a@example.org>\r\nRCPT TO:<r1@example.net>\r\n"
                        b"RCPT TO:<r2@example.net>\r\nDATA\r\n")
    assert s.cli.waiting_for == "mailfrom"
    assert s.feed(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n") is NEED_DATA
    assert s.take() == BODY + b".\r\n"
    assert s.cli.waiting_for == "body" and s.cli.stage == C.ST_CONFIRM
    assert s.feed(b"250 2.0.0 queued as 1234\r\n") is IDLE
    outs = s.done()
    assert [(o.rcpt, o.status, o.code, o.text, o.stage) for o in outs] == [
        ("r1@example.net", DELIVERED, 250, "250 2.0.0 queued as 1234", 9),
        ("r2@example.net", DELIVERED, 250, "250 2.0.0 queued as 1234", 9)]


def test_unpipelined_transaction_one_command_per_round_trip():
    s = ready(EHLO_PLAIN)
    s.send(txn("r1@example.net", "r2@example.net"))
    steps = [(b"MAIL FROM:<a@example.org>\r\n", b"250 ok\r\n"),
             (b"RCPT TO:<r1@example.net>\r\n", b"250 ok\r\n"),
             (b"RCPT TO:<r2@example.net>\r\n", b"250 ok\r\n"),
             (b"DATA\r\n", b"354 go\r\n"),
             (BODY + b".\r\n", b"250 done\r\n")]
    for sent, reply in steps:
        assert s.take() == sent
        s.feed(reply)
    assert s.last is IDLE and [o.status for o in s.done()] == [DELIVERED, DELIVERED]


def test_pipelining_can_be_switched_off():
    s = ready(EHLO_PIPE, pipelining=False)
    s.send(txn())
    assert s.take() == b"MAIL FROM:<a@example.org>\r\n"


def test_mail_params_size_body_dsn():
    s = ready(EHLO_ALL, send_8bitmime="ifavailable")
    body = b"Subject: x\r\n\r\ncaf\xc3\xa9\r\n"
    s.send(dsn_txn("r@example.net", ret="HDRS", envid="id+1=x"), body)
    out = s.take().decode()
    assert out.startswith(f"MAIL FROM:<a@example.org> SIZE={len(body)} BODY=8BITMIME "
                          "RET=HDRS ENVID=id+2B1+3Dx\r\n")
    assert "RCPT TO:<r@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;r@example.net\r\n" in out


def test_no_dsn_params_without_dsn_extension():
    s = ready(EHLO_PIPE)
    s.send(dsn_txn("r@example.net", ret="FULL", envid="e"))
    out = s.take()
    assert b"RET=" not in out and b"NOTIFY" not in out and b"SIZE=" not in out


def test_8bitmime_param_needs_send_8bitmime():
    s = ready(EHLO_ALL)                      # send_8bitmime defaults to "no" (Momentum)
    s.send(txn(), b"Subject: x\r\n\r\n\xe9\r\n")
    assert b"BODY=8BITMIME" not in s.take()


@pytest.mark.parametrize("code,status", [(b"550 5.1.8 bad sender", PERMANENT),
                                         (b"451 4.1.8 try later", TRANSIENT)])
def test_mail_refused_fails_every_recipient_pipelined(code, status):
    s = ready()
    s.send(txn("r1@example.net", "r2@example.net"))
    s.take()
    # The server refuses MAIL; the pipelined RCPTs and DATA then fail with 503.
    s.feed(code + b"\r\n503 5.5.1 no MAIL\r\n503 5.5.1 no MAIL\r\n503 5.5.1 no MAIL\r\n")
    assert s.last is IDLE
    assert [(o.status, o.text, o.stage) for o in s.done()] == \
        [(status, code.decode(), C.ST_MAIL)] * 2
    s.send(txn())
    assert s.take().startswith(b"MAIL FROM")          # no RSET needed: no MAIL open


def test_mail_refused_unpipelined_sends_nothing_more():
    s = ready(EHLO_PLAIN)
    s.send(txn("r1@example.net"))
    s.take()
    assert s.feed(b"550 5.7.1 no\r\n") is IDLE
    assert s.take() == b"" and s.done()[0].stage == C.ST_MAIL


def test_mixed_recipients():
    s = ready()
    s.send(txn("ok@example.net", "gone@example.net", "later@example.net"))
    s.take()
    s.feed(b"250 ok\r\n250 ok\r\n550 5.1.1 no such user\r\n452 4.2.2 mailbox full\r\n"
           b"354 go\r\n")
    assert s.take() == BODY + b".\r\n"
    s.feed(b"250 2.0.0 queued\r\n")
    assert [(o.rcpt, o.status, o.code, o.stage) for o in s.done()] == [
        ("ok@example.net", DELIVERED, 250, 9), ("gone@example.net", PERMANENT, 550, 4),
        ("later@example.net", TRANSIENT, 452, 4)]


def test_all_recipients_refused_pipelined_then_rset_next_time():
    s = ready()
    s.send(txn("a@example.net", "b@example.net"))
    s.take()
    s.feed(b"250 ok\r\n550 no\r\n550 no\r\n554 5.5.1 no valid recipients\r\n")
    assert s.last is IDLE
    assert [o.text for o in s.done()] == ["550 no", "550 no"]
    s.send(txn())
    assert s.take().startswith(b"RSET\r\nMAIL FROM:")     # RSET pipelined with MAIL
    s.feed(b"250 reset\r\n" + OK_GROUP)
    s.take()
    s.feed(b"250 ok\r\n")
    assert s.done()[0].status == DELIVERED


def test_all_recipients_refused_but_354_sends_empty_message():
    s = ready()
    s.send(txn("a@example.net"))
    s.take()
    s.feed(b"250 ok\r\n550 no\r\n354 go anyway\r\n")
    assert s.take() == b".\r\n"                           # RFC 2920 3.1, never the body
    assert s.feed(b"554 no recipients\r\n") is IDLE
    assert s.done()[0].text == "550 no"


def test_all_recipients_refused_unpipelined_skips_data():
    s = ready(EHLO_PLAIN)
    s.send(txn("a@example.net"))
    s.take()
    s.feed(b"250 ok\r\n")
    s.take()
    assert s.feed(b"550 no\r\n") is IDLE
    assert s.take() == b""
    s.send(txn())
    assert s.take() == b"RSET\r\n"                        # one at a time without PIPELINING
    s.feed(b"250 ok\r\n")
    assert s.take() == b"MAIL FROM:<a@example.org>\r\n"


@pytest.mark.parametrize("reply,status", [(b"554 5.7.1 no DATA", PERMANENT),
                                          (b"451 4.3.0 later", TRANSIENT)])
def test_data_refused(reply, status):
    s = ready()
    s.send(txn("a@example.net", "b@example.net"))
    s.take()
    s.feed(b"250 ok\r\n250 ok\r\n550 no\r\n" + reply + b"\r\n")
    assert [(o.status, o.stage) for o in s.done()] == [(status, C.ST_DATA), (PERMANENT, 4)]
    s.send(txn())
    assert s.take().startswith(b"RSET\r\n")


@pytest.mark.parametrize("reply,status", [(b"554 5.6.0 content rejected", PERMANENT),
                                          (b"451 4.3.0 queue full", TRANSIENT)])
def test_body_refused(reply, status):
    s = ready()
    s.send(txn())
    s.take()
    s.feed(OK_GROUP)
    s.take()
    assert s.feed(reply + b"\r\n") is IDLE
    o = s.done()[0]
    assert (o.status, o.text, o.stage) == (status, reply.decode(), C.ST_CONFIRM)
    s.send(txn())
    assert s.take().startswith(b"MAIL")                  # the transaction ended: no RSET


def test_multiline_reply_text_joined_as_logged():
    s = ready()
    s.send(txn())
    s.take()
    s.feed(b"250 ok\r\n550-5.1.1 The email account that you tried to reach does not exist.\r\n"
           b"550-5.1.1 Please try double-checking.\r\n550 5.1.1 https://support.example/x\r\n"
           b"554 no rcpts\r\n")
    o = s.done()[0]
    assert o.text == ("550-5.1.1 The email account that you tried to reach does not exist. "
                      "550-5.1.1 Please try double-checking. 550 5.1.1 https://support.example/x")
    assert o.code == 550


def test_replies_split_at_every_byte():
    s = ready()
    s.send(txn())
    s.take()
    for i in range(len(OK_GROUP)):
        s.feed(OK_GROUP[i:i + 1])
    assert s.take() == BODY + b".\r\n"
    for ch in b"250-a\r\n250 b\r\n":
        s.feed(bytes([ch]))
    assert s.done()[0].text == "250-a 250 b"


def test_bare_lf_replies_accepted():
    s = ready()
    s.send(txn())
    s.take()
    s.feed(b"250 ok\n250 ok\n354 go\n")
    s.take()
    s.feed(b"250 done\n")
    assert s.done()[0].text == "250 done"


def test_code_only_reply():
    s = ready()
    s.send(txn())
    s.take()
    s.feed(b"250\r\n250\r\n354\r\n")
    s.take()
    s.feed(b"250\r\n")
    assert s.done()[0].text == "250"


@pytest.mark.parametrize("stage_replies,stage", [
    (b"", C.ST_MAIL), (b"250 ok\r\n", C.ST_RCPT), (b"250 ok\r\n250 ok\r\n", C.ST_DATA)])
def test_421_mid_transaction_closes(stage_replies, stage):
    s = ready()
    s.send(txn())
    s.take()
    assert s.feed(stage_replies + b"421 4.4.2 closing\r\n") is CLOSED
    o = s.done()[0]
    assert (o.status, o.code, o.text, o.stage) == (TRANSIENT, 421, "421 4.4.2 closing", stage)


def test_421_after_body():
    s = ready()
    s.send(txn("a@example.net", "b@example.net"))
    s.take()
    s.feed(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    s.take()
    assert s.feed(b"421 4.3.0 bye\r\n") is CLOSED
    assert [(o.code, o.stage) for o in s.done()] == [(421, 9), (421, 9)]


# --- I/O failures inside a transaction -------------------------------------------------------

IO_CASES = [
    # replies before the failure, stage, what
    (b"", C.ST_MAIL, "MAIL FROM"),
    (b"250 ok\r\n", C.ST_RCPT, "RCPT TO"),
    (b"250 ok\r\n250 ok\r\n", C.ST_DATA, "DATA"),
]


@pytest.mark.parametrize("before,stage,what", IO_CASES)
def test_timeouts_name_the_command(before, stage, what):
    s = ready()
    s.send(txn())
    s.take()
    if before:
        s.feed(before)
    s.cli.timed_out()
    assert s.pump() is CLOSED
    o = s.done()[0]
    assert (o.text, o.stage, o.status) == (f"451 4.4.2 [internal] no {what} response", stage,
                                           TRANSIENT)


@pytest.mark.parametrize("before,stage,what", IO_CASES)
def test_connection_closed_mid_transaction(before, stage, what):
    s = ready()
    s.send(txn())
    s.take()
    if before:
        assert s.feed(before) is NEED_DATA
    assert s.feed(b"") is CLOSED
    o = s.done()[0]
    assert (o.text, o.stage) == (C.CONNECTION_CLOSED, stage)


def test_body_stage_failures():
    # timeout waiting for the confirmation: stage 9
    s = ready()
    s.send(txn())
    s.take()
    s.feed(OK_GROUP)
    s.take()
    s.cli.timed_out()
    s.pump()
    o = s.done()[0]
    assert (o.text, o.stage) == ("451 4.4.2 [internal] no BODY response", C.ST_CONFIRM)
    # write error while sending the body: stage 8
    s = ready()
    s.send(txn())
    s.take()
    s.feed(OK_GROUP)
    s.cli.send_failed()
    s.pump()
    o = s.done()[0]
    assert (o.text, o.stage) == ("451 4.4.2 [internal] send BODY failed", C.ST_BODY)


def test_reply_read_after_send_failure_wins():
    """A server that refuses the body and hangs up: its reply is the outcome."""
    s = ready()
    s.send(txn())
    s.take()
    s.feed(OK_GROUP)
    s.take()
    s.cli.receive_data(b"552 5.3.4 message too big\r\n")
    s.cli.send_failed()
    assert s.pump() is CLOSED
    o = s.done()[0]
    assert (o.status, o.text) == (PERMANENT, "552 5.3.4 message too big")


def test_bytes_sent_counted_per_transaction():
    s = ready()
    setup = len(b"EHLO localhost\r\n")
    s.send(txn())
    group = s.take()
    s.feed(OK_GROUP)
    body = s.take()
    s.feed(b"250 ok\r\n")
    assert s.done()[0].bytes_sent == setup + len(group) + len(body)
    s.send(txn())
    group = s.take()
    s.feed(b"550 no\r\n503 no\r\n503 no\r\n")
    assert s.done()[0].bytes_sent == len(group)          # reused connection: this one only


# --- hostile and broken servers -----------------------------------------------------------------

GARBAGE = [
    b"hello there\r\n",                 # no code
    b"2500 ok\r\n",                      # code glued to text
    b"250-ok\r\n251 mixed codes\r\n",   # codes differ inside one reply
    b"150 preliminary\r\n",              # 1xx is not SMTP
    b"650 what\r\n",
    b"\x00\x01\x02\r\n",
    b"x" * 9000,                         # an endless line
]


@pytest.mark.parametrize("junk", GARBAGE)
def test_garbage_fails_the_transaction_clearly(junk):
    s = ready()
    s.send(txn("a@example.net", "b@example.net"))
    s.take()
    assert s.feed(junk) is CLOSED
    outs = s.done()
    assert all(o.status == TRANSIENT and o.stage == C.ST_MAIL for o in outs)
    assert outs[0].text.startswith('451 4.4.2 [internal] invalid MAIL FROM response: "')
    assert all(c.isprintable() for c in outs[0].text) and len(outs[0].text) < 200


@pytest.mark.parametrize("junk", GARBAGE)
def test_garbage_banner(junk):
    s = Scripted()
    assert s.feed(junk) is CLOSED
    assert s.failed().text.startswith('451 4.4.2 [internal] invalid banner: "')


def test_unexpected_codes_are_invalid_replies():
    s = ready()
    s.send(txn())
    s.take()
    assert s.feed(b"354 what\r\n") is CLOSED               # 354 to MAIL
    assert "invalid MAIL FROM response" in s.done()[0].text
    s = ready()
    s.send(txn())
    s.take()
    assert s.feed(b"250 ok\r\n250 ok\r\n250 ok?\r\n") is CLOSED   # 250 to DATA
    assert "invalid DATA response" in s.done()[0].text


def test_too_many_reply_lines():
    s = ready()
    s.send(txn())
    s.take()
    assert s.feed(b"250-x\r\n" * 600) is CLOSED
    assert "invalid MAIL FROM response" in s.done()[0].text


def test_extra_replies_while_idle_close_the_session():
    s = ready()
    assert s.feed(b"421 4.4.2 idle timeout\r\n") is CLOSED
    assert s.cli.closed_reason == "421 4.4.2 idle timeout"
    assert s.failed().stage == C.ST_IDLE


def test_eof_while_idle_is_a_quiet_close():
    s = ready()
    assert s.feed(b"") is CLOSED
    assert s.cli.closed_reason == C.CONNECTION_CLOSED


def test_random_server_bytes_never_raise():
    import random
    rnd = random.Random(5)
    alphabet = [b"250", b"354", b"421", b"550", b"-", b" ", b"\r\n", b"\n", b"x", b"\xff", b"2"]
    for _ in range(400):
        s = ready(EHLO_ALL if rnd.random() < 0.5 else EHLO_PLAIN)
        s.send(txn("a@example.net", "b@example.net"))
        for _ in range(rnd.randint(1, 40)):
            if s.last in (IDLE, CLOSED):
                break
            s.take()
            s.feed(b"".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 12))))
        if s.last is NEED_DATA:
            s.cli.receive_data(b"")
            s.pump()
        assert s.last in (IDLE, CLOSED)
        assert len(s.done()) == 2 and all(o.status in (DELIVERED, TRANSIENT, PERMANENT)
                                          for o in s.done())


# --- QUIT, misuse, limits ------------------------------------------------------------------


def test_quit():
    s = ready()
    s.cli.quit()
    assert s.pump() is NEED_DATA and s.take() == b"QUIT\r\n"
    assert s.cli.waiting_for == "quit"
    assert s.feed(b"221 bye\r\n") is CLOSED


def test_quit_without_reply_still_closes():
    s = ready()
    s.cli.quit()
    s.pump()
    s.cli.timed_out()
    assert s.pump() is CLOSED


def test_send_mail_before_setup_or_after_close_raises():
    s = Scripted()
    with pytest.raises(SMTPClientError):
        s.cli.send_mail(txn(), BODY)
    s = ready()
    s.feed(b"")
    with pytest.raises(SMTPClientError):
        s.cli.send_mail(txn(), BODY)


def test_max_recipients_per_batch_is_the_callers_job():
    s = ready(max_recipients_per_batch=3)
    with pytest.raises(SMTPClientError, match="max_recipients_per_batch"):
        s.cli.send_mail(txn(*[f"r{i}@example.net" for i in range(4)]), BODY)
    s.send(txn(*[f"r{i}@example.net" for i in range(3)]))
    assert s.take().count(b"RCPT TO") == 3


def test_unlimited_batch_and_empty_transaction():
    s = ready(max_recipients_per_batch=0)
    s.send(txn(*[f"r{i}@example.net" for i in range(500)]))
    assert s.take().count(b"RCPT TO") == 500
    s = ready()
    with pytest.raises(SMTPClientError):
        s.cli.send_mail(C.Transaction("a@example.org", []), BODY)


def test_null_sender_and_injection_guard():
    s = ready()
    s.send(txn(sender=""))
    assert s.take().startswith(b"MAIL FROM:<>\r\n")
    s = ready()
    s.send(txn("ok@example.net", "evil@example.net>\r\nRSET"))
    out = s.take()
    assert out.count(b"\r\n") == 3 and b"RSET" not in out      # MAIL, 1 RCPT, DATA
    s.feed(OK_GROUP)
    s.take()
    s.feed(b"250 ok\r\n")
    assert [o.text for o in s.done()] == ["250 ok", C.RCPT_TOO_LONG]
    s = ready()
    s.send(txn(sender="a@b\r\nRSET"))
    assert s.take() == b"" and s.done()[0].text == C.MAIL_TOO_LONG


def test_overlong_commands_fail_with_momentum_texts():
    s = ready()
    s.send(txn("x" * 3000 + "@example.net", "ok@example.net"))
    assert s.take().count(b"RCPT TO") == 1
    s = ready()
    s.send(txn(sender="s" * 3000 + "@example.org"))
    assert s.done()[0].text == C.MAIL_TOO_LONG


# --- XCLIENT -------------------------------------------------------------------------------

XCLIENT_EHLO = b"250-mx\r\n250-PIPELINING\r\n250-XCLIENT NAME ADDR PORT HELO PROTO\r\n250 DSN\r\n"
ORIGIN = {"NAME": "client.example", "ADDR": "192.0.2.9", "PORT": "4711", "HELO": "c.example",
          "PROTO": "ESMTP", "LOGIN": "bob"}


def test_xclient_sent_before_the_transaction_then_ehlo_again():
    s = ready(XCLIENT_EHLO, xclient="ifavailable", ehlo_hostname="me.example")
    s.send(txn(xclient=ORIGIN))
    # LOGIN is not advertised, so it is left out.
    assert s.take() == (b"XCLIENT NAME=client.example ADDR=192.0.2.9 PORT=4711 "
                        b"HELO=c.example PROTO=ESMTP\r\n")
    assert s.cli.waiting_for == "xclient" and s.cli.stage == C.ST_XCLIENT
    s.feed(b"220 mx ESMTP\r\n")
    assert s.take() == b"EHLO me.example\r\n"
    s.feed(XCLIENT_EHLO)
    assert s.take().startswith(b"MAIL FROM:")
    s.feed(OK_GROUP)
    s.take()
    s.feed(b"250 ok\r\n")
    assert s.done()[0].status == DELIVERED
    # Same origin again: no second XCLIENT.
    s.send(txn(xclient=ORIGIN))
    assert s.take().startswith(b"MAIL FROM:")


def test_xclient_ipv6_and_xtext():
    s = ready(XCLIENT_EHLO, xclient="ifavailable")
    s.send(txn(xclient={"ADDR": "2001:db8::1", "HELO": "a b+c", "NAME": "[UNAVAILABLE]"}))
    assert s.take() == b"XCLIENT ADDR=IPV6:2001:db8::1 HELO=a+20b+2Bc NAME=[UNAVAILABLE]\r\n"


def test_xclient_required_not_advertised():
    s = ready(EHLO_PIPE, xclient="required")
    assert s.send(txn(xclient=ORIGIN)) is IDLE
    o = s.done()[0]
    assert (o.text, o.status, o.stage) == (C.XCLIENT_NOT_OFFERED, TRANSIENT, C.ST_AFTER_EHLO)
    assert s.take() == b""


def test_xclient_ifavailable_not_advertised_sends_without():
    s = ready(EHLO_PIPE, xclient="ifavailable")
    s.send(txn(xclient=ORIGIN))
    assert s.take().startswith(b"MAIL FROM:")


@pytest.mark.parametrize("mode", ["ifavailable", "required"])
def test_xclient_refused(mode):
    s = ready(XCLIENT_EHLO, xclient=mode)
    s.send(txn(xclient=ORIGIN))
    s.take()
    s.feed(b"550 5.7.0 insufficient authorization\r\n")
    if mode == "required":
        assert s.last is IDLE
        o = s.done()[0]
        assert (o.status, o.code, o.stage) == (TRANSIENT, 550, C.ST_XCLIENT)
    else:
        assert s.take().startswith(b"MAIL FROM:")


def test_xclient_after_failed_transaction_resets_first():
    s = ready(XCLIENT_EHLO, xclient="ifavailable")
    s.send(txn())
    s.take()
    s.feed(b"250 ok\r\n550 no\r\n554 no\r\n")
    s.send(txn(xclient=ORIGIN))
    assert s.take() == b"RSET\r\n"
    s.feed(b"250 ok\r\n")
    assert s.take().startswith(b"XCLIENT ")


def test_xclient_off_by_default():
    s = ready(XCLIENT_EHLO)
    s.send(txn(xclient=ORIGIN))
    assert s.take().startswith(b"MAIL FROM:")


# --- LMTP --------------------------------------------------------------------------------------

LHLO = b"250-lmtp.example\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n"


def test_lmtp_one_reply_per_accepted_recipient():
    s = Scripted(delivery_method="LMTP")
    s.feed(BANNER)
    s.take()
    s.feed(LHLO)
    s.send(txn("a@x.example", "b@x.example", "c@x.example"))
    s.take()
    s.feed(b"250 ok\r\n250 ok\r\n550 5.1.1 unknown\r\n250 ok\r\n354 go\r\n")
    s.take()
    assert s.feed(b"250 2.0.0 a delivered\r\n") is NEED_DATA       # one more expected
    assert s.feed(b"452 4.2.2 c over quota\r\n") is IDLE
    assert [(o.status, o.text, o.stage) for o in s.done()] == [
        (DELIVERED, "250 2.0.0 a delivered", 9), (PERMANENT, "550 5.1.1 unknown", 4),
        (TRANSIENT, "452 4.2.2 c over quota", 9)]


def test_lmtp_connection_lost_between_per_recipient_replies():
    s = Scripted(delivery_method="LMTP")
    s.feed(BANNER)
    s.take()
    s.feed(LHLO)
    s.send(txn("a@x.example", "b@x.example"))
    s.take()
    s.feed(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    s.take()
    s.feed(b"250 a ok\r\n")
    assert s.feed(b"") is CLOSED
    assert [(o.status, o.text) for o in s.done()] == [
        (DELIVERED, "250 a ok"), (TRANSIENT, C.CONNECTION_CLOSED)]


# --- BDAT (opt-in) ----------------------------------------------------------------------

CHUNK_EHLO = b"250-mx\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 8BITMIME\r\n"


def test_bdat_pipelined_with_envelope_exact_octets():
    s = ready(CHUNK_EHLO, chunking=True)
    body = b"Subject: x\r\n\r\n.starts with dot\nbare lf\r\n"
    s.send(txn(), body)
    out = s.take()
    assert out == (b"MAIL FROM:<a@example.org>\r\nRCPT TO:<r@example.net>\r\n"
                   + b"BDAT %d LAST\r\n" % len(body) + body)
    s.feed(b"250 ok\r\n250 ok\r\n250 2.0.0 queued\r\n")
    assert s.done()[0].status == DELIVERED


def test_bdat_not_used_unless_enabled():
    s = ready(CHUNK_EHLO)
    s.send(txn())
    assert s.take().endswith(b"DATA\r\n")


def test_bdat_all_recipients_refused():
    s = ready(CHUNK_EHLO, chunking=True)
    s.send(txn())
    s.take()
    s.feed(b"250 ok\r\n550 no\r\n503 5.5.1 no valid recipients\r\n")
    assert s.last is IDLE and s.done()[0].text == "550 no"
    s.send(txn())
    assert s.take().startswith(b"RSET\r\n")


# --- several transactions submitted at once -------------------------------------------------


def dones(s: Scripted) -> list:
    return [e for e in s.events if isinstance(e, C.TransactionDone)]


def test_queued_transaction_envelope_follows_the_body():
    """RFC 2920 3.1: the message content may open a group; the next envelope joins it."""
    s = ready()
    t1, t2 = txn("a@example.net"), txn("b@example.net")
    s.cli.send_mail(t1, BODY)
    s.cli.send_mail(t2, BODY + b"two\r\n")
    s.pump()
    assert s.take() == b"MAIL FROM:<a@example.org>\r\nRCPT TO:<a@example.net>\r\nDATA\r\n"
    s.feed(OK_GROUP)
    assert s.take() == (BODY + b".\r\nMAIL FROM:<a@example.org>\r\n"
                        b"RCPT TO:<b@example.net>\r\nDATA\r\n")
    s.feed(b"250 2.0.0 first\r\n" + OK_GROUP)
    assert [d.transaction for d in dones(s)] == [t1]
    assert s.take() == BODY + b"two\r\n.\r\n"
    assert s.feed(b"250 2.0.0 second\r\n") is IDLE
    assert [(d.transaction, d.outcomes[0].text) for d in dones(s)] == [
        (t1, "250 2.0.0 first"), (t2, "250 2.0.0 second")]
    assert s.cli.transactions == 2


def test_queued_transactions_without_pipelining_run_one_after_the_other():
    s = ready(EHLO_PLAIN)
    s.cli.send_mail(txn("a@example.net"), BODY)
    s.cli.send_mail(txn("b@example.net"), BODY)
    s.pump()
    for reply in (b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n"):
        assert b"b@example.net" not in s.take()
        s.feed(reply)
    s.take()
    s.feed(b"250 done\r\n")
    assert s.take() == b"MAIL FROM:<a@example.org>\r\n"
    assert len(dones(s)) == 1


def test_chained_transaction_survives_a_refused_body():
    s = ready()
    s.cli.send_mail(txn("a@example.net"), BODY)
    s.cli.send_mail(txn("b@example.net"), BODY)
    s.pump()
    s.take()
    s.feed(OK_GROUP)
    s.take()
    s.feed(b"554 5.7.1 spam\r\n" + OK_GROUP)
    s.take()
    s.feed(b"250 ok\r\n")
    assert [d.outcomes[0].status for d in dones(s)] == [PERMANENT, DELIVERED]


def test_421_fails_every_queued_transaction():
    s = ready()
    for r in ("a@example.net", "b@example.net", "c@example.net"):
        s.cli.send_mail(txn(r), BODY)
    s.pump()
    s.take()
    s.feed(OK_GROUP)
    s.take()
    assert s.feed(b"421 4.3.2 shutting down\r\n") is CLOSED
    outs = [d.outcomes[0] for d in dones(s)]
    assert [(o.rcpt, o.code) for o in outs] == [
        ("a@example.net", 421), ("b@example.net", 421), ("c@example.net", 421)]
    assert outs[2].bytes_sent == 0                       # never started


def test_queued_after_unfinished_transaction_gets_rset():
    s = ready()
    s.cli.send_mail(txn("bad@example.net"), BODY)
    s.cli.send_mail(txn("b@example.net"), BODY)
    s.pump()
    s.take()
    s.feed(b"250 ok\r\n550 no\r\n554 no valid recipients\r\n")
    assert s.take().startswith(b"RSET\r\nMAIL FROM:")
    s.feed(b"250 ok\r\n" + OK_GROUP)
    s.take()
    s.feed(b"250 ok\r\n")
    assert [d.outcomes[0].status for d in dones(s)] == [PERMANENT, DELIVERED]


def test_precheck_failures_in_a_queue_do_not_stall_it():
    s = ready(EHLO_PIPE)
    bad = [txn("x@example.net", sender=f"j\u00f6{i}@example.org") for i in range(50)]
    for t in bad:
        s.cli.send_mail(t, BODY)
    s.cli.send_mail(txn("ok@example.net"), BODY)
    s.pump()
    assert len(dones(s)) == 50 and s.take().startswith(b"MAIL FROM:<a@example.org>")


def test_bdat_transactions_all_go_in_one_write():
    s = ready(CHUNK_EHLO, chunking=True)
    for i in range(3):
        s.cli.send_mail(txn(f"r{i}@example.net"), b"body %d\r\n" % i)
    s.pump()
    out = s.take()
    assert out.count(b"MAIL FROM") == 3 and out.count(b"BDAT 8 LAST") == 3
    s.feed(b"250 ok\r\n250 ok\r\n250 q1\r\n" * 3)
    assert s.last is IDLE and [d.outcomes[0].text for d in dones(s)] == ["250 q1"] * 3


def test_no_chaining_when_xclient_is_on():
    s = ready(XCLIENT_EHLO, xclient="ifavailable")
    s.cli.send_mail(txn("a@example.net"), BODY)
    s.cli.send_mail(txn("b@example.net"), BODY)
    s.pump()
    s.take()
    s.feed(OK_GROUP)
    assert s.take() == BODY + b".\r\n"


def test_transaction_for_messages_of_one_batch():
    from ecmta.actors.mail import DsnParams, MailMessage
    dsn = DsnParams(("FAILURE",), "rfc822;a@x.example", "HDRS", "env-1")
    msgs = [MailMessage(id=f"id{i}", batch_id="b", conn_id="c", mailfrom="s@example.org",
                        rcptto=f"r{i}@x.example", size=1234, peer_ip="192.0.2.9",
                        peer_port=4711, ctx_conn={"ehlo_domain": "client.example"},
                        dsn=dsn, auth_user="bob") for i in range(3)]
    t = C.Transaction.for_messages(msgs, lambda: BODY)
    assert t.mailfrom == "s@example.org" and [r for r, _ in t.recipients] == \
        ["r0@x.example", "r1@x.example", "r2@x.example"]
    assert (t.ret, t.envid, t.size) == ("HDRS", "env-1", 1234)
    assert t.xclient == {"NAME": "[UNAVAILABLE]", "ADDR": "192.0.2.9", "PORT": "4711",
                         "HELO": "client.example", "PROTO": "ESMTP", "LOGIN": "bob"}
    assert t.body_loader() == BODY
