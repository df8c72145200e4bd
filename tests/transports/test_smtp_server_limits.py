"""Sans-IO SMTP server: line limits, bare CR/LF, bounded memory, and a property test over
random byte streams (never raises, never buffers beyond a small bound)."""
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecmta.tests.transports.test_smtp_server_helpers import Client, opts, wire
from ecmta.transports import smtp_replies as R
from ecmta.transports.smtp_replies import Reply
from ecmta.transports.smtp_server import (
    MAX_LINE, BdatChunk, BodyAborted, Connect, DataChunk, DataEnd, DataStart, Decision, MailFrom)

# --- line limits --------------------------------------------------------------------------


def test_ten_megabyte_line_without_crlf_bounded():
    c = Client()
    chunk = b"A" * 65536
    for _ in range(160):                                   # 10 MiB, no line end
        assert c.send(chunk) == b""
        assert c.srv.buffered() < MAX_LINE
    assert c.send(b"\r\nNOOP\r\n") == (wire(R.LINE_TOO_LONG) + wire(R.OK)).encode()
    assert len(c.errors()) == 1 and c.errors()[0].reply is R.LINE_TOO_LONG


def test_huge_line_in_one_read_refused():
    c = Client()
    assert c.send(b"MAIL FROM:<" + b"a" * 50000 + b"@b.example>\r\n") == \
        wire(R.LINE_TOO_LONG).encode()


def test_command_line_512_limit():
    c = Client()
    ok = "NOOP " + "x" * (512 - 2 - 5)
    assert c.cmd(ok) == wire(R.OK)
    assert c.cmd(ok + "x") == wire(R.LINE_TOO_LONG)
    assert c.errors()[0].command == "NOOP"


def test_envelope_lines_get_extension_headroom():
    c = Client()
    c.cmd("EHLO x")
    envid = "E" * 100
    auth = "a" * 60 + "+40" + "b" * 400 + ".example"
    line = f"MAIL FROM:<s@b.example> SIZE=12345 RET=HDRS ENVID={envid} AUTH={auth} BODY=8BITMIME"
    assert 512 < len(line) < 2046
    assert c.cmd(line) == wire(R.MAIL_OK)
    line = "RCPT TO:<r@d.example> NOTIFY=FAILURE ORCPT=rfc822;" + "r" * 400
    assert c.cmd(line) == wire(R.RCPT_OK)
    assert c.cmd("RCPT TO:<r@d.example> " + "X" * 2100) == wire(R.LINE_TOO_LONG)


def test_path_and_part_lengths():
    c = Client()
    c.cmd("EHLO x")
    assert c.cmd("MAIL FROM:<" + "l" * 64 + "@b.example>") == wire(R.MAIL_OK)
    c.cmd("RSET")
    assert c.cmd("MAIL FROM:<" + "l" * 65 + "@b.example>") == wire(R.MAIL_SYNTAX)
    labels = ".".join(["d" * 60] * 3) + ".example"             # 189 octets
    assert c.cmd(f"MAIL FROM:<{'l' * 60}@{labels}>") == wire(R.MAIL_OK)   # path 252
    c.cmd("RSET")
    labels = ".".join(["d" * 63] * 3) + ".example"             # 199 -> path 263
    assert c.cmd(f"MAIL FROM:<{'l' * 60}@{labels}>") == wire(R.MAIL_SYNTAX)


def test_bare_lf_and_cr_in_commands():
    c = Client()
    assert c.send(b"NOOP\n") == wire(R.BARE_CR_LF).encode()
    assert c.send(b"NO\rOP\r\n") == wire(R.BARE_CR_LF).encode()
    assert c.send(b"NOOP\r\r\n") == wire(R.BARE_CR_LF).encode()
    assert c.send(b"\n") == wire(R.BARE_CR_LF).encode()
    assert c.send(b"NOOP\r\n") == wire(R.OK).encode()
    assert [e.command for e in c.errors()] == ["NOOP", "", "NOOP", ""]


def test_bare_lf_commands_are_never_executed():
    c = Client()
    c.send(b"EHLO x\nMAIL FROM:<a@b.example>\nRCPT TO:<c@d.example>\n")
    assert not c.of(MailFrom) and len(c.errors()) == 3


def test_unicode_garbage_in_command():
    c = Client()
    c.cmd("EHLO x")
    assert c.send(b"MAIL FROM:<\xff\xfe@b.example>\r\n") == wire(R.MAIL_SYNTAX).encode()
    assert c.send("NOOP \u00e9\r\n".encode()) == wire(R.OK).encode()
    assert c.send("MAIL FROM:<j\u00f6rg@b.example>\r\n".encode()) == wire(R.UTF8_REQUIRED).encode()
    utf8_line = "MAIL FROM:<j\u00f6rg@b.example> SMTPUTF8\r\n".encode()
    assert c.send(utf8_line) == wire(R.MAIL_OK).encode()


def test_utf8_recipient_needs_smtputf8_transaction():
    c = Client()
    c.cmd("EHLO x")
    c.cmd("MAIL FROM:<a@b.example>")
    assert c.cmd("RCPT TO:<\u00fc@b.example>") == wire(R.UTF8_REQUIRED)
    c.cmd("RSET")
    c.cmd("MAIL FROM:<a@b.example> SMTPUTF8")
    assert c.cmd("RCPT TO:<\u00fc@b\u00fccher.example>") == wire(R.RCPT_OK)


def test_smtputf8_disabled_refuses_utf8():
    c = Client(opts(smtp_extensions=("ENHANCEDSTATUSCODES",)))
    c.cmd("EHLO x")
    assert c.cmd("MAIL FROM:<\u00fc@b.example>") == wire(R.UTF8_REQUIRED)


# --- property test ------------------------------------------------------------------------

TOKENS = [b"EHLO x\r\n", b"HELO y\r\n", b"MAIL FROM:<a@b.c>\r\n", b"MAIL FROM:<>\r\n",
          b"MAIL FROM:<a@b.c> SIZE=99999999999 BODY=BINARYMIME\r\n", b"RCPT TO:<d@e.f>\r\n",
          b"RCPT TO:<postmaster>\r\n", b"DATA\r\n", b"BDAT 3\r\n", b"BDAT 0 LAST\r\n",
          b"BDAT 10 LAST\r\n", b"BDAT x\r\n", b"\r\n.\r\n", b".\r\n", b"\r\n", b"\n", b"\r",
          b".", b"..", b"RSET\r\n", b"NOOP\r\n", b"QUIT\r\n", b"AUTH PLAIN\r\n", b"AUTH LOGIN\r\n",
          b"AUTH CRAM-MD5\r\n", b"*\r\n", b"AGJvYgBwdw==\r\n", b"STARTTLS\r\n",
          b"XCLIENT ADDR=1.2.3.4 LOGIN=x\r\n", b"XREMOTEIP 1.2.3.4\r\n", b"XSETCONTEXT a=b\r\n",
          b"XDUMPCONTEXT\r\n", b"HELP\r\n", b"VRFY a\r\n", b"EXPN a\r\n", b"\x00\xff\xfe",
          b"x" * 700, b"Subject: a\nb\rc\r\n", b"RCPT TO:<d@e.f> NOTIFY=NEVER ORCPT=rfc822;a\r\n"]
# whole envelopes, so that random streams reach the body states often
TOKENS += [b"EHLO x\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n",
           b"MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nBDAT 7\r\n",
           b"MAIL FROM:<a@b.c> BODY=BINARYMIME\r\nRCPT TO:<d@e.f>\r\nBDAT 4 LAST\r\n",
           b"Subject: x\r\n\r\nbody\r\n"] * 3

OPTION_SETS = [
    {},
    {"starttls_injection_policy": "allow", "rfc2822_lone_lf_in_headers": "fix",
     "rfc2822_lone_lf_in_body": "fix", "max_message_size": 20},
    {"starttls_injection_policy": "ignore", "rfc2822_max_line_length": 8,
     "rfc2822_max_line_length_policy": "fix", "max_recipients_per_message": 1},
    {"rfc2822_max_line_length": "pedantic", "rfc2822_lone_lf_in_body": "pedantic",
     "require_ehlo": True, "auth_requires_tls": True, "max_receptions_per_connection": 1},
    {"smtp_extensions": ("PIPELINING",), "allow_null_envelope_sender": False,
     "rfc2821_pedantic_address_rules": False, "allow_trailing_whitespace_in_commands": True,
     "rfc2821_allow_whitespace_in_envelope": True},
]

REPLIES = [Reply(550, "5.7.1", "no"), Reply(451, "4.3.0", "later"), Reply(421, "4.3.2", "bye"),
           R.AUTH_OK, Reply(250, "", "multi\nline"), Reply(354, "", "go")]

token = st.sampled_from(TOKENS)
stream = st.lists(st.one_of(token, token, token, st.binary(max_size=40)),
                  max_size=80).map(b"".join)


def check_body_events(events) -> None:
    """DataChunks only inside a body; each body ends at most once."""
    open_ = False
    for ev in events:
        if isinstance(ev, (DataStart, BdatChunk)):
            open_ = True
        elif isinstance(ev, DataChunk):
            assert open_, "DataChunk outside a body"
        elif isinstance(ev, (DataEnd, BodyAborted)):
            open_ = False


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=stream, seed=st.integers(0, 2**32), which=st.integers(0, len(OPTION_SETS) - 1),
       big=st.booleans())
def test_random_streams_never_raise_and_stay_bounded(data, seed, which, big):
    rng = random.Random(seed)
    o = opts(**OPTION_SETS[which])

    def decide(ev: Decision):
        if isinstance(ev, Connect) or rng.random() < 0.7:
            return None, False                               # mostly the default
        return rng.choice(REPLIES), rng.random() < 0.02

    policy = {cls: decide for cls in Decision.__subclasses__()}
    c = Client(o, policy=policy)
    if big:
        data = data + b"Z" * (3 * MAX_LINE) + data          # an overlong line in the middle
    pos = 0
    while pos < len(data) and not c.closed:
        n = rng.randint(1, 4096 if big else 64)
        c.send(data[pos:pos + n])
        pos += n
        assert c.srv.buffered() <= MAX_LINE
        assert c.srv.data_to_send() == b""                   # pump() flushed everything
    c.eof()
    assert c.closed
    check_body_events(c.events)
    for e in c.errors():
        assert 400 <= e.reply.code < 600
        e.line.encode("utf-8")                            # loggable as is
