"""Sans-IO SMTP server: a pipelined session gets exactly the replies of the same session sent
one command at a time (RFC 2920), and the replies of a pipelined group leave together."""
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from ecmta.tests.transports.test_smtp_server_helpers import Client, wire
from ecmta.transports import smtp_replies as R
from ecmta.transports.smtp_replies import Reply
from ecmta.transports.smtp_server import (
    AuthAttempt, DataEnd, DataStart, MailFrom, RcptTo, XClient)

# Deterministic policy, so that both runs decide alike.
POLICY = {
    MailFrom: lambda ev: Reply(550, "5.7.1", "sender refused") if "spam" in ev.raw else None,
    RcptTo: lambda ev: R.RELAYING_DENIED if "@elsewhere" in ev.raw else None,
    DataStart: None,
    DataEnd: lambda ev: Reply(250, "2.0.0", f"OK size={ev.facts.size}"),
    AuthAttempt: lambda ev: R.AUTH_OK if ev.password == "pw" else None,
    XClient: None,
}

B = b"Subject: s\r\n\r\nline one\r\n..dotted\r\n"

CORPUS = [
    # the plain path
    [b"EHLO c\r\n", b"MAIL FROM:<a@b.example>\r\n", b"RCPT TO:<r@d.example>\r\n", b"DATA\r\n",
     B + b".\r\n", b"QUIT\r\n"],
    # several messages, RSET in between, refused recipients
    [b"EHLO c\r\n", b"MAIL FROM:<a@b.example>\r\n", b"RCPT TO:<x@elsewhere.example>\r\n",
     b"RCPT TO:<y@d.example>\r\n", b"DATA\r\n", B + b".\r\n", b"MAIL FROM:<spam@b.example>\r\n",
     b"RCPT TO:<y@d.example>\r\n", b"RSET\r\n", b"MAIL FROM:<>\r\n", b"RCPT TO:<y@d.example>\r\n",
     b"DATA\r\n", b".\r\n", b"NOOP\r\n", b"QUIT\r\n"],
    # every refusal the machine makes by itself
    [b"FOO\r\n", b"DATA\r\n", b"RCPT TO:<a@b.example>\r\n", b"EHLO\r\n", b"HELO x\r\n",
     b"MAIL FROM:bad\r\n", b"MAIL FROM:<a@b.example> FOO=1\r\n", b"MAIL FROM:<a@b.example>\r\n",
     b"MAIL FROM:<a@b.example>\r\n", b"DATA\r\n", b"RCPT TO:<>\r\n", b"RSET junk\r\n",
     b"NOOP " + b"x" * 600 + b"\r\n", b"bare lf\n", b"VRFY\r\n", b"QUIT now\r\n", b"QUIT\r\n"],
    # all the empty DATA variants, all the failing DATA variants
    [b"EHLO c\r\n", b"MAIL FROM:<a@b.example>\r\n", b"RCPT TO:<r@d.example>\r\n",
     b"DATA x\r\n", b"DATA\r\n", b"Bad\nHeader: y\r\n\r\nb\r\n.\r\n", b"RCPT TO:<r@d.example>\r\n",
     b"MAIL FROM:<a@b.example>\r\n", b"RCPT TO:<r@d.example>\r\n", b"DATA\r\n", b".\r\n"],
    # BDAT, including a failing and a pipelined chunk sequence
    [b"EHLO c\r\n", b"BDAT 4\r\nabcd", b"MAIL FROM:<a@b.example>\r\n", b"RCPT TO:<r@d.example>\r\n",
     b"BDAT 12\r\nSubject: s\r\n", b"BDAT 2\r\n\r\n", b"DATA\r\n", b"BDAT 0 LAST\r\n",
     b"MAIL FROM:<a@b.example> SIZE=10\r\n", b"RCPT TO:<r@d.example>\r\n",
     b"BDAT 3 LAST\r\n\r\nx", b"QUIT\r\n"],
    # AUTH exchanges and cancel
    [b"EHLO c\r\n", b"AUTH LOGIN\r\n", b"*\r\n", b"AUTH PLAIN\r\n", b"AGJvYgB3cm9uZw==\r\n",
     b"AUTH LOGIN Ym9i\r\n", b"cHc=\r\n", b"AUTH PLAIN AGJvYgBwdw==\r\n",
     b"MAIL FROM:<a@b.example> AUTH=<>\r\n", b"AUTH PLAIN x\r\n", b"RSET\r\n"],
    # DSN, SMTPUTF8, 8BITMIME parameters
    [b"EHLO c\r\n", b"MAIL FROM:<a@b.example> RET=FULL ENVID=x+2By SMTPUTF8 BODY=8BITMIME\r\n",
     "RCPT TO:<j\u00f6rg@d.example> NOTIFY=FAILURE,DELAY ORCPT=rfc822;j+40d\r\n".encode(),
     b"RCPT TO:<r@d.example> NOTIFY=NEVER,DELAY\r\n", b"DATA\r\n",
     "Subject: caf\u00e9\r\n\r\n\u00e9\r\n.\r\n".encode(), b"QUIT\r\n"],
    # XCLIENT / XREMOTEIP / XSETCONTEXT / HELP mixed into a transaction
    [b"EHLO proxy\r\n", b"XCLIENT ADDR=203.0.113.1 NAME=n.example\r\n", b"EHLO real\r\n",
     b"XREMOTEIP 203.0.113.2\r\n", b"XSETCONTEXT k=v\r\n", b"MAIL FROM:<a@b.example>\r\n",
     b"XCLIENT ADDR=203.0.113.3\r\n", b"HELP\r\n", b"HELP DATA\r\n", b"EXPN list\r\n",
     b"RCPT TO:<r@d.example>\r\n", b"DATA\r\n", B + b".\r\n"],
    # STARTTLS as the last command of a group (RFC 2920 requires it to be last)
    [b"EHLO c\r\n", b"NOOP\r\n", b"STARTTLS\r\n"],
]


def run_units(units, pipelined: bool, **kw) -> bytes:
    c = Client(policy=POLICY, **kw)
    if pipelined:
        return c.send(b"".join(units))
    return b"".join(c.send(u) for u in units)


def test_corpus_pipelined_equals_sequential():
    for units in CORPUS:
        seq = run_units(units, False)
        assert run_units(units, True) == seq, units
        # and with arbitrary TCP segmentation
        data = b"".join(units)
        rng = random.Random(len(data))
        for _ in range(5):
            c = Client(policy=POLICY)
            cuts = sorted(rng.sample(range(1, len(data)), min(8, len(data) - 1)))
            out = b"".join(c.send(data[a:b]) for a, b in zip([0] + cuts, cuts + [len(data)]))
            assert out == seq, units


def test_corpus_replies_are_complete():
    out = run_units(CORPUS[0], True).decode()
    assert out.startswith("250-mx.example.test says EHLO")
    assert (wire(R.MAIL_OK) + wire(R.RCPT_OK)) in out
    assert "250 2.0.0 OK size=33\r\n221 2.0.0" in out   # 33 = B after unstuffing


def test_replies_of_a_group_flush_together():
    """One write per group: nothing is handed out while pipelined input is pending."""
    c = Client(policy=POLICY)
    srv = c.srv
    srv.receive_data(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<r@d.example>\r\nDATA\r\n")
    flushes = []
    while True:
        ev = srv.next_event()
        if ev.__class__.__name__ == "_Sentinel":
            flushes.append(srv.data_to_send())
            break
        if hasattr(ev, "default"):
            srv.respond()
    assert len(flushes) == 1
    assert flushes[0].startswith(b"250-mx.example.test says EHLO")
    assert flushes[0].endswith((wire(R.MAIL_OK) + wire(R.RCPT_OK) + wire(R.DATA_GO)).encode())


UNITS = [b"EHLO c\r\n", b"HELO c\r\n", b"MAIL FROM:<a@b.example>\r\n", b"MAIL FROM:<>\r\n",
         b"MAIL FROM:<spam@b.example>\r\n", b"RCPT TO:<r@d.example>\r\n",
         b"RCPT TO:<x@elsewhere.example>\r\n", b"DATA\r\n", B + b".\r\n", b".\r\n",
         b"BDAT 3\r\nabc", b"BDAT 0 LAST\r\n", b"BDAT 2 LAST\r\n\r\n", b"RSET\r\n", b"NOOP\r\n",
         b"FOO\r\n", b"AUTH PLAIN AGJvYgBwdw==\r\n", b"AUTH LOGIN\r\n", b"*\r\n",
         b"XREMOTEIP 203.0.113.9\r\n", b"VRFY x\r\n", b"junk\n", b"\r\n"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(UNITS), min_size=1, max_size=25))
def test_random_sessions_pipelined_equals_sequential(units):
    assert run_units(units, True) == run_units(units, False)
