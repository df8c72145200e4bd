"""Sans-IO SMTP server: DATA transparency, SMTP smuggling, rfc2822 body checks, BDAT."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecmta.tests.transports.test_smtp_server_helpers import Client, wire
from ecmta.transports import smtp_replies as R
from ecmta.transports.smtp_replies import Reply
from ecmta.transports.smtp_server import (
    BdatChunk, BodyAborted, ClientClosed, DataChunk, DataEnd, MailFrom, ProtocolError, Rset)

HDR = b"Subject: test\r\nFrom: a@b.example\r\n\r\n"


def in_data(**kw) -> Client:
    c = Client(**kw)
    c.start_mail()
    assert c.cmd("DATA").startswith("354 ")
    return c


def feed_bytewise(c: Client, data: bytes) -> bytes:
    out = b""
    for i in range(len(data)):
        out += c.send(data[i:i + 1])
    return out


# --- transparency -------------------------------------------------------------------------


@pytest.mark.parametrize("split", [False, True])
def test_dot_unstuffing(split):
    c = in_data()
    msg = HDR + b"..leading dot\r\n.\r\n"[:0] + b"..one\r\n...two\r\n.x\r\nend\r\n.\r\n"
    (feed_bytewise if split else Client.send)(c, msg)
    assert bytes(c.body) == HDR + b".one\r\n..two\r\nx\r\nend\r\n"
    assert len(c.of(DataEnd)) == 1


def test_dot_at_body_start():
    c = in_data(rfc2822_lone_lf_in_headers="fix")
    c.send(b"..\r\nbody\r\n.\r\n")
    assert bytes(c.body) == b".\r\nbody\r\n"


def test_empty_message():
    c = in_data()
    assert c.send(b".\r\n") == wire(R.MESSAGE_OK).encode()
    assert bytes(c.body) == b"" and c.of(DataEnd)[0].facts.size == 0


def test_data_then_pipelined_commands_after_end():
    c = in_data()
    out = c.send(HDR + b"x\r\n.\r\nMAIL FROM:<a@b.example>\r\nRSET\r\n")
    assert out == (wire(R.MESSAGE_OK) + wire(R.MAIL_OK) + wire(R.OK)).encode()


@pytest.mark.parametrize("fake_end", [
    b"\n.\n", b"\r.\r", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\n.\r", b"\r\n.\r",
    b"\r\n .\r\n", b"\r\n.\x00\r\n", b"\n\r.\r\n",
])
@pytest.mark.parametrize("split", [False, True])
def test_smuggling_only_crlf_dot_crlf_ends_data(fake_end, split):
    """Each fake end-of-data followed by an injected transaction stays message content."""
    c = in_data()
    smuggled = b"MAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@y.example>\r\nDATA\r\n"
    msg = HDR + b"innocent" + fake_end + smuggled + b"spoofed\r\n.\r\n"
    out = (feed_bytewise if split else Client.send)(c, msg)
    assert out == wire(R.MESSAGE_OK).encode()
    assert len(c.of(MailFrom)) == 1 and len(c.of(DataEnd)) == 1
    assert smuggled in bytes(c.body)
    assert not c.errors()


def test_smuggling_bytes_kept_verbatim_except_crlf_dot():
    c = in_data()
    c.send(HDR + b"a\n.\nb\r.\rc\n.\r\nd\r\n.\ne\r\n.\r\n")
    # "\r\n." starts a line: its dot is stuffing and goes; other dots are data
    assert bytes(c.body) == HDR + b"a\n.\nb\r.\rc\n.\r\nd\r\n\ne\r\n"
    assert c.of(DataEnd)[0].facts.lone_cr_lf_in_body == 6


def test_end_marker_split_everywhere():
    msg = HDR + b"line\r\n..x\r\n.\r\nNOOP\r\n"
    for cut in range(len(msg) + 1):
        c = in_data()
        out = b"".join(c.send(part) for part in (msg[:cut], msg[cut:]) if part)
        assert out == (wire(R.MESSAGE_OK) + wire(R.OK)).encode(), cut
        assert bytes(c.body) == HDR + b"line\r\n.x\r\n"
        assert c.max_buffered <= max(len(msg) - cut, 4) + 8


def test_body_streams_in_chunks_and_buffer_stays_small():
    c = in_data()
    line = b"x" * 78 + b"\r\n"
    total = 0
    c.send(HDR)
    for _ in range(2000):
        c.send(line * 10)
        total += len(line) * 10
        assert c.srv.buffered() <= 4
    c.send(b".\r\n")
    assert len(c.body) == len(HDR) + total
    assert len(c.of(DataChunk)) > 1000


def test_eof_inside_data():
    c = in_data()
    c.send(HDR + b"partial")
    c.eof()
    errs = c.errors()
    assert errs[-1].reply is R.MISSING_DOT and errs[-1].command == "DATA"
    assert c.of(BodyAborted) and c.of(ClientClosed) and c.closed
    assert "550 5.6.0 Missing CR LF . CR LF" in wire(R.MISSING_DOT)


# --- message size ------------------------------------------------------------------------


def test_data_size_limit():
    c = in_data(max_message_size=100)
    out = c.send(HDR + b"x" * 200 + b"\r\n.\r\nNOOP\r\n")
    assert out == (wire(R.SIZE_EXCEEDED) + wire(R.OK)).encode()
    assert not c.of(DataEnd) and c.of(BodyAborted)
    err = c.errors()[0]
    assert err.command == "DATA" and err.state == "data"
    assert len(c.body) <= 100 and c.srv.transaction is None


def test_data_size_exactly_at_limit():
    body = HDR + b"y" * 10 + b"\r\n"
    c = in_data(max_message_size=len(body))
    assert c.send(body + b".\r\n") == wire(R.MESSAGE_OK).encode()


# --- lone CR / LF ------------------------------------------------------------------------


def test_lone_lf_in_headers_rejected_by_default():
    c = in_data()
    out = c.send(b"Subject: x\nFrom: y\r\n\r\nbody\r\n.\r\n")
    assert out == wire(R.LONE_LF_HEADERS).encode()
    assert "550 5.6.0 Lone CR or LF in headers (see RFC2822 section 2.2)" in out.decode()
    assert c.of(BodyAborted) and not c.of(DataEnd) and c.srv.transaction is None


def test_lone_cr_in_headers_rejected():
    c = in_data()
    assert c.send(b"Subject: x\rFrom: y\r\n\r\nb\r\n.\r\n") == wire(R.LONE_LF_HEADERS).encode()


def test_lone_lf_in_headers_fixed():
    c = in_data(rfc2822_lone_lf_in_headers="fix")
    c.send(b"Subject: x\nTo: y\rCc: z\r\n\r\nbody\nkept\r\n.\r\n")
    assert bytes(c.body) == b"Subject: x\r\nTo: y\r\nCc: z\r\n\r\nbody\nkept\r\n"
    f = c.of(DataEnd)[0].facts
    assert f.fixed_lone_cr_lf and f.lone_cr_lf_in_headers == 2 and f.lone_cr_lf_in_body == 1


def test_lone_lf_in_body_ignored_by_default_pedantic_or_fixed():
    msg = HDR + b"a\nb\rc\r\n.\r\n"
    c = in_data()
    c.send(msg)
    assert c.of(DataEnd)[0].facts.lone_cr_lf_in_body == 2
    c = in_data(rfc2822_lone_lf_in_body="pedantic")
    assert c.send(msg) == wire(R.LONE_LF_BODY).encode()
    c = in_data(rfc2822_lone_lf_in_body="fix")
    c.send(msg)
    assert bytes(c.body) == HDR + b"a\r\nb\r\nc\r\n"


def test_fix_across_chunk_boundaries():
    msg = b"A: 1\nB: 2\r\n\r\nx\ny\rz\r\n"
    for cut in range(1, len(msg)):
        c = in_data(rfc2822_lone_lf_in_headers="fix", rfc2822_lone_lf_in_body="fix")
        c.send(msg[:cut])
        c.send(msg[cut:] + b".\r\n")
        assert bytes(c.body) == b"A: 1\r\nB: 2\r\n\r\nx\r\ny\r\nz\r\n", cut


def test_lone_lf_header_end_detected():
    """A header block ended by LF LF still splits headers from body."""
    c = in_data(rfc2822_lone_lf_in_headers="fix")
    c.send(b"A: 1\n\nbody\r\n.\r\n")
    f = c.of(DataEnd)[0].facts
    assert f.headers_terminated and bytes(c.body)[f.body_offset:] == b"body\r\n"


# --- facts -------------------------------------------------------------------------------


def test_body_facts():
    c = in_data()
    c.send(HDR + b"caf\xc3\xa9\r\n.\r\n")
    f = c.of(DataEnd)[0].facts
    assert f.headers_terminated and f.body_offset == len(HDR) and f.eight_bit
    assert f.size == f.received == len(HDR) + 7 and not f.bdat
    assert f.max_header_line == -1                      # not measured by default


def test_headers_not_terminated():
    c = in_data()
    c.send(b"Subject: only headers\r\n.\r\n")
    f = c.of(DataEnd)[0].facts
    assert not f.headers_terminated and f.body_offset == f.size


def test_no_headers_at_all():
    c = in_data()
    c.send(b"\r\nbody only\r\n.\r\n")
    f = c.of(DataEnd)[0].facts
    assert f.headers_terminated and f.body_offset == 2


# --- line length ---------------------------------------------------------------------------


def test_line_length_pedantic():
    c = in_data(rfc2822_max_line_length="pedantic")
    assert c.send(b"Subject: " + b"x" * 990 + b"\r\n\r\nb\r\n.\r\n") == \
        wire(R.HEADER_LINE_TOO_LONG).encode()
    c = in_data(rfc2822_max_line_length="pedantic")
    assert c.send(HDR + b"y" * 999 + b"\r\n.\r\n") == wire(R.BODY_LINE_TOO_LONG).encode()
    c = in_data(rfc2822_max_line_length="pedantic")
    assert c.send(HDR + b"y" * 998 + b"\r\n.\r\n") == wire(R.MESSAGE_OK).encode()
    assert c.of(DataEnd)[0].facts.max_body_line == 998


def test_line_length_numeric_with_reject_policy_across_chunks():
    c = in_data(rfc2822_max_line_length=2048, rfc2822_max_line_length_policy="reject")
    c.send(HDR)
    for _ in range(5):
        c.send(b"z" * 500)
    assert c.send(b"\r\n.\r\n") == wire(R.BODY_LINE_TOO_LONG).encode()


def test_line_length_fix_breaks_body_lines():
    c = in_data(rfc2822_max_line_length=10, rfc2822_max_line_length_policy="fix")
    c.send(HDR + b"0123456789abcdefghijXYZ\r\nshort\r\n")
    c.send(b"0123456")
    c.send(b"789ab\r\n.\r\n")
    assert bytes(c.body) == HDR + b"0123456789\r\nabcdefghij\r\nXYZ\r\nshort\r\n" \
        b"0123456789\r\nab\r\n"
    assert c.of(DataEnd)[0].facts.broke_long_lines


def test_line_length_ignored_by_default():
    c = in_data()
    assert c.send(HDR + b"q" * 5000 + b"\r\n.\r\n") == wire(R.MESSAGE_OK).encode()


# --- BDAT ----------------------------------------------------------------------------------


def test_bdat_single_last_chunk():
    c = Client()
    c.start_mail()
    body = HDR + b"hello\r\n.\r\nstill data\r\n"
    out = c.send(f"BDAT {len(body)} LAST\r\n".encode() + body)
    assert out == wire(R.MESSAGE_OK).encode()
    bc = c.of(BdatChunk)[0]
    assert (bc.size, bc.last, bc.first) == (len(body), True, True)
    assert bytes(c.body) == body                    # no transparency with BDAT
    assert c.of(DataEnd)[0].facts.bdat


def test_bdat_several_chunks_and_zero_last():
    c = Client()
    c.start_mail()
    out = c.send(b"BDAT 14 \r\nSubject: a\r\n\r\nBDAT 6\r\nhello\nBDAT 0 LAST\r\nNOOP\r\n")
    assert out.decode() == ("250 2.0.0 14 octets received\r\n250 2.0.0 6 octets received\r\n"
                            + wire(R.MESSAGE_OK) + wire(R.OK))
    assert bytes(c.body) == b"Subject: a\r\n\r\nhello\n"
    assert [(b.first, b.last) for b in c.of(BdatChunk)] == [(True, False), (False, False),
                                                             (False, True)]


def test_bdat_chunk_split_over_many_reads():
    c = Client()
    c.start_mail()
    body = HDR + b"x" * 5000 + b"\r\n"
    out = feed_bytewise(c, f"BDAT {len(body)} LAST\r\n".encode() + body + b"QUIT\r\n")
    assert out.startswith(wire(R.MESSAGE_OK).encode()) and c.closed
    assert bytes(c.body) == body and c.max_buffered <= 16


def test_bdat_empty_message():
    c = Client()
    c.start_mail()
    assert c.send(b"BDAT 0 LAST\r\n") == wire(R.MESSAGE_OK).encode()
    assert c.of(DataEnd)[0].facts.size == 0


def test_bdat_without_mail_discards_chunk():
    c = Client()
    c.cmd("EHLO x")
    out = c.send(b"BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n")
    assert out == (wire(R.BDAT_NO_MAIL) + wire(R.OK)).encode()   # "QUIT\r\n" was data
    assert not c.closed and c.errors()[0].command == "BDAT"


def test_bdat_without_rcpt():
    c = Client()
    c.cmd("EHLO x")
    c.cmd("MAIL FROM:<a@b.example>")
    assert c.send(b"BDAT 3\r\nabc") == wire(R.BDAT_NO_RCPT).encode()


@pytest.mark.parametrize("line", ["BDAT", "BDAT x", "BDAT -1", "BDAT 1 FIRST", "BDAT 1 LAST x",
                                  "BDAT 99999999999999999999"])
def test_bdat_syntax_error_closes(line):
    c = Client()
    c.start_mail()
    assert c.cmd(line) == wire(R.BDAT_SYNTAX)
    assert c.closed and c.errors()[0].close


def test_data_after_bdat_is_bad_sequence():
    c = Client()
    c.start_mail()
    c.send(b"BDAT 3\r\nabc")
    assert c.cmd("DATA") == wire(R.BAD_SEQUENCE)
    assert c.cmd("RCPT TO:<z@b.example>") == wire(R.BAD_SEQUENCE)
    assert c.send(b"BDAT 2 LAST\r\n\r\n") == wire(R.MESSAGE_OK).encode()
    assert bytes(c.body) == b"abc\r\n"


def test_bdat_size_limit_across_chunks():
    c = Client(max_message_size=10)
    c.start_mail()
    out = c.send(b"BDAT 6\r\n123456BDAT 6\r\n789012BDAT 1\r\nxBDAT 0 LAST\r\nNOOP\r\n")
    assert out.decode() == ("250 2.0.0 6 octets received\r\n" + wire(R.SIZE_EXCEEDED) * 3
                            + wire(R.OK))
    assert len(c.of(BodyAborted)) == 1 and not c.of(DataEnd)
    assert c.srv.transaction is None                 # LAST ended the failed transaction
    assert c.cmd("MAIL FROM:<a@b.example>") == wire(R.MAIL_OK)


def test_bdat_binarymime_skips_line_checks():
    c = Client()
    c.cmd("EHLO x")
    c.cmd("MAIL FROM:<a@b.example> BODY=BINARYMIME")
    c.cmd("RCPT TO:<c@d.example>")
    assert c.cmd("DATA") == wire(R.BINARYMIME_NEEDS_BDAT)
    blob = bytes(range(256)) * 4
    assert c.send(f"BDAT {len(blob)} LAST\r\n".encode() + blob) == wire(R.MESSAGE_OK).encode()
    f = c.of(DataEnd)[0].facts
    assert bytes(c.body) == blob and f.binary and f.lone_cr_lf_in_headers == 0


def test_bdat_lone_lf_in_headers_rejected():
    c = Client()
    c.start_mail()
    body = b"A: b\nC: d\r\n\r\nx\r\n"
    assert c.send(f"BDAT {len(body)} LAST\r\n".encode() + body) == \
        wire(R.LONE_LF_HEADERS).encode()
    assert c.of(BodyAborted)


def test_bdat_trailing_cr_fixed_at_end():
    c = Client(rfc2822_lone_lf_in_body="fix")
    c.start_mail()
    body = HDR + b"x\r"
    c.send(f"BDAT {len(body)} LAST\r\n".encode() + body)
    assert bytes(c.body) == HDR + b"x\r\n"


def test_rset_mid_bdat_aborts_body():
    c = Client()
    c.start_mail()
    c.send(b"BDAT 3\r\nabc")
    assert c.cmd("RSET") == wire(R.OK)
    assert c.of(BodyAborted) and c.events.index(c.of(BodyAborted)[0]) < \
        c.events.index(c.of(Rset)[0])


def test_eof_mid_bdat():
    c = Client()
    c.start_mail()
    c.send(b"BDAT 10 LAST\r\nabc")
    c.eof()
    assert c.errors()[-1].reply is R.BDAT_INCOMPLETE and c.of(BodyAborted) and c.closed


def test_bdat_pipelined_with_envelope():
    c = Client()
    out = c.send(b"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n"
                 b"BDAT 6 LAST\r\nA: b\r\nQUIT\r\n")
    text = out.decode()
    assert text.endswith(wire(R.MAIL_OK) + wire(R.RCPT_OK)
                         + wire(R.MESSAGE_OK)
                         + "221 2.0.0 mx.example.test closing connection\r\n")


def test_protocol_errors_visible_for_body_refusals():
    c = in_data(max_message_size=5)
    c.send(HDR + b".\r\n")
    e = c.errors()[0]
    assert isinstance(e, ProtocolError) and e.reply.code == 552


def test_driver_reply_with_queue_id_after_bdat():
    c = Client(policy={DataEnd: Reply(250, "2.0.0", "OK 10/00-12345-ABCDEF01")})
    c.start_mail()
    assert c.send(b"BDAT 2 LAST\r\n\r\n") == b"250 2.0.0 OK 10/00-12345-ABCDEF01\r\n"


# --- differential property: the DATA scanner against a naive line-by-line reference ----------


def reference_data(stream: bytes):
    """RFC 5321 4.5.2 read literally: lines end at CRLF only; "." ends; a leading dot goes."""
    lines = stream.split(b"\r\n")
    body, used = [], 0
    for ln in lines[:-1]:
        used += len(ln) + 2
        if ln == b".":
            return b"".join(x + b"\r\n" for x in body), stream[used:]
        body.append(ln[1:] if ln[:1] == b"." else ln)
    return None, b""


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b".", b"\r", b"\n", b"\r\n", b"a", b"\r\n.", b".\r\n"]),
                max_size=60).map(b"".join),
       st.lists(st.integers(1, 7), min_size=1, max_size=40))
def test_data_scanner_matches_reference(stream, sizes):
    stream += b"\r\n.\r\n"                         # make sure the message ends somewhere
    body, rest = reference_data(stream)
    c = in_data()
    pos = 0
    i = 0
    out = b""
    while pos < len(stream):
        n = sizes[i % len(sizes)]
        i += 1
        out += c.send(stream[pos:pos + n])
        pos += n
    assert bytes(c.body) == body
    ends = c.of(DataEnd) + [e for e in c.errors() if e.command == "DATA"]
    assert len(ends) == 1
    # everything after the end is read as command lines: one reply per LF
    assert out.count(b"\r\n") == 1 + rest.count(b"\n")
