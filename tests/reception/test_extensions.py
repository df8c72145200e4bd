"""Every ESMTP extension over the wire, with smtplib, swaks and a byte-exact client:
PIPELINING (same replies pipelined or not), 8BITMIME, SIZE, DSN, CHUNKING/BDAT, SMTPUTF8,
ENHANCEDSTATUSCODES, XCLIENT, XREMOTEIP, XSETCONTEXT, XDUMPCONTEXT.

One daemon serves the module with three Listens:
  $smtp     every extension; 127.0.0.1 is not a relay host (relay_domains example.com)
  $trusted  every extension; relay_hosts = 127.0.0.1 (XCLIENT/XREMOTEIP allowed)
  $plain    SMTP_Extensions = ( "PIPELINING" ) only
"""

from __future__ import annotations

import re
import socket
import smtplib
import subprocess

import pytest

from ecmta.tests.harness import free_port
from ecmta.tests.reception.helpers import (ID_RE, Shared, ctx_pairs, local_port,
                                           message, queue_id, start_mta, wait_for)

EHLO_ALL = ["mx.ecmta.test says EHLO to 127.0.0.1", "ENHANCEDSTATUSCODES", "PIPELINING",
            "8BITMIME", "SIZE 100000", "DSN", "CHUNKING", "SMTPUTF8",
            "XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT", "XREMOTEIP",
            "XSETCONTEXT", "XDUMPCONTEXT"]


@pytest.fixture(scope="module")
def rx():
    shared = Shared()
    try:
        yield start_mta(
            shared.factory, ports={"trusted": free_port(), "plain": free_port()},
            listener="Max_Message_Size = 100000",
            more_listens=('  Listen "127.0.0.1:$trusted" {\n    Relay_Hosts = ( "127.0.0.1" )\n  }\n'
                          '  Listen "127.0.0.1:$plain" {\n    SMTP_Extensions = ( "PIPELINING" )\n  }'))
    finally:
        shared.close()


def rejections_of(rx, w, n=1):
    """The rejectlog lines of the connection `w` (found by its client port)."""
    port = local_port(w)
    return wait_for(lambda: (lambda got: got if len(got) >= n else None)(
        [r for r in rx.rejections() if r["R"] == f"127.0.0.1:{port}"]), what=f"{n} rejections")


def receptions_of(rx, batch, n=1):
    return wait_for(lambda: (lambda got: got if len(got) >= n else None)(
        [r for r in rx.receptions() if r["batch"] == batch]), what=f"R lines of {batch}")


def spooled(rx, batch):
    return sorted((m for m in rx.spooled() if m.batch_id == batch), key=lambda m: m.rcptto)


# -- EHLO and ENHANCEDSTATUSCODES ----------------------------------------------------------------

def test_banner_and_ehlo_list_every_configured_extension(rx):
    w = rx.wire()
    assert w.banner.code == 220 and w.banner.raw.startswith(b"220 mx.ecmta.test ESMTP ")
    r = w.cmd("EHLO client.test")
    assert r.code == 250 and r.lines == EHLO_ALL
    assert r.raw.count(b"\r\n") == len(EHLO_ALL) and r.raw.endswith(b"250 XDUMPCONTEXT\r\n")
    h = w.cmd("HELO client.test")                    # HELO: one line, no extensions
    assert h.raw == b"250 mx.ecmta.test says HELO to 127.0.0.1\r\n"


def test_smtplib_sees_the_extensions(rx):
    with rx.smtp() as s:
        code, _ = s.ehlo()
        assert code == 250
        for ext in ("pipelining", "8bitmime", "size", "dsn", "chunking", "smtputf8", "xclient",
                    "xremoteip", "xsetcontext", "xdumpcontext", "enhancedstatuscodes"):
            assert s.has_extn(ext), ext
        assert s.esmtp_features["size"] == "100000"


def test_enhanced_status_codes_only_when_advertised(rx):
    full, plain = rx.wire(), rx.wire(rx.d.ports["plain"])
    for w in (full, plain):
        assert w.cmd("EHLO client.test").code == 250
    assert full.cmd("MAIL FROM:<a@sender.test>").raw == b"250 2.1.0 MAIL FROM accepted\r\n"
    assert plain.cmd("MAIL FROM:<a@sender.test>").raw == b"250 MAIL FROM accepted\r\n"
    assert full.cmd("RCPT TO:<b@else.test>").raw == b"550 5.7.1 relaying denied\r\n"
    assert plain.cmd("RCPT TO:<b@else.test>").raw == b"550 relaying denied\r\n"
    # the rejectlog text is the same either way
    for w in (full, plain):
        (rej,) = rejections_of(rx, w)
        assert rej["E"] == "550" and rej["text"] == "5.7.1 relaying denied"


# -- PIPELINING ---------------------------------------------------------------------------------

SCRIPT = [
    b"EHLO client.test\r\n",
    b"MAIL FROM:<a@sender.test> BODY=8BITMIME\r\n",
    b"RCPT TO:<x@example.com>\r\n",
    b"RCPT TO:<y@else.test>\r\n",                      # relaying denied
    b"RCPT TO:<broken\r\n",                            # syntax error
    b"RCPT TO:<z@example.com> NOTIFY=BOGUS\r\n",       # bad parameter
    b"VRFY someone\r\n",
    b"DATA\r\n",
    b"Subject: one\r\n\r\nfirst body\r\n..leading dot\r\n.\r\n",
    b"NOOP\r\n",
    b"MAIL FROM:<>\r\n",
    b"RCPT TO:<pm@example.com>\r\n",
    b"DATA\r\n",
    b"Subject: two\r\n\r\nsecond body\r\n.\r\n",
    b"RSET\r\n",
    b"DATA\r\n",                                        # no transaction
    b"BOGUS command\r\n",
    b"QUIT\r\n",
]


def _norm(raw: bytes) -> bytes:
    return re.sub(ID_RE.encode(), b"<id>", raw)


def _run_script(rx, pipelined: bool) -> list[bytes]:
    w = rx.wire()
    if pipelined:
        w.send(b"".join(SCRIPT))
        out = [w.reply().raw for _ in SCRIPT]
    else:
        out = []
        for chunk in SCRIPT:
            w.send(chunk)
            out.append(w.reply().raw)
    assert w.closed()
    return out


def test_pipelined_session_gives_the_same_replies_as_unpipelined(rx):
    one_by_one = _run_script(rx, pipelined=False)
    pipelined = _run_script(rx, pipelined=True)
    assert [_norm(r) for r in pipelined] == [_norm(r) for r in one_by_one]
    codes = [int(r[:3]) for r in one_by_one]
    assert codes == [250, 250, 250, 550, 501, 501, 252, 354, 250, 250, 250, 250, 354, 250, 250,
                     503, 500, 221]
    # both sessions stored the same two messages; dot-stuffing undone
    ids = [queue_id(one_by_one[8].decode()), queue_id(pipelined[8].decode())]
    for batch in ids:
        (m,) = spooled(rx, batch)
        assert m.rcptto == "x@example.com"
        assert m.body.endswith(b"\r\n\r\nfirst body\r\n.leading dot\r\n")


def test_swaks_pipelining_and_plain_runs_agree(rx):
    outs = []
    for extra in ([], ["--pipeline"]):
        proc = subprocess.run(
            ["swaks", "--server", "127.0.0.1", "--port", str(rx.port), "--helo", "client.test",
             "--from", "a@sender.test", "--to", "p@example.com,q@example.com", "--header",
             "Subject: swaks", "--body", "pipelined?", "--hide-informational", *extra],
            capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        server = [ln[4:] for ln in proc.stdout.splitlines() if ln.startswith("<") or ln.startswith("<~")]
        outs.append(server)
    plain, piped = outs
    assert [re.sub(ID_RE, "<id>", x) for x in plain] == [re.sub(ID_RE, "<id>", x) for x in piped]
    queued = [queue_id(next(x for x in o if "queued as" in x)) for o in outs]
    for batch in queued:
        got = spooled(rx, batch)
        assert [m.rcptto for m in got] == ["p@example.com", "q@example.com"]


# -- 8BITMIME, SIZE, DSN ---------------------------------------------------------------------------

def test_8bitmime_body_is_stored_byte_for_byte(rx):
    body = "Grüße aus Köln\r\n\xa0nbsp line\r\n".encode("utf-8")
    data = b"Subject: 8bit\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body
    with rx.smtp() as s:
        s.ehlo()
        s.mail("a@sender.test", ["BODY=8BITMIME"])
        s.rcpt("u@example.com")
        code, resp = s.data(data)
    assert code == 250
    (m,) = spooled(rx, queue_id(resp.decode()))
    assert m.body.endswith(b"\r\n\r\n" + body)


def test_8bitmime_parameter_refused_where_not_offered(rx):
    w = rx.wire(rx.d.ports["plain"])
    w.cmd("EHLO client.test")
    r = w.cmd("MAIL FROM:<a@sender.test> BODY=8BITMIME")
    assert r.raw == b"555 BODY parameter not supported\r\n"
    (rej,) = rejections_of(rx, w)
    assert (rej["E"], rej["P"], rej["text"]) == ("555", "awaiting mailfrom",
                                                 "5.5.4 BODY parameter not supported")


def test_size_declared_over_the_limit_is_refused_at_mail_from(rx):
    with rx.smtp() as s:
        s.ehlo()
        code, text = s.mail("a@sender.test", ["SIZE=100001"])
        assert (code, text) == (552, b"5.3.4 message size limit exceeded")
        code, _ = s.mail("a@sender.test", ["SIZE=99999"])
        assert code == 250


def test_body_over_max_message_size_is_refused_after_the_dot(rx):
    big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 101     # > 100000 octets
    w = rx.wire()
    w.cmd("EHLO client.test")
    w.cmd("MAIL FROM:<a@sender.test>")
    assert w.cmd("RCPT TO:<big@example.com>").code == 250
    assert w.cmd("DATA").code == 354
    r = w.cmd(big + b".")
    assert r.raw == b"552 5.3.4 message size limit exceeded\r\n"
    assert w.cmd("NOOP").code == 250                      # the session goes on
    (rej,) = rejections_of(rx, w)
    assert (rej["E"], rej["P"]) == ("552", "data")
    assert not [m for m in rx.spooled() if m.rcptto == "big@example.com"]


def test_dsn_parameters_are_kept_with_each_recipient(rx):
    with rx.smtp() as s:
        s.ehlo()
        s.mail("a@sender.test", ["RET=HDRS", "ENVID=env+2Bid-1"])
        s.rcpt("d1@example.com", ["NOTIFY=SUCCESS,DELAY", "ORCPT=rfc822;orig+2Bd1@example.com"])
        s.rcpt("d2@example.com", ["NOTIFY=NEVER"])
        s.rcpt("d3@example.com")
        code, resp = s.data(message("dsn"))
    assert code == 250
    d1, d2, d3 = spooled(rx, queue_id(resp.decode()))
    assert (d1.dsn.notify, d1.dsn.orcpt, d1.dsn.ret, d1.dsn.envid) == \
        (("SUCCESS", "DELAY"), "rfc822;orig+d1@example.com", "HDRS", "env+id-1")
    assert (d2.dsn.notify, d2.dsn.orcpt, d2.dsn.ret, d2.dsn.envid) == (("NEVER",), None, "HDRS", "env+id-1")
    assert d3.dsn.notify == ()


def test_dsn_parameters_refused_where_not_offered(rx):
    w = rx.wire(rx.d.ports["plain"])
    w.cmd("EHLO client.test")
    assert w.cmd("MAIL FROM:<a@sender.test> RET=FULL").raw == b"555 RET parameter not supported\r\n"
    w.cmd("MAIL FROM:<a@sender.test>")
    assert w.cmd("RCPT TO:<x@example.com> NOTIFY=NEVER").raw == b"555 NOTIFY parameter not supported\r\n"


# -- CHUNKING / BDAT ------------------------------------------------------------------------------

def test_bdat_chunks_make_one_message_without_dot_transparency(rx):
    parts = [b"Subject: chunked\r\n\r\n", b"line one\r\n.\r\n", b"..two dots stay\r\n", b""]
    w = rx.wire()
    w.cmd("EHLO client.test")
    w.cmd("MAIL FROM:<a@sender.test>")
    assert w.cmd("RCPT TO:<c1@example.com>").code == 250
    assert w.cmd("RCPT TO:<c2@example.com>").code == 250
    # pipelined: every chunk in one write
    w.send(b"".join(b"BDAT %d%s\r\n%s" % (len(p), b" LAST" if i == len(parts) - 1 else b"", p)
                    for i, p in enumerate(parts)))
    replies = w.replies(len(parts))
    assert [r.raw for r in replies[:-1]] == [b"250 2.0.0 %d octets received\r\n" % len(p) for p in parts[:-1]]
    assert replies[-1].code == 250 and "queued as" in replies[-1].text
    got = spooled(rx, queue_id(replies[-1]))
    assert [m.rcptto for m in got] == ["c1@example.com", "c2@example.com"]
    for m in got:
        assert m.body.endswith(b"\r\n\r\nline one\r\n.\r\n..two dots stay\r\n")


def test_bdat_needs_chunking_and_a_transaction(rx):
    w = rx.wire()
    w.cmd("EHLO client.test")
    w.send(b"BDAT 4\r\nabcd")
    assert w.reply().raw == b"503 5.5.1 BDAT without MAIL FROM\r\n"
    assert w.cmd("NOOP").code == 250                    # the 4 octets were eaten, not commands
    p = rx.wire(rx.d.ports["plain"])
    p.cmd("EHLO client.test")
    assert p.cmd("BDAT 0 LAST").raw == b"500 unrecognized command\r\n"
    rej = rejections_of(rx, w)
    assert [(r["E"], r["text"]) for r in rej] == [("503", "5.5.1 BDAT without MAIL FROM")]


# -- SMTPUTF8 ------------------------------------------------------------------------------------

def test_smtputf8_addresses_are_accepted_with_the_parameter(rx):
    with rx.smtp() as s:
        s.ehlo()
        code, _ = s.mail("jörg@sender.test", ["SMTPUTF8", "BODY=8BITMIME"])
        assert code == 250
        assert s.rcpt("δοκιμή@example.com")[0] == 250
        code, resp = s.data("Subject: ütf\r\n\r\nκείμενο\r\n".encode())
    assert code == 250
    (m,) = spooled(rx, queue_id(resp.decode()))
    assert (m.mailfrom, m.rcptto) == ("jörg@sender.test", "δοκιμή@example.com")
    (r,) = receptions_of(rx, m.batch_id)
    assert (r["rl"], r["sl"]) == ("δοκιμή", "jörg")


def test_utf8_address_without_smtputf8_is_refused(rx):
    w = rx.wire()
    w.cmd("EHLO client.test")
    r = w.cmd("MAIL FROM:<jörg@sender.test>".encode())
    assert r.raw == b"553 5.6.7 non-ASCII address requires SMTPUTF8\r\n"
    (rej,) = rejections_of(rx, w)
    assert rej["E"] == "553"


# -- XCLIENT, XREMOTEIP, XSETCONTEXT, XDUMPCONTEXT --------------------------------------------------

def test_xclient_from_a_relay_host_changes_the_client(rx):
    w = rx.wire(rx.d.ports["trusted"])
    w.cmd("EHLO gateway.test")
    r = w.cmd("XCLIENT ADDR=192.0.2.44 PORT=4444 NAME=client.example HELO=orig.test")
    assert r.code == 220                                   # a new greeting (Postfix)
    assert w.cmd("EHLO orig.test").lines[0] == "mx.ecmta.test says EHLO to 192.0.2.44"
    w.cmd("MAIL FROM:<a@sender.test>")
    # 192.0.2.44 is not a relay host: relaying is decided for the new client
    assert w.cmd("RCPT TO:<x@else.test>").code == 550
    assert w.cmd("RCPT TO:<x@example.com>").code == 250
    w.cmd("DATA")
    r = w.cmd(message("xclient") + b".")
    (line,) = receptions_of(rx, queue_id(r))
    assert line["ip"] == "192.0.2.44"
    (m,) = spooled(rx, line["batch"])
    assert m.body.split(b"\r\n")[1] == b"Received: from [192.0.2.44] ([192.0.2.44:4444] helo=orig.test)"
    (rej,) = wait_for(lambda: [x for x in rx.rejections() if x["R"] == "192.0.2.44:4444"])
    assert (rej["L"], rej["E"]) == (f"127.0.0.1:{rx.d.ports['trusted']}", "550")


def test_xclient_and_xremoteip_only_where_smtp_extensions_offers_them(daemon_factory):
    """Trust is the operator's: the extensions work for whoever is given them in
    SMTP_Extensions (esmtp_listener.extensions), and are unknown commands elsewhere."""
    port, trusted = free_port(), free_port()
    d = daemon_factory('spoolbase = "$home/spool"\n'
                       'ESMTP_Listener {\n'
                       '  Listen "127.0.0.1:$smtp" { }\n'
                       '  Listen "127.0.0.1:$trusted" { SMTP_Extensions = ( "XCLIENT" "XREMOTEIP" ) }\n'
                       '}\n', ports={"smtp": port, "trusted": trusted}).start()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"EHLO client.test\r\n")
        while f.readline()[3:4] == b"-":
            pass
        for cmd in (b"XCLIENT ADDR=192.0.2.1\r\n", b"XREMOTEIP 192.0.2.1\r\n"):
            s.sendall(cmd)
            assert f.readline().startswith(b"500"), cmd
    with socket.create_connection(("127.0.0.1", trusted), timeout=10) as s:
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"EHLO gateway.test\r\n")
        while f.readline()[3:4] == b"-":
            pass
        s.sendall(b"XCLIENT ADDR=192.0.2.1\r\n")
        assert f.readline().startswith(b"220")


def test_xremoteip_changes_the_peer_and_the_relay_decision(rx):
    w = rx.wire(rx.d.ports["trusted"])
    w.cmd("EHLO gateway.test")
    assert w.cmd("XREMOTEIP 198.51.100.9").raw == b"250 2.0.0 XREMOTEIP accepted\r\n"
    w.cmd("MAIL FROM:<a@sender.test>")
    assert w.cmd("RCPT TO:<x@else.test>").raw == b"550 5.7.1 relaying denied\r\n"
    assert w.cmd("RCPT TO:<xr@example.com>").code == 250
    w.cmd("DATA")
    r = w.cmd(message("xremoteip") + b".")
    (line,) = receptions_of(rx, queue_id(r))
    assert line["ip"] == "198.51.100.9"
    (rej,) = [x for x in rx.rejections() if x["R"].startswith("198.51.100.9:")]
    assert rej["text"] == "5.7.1 relaying denied" and "can_relay" not in ctx_pairs(rej["CTXCONN"])


def test_xremoteip_without_relay_keeps_relaying_for_the_trusted_gateway_itself(rx):
    w = rx.wire(rx.d.ports["trusted"])
    w.cmd("EHLO gateway.test")
    w.cmd("MAIL FROM:<a@sender.test>")
    assert w.cmd("RCPT TO:<x@else.test>").code == 250        # 127.0.0.1 relays here


def test_xsetcontext_sets_connection_context_and_xdumpcontext_shows_it(rx):
    w = rx.wire()
    w.cmd("EHLO there")
    assert w.cmd("XSETCONTEXT tenant=acme note=two+20words").raw == b"250 2.0.0 XSETCONTEXT accepted\r\n"
    r = w.cmd("XDUMPCONTEXT")
    assert r.raw.startswith(b"250-[connection] ")
    assert r.lines[-1] == "XDUMPCONTEXT complete"
    assert "[connection] ehlo_domain there" in r.lines
    assert "[connection] ehlo_string EHLO there" in r.lines
    assert "[connection] tenant acme" in r.lines and "[connection] note two words" in r.lines
    w.cmd("MAIL FROM:<a@sender.test>")
    w.cmd("RCPT TO:<ctx@example.com>")
    r = w.cmd("XDUMPCONTEXT")
    assert "[message] mailfrom_string MAIL FROM:<a@sender.test>" in r.lines
    assert "[message] rcptto_domain example.com" in r.lines
    w.cmd("DATA")
    r = w.cmd(message("ctx") + b".")
    (m,) = spooled(rx, queue_id(r))
    assert m.ctx_conn["tenant"] == "acme" and m.ctx_conn["note"] == "two words"


def test_xsetcontext_syntax_error(rx):
    w = rx.wire()
    w.cmd("EHLO there")
    assert w.cmd("XSETCONTEXT novalue").raw == b"501 5.5.4 Syntax: XSETCONTEXT name=value ...\r\n"
    assert w.cmd("XDUMPCONTEXT extra").raw == b"501 5.5.4 Syntax error (no parameters allowed)\r\n"
    rej = rejections_of(rx, w, 2)
    assert [r["E"] for r in rej] == ["501", "501"]


def test_x_extensions_unknown_where_not_advertised(rx):
    w = rx.wire(rx.d.ports["plain"])
    w.cmd("EHLO there")
    for cmd in ("XCLIENT ADDR=1.2.3.4", "XREMOTEIP 1.2.3.4", "XSETCONTEXT a=b", "XDUMPCONTEXT"):
        assert w.cmd(cmd).raw == b"500 unrecognized command\r\n"


def test_smtplib_sendmail_with_all_parameters_and_exact_r_lines(rx):
    with rx.smtp() as s:
        refused = s.sendmail("Info@PostalEngine.test", ["bob@example.com", "nobody@else.test"],
                             message("R lines"), mail_options=["BODY=8BITMIME"],
                             rcpt_options=["NOTIFY=FAILURE"])
        assert refused == {"nobody@else.test": (550, b"5.7.1 relaying denied")}
    (r,) = [x for x in wait_for(lambda: [y for y in rx.receptions() if y["rl"] == "bob"])]
    assert (r["rd"], r["sl"], r["sd"], r["ip"], r["proto"], r["group"], r["binding"]) == \
        ("example.com", "Info", "postalengine.test", "127.0.0.1", "esmtp", "default", "default")
    assert r["id"] == r["batch"]                           # the first recipient keeps the batch id
    (m,) = [x for x in rx.spooled() if x.id == r["id"]]
    assert int(r["size"]) == m.size == len(m.body)


def test_smtplib_raises_for_a_wholly_refused_message(rx):
    with rx.smtp() as s:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            s.sendmail("a@sender.test", ["x@else.test"], message("refused"))
