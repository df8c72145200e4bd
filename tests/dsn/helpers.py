"""Shared fixtures for the DSN tests: sample originals, a parser and an RFC 3464 checker."""

from __future__ import annotations

import re
from email import policy
from email.parser import BytesParser
from email.utils import parsedate_to_datetime

from ecmta.actors.dsn import DsnRecipient
from ecmta.actors.mail import DsnParams

T0 = 1704067200            # Mon, 01 Jan 2024 00:00:00 +0000: arrival of the samples
MSG_ID = "AB/CD-00042-0000A0B6"
HOST = "mta.example.net"

ORIGINAL = (
    b"Return-Path: <alice@example.com>\r\n"
    b"Received: from client.example.com (client.example.com [198.51.100.7])\r\n"
    b"\tby mta.example.net (ecmta) with ESMTP id 12/34-01234-56789ABC;\r\n"
    b"\tMon, 01 Jan 2024 00:00:00 +0000\r\n"
    b"From: Alice <alice@example.com>\r\n"
    b"To: Bob <bob@example.org>, Carol <carol@example.org>\r\n"
    b"Subject: Quarterly report\r\n"
    b"Message-ID: <abc123@example.com>\r\n"
    b"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n"
    b"\r\n"
    b"Hello Bob,\r\n"
    b"\r\n"
    b"the figures are attached.\r\n"
)

UTF8_ORIGINAL = (
    "From: Jörg <jörg@bücher.example>\r\n"
    "To: 用户@例子.广告\r\n"
    "Subject: Grüße aus Köln\r\n"
    "Message-ID: <u1@bücher.example>\r\n"
    "\r\n"
    "Schöne Grüße.\r\n"
).encode("utf-8")

GMAIL_550 = ("550-5.1.1 The email account that you tried to reach does not exist. Please try\r\n"
             "550-5.1.1 double-checking the recipient's email address for typos or\r\n"
             "550 5.1.1 unnecessary spaces. https://support.example/mail/?p=NoSuchUser")


def rcpt(addr="bob@example.org", reply="550 5.1.1 <bob@example.org>: user unknown", **kw):
    kw.setdefault("dsn", DsnParams())
    return DsnRecipient(addr, reply, **kw)


def parse(data: bytes):
    return BytesParser(policy=policy.default).parsebytes(data)


def raw_parts(data: bytes) -> list[tuple[bytes, bytes]]:
    """(header block, content) of each body part, split on the boundary by hand so the
    content is exactly what was written (the email package reshapes message/* parts)."""
    msg = parse(data)
    boundary = msg.get_param("boundary").encode()
    body = data.split(b"\r\n\r\n", 1)[1]
    pieces = re.split(rb"(?:^|\r\n)--" + re.escape(boundary) + rb"(?:--)?\r\n", body)
    parts = []
    for p in pieces[1:]:
        if not p:
            continue
        head, _, content = p.partition(b"\r\n\r\n")
        parts.append((head + b"\r\n", content))
    return parts


_FIELD = re.compile(r"^([A-Za-z0-9-]+): ?(.*)$")
ACTIONS = {"failed", "delayed", "delivered", "relayed", "expanded"}
_PER_MESSAGE = {"original-envelope-id", "reporting-mta", "dsn-gateway", "received-from-mta",
                "arrival-date"}
_PER_RECIPIENT = {"original-recipient", "final-recipient", "action", "status", "remote-mta",
                  "diagnostic-code", "last-attempt-date", "final-log-id", "will-retry-until"}


def ds_blocks(text: str) -> list[dict[str, str]]:
    """Delivery-status content -> [per-message fields, per-recipient fields...], each a dict
    of lower-cased names to unfolded values, checked against the RFC 3464 grammar."""
    assert text.endswith("\r\n"), "every field ends with CRLF"
    assert "\n" not in text.replace("\r\n", ""), "bare LF"
    groups = text[:-2].split("\r\n\r\n")
    blocks = []
    for g in groups:
        fields: dict[str, str] = {}
        last = None
        for line in g.split("\r\n"):
            if line[:1] in (" ", "\t"):
                assert last, "continuation without a field"
                fields[last] += " " + line.strip()
                continue
            m = _FIELD.match(line)
            assert m, f"not a field: {line!r}"
            last = m.group(1).lower()
            assert last not in fields, f"repeated field {last}"
            fields[last] = m.group(2)
        blocks.append(fields)
    per_msg, recips = blocks[0], blocks[1:]
    assert recips, "at least one per-recipient block"
    assert set(per_msg) <= _PER_MESSAGE, set(per_msg) - _PER_MESSAGE
    assert re.fullmatch(r"dns; \S+", per_msg["reporting-mta"])
    if "arrival-date" in per_msg:
        parsedate_to_datetime(per_msg["arrival-date"])
    for b in recips:
        assert set(b) <= _PER_RECIPIENT, set(b) - _PER_RECIPIENT
        for need in ("final-recipient", "action", "status"):
            assert need in b, need
        assert re.fullmatch(r"[A-Za-z0-9-]+; ?[^ \t].*", b["final-recipient"])
        if "original-recipient" in b:
            assert re.fullmatch(r"[A-Za-z0-9-]+; ?[^ \t].*", b["original-recipient"])
        assert b["action"] in ACTIONS
        assert re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", b["status"])
        if "remote-mta" in b:
            assert re.fullmatch(r"dns; \S+", b["remote-mta"])
        if "diagnostic-code" in b:
            assert re.fullmatch(r"[A-Za-z0-9-]+; [^ \t].*", b["diagnostic-code"])
        for d in ("last-attempt-date", "will-retry-until"):
            if d in b:
                parsedate_to_datetime(b[d])
    return blocks


def check_lines(data: bytes) -> None:
    """CRLF line ends only, no line over 998 octets."""
    assert b"\n" not in data.replace(b"\r\n", b""), "bare LF"
    assert b"\r" not in data.replace(b"\r\n", b""), "bare CR"
    for line in data.split(b"\r\n"):
        assert len(line) <= 998, len(line)
