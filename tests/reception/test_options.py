"""Reception options over the wire: require_ehlo, allow_null_envelope_sender, allow_ip_literal,
allow_trailing_whitespace_in_commands, rfc2821_*, rfc2822_* (Date, Message-ID, missing headers,
lone CR/LF in headers and body, line length and its policy, trace headers),
domain_for_unqualified_*, recipient/reception limits, inbound_throttle_messages (rate
measured), idle_time, listener_sessions / service_sessions (421 4.4.5 over the cap).

Each Listen of the module's daemon maps to a Pathway holding the options under test:
  $smtp    defaults
  $strict  Pathway "strict": require_ehlo, no null sender, no IP literals, Date pedantic,
           lone LF in body pedantic, max line length pedantic
  $lax     Pathway "lax": whitespace allowed, pedantic address rules off, no Date/Message-ID
           added, missing headers allowed, lone LF fixed, long lines fixed, no trace headers,
           unqualified addresses qualified
  $lenrej  Pathway "lenrej": rfc2822_max_line_length = 100, policy reject
  $lenfix  Pathway "lenfix": rfc2822_max_line_length = 100, policy fix
  $limits  2 recipients per message, 3 per connection, 2 receptions per connection
  $idle    Idle_Time = 1
  $slow    Pathway "slow": inbound_throttle_messages = "4/1"
  $unq     Pathway "unq": domain_for_unqualified_sender_address only (trace headers on)
"""

from __future__ import annotations

import concurrent.futures
import email.utils
import re
import socket
import time

import pytest

from ecmta.tests.harness import free_port
from ecmta.tests.reception.helpers import (Shared, local_port, message, queue_id,
                                           start_mta, wait_for)

PATHWAYS = """
Pathway "strict" {
  Require_EHLO = true
  Allow_Null_Envelope_Sender = false
  Allow_IP_Literal = false
  RFC2822_Date_Header = pedantic
  RFC2822_Lone_LF_In_Body = pedantic
  RFC2822_Max_Line_Length = pedantic
}
Pathway "lax" {
  Allow_Trailing_Whitespace_In_Commands = true
  RFC2821_Allow_Whitespace_In_Envelope = true
  RFC2821_Pedantic_Address_Rules = false
  RFC2822_Date_Header = ignore
  RFC2822_Messageid_Header = ignore
  RFC2822_Missing_Headers = allow
  RFC2822_Lone_LF_In_Headers = fix
  RFC2822_Lone_LF_In_Body = fix
  RFC2822_Max_Line_Length = fix
  RFC2822_Trace_Headers = false
  Domain_For_Unqualified_Sender_Address = "sender.test"
  Domain_For_Unqualified_Recipient_Addresses = "example.com"
}
Pathway "lenrej" {
  RFC2822_Max_Line_Length = 100
  RFC2822_Max_Line_Length_Policy = reject
}
Pathway "lenfix" {
  RFC2822_Max_Line_Length = 100
  RFC2822_Max_Line_Length_Policy = fix
}
Pathway "slow" {
  Inbound_Throttle_Messages = "4/1"
}
Pathway "unq" {
  Domain_For_Unqualified_Sender_Address = "sender.test"
}
"""

LISTENS = "\n".join([
    '  Listen "127.0.0.1:$strict" {\n    Pathway = "strict"\n  }',
    '  Listen "127.0.0.1:$lax" {\n    Pathway = "lax"\n  }',
    '  Listen "127.0.0.1:$lenrej" {\n    Pathway = "lenrej"\n  }',
    '  Listen "127.0.0.1:$lenfix" {\n    Pathway = "lenfix"\n  }',
    '  Listen "127.0.0.1:$limits" {\n    Max_Recipients_Per_Message = 2\n'
    '    Max_Recipients_Per_Connection = 3\n    Max_Receptions_Per_Connection = 2\n  }',
    '  Listen "127.0.0.1:$idle" {\n    Idle_Time = 1\n  }',
    '  Listen "127.0.0.1:$slow" {\n    Pathway = "slow"\n  }',
    '  Listen "127.0.0.1:$unq" {\n    Pathway = "unq"\n  }',
])


@pytest.fixture(scope="module")
def op():
    shared = Shared()
    names = ("strict", "lax", "lenrej", "lenfix", "limits", "idle", "slow", "unq")
    try:
        yield start_mta(shared.factory, ports={n: free_port() for n in names}, glob=PATHWAYS,
                        more_listens=LISTENS)
    finally:
        shared.close()


def wire(op, name="smtp", ehlo=True, **kw):
    w = op.wire(op.port if name == "smtp" else op.d.ports[name], **kw)
    if ehlo:
        assert w.cmd("EHLO client.test").code == 250
    return w


def rejections_of(op, w, n=1):
    port = local_port(w)
    return wait_for(lambda: (lambda got: got if len(got) >= n else None)(
        [r for r in op.rejections() if r["R"] == f"127.0.0.1:{port}"]), what=f"{n} rejections")


def send(w, data: bytes, sender="a@sender.test", rcpts=("o@example.com",)):
    assert w.cmd(f"MAIL FROM:<{sender}>").code == 250
    for r in rcpts:
        assert w.cmd(f"RCPT TO:<{r}>").code == 250
    assert w.cmd("DATA").code == 354
    return w.cmd(data + b".")


def stored(op, reply):
    batch = queue_id(reply)
    got = wait_for(lambda: [m for m in op.spooled() if m.batch_id == batch])
    return got[0]


def headers_of(body: bytes) -> list[str]:
    return body.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")


# -- envelope options --------------------------------------------------------------------------

def test_require_ehlo(op):
    w = wire(op, "strict", ehlo=False)
    assert w.cmd("MAIL FROM:<a@sender.test>").raw == b"550 5.5.1 RFC2821 HELO/EHLO needed\r\n"
    assert w.cmd("HELO client.test").code == 250
    assert w.cmd("MAIL FROM:<a@sender.test>").code == 250
    (rej,) = rejections_of(op, w)
    assert (rej["E"], rej["P"], rej["text"]) == ("550", "awaiting ehlo", "5.5.1 RFC2821 HELO/EHLO needed")
    w = wire(op, ehlo=False)                            # default: not required
    assert w.cmd("MAIL FROM:<a@sender.test>").code == 250


def test_allow_null_envelope_sender(op):
    assert wire(op, "strict").cmd("MAIL FROM:<>").raw == b"553 5.1.7 null envelope sender not allowed\r\n"
    assert wire(op).cmd("MAIL FROM:<>").code == 250


def test_allow_ip_literal(op):
    w = wire(op, "strict")
    assert w.cmd("MAIL FROM:<a@[192.0.2.1]>").raw == b"553 5.1.2 IP address literal not allowed\r\n"
    w.cmd("MAIL FROM:<a@sender.test>")
    assert w.cmd("RCPT TO:<b@[192.0.2.1]>").raw == b"553 5.1.2 IP address literal not allowed\r\n"
    w = wire(op)
    assert w.cmd("MAIL FROM:<a@[192.0.2.1]>").code == 250


def test_whitespace_options(op):
    w = wire(op)
    assert w.cmd("MAIL FROM:< a@sender.test >").raw == b"501 5.5.2 MAIL FROM syntax error\r\n"
    assert w.cmd("MAIL FROM:<a@sender.test>  ").raw == b"501 5.5.2 MAIL FROM syntax error\r\n"
    assert w.cmd("MAIL FROM:<a..b@sender.test>").raw == b"501 5.5.2 MAIL FROM syntax error\r\n"
    assert w.cmd("MAIL FROM:<ab.@sender.test>").raw == b"501 5.5.2 MAIL FROM syntax error\r\n"
    assert [r["E"] for r in rejections_of(op, w, 4)] == ["501"] * 4
    w = wire(op, "lax")
    assert w.cmd("MAIL FROM:< a@sender.test >").code == 250
    assert w.cmd("RCPT TO:<x@example.com>  ").code == 250
    assert w.cmd("RCPT TO:<a..b@example.com>").code == 250
    assert w.cmd("RCPT TO:<ab.@example.com>").code == 250


def test_domain_for_unqualified_addresses(op):
    w = wire(op)
    assert w.cmd("MAIL FROM:<nodomain>").raw == b"501 5.5.2 MAIL FROM syntax error\r\n"
    w = wire(op, "lax")
    assert w.cmd("MAIL FROM:<joe>").code == 250
    assert w.cmd("RCPT TO:<postmaster>").code == 250
    assert w.cmd("RCPT TO:<abuse>").code == 250
    w.cmd("DATA")
    r = w.cmd(message("unqualified") + b".")
    batch = queue_id(r)
    got = wait_for(lambda: (lambda g: g if len(g) == 2 else None)(
        sorted((m for m in op.spooled() if m.batch_id == batch), key=lambda m: m.rcptto)))
    assert [(m.mailfrom, m.rcptto) for m in got] == [("joe@sender.test", "abuse@example.com"),
                                                   ("joe@sender.test", "postmaster@example.com")]
    # vctx keeps what was sent
    assert got[0].ctx_mess["mailfrom_string"] == "MAIL FROM:<joe>"
    rl = wait_for(lambda: [x for x in op.receptions() if x["batch"] == batch][1:] and
                  [x for x in op.receptions() if x["batch"] == batch])
    assert {(x["rl"], x["rd"], x["sl"], x["sd"]) for x in rl} == {
        ("postmaster", "example.com", "joe", "sender.test"), ("abuse", "example.com", "joe", "sender.test")}


def test_trace_headers_keep_the_unqualified_sender_as_written(op):
    m = stored(op, send(wire(op, "unq"), message("unqualified trace"), sender="joe"))
    hdrs = headers_of(m.body)
    assert m.mailfrom == "joe@sender.test"
    assert hdrs[0] == "Return-Path: <joe>"
    assert hdrs[2] == "\tby mx.ecmta.test (envelope-from <joe>)"


def test_recipient_and_reception_limits(op):
    w = wire(op, "limits")
    w.cmd("MAIL FROM:<a@sender.test>")
    assert w.cmd("RCPT TO:<l1@example.com>").code == 250
    assert w.cmd("RCPT TO:<l2@example.com>").code == 250
    assert w.cmd("RCPT TO:<l3@example.com>").raw == \
        b"452 4.5.3 Service unavailable, recipients per message limit reached\r\n"
    w.cmd("DATA")
    assert w.cmd(message("limits 1") + b".").code == 250
    w.cmd("MAIL FROM:<a@sender.test>")
    assert w.cmd("RCPT TO:<l4@example.com>").code == 250
    assert w.cmd("RCPT TO:<l5@example.com>").raw == \
        b"452 4.5.3 Service unavailable, recipients per connection limit reached\r\n"
    w.cmd("DATA")
    assert w.cmd(message("limits 2") + b".").code == 250
    r = w.cmd("MAIL FROM:<a@sender.test>")
    assert r.code == 421 and r.raw.startswith(b"421 4.4.5 ")
    assert w.closed()
    assert [x["E"] for x in rejections_of(op, w, 3)] == ["452", "452", "421"]


# -- rfc2822 header options -------------------------------------------------------------------

def test_date_and_message_id_added_when_missing(op):
    before = time.time()
    r = send(wire(op), b"Subject: no date\r\n\r\nbody\r\n")
    m = stored(op, r)
    hdrs = headers_of(m.body)
    dates = [h for h in hdrs if h.startswith("Date: ")]
    assert len(dates) == 1
    stamp = email.utils.parsedate_to_datetime(dates[0][6:]).timestamp()
    assert before - 2 <= stamp <= time.time() + 1
    mid = [h for h in hdrs if h.startswith("Message-ID: ")]
    assert mid == ["Message-ID: <%s@mx.ecmta.test>" % m.batch_id.replace("/", ".").replace("-", ".")]
    assert m.ctx_mess["rfc2822_date_missing"] == "true"


def test_existing_date_and_message_id_are_kept(op):
    r = send(wire(op), b"Date: Tue, 29 Sep 2009 06:11:56 -0400\r\nMessage-ID: <mine@x.test>\r\n"
                       b"Subject: has both\r\n\r\nbody\r\n")
    hdrs = headers_of(stored(op, r).body)
    assert [h for h in hdrs if h.startswith(("Date:", "Message-ID:"))] == [
        "Date: Tue, 29 Sep 2009 06:11:56 -0400", "Message-ID: <mine@x.test>"]


def test_date_pedantic_rejects_and_ignore_adds_nothing(op):
    w = wire(op, "strict")
    r = send(w, b"Subject: no date\r\n\r\nbody\r\n")
    assert r.raw == b"550 5.6.0 Missing required RFC2822 Date field (see RFC2822 section 3.6)\r\n"
    assert w.cmd("NOOP").code == 250
    (rej,) = rejections_of(op, w)
    assert (rej["E"], rej["P"]) == ("550", "data")
    m = stored(op, send(wire(op, "lax"), b"Subject: lax\r\n\r\nbody\r\n"))
    assert not [h for h in headers_of(m.body) if h.startswith(("Date:", "Message-ID:"))]


def test_missing_headers(op):
    w = wire(op)
    r = send(w, b"no header line here\r\n")
    assert r.raw == b"550 5.6.0 Required headers not found (see RFC2822 section 3.6)\r\n"
    r = send(w, b"\r\nonly a body after a blank line\r\n")
    assert r.code == 550
    assert [x["E"] for x in rejections_of(op, w, 2)] == ["550", "550"]
    m = stored(op, send(wire(op, "lax"), b"no header line here\r\n"))
    assert m.body == b"no header line here\r\n"      # lax: allowed, no trace headers either


def test_trace_headers(op):
    w = wire(op)
    r = send(w, b"Return-Path: <forged@evil.test>\r\nSubject: trace\r\n\r\nbody\r\n",
             sender="Info@Sender.test")
    m = stored(op, r)
    hdrs = headers_of(m.body)
    port = local_port(w)
    assert hdrs[0] == "Return-Path: <Info@Sender.test>"
    assert hdrs[1] == f"Received: from [127.0.0.1] ([127.0.0.1:{port}] helo=client.test)"
    assert hdrs[2] == "\tby mx.ecmta.test (envelope-from <Info@Sender.test>)"
    assert re.fullmatch(r"\t\(ecmta [^)]+\) with ESMTP", hdrs[3])
    assert re.fullmatch(rf"\tid {re.escape(m.batch_id)}; "
                        r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}", hdrs[4])
    assert hdrs[5] == "Subject: trace"
    assert not [h for h in hdrs if "forged" in h]
    lax = stored(op, send(wire(op, "lax"), b"Return-Path: <kept@x.test>\r\nSubject: t\r\n\r\nb\r\n"))
    assert headers_of(lax.body) == ["Return-Path: <kept@x.test>", "Subject: t"]


def test_helo_session_is_received_with_smtp(op):
    w = op.wire()
    w.cmd("HELO old.client")
    m = stored(op, send(w, message("helo")))
    hdrs = headers_of(m.body)
    assert hdrs[1].endswith(" helo=old.client)") and hdrs[3].endswith(") with SMTP")


# -- lone CR/LF and line length ---------------------------------------------------------------------

def test_lone_lf_in_headers_is_rejected_by_default_and_fixed_when_asked(op):
    data = b"Subject: lone\nX-Other: y\r\n\r\nbody\r\n"
    w = wire(op)
    assert send(w, data).raw == b"550 5.6.0 Lone CR or LF in headers (see RFC2822 section 2.2)\r\n"
    (rej,) = rejections_of(op, w)
    assert (rej["E"], rej["P"], rej["text"]) == ("550", "data",
                                                 "5.6.0 Lone CR or LF in headers (see RFC2822 section 2.2)")
    m = stored(op, send(wire(op, "lax"), data))
    assert m.body == b"Subject: lone\r\nX-Other: y\r\n\r\nbody\r\n"


def test_lone_lf_in_body_ignore_pedantic_fix(op):
    data = b"Subject: body\r\n\r\nline one\nline two\rline three\r\n"
    m = stored(op, send(wire(op), data))
    assert m.body.endswith(b"\r\n\r\nline one\nline two\rline three\r\n")      # ignore
    w = wire(op, "strict")
    assert send(w, b"Date: Tue, 29 Sep 2009 06:11:56 -0400\r\n" + data).raw == \
        b"550 5.6.0 Lone CR or LF in body (see RFC2822 section 2.3)\r\n"
    m = stored(op, send(wire(op, "lax"), data))
    assert m.body == b"Subject: body\r\n\r\nline one\r\nline two\r\nline three\r\n"   # fix


def test_max_line_length_pedantic_fix_and_policy(op):
    long_body = b"x" * 1200
    data = b"Date: Tue, 29 Sep 2009 06:11:56 -0400\r\nSubject: long\r\n\r\n" + long_body + b"\r\n"
    m = stored(op, send(wire(op), data))
    assert long_body in m.body                                                    # ignore
    assert send(wire(op, "strict"), data).raw == \
        b"550 5.6.0 Body line too long (see RFC2822 section 3.5)\r\n"
    m = stored(op, send(wire(op, "lax"), data))
    lines = m.body.split(b"\r\n\r\n", 1)[1].split(b"\r\n")
    assert max(len(x) for x in lines) <= 998 and b"".join(lines) == long_body
    mid = b"Subject: mid\r\n\r\n" + b"y" * 150 + b"\r\n"
    assert send(wire(op, "lenrej"), mid).raw == b"550 5.6.0 Body line too long (see RFC2822 section 3.5)\r\n"
    hdr = b"Subject: " + b"h" * 150 + b"\r\n\r\nbody\r\n"
    assert send(wire(op, "lenrej"), hdr).raw == \
        b"550 5.6.0 Header line too long (see RFC2822 section 3.5)\r\n"
    m = stored(op, send(wire(op, "lenfix"), mid))
    body_lines = m.body.split(b"\r\n\r\n", 1)[1].split(b"\r\n")
    assert max(len(x) for x in body_lines) <= 100 and b"".join(body_lines) == b"y" * 150


# -- idle_time, throttle, session caps ---------------------------------------------------------------

def test_idle_time_closes_a_silent_session(op):
    w = wire(op, "idle")
    t0 = time.monotonic()
    r = w.reply()
    took = time.monotonic() - t0
    assert r.raw == b"421 4.4.2 mx.ecmta.test timeout exceeded\r\n"
    assert 0.8 <= took <= 5 and w.closed()


def test_idle_time_in_the_middle_of_data(op):
    w = wire(op, "idle")
    w.cmd("MAIL FROM:<a@sender.test>")
    w.cmd("RCPT TO:<idle@example.com>")
    w.cmd("DATA")
    w.send(b"Subject: half\r\n\r\npart of a bo")
    assert w.reply().raw == b"421 4.4.2 mx.ecmta.test timeout exceeded\r\n"
    assert not [m for m in op.spooled() if m.rcptto == "idle@example.com"]


def test_idle_time_bounds_a_silent_tls_handshake(op, certs, daemon_factory):
    from ecmta.tests.reception.helpers import start_mta as start
    m = start(daemon_factory, ports={"ssl": free_port()},
              more_listens=(f'  Listen "127.0.0.1:$ssl" {{\n    Use_SSL = true\n    Idle_Time = 1\n'
                            f'    TLS_Certificate = "{certs.server_cert}"\n'
                            f'    TLS_Key = "{certs.server_key}"\n  }}'))
    s = socket.create_connection(("127.0.0.1", m.d.ports["ssl"]), timeout=10)
    t0 = time.monotonic()
    assert s.recv(100) == b""                          # closed by the server, not by our timeout
    assert time.monotonic() - t0 < 5
    s.close()


def test_inbound_throttle_holds_the_rate(op):
    """4 messages per second, 14 messages over 4 concurrent connections: the first 4 go
    through at once (full bucket), the other 10 at 4/s, so about 2.5 s in all."""
    def sender(k):
        w = wire(op, "slow")
        stamps = []
        for i in range(k):
            r = send(w, message(f"throttle {i}"))
            assert r.code == 250
            stamps.append(time.monotonic())
        w.cmd("QUIT")
        return stamps
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        stamps = sorted(s for f in [ex.submit(sender, k) for k in (4, 4, 3, 3)] for s in f.result())
    total = stamps[-1] - t0
    assert 2.0 <= total <= 6.0, total
    # in any 1-second window after the burst there are at most 4 (+1 at the edge) acceptances
    after = [s for s in stamps if s - t0 > 1.0]
    for s in after:
        assert sum(1 for x in after if s <= x < s + 1.0) <= 5
    # an unthrottled pathway takes a fraction of that
    w = wire(op)
    t1 = time.monotonic()
    for i in range(14):
        assert send(w, message(f"fast {i}")).code == 250
    assert time.monotonic() - t1 < total / 2


def test_listener_and_service_session_caps(daemon_factory):
    from ecmta.tests.reception.helpers import start_mta as start
    m = start(daemon_factory, ports={"second": free_port()},
              listen="    Listener_Sessions = 2",
              more_listens='  Listen "127.0.0.1:$second" {\n    Service_Sessions = 3\n  }')
    a, b = m.wire(), m.wire()
    c = m.wire(banner=False)
    assert c.reply().raw == b"421 4.4.5 Service unavailable, concurrency limit reached\r\n"
    assert c.closed()
    d = m.wire(m.d.ports["second"])                       # 3rd session of the service: allowed
    assert d.banner.code == 220
    e = m.wire(m.d.ports["second"], banner=False)         # 4th: over Service_Sessions
    assert e.reply().code == 421
    a.cmd("QUIT")
    assert a.closed()
    f = wait_for(lambda: (lambda w: w if w.reply().code == 220 else None)(m.wire(banner=False)))
    assert f.cmd("EHLO again").code == 250                # a slot freed: admitted again
    for w in (b, d, f):
        w.close()


def test_config_reload_closes_sessions_at_their_next_mail_or_rset(daemon_factory):
    from ecmta.tests.reception.helpers import start_mta as start
    m = start(daemon_factory, listener='  Reconfig_Message = "4.3.2 config changed, come back"')
    idle = m.wire()
    idle.cmd("EHLO client.test")
    busy = m.wire()
    busy.cmd("EHLO client.test")
    busy.cmd("MAIL FROM:<a@sender.test>")
    busy.cmd("RCPT TO:<reload@example.com>")
    assert m.console("config reload") == (True, "")
    assert idle.cmd("MAIL FROM:<a@sender.test>").raw == b"421 4.3.2 config changed, come back\r\n"
    assert idle.closed()
    # a transaction in progress finishes; the next RSET is the one refused
    assert busy.cmd("DATA").code == 354
    assert busy.cmd(message("across reload") + b".").code == 250
    assert busy.cmd("RSET").raw == b"421 4.3.2 config changed, come back\r\n"
    assert busy.closed()
    fresh = m.wire()
    fresh.cmd("EHLO client.test")
    assert fresh.cmd("MAIL FROM:<a@sender.test>").code == 250     # a new session: new config
    rej = wait_for(lambda: (lambda r: r if len(r) >= 2 else None)(
        [x for x in m.rejections() if x["E"] == "421"]))
    assert {x["P"] for x in rej} == {"awaiting mailfrom"}
    assert {x["text"] for x in rej} == {"4.3.2 config changed, come back"}


def test_a_throttle_is_shared_by_every_scope_that_falls_back_to_it(daemon_factory):
    """Throttles are by reference: a global 4/1 holds the sum of two pathways to 4/s; a
    pathway that sets its own 4/1 has a throttle of its own."""
    from ecmta.tests.reception.helpers import start_mta as start
    m = start(daemon_factory, ports={"a": free_port(), "b": free_port(), "own": free_port()},
              glob='inbound_throttle_messages = "4/1"\nPathway "pa" {\n}\nPathway "pb" {\n}\n'
                   'Pathway "own" {\n  inbound_throttle_messages = "4/1"\n}',
              more_listens='\n'.join(f'  Listen "127.0.0.1:${p}" {{\n    Pathway = "{n}"\n  }}'
                                     for p, n in (("a", "pa"), ("b", "pb"), ("own", "own"))))

    def burst(ports, n_each):
        ws = [wire(m, p) for p in ports]
        t0 = time.monotonic()
        for i in range(n_each):
            for w in ws:
                assert send(w, message(f"burst {i}")).code == 250
        return time.monotonic() - t0

    # 2 x 6 = 12 messages against one shared 4/1 bucket: 4 at once, 8 more at 4/s
    shared = burst(["a", "b"], 6)
    assert 1.6 <= shared <= 5, shared
    # the "own" pathway has its own full bucket: 4 messages go through at once
    assert burst(["own"], 4) < 0.8


def test_listener_sessions_counts_a_wildcard_listen_as_one(daemon_factory):
    """Listen "*:port" is one listener whatever local address a client reaches it on."""
    from ecmta.tests.reception.helpers import Wire, start_mta as start
    m = start(daemon_factory, ports={"wild": free_port()},
              more_listens='  Listen "*:$wild" {\n    Listener_Sessions = 2\n  }')
    port = m.d.ports["wild"]
    a = Wire("127.0.0.1", port)
    b = Wire("127.0.0.2", port)
    assert a.banner.code == b.banner.code == 220
    c = Wire("127.0.0.3", port, banner=False)
    assert c.reply().raw == b"421 4.4.5 Service unavailable, concurrency limit reached\r\n"
    shown = m.ok("show inbound").splitlines()
    assert len(shown) == 2 and {ln.split()[3].rsplit(":", 1)[0] for ln in shown} == {"127.0.0.1"}
