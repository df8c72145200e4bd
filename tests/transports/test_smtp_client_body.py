"""Sans-IO SMTP client: what goes on the wire for a body. Dot-stuffing and the SMTP
smuggling defence (checked against ecmta's SMTPServer and a lenient reference parser),
8BITMIME downgrades (transform_8bitmime_content), SMTPUTF8."""
import email
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecmta.tests.transports.test_smtp_client_helpers import (
    EHLO_ALL, EHLO_PIPE, Link, Scripted, txn)
from ecmta.transports import smtp_client as C
from ecmta.transports.smtp_client import (
    DELIVERED, IDLE, PERMANENT, ClientOptions, dot_stuff, downgrade_8bit)
from ecmta.transports.smtp_server import DataEnd, MailFrom

HDR = b"Subject: t\r\nFrom: a@example.org\r\n\r\n"


def canonical(body: bytes) -> bytes:
    """What a body becomes on the wire once unstuffed: CRLF line ends, final CRLF."""
    if not body:
        return b""
    body = re.sub(rb"\r\n|\r|\n", b"\r\n", body)
    return body if body.endswith(b"\r\n") else body + b"\r\n"


def lenient_lines(data: bytes) -> list[bytes]:
    """A server that ends lines at CR, LF or CRLF (the smuggling victim)."""
    return re.split(rb"\r\n|\r|\n", data)


def ends_only_at_the_end(stuffed: bytes) -> bool:
    lines = lenient_lines(stuffed)
    assert lines[-2:] == [b".", b""]
    return b"." not in lines[:-2]


# --- dot_stuff ------------------------------------------------------------------------------


@pytest.mark.parametrize("body,wire", [
    (b"", b".\r\n"),
    (b"a\r\n", b"a\r\n.\r\n"),
    (b"a", b"a\r\n.\r\n"),
    (b".", b"..\r\n.\r\n"),
    (b".a\r\n.\r\n..\r\n", b"..a\r\n..\r\n...\r\n.\r\n"),
    (b"a\n.\nb", b"a\r\n..\r\nb\r\n.\r\n"),
    (b"a\r.\rb", b"a\r\n..\r\nb\r\n.\r\n"),
    (b"a\r\n.\nb\n.\r\nc", b"a\r\n..\r\nb\r\n..\r\nc\r\n.\r\n"),
    (b"a\r\r\n", b"a\r\n\r\n.\r\n"),
])
def test_dot_stuff(body, wire):
    assert dot_stuff(body) == wire


FAKE_ENDS = [b"\n.\n", b"\r.\r", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\n.\r", b"\r\n.\r",
             b"\r\n.\r\n"]


@pytest.mark.parametrize("fake_end", FAKE_ENDS)
def test_smuggling_defence_stored_body_cannot_end_data_early(fake_end):
    """A stored body holding a fake end-of-data followed by a forged transaction: no
    server, strict or lenient, sees the forged MAIL FROM as a command."""
    smuggled = b"MAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@y.example>\r\nDATA\r\n"
    body = HDR + b"innocent" + fake_end + smuggled + b"spoofed\r\n"
    stuffed = dot_stuff(body)
    assert ends_only_at_the_end(stuffed)
    link = Link()
    assert link.run() is IDLE
    outs = link.deliver(txn(), body)
    assert [o.status for o in outs] == [DELIVERED]
    assert len(link.server.of(MailFrom)) == 1 and len(link.server.of(DataEnd)) == 1
    assert bytes(link.server.body) == canonical(body)


LINEISH = st.lists(st.sampled_from([b".", b"..", b"\r", b"\n", b"\r\n", b"a", b" ", b"\x00",
                                    b"\xff", b"\r\n.\r\n", b"\n.\n"]), max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), LINEISH.map(b"".join)))
def test_any_body_round_trips_through_the_server_machine(body):
    """Property: after ecmta's SMTPServer unstuffs it, the body is exactly the body
    (in its canonical CRLF form; for CRLF bodies that is the body itself)."""
    stuffed = dot_stuff(body)
    assert ends_only_at_the_end(stuffed)
    link = Link()
    link.run()
    outs = link.deliver(txn(), body)
    assert outs[0].status == DELIVERED, outs
    assert bytes(link.server.body) == canonical(body)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
                max_size=20))
def test_crlf_bodies_arrive_byte_for_byte(lines):
    body = b"".join(ln + b"\r\n" for ln in lines)
    link = Link()
    link.run()
    link.deliver(txn(), body)
    assert bytes(link.server.body) == body


def test_large_body_fast_path_untouched():
    body = HDR + b"x" * 70 * 1000
    assert dot_stuff(body) == body + b"\r\n.\r\n"


# --- 8BITMIME ------------------------------------------------------------------------------

EIGHT = (b"Subject: caf\xc3\xa9\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
         b"Content-Transfer-Encoding: 8bit\r\n\r\nCaf\xc3\xa9 au lait = 1\r\n.dot\r\n")
EIGHT_BODY_ONLY = EIGHT.replace(b"Subject: caf\xc3\xa9", b"Subject: cafe")


def sent_body(ehlo: bytes, body: bytes, **kw):
    s = Scripted(**kw)
    s.setup(ehlo)
    s.send(txn(), body)
    group = s.take()
    if s.last is IDLE:
        return group, None, s
    s.feed(b"250 ok\r\n250 ok\r\n354 go\r\n")
    data = s.take()
    s.feed(b"250 ok\r\n")
    return group, data, s


def unstuff(data: bytes) -> bytes:
    assert data.endswith(b"\r\n.\r\n")
    return data[:-3].replace(b"\r\n..", b"\r\n.")


def test_8bit_sent_as_is_when_offered():
    group, data, _ = sent_body(EHLO_ALL, EIGHT)
    assert unstuff(data) == EIGHT


def test_ifneeded_converts_to_quoted_printable():
    group, data, s = sent_body(EHLO_PIPE, EIGHT_BODY_ONLY)
    out = unstuff(data)
    assert out.isascii() and b"BODY=8BITMIME" not in group
    msg = email.message_from_bytes(out)
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"
    assert msg.get_payload(decode=True) == b"Caf\xc3\xa9 au lait = 1\r\n.dot\r\n"
    assert s.done()[0].status == DELIVERED


def test_ifneeded_leaves_8bit_headers():
    _, data, _ = sent_body(EHLO_PIPE, EIGHT)
    out = unstuff(data)
    assert out.startswith(b"Subject: caf\xc3\xa9\r\n") and b"Caf=C3=A9" in out


def test_strict_fails_when_8bit_remains():
    group, data, s = sent_body(EHLO_PIPE, EIGHT, transform_8bitmime_content="strict")
    assert group == b"" and data is None
    o = s.done()[0]
    assert (o.status, o.text, o.stage) == (PERMANENT, C.EIGHTBIT_UNCONVERTIBLE, 11)


def test_strict_converts_when_it_can():
    _, data, s = sent_body(EHLO_PIPE, EIGHT_BODY_ONLY, transform_8bitmime_content="strict")
    assert unstuff(data).isascii() and s.done()[0].status == DELIVERED


def test_strip_clears_the_high_bit():
    _, data, _ = sent_body(EHLO_PIPE, EIGHT, transform_8bitmime_content="strip")
    assert unstuff(data) == bytes(b & 0x7F for b in EIGHT)


def test_no_sends_as_is():
    _, data, _ = sent_body(EHLO_PIPE, EIGHT, transform_8bitmime_content="no")
    assert unstuff(data) == EIGHT


def test_multipart_only_8bit_leaves_converted():
    body = (b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
            b"--XX\r\nContent-Type: text/plain; charset=latin-1\r\n\r\nna\xefve\r\n"
            b"--XX\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--XX--\r\n")
    out = downgrade_8bit(body, "ifneeded")
    assert out.isascii()
    parts = list(email.message_from_bytes(out).walk())
    assert parts[1]["Content-Transfer-Encoding"] == "quoted-printable"
    assert parts[1].get_payload(decode=True) == b"na\xefve"   # CRLF belongs to the boundary
    assert parts[2].get_payload(decode=True) == b"\x00\x01\x02"


def test_ascii_body_never_converted():
    assert downgrade_8bit(HDR + b"plain\r\n", "strict") == HDR + b"plain\r\n"


def test_eight_bit_flag_overrides_detection():
    s = Scripted(send_8bitmime="ifavailable")
    s.setup(EHLO_ALL)
    s.send(txn(eight_bit=True), HDR + b"ascii\r\n")
    assert b"BODY=8BITMIME" in s.take()


def test_peer_with_8bitmime_gets_body_param():
    group, _, _ = sent_body(EHLO_ALL, EIGHT, send_8bitmime="ifavailable")
    assert b" BODY=8BITMIME" in group


# --- SMTPUTF8 ------------------------------------------------------------------------------


def test_utf8_sender_with_smtputf8():
    s = Scripted()
    s.setup(EHLO_ALL)
    s.send(txn("r@example.net", sender="jos\u00e9@example.org"))
    assert s.take().startswith("MAIL FROM:<jos\u00e9@example.org> SIZE=".encode())
    s = Scripted()
    s.setup(EHLO_ALL)
    s.send(txn("r@example.net", sender="jos\u00e9@example.org"))
    assert b" SMTPUTF8\r\n" in s.take().split(b"\r\n")[0] + b"\r\n"


def test_utf8_sender_without_smtputf8_fails_everything():
    s = Scripted()
    s.setup(EHLO_PIPE)
    assert s.send(txn("a@example.net", "b@example.net", sender="jos\u00e9@example.org")) is IDLE
    assert s.take() == b""
    assert [(o.status, o.text, o.stage) for o in s.done()] == \
        [(PERMANENT, C.SMTPUTF8_NOT_OFFERED, C.ST_AFTER_EHLO)] * 2


def test_utf8_recipient_without_smtputf8_fails_alone():
    s = Scripted()
    s.setup(EHLO_PIPE)
    s.send(txn("ok@example.net", "\u00fcser@example.net"))
    out = s.take()
    assert out.count(b"RCPT TO") == 1 and b"SMTPUTF8" not in out
    s.feed(b"250 ok\r\n250 ok\r\n354 go\r\n")
    s.take()
    s.feed(b"250 ok\r\n")
    assert [o.status for o in s.done()] == [DELIVERED, PERMANENT]
    assert s.done()[1].text == C.SMTPUTF8_NOT_OFFERED


@pytest.mark.parametrize("headers_utf8,delivered", [(False, True), (True, False)])
def test_smtputf8_message_needs_the_extension_only_for_utf8_headers(headers_utf8, delivered):
    body = (b"Subject: \xc3\xa9t\xc3\xa9\r\n\r\nx\r\n" if headers_utf8 else HDR + b"\xc3\xa9\r\n")
    s = Scripted()
    s.setup(EHLO_PIPE)
    s.send(txn(smtputf8=True), body)
    if delivered:
        assert s.take().startswith(b"MAIL FROM:")
    else:
        assert s.done()[0].text == C.SMTPUTF8_NOT_OFFERED


def test_smtputf8_end_to_end_with_server():
    link = Link(ClientOptions(ehlo_hostname="c.example"))
    link.run()
    outs = link.deliver(txn("\u00fcser@example.net", sender="jos\u00e9@example.org"))
    assert outs[0].status == DELIVERED
    assert link.server.of(MailFrom)[0].params.smtputf8
