"""Rendering of failure, delay and policy-rejection DSNs: structure (RFC 6522 / 3464),
RFC 3461 parameters, inline modes, UTF-8 originals (RFC 6533), line rules, safety."""

from __future__ import annotations

import re

import pytest

from ecmta.actors.dsn import (
    DsnRecipient, derive_status, render_delay_dsn, render_failure_dsn,
    render_policy_rejection_dsn, required_extensions,
)
from ecmta.actors.mail import Body, DsnParams, MailMessage
from ecmta.tests.dsn.helpers import (
    GMAIL_550, HOST, MSG_ID, ORIGINAL, T0, UTF8_ORIGINAL, check_lines, ds_blocks, parse,
    raw_parts, rcpt,
)


def fail(**kw):
    kw.setdefault("mailfrom", "alice@example.com")
    kw.setdefault("recipients", [rcpt()])
    kw.setdefault("hostname", HOST)
    kw.setdefault("original", ORIGINAL)
    kw.setdefault("msg_id", MSG_ID)
    kw.setdefault("now", T0 + 100)
    return render_failure_dsn(**kw)


def delay(**kw):
    kw.setdefault("mailfrom", "alice@example.com")
    kw.setdefault("recipients", [rcpt(reply="451 4.7.1 greylisted, try again later")])
    kw.setdefault("hostname", HOST)
    kw.setdefault("original", ORIGINAL)
    kw.setdefault("msg_id", MSG_ID)
    kw.setdefault("now", T0 + 3600)
    return render_delay_dsn(**kw)


def words(part) -> str:
    """A text part's content with all whitespace runs as one space (wrapping ignored)."""
    return " ".join(part.get_content().split())


def status_blocks(data: bytes):
    parts = raw_parts(data)
    return ds_blocks(parts[1][1].decode("utf-8"))


def checked(data: bytes):
    """Parse, assert the common structure and line rules, return the parsed message."""
    check_lines(data)
    msg = parse(data)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    for part in msg.walk():
        assert not part.defects, (part.get_content_type(), part.defects)
    parts = list(msg.iter_parts())
    assert parts[0].get_content_type() == "text/plain"
    assert parts[1].get_content_type() in ("message/delivery-status",
                                           "message/global-delivery-status")
    status_blocks(data)
    return msg


# -- structure --------------------------------------------------------------------------------

def test_failure_structure_and_headers():
    r = rcpt(reply=GMAIL_550, remote_mta="mx.example.org", remote_ip="192.0.2.25",
             last_attempt=T0 + 60, log_id="12/34-01234-56789ABC",
             dsn=DsnParams(orcpt="rfc822;bob@example.org"))
    data = fail(recipients=[r], envid="QQ314159", arrival_date=T0)
    msg = checked(data)
    assert data.isascii() and b"Content-Transfer-Encoding" not in data
    assert msg["From"] == "mailer-daemon@mta.example.net"
    assert msg["To"] == "alice@example.com"
    assert msg["Subject"] == "Undeliverable: Quarterly report"
    assert msg["Date"] == "Mon, 01 Jan 2024 00:01:40 +0000"
    assert msg["Message-ID"] == "<AB.CD.00042.0000A0B6@mta.example.net>"
    assert msg["In-Reply-To"] == "<abc123@example.com>"
    assert msg["References"] == "<abc123@example.com>"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["MIME-Version"] == "1.0"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "text/plain", "message/delivery-status", "text/rfc822-headers"]

    per_msg, per_rcpt = status_blocks(data)
    assert per_msg == {"original-envelope-id": "QQ314159", "reporting-mta": "dns; mta.example.net",
                       "arrival-date": "Mon, 01 Jan 2024 00:00:00 +0000"}
    assert per_rcpt["original-recipient"] == "rfc822;bob@example.org"
    assert per_rcpt["final-recipient"] == "rfc822; bob@example.org"
    assert per_rcpt["action"] == "failed"
    assert per_rcpt["status"] == "5.1.1"
    assert per_rcpt["remote-mta"] == "dns; mx.example.org"
    # The multi-line reply is one diagnostic: code and enhanced code once, text joined.
    assert per_rcpt["diagnostic-code"] == (
        "smtp; 550 5.1.1 The email account that you tried to reach does not exist. Please "
        "try double-checking the recipient's email address for typos or unnecessary "
        "spaces. https://support.example/mail/?p=NoSuchUser")
    assert per_rcpt["last-attempt-date"] == "Mon, 01 Jan 2024 00:01:00 +0000"
    assert per_rcpt["final-log-id"] == "12/34-01234-56789ABC"

    # The email package reads the same report (message/delivery-status = header blocks).
    blocks = parts[1].get_payload()
    assert len(blocks) == 2
    assert blocks[0]["Reporting-MTA"] == "dns; mta.example.net"
    assert blocks[1]["Action"] == "failed" and blocks[1]["Status"] == "5.1.1"

    text = parts[0].get_content()
    assert "mta.example.net" in text and "<bob@example.org>" in text
    assert "Remote host mx.example.org [192.0.2.25] replied:" in text
    assert "550 5.1.1 The email account" in text
    # The attached headers are the original's, byte for byte.
    head = ORIGINAL.split(b"\r\n\r\n")[0] + b"\r\n"
    assert raw_parts(data)[2][1] == head


def test_several_recipients_each_with_its_reason():
    rs = [rcpt("bob@example.org", "550 5.1.1 user unknown", remote_mta="mx1.example.org"),
          rcpt("carol@example.org", "552 5.2.2 mailbox full", remote_mta="mx2.example.org"),
          rcpt("dave@example.org", "554 5.4.7 [internal] exceeded max time without delivery")]
    data = fail(recipients=rs)
    checked(data)
    blocks = status_blocks(data)[1:]
    assert [b["final-recipient"] for b in blocks] == [
        "rfc822; bob@example.org", "rfc822; carol@example.org", "rfc822; dave@example.org"]
    assert [b["status"] for b in blocks] == ["5.1.1", "5.2.2", "5.4.7"]
    assert "remote-mta" not in blocks[2]          # an internal failure has no remote MTA
    text = parse(data).get_body(("plain",)).get_content()
    for addr, why in (("bob", "user unknown"), ("carol", "mailbox full"),
                      ("dave", "exceeded max time")):
        assert re.search(rf"<{addr}@example.org>\r?\n(.*\r?\n)*?.*{why}", text), addr
    assert text.count("Remote host") == 2


def test_remote_ip_only_and_missing_reply():
    data = fail(recipients=[rcpt(reply="", remote_ip="192.0.2.1"),
                            rcpt("x@example.org", reply="", remote_ip="2001:db8::1")])
    checked(data)
    b1, b2 = status_blocks(data)[1:]
    assert b1["remote-mta"] == "dns; [192.0.2.1]" and b2["remote-mta"] == "dns; [IPv6:2001:db8::1]"
    assert b1["status"] == "5.0.0" and "diagnostic-code" not in b1
    assert "No further detail was given." in parse(data).get_body(("plain",)).get_content()


def test_message_without_subject_or_message_id():
    data = fail(original=b"From: a@example.com\r\n\r\nbody\r\n")
    msg = checked(data)
    assert msg["Subject"] == "Undeliverable: (no subject)"
    assert msg["In-Reply-To"] is None and msg["References"] is None


def test_no_original_at_all():
    data = fail(original=None, inline_original="all")
    msg = checked(data)
    assert len(list(msg.iter_parts())) == 2
    assert msg["Subject"] == "Undeliverable: (no subject)"


def test_custom_mailerdaemon_and_generated_id():
    data = render_failure_dsn(mailfrom="alice@example.com", recipients=[rcpt()], hostname=HOST,
                              original=ORIGINAL, mailerdaemon="postmaster@example.net")
    msg = checked(data)
    assert msg["From"] == "postmaster@example.net"
    assert re.fullmatch(r"<[0-9A-F]{2}\.[0-9A-F]{2}\.\d{5}\.[0-9A-F]{8}@mta\.example\.net>",
                        msg["Message-ID"])


def test_deterministic():
    assert fail() == fail()
    assert fail(original=Body(ORIGINAL)) == fail(original=ORIGINAL)


def test_from_message():
    m = MailMessage(id="12/34-01234-56789ABC", batch_id="", conn_id="",
                    mailfrom="alice@example.com",
                    rcptto="bob@example.org", code="550 5.1.1 no such user",
                    dsn=DsnParams(notify=("FAILURE",), orcpt="rfc822;Bob@Example.org"))
    r = DsnRecipient.from_message(m, remote_mta="mx.example.org")
    b = status_blocks(fail(recipients=[r]))[1]
    assert b["original-recipient"] == "rfc822;Bob@Example.org"
    assert b["final-log-id"] == "12/34-01234-56789ABC"
    assert b["diagnostic-code"] == "smtp; 550 5.1.1 no such user"


# -- status -------------------------------------------------------------------------------------

@pytest.mark.parametrize("reply,action,status", [
    ("550 5.1.1 user unknown", "failed", "5.1.1"),
    ("550-5.7.1 first\r\n550 5.7.1 second", "failed", "5.7.1"),
    ("550 user unknown", "failed", "5.0.0"),
    ("421 try later", "failed", "4.0.0"),             # expired after transient replies
    ("452 4.2.2 over quota", "failed", "4.2.2"),
    ("550 4.1.1 odd", "failed", "5.1.1"),             # class follows the reply code
    ("5.1.2 bad domain", "failed", "5.1.2"),          # enhanced code alone
    ("", "failed", "5.0.0"),
    ("connection refused", "failed", "5.0.0"),
    ("451 4.7.1 greylisted", "delayed", "4.7.1"),
    ("", "delayed", "4.0.0"),
    ("550 5.1.1 x", "delayed", "4.1.1"),               # a delay is transient by definition
    ("550 5.1.10 long detail", "failed", "5.1.10"),
    ("250 2.0.0 ok", "failed", "5.0.0"),
])
def test_derive_status(reply, action, status):
    assert derive_status(reply, action) == status


def test_status_override():
    b = status_blocks(fail(recipients=[rcpt(status="5.4.4")]))[1]
    assert b["status"] == "5.4.4"


# -- RFC 3461: ENVID, ORCPT, RET -----------------------------------------------------------------

def test_no_envid_no_orcpt_means_no_fields():
    per_msg, per_rcpt = status_blocks(fail())
    assert "original-envelope-id" not in per_msg
    assert "original-recipient" not in per_rcpt      # RFC 3461 6.3 (d): MUST NOT appear


def test_envid_is_sanitised():
    per_msg = status_blocks(fail(envid="id\r\nBcc: evil@example.com"))[0]
    assert per_msg["original-envelope-id"] == "id  Bcc: evil@example.com"


@pytest.mark.parametrize("inline,ret,expect", [
    ("headers", None, "text/rfc822-headers"),
    ("all", None, "message/rfc822"),
    ("none", None, None),
    ("none", "FULL", "message/rfc822"),
    ("none", "HDRS", "text/rfc822-headers"),
    ("all", "HDRS", "text/rfc822-headers"),
    ("headers", "FULL", "message/rfc822"),
    ("ALL", None, "message/rfc822"),
    ("bogus", None, "text/rfc822-headers"),
])
def test_inline_original_and_ret(inline, ret, expect):
    data = fail(inline_original=inline, ret=ret)
    msg = checked(data)
    parts = list(msg.iter_parts())
    if expect is None:
        assert len(parts) == 2
        assert "headers of your message" not in words(parts[0])
        assert "(RFC 3464) is attached" in words(parts[0])
        return
    assert len(parts) == 3 and parts[2].get_content_type() == expect
    raw = raw_parts(data)[2][1]
    if expect == "message/rfc822":
        assert raw == ORIGINAL                       # returned byte for byte
        inner = parts[2].get_payload()[0]
        assert inner["Subject"] == "Quarterly report"
        assert "and your message are attached" in words(parts[0])
    else:
        assert raw == ORIGINAL.split(b"\r\n\r\n")[0] + b"\r\n"
        assert b"the figures" not in raw


def test_delay_never_carries_the_full_message():
    data = delay(inline_original="all", ret="FULL")
    parts = list(checked(data).iter_parts())
    assert parts[2].get_content_type() == "text/rfc822-headers"
    assert b"the figures" not in data


# -- delay and policy notices -------------------------------------------------------------------

def test_delay_dsn():
    r = rcpt(reply="451 4.7.1 greylisted, try again later", remote_mta="mx.example.org",
             last_attempt=T0 + 3500)
    data = delay(recipients=[r], arrival_date=T0, will_retry_until=T0 + 86400, envid="E1")
    msg = checked(data)
    assert msg["Subject"] == "Delivery delayed: Quarterly report"
    per_msg, b = status_blocks(data)
    assert b["action"] == "delayed" and b["status"] == "4.7.1"
    assert b["will-retry-until"] == "Tue, 02 Jan 2024 00:00:00 +0000"
    assert b["diagnostic-code"] == "smtp; 451 4.7.1 greylisted, try again later"
    text = msg.get_body(("plain",)).get_content()
    assert "not yet been delivered" in text and "do not need to send it again" in text
    assert "Delivery will be attempted until Tue, 02 Jan 2024 00:00:00 +0000." in text


def test_delay_per_recipient_retry_until_wins():
    rs = [rcpt(reply="451 later", will_retry_until=T0 + 7200), rcpt("c@example.org", "451 later")]
    b1, b2 = status_blocks(delay(recipients=rs, will_retry_until=T0 + 86400))[1:]
    assert b1["will-retry-until"] == "Mon, 01 Jan 2024 02:00:00 +0000"
    assert b2["will-retry-until"] == "Tue, 02 Jan 2024 00:00:00 +0000"


def test_failure_has_no_will_retry_until():
    assert "will-retry-until" not in status_blocks(fail(recipients=[rcpt(will_retry_until=T0)]))[1]


def test_policy_rejection_notice():
    rs = [rcpt("spam@example.org", "550 5.7.1 recipient rejected by policy")]
    data = render_policy_rejection_dsn(
        mailfrom="alice@example.com", recipients=rs, hostname=HOST, original=ORIGINAL,
        arrival_date=T0, received_from_mta="client.example.com ([198.51.100.7])",
        msg_id=MSG_ID, now=T0 + 1)
    msg = checked(data)
    assert msg["Subject"] == "Undeliverable: Quarterly report"
    per_msg, b = status_blocks(data)
    assert per_msg["received-from-mta"] == "dns; client.example.com ([198.51.100.7])"
    assert b["action"] == "failed" and b["status"] == "5.7.1"
    assert "remote-mta" not in b and "last-attempt-date" not in b
    text = msg.get_body(("plain",)).get_content()
    assert "accepted for some of its recipients" in text
    assert "other recipients is not affected" in text


# -- null sender -------------------------------------------------------------------------------

def test_null_sender_gets_no_dsn():
    with pytest.raises(ValueError):
        fail(mailfrom="")
    with pytest.raises(ValueError):
        delay(mailfrom="")
    with pytest.raises(ValueError):
        fail(recipients=[])


def test_null_sender_copy_to_mdn_failures_notify():
    data = fail(mailfrom="", to="postmaster@example.net")
    msg = checked(data)
    assert msg["To"] == "postmaster@example.net"
    assert "null envelope" in msg.get_body(("plain",)).get_content()


# -- UTF-8 (RFC 6533) and 8-bit originals ----------------------------------------------------------

def test_smtputf8_original_uses_global_types():
    rs = [rcpt("用户@例子.广告", "550 5.1.1 用户不存在",
               dsn=DsnParams(orcpt="utf-8;用户@例子.广告"))]
    data = fail(mailfrom="jörg@bücher.example", recipients=rs, original=UTF8_ORIGINAL)
    check_lines(data)
    msg = parse(data)
    for part in msg.walk():
        assert not part.defects
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "text/plain", "message/global-delivery-status", "message/global-headers"]
    assert msg["To"] == "jörg@bücher.example"
    assert msg["Subject"] == "Undeliverable: Grüße aus Köln"
    assert msg["Content-Transfer-Encoding"] == "8bit"
    assert parts[0].get_content_charset() == "utf-8"
    assert "<用户@例子.广告>" in parts[0].get_content()
    b = status_blocks(data)[1]
    assert b["final-recipient"] == "utf-8; 用户@例子.广告"
    assert b["original-recipient"] == "utf-8;用户@例子.广告"
    assert b["diagnostic-code"] == "smtp; 550 5.1.1 用户不存在"
    hdrs = raw_parts(data)
    assert b"Content-Transfer-Encoding: 8bit" in hdrs[1][0]
    assert b"Content-Transfer-Encoding: 8bit" in hdrs[2][0]
    assert hdrs[2][1] == UTF8_ORIGINAL.split(b"\r\n\r\n")[0] + b"\r\n"
    assert required_extensions(data) == {"8BITMIME", "SMTPUTF8"}


def test_smtputf8_full_original_is_message_global():
    data = fail(mailfrom="jörg@bücher.example", original=UTF8_ORIGINAL, inline_original="all")
    parts = list(parse(data).iter_parts())
    assert parts[2].get_content_type() == "message/global"
    assert raw_parts(data)[2][1] == UTF8_ORIGINAL


def test_smtputf8_flag_with_ascii_addresses():
    data = fail(smtputf8=True)
    parts = list(parse(data).iter_parts())
    assert parts[1].get_content_type() == "message/global-delivery-status"
    assert parts[2].get_content_type() == "message/global-headers"
    assert data.isascii() and required_extensions(data) == frozenset()


def test_utf8_headers_with_ascii_envelope():
    data = fail(original=UTF8_ORIGINAL)
    msg = parse(data)
    parts = list(msg.iter_parts())
    assert parts[1].get_content_type() == "message/delivery-status"
    assert parts[2].get_content_type() == "message/global-headers"
    # The DSN's own Subject stays 7-bit: RFC 2047 words, read back as the same text.
    assert msg["Subject"] == "Undeliverable: Grüße aus Köln"
    assert b"=?utf-8?b?" in data.split(b"\r\n\r\n")[0]
    assert msg["In-Reply-To"] is None        # a UTF-8 msg-id has no 7-bit form: left out
    assert required_extensions(data) == {"8BITMIME"}
    # Same with SMTPUTF8 declared: the notice's own header stays 7-bit for an ASCII sender.
    data = fail(original=UTF8_ORIGINAL, smtputf8=True)
    assert required_extensions(data) == {"8BITMIME"}
    assert parse(data)["Subject"] == "Undeliverable: Grüße aus Köln"


def test_latin1_8bit_original():
    orig = b"From: a@example.com\r\nSubject: caf\xe9\r\n\r\ncaf\xe9 cr\xe8me\r\n"
    data = fail(original=orig, inline_original="all")
    check_lines(data)
    msg = parse(data)
    parts = list(msg.iter_parts())
    assert parts[2].get_content_type() == "message/rfc822"
    assert b"Content-Transfer-Encoding: 8bit" in raw_parts(data)[2][0]
    assert raw_parts(data)[2][1] == orig
    assert msg["Content-Transfer-Encoding"] == "8bit"
    # The undecodable octet shows as U+FFFD rather than vanishing silently.
    assert msg["Subject"] == "Undeliverable: caf\ufffd"
    data = fail(original=orig)
    assert list(parse(data).iter_parts())[2].get_content_type() == "text/rfc822-headers"
    assert b"Content-Transfer-Encoding: 8bit" in raw_parts(data)[2][0]


def test_utf8_orcpt_in_ascii_report_is_xtext():
    r = rcpt(dsn=DsnParams(orcpt="utf-8;jörg+tag@example.org"))
    data = fail(recipients=[r])
    assert data.isascii()
    assert status_blocks(data)[1]["original-recipient"] == "utf-8;j\\x{F6}rg\\x{2B}tag@example.org"


def test_non_ascii_reply_in_ascii_report():
    data = fail(recipients=[rcpt(reply="550 5.1.1 Benutzer unbekannt: Müller")])
    assert data.isascii()
    assert status_blocks(data)[1]["diagnostic-code"] == "smtp; 550 5.1.1 Benutzer unbekannt: M?ller"


# -- line rules and safety -----------------------------------------------------------------------

def test_long_values_are_folded():
    long_reply = "550 5.7.1 " + " ".join(f"word{i}" for i in range(400))
    unbreakable = "550 5.7.1 " + "x" * 2500
    subject = "S" * 1200
    orig = ORIGINAL.replace(b"Subject: Quarterly report", b"Subject: " + subject.encode())
    data = fail(recipients=[rcpt(reply=long_reply), rcpt("c@example.org", unbreakable)],
                original=orig)
    msg = checked(data)
    for line in data.split(b"\r\n"):
        if not line.startswith((b" ", b"\t")) and b"word" in line:
            assert len(line) <= 78
    b1, b2 = status_blocks(data)[1:]
    assert b1["diagnostic-code"] == "smtp; " + long_reply
    assert b2["diagnostic-code"].replace(" ", "") == "smtp;" + unbreakable.replace(" ", "")
    assert msg["Subject"].replace(" ", "") == "Undeliverable:" + subject


def test_long_body_line_returns_headers_with_a_note():
    orig = ORIGINAL + b"y" * 1500 + b"\r\n"
    data = fail(original=orig, inline_original="all")
    msg = checked(data)
    parts = list(msg.iter_parts())
    assert parts[2].get_content_type() == "text/rfc822-headers"
    assert "lines longer than 998 characters; only its headers are attached" in words(parts[0])


def test_long_header_line_is_folded_in_headers_part():
    orig = b"X-Long: " + b"z" * 2000 + b"\r\n" + ORIGINAL
    data = fail(original=orig)
    checked(data)
    assert raw_parts(data)[2][1].replace(b"\r\n ", b"").startswith(b"X-Long: " + b"z" * 2000)


def test_reply_cannot_inject_fields():
    r = rcpt(reply="550 5.1.1 nope\r\nAction: delivered\r\n\r\nFinal-Recipient: rfc822; x@y")
    data = fail(recipients=[r])
    blocks = status_blocks(data)
    assert len(blocks) == 2 and blocks[1]["action"] == "failed"


def test_bare_lf_original_is_normalised():
    orig = ORIGINAL.replace(b"\r\n", b"\n")
    data = fail(original=orig, inline_original="all")
    checked(data)
    assert raw_parts(data)[2][1] == ORIGINAL


def test_boundary_never_occurs_in_the_original():
    first = fail(inline_original="all")
    # Bounce the bounce: its content holds our boundary string.
    data = fail(original=first, inline_original="all")
    msg = checked(data)
    outer = msg.get_param("boundary")
    assert outer.encode() not in first
    assert len(outer) <= 70
    assert raw_parts(data)[2][1] == first
