"""SMTP smuggling refused over the wire, and every refused input answered and logged.

Smuggling (SEC Consult 2023, CVE-2023-51764/51765/51766): a body that hides a second
transaction behind a non-standard end marker (<LF>.<LF>, <CR>.<CR>, <CR><LF>.<LF>,
<LF>.<CR><LF>) must stay one message: the stored body proves the smuggled commands are data.

Refused input: a table of commands the server refuses by itself, each with its exact reply
and its rejectlog line (phase, code, module, contexts and text, in the documented format).
"""

from __future__ import annotations

import socket

import pytest

from ecmta.tests.harness import free_port
from ecmta.tests.reception.helpers import (Shared, ctx_pairs, local_port, queue_id, start_mta,
                                           wait_for)

MARKERS = {
    "LF.LF": b"\n.\n",
    "CR.CR": b"\r.\r",
    "CRLF.LF": b"\r\n.\n",
    "LF.CRLF": b"\n.\r\n",
    "CR.CRLF": b"\r.\r\n",
    "CRLF.CR": b"\r\n.\r",
}


@pytest.fixture(scope="module")
def sm():
    shared = Shared()
    try:
        yield start_mta(shared.factory, ports={"pedantic": free_port()},
                        glob='Pathway "pedantic" {\n  RFC2822_Lone_LF_In_Body = pedantic\n}',
                        more_listens='  Listen "127.0.0.1:$pedantic" {\n    Pathway = "pedantic"\n  }')
    finally:
        shared.close()


def build(marker: bytes) -> bytes:
    return (b"MAIL FROM:<user@sender.test>\r\n"
            b"RCPT TO:<victim@example.com>\r\n"
            b"DATA\r\n"
            b"From: user@sender.test\r\nSubject: innocent\r\n\r\nhello"
            + marker +
            b"MAIL FROM:<admin@bank.test>\r\n"
            b"RCPT TO:<victim@example.com>\r\n"
            b"DATA\r\n"
            b"From: admin@bank.test\r\nSubject: smuggled\r\n\r\ntrust me\r\n"
            b".\r\n"
            b"QUIT\r\n")


@pytest.mark.parametrize("name", list(MARKERS))
def test_non_standard_end_markers_stay_data(sm, name):
    marker = MARKERS[name]
    w = sm.wire()
    w.cmd("EHLO attacker.test")
    w.send(build(marker))
    replies = [w.reply() for _ in range(5)]
    assert [r.code for r in replies] == [250, 250, 354, 250, 221], [str(r) for r in replies]
    assert w.closed()
    batch = queue_id(replies[3])
    got = wait_for(lambda: [m for m in sm.spooled() if m.batch_id == batch])
    assert len(got) == 1 and got[0].mailfrom == "user@sender.test"
    body = got[0].body.split(b"\r\n\r\n", 1)[1]
    # a dot that starts a line (after CRLF) is dot-stuffing and is removed (RFC 5321 4.5.2)
    kept = marker.replace(b"\r\n.", b"\r\n") if marker.startswith(b"\r\n") else marker
    assert body == (b"hello" + kept + b"MAIL FROM:<admin@bank.test>\r\nRCPT TO:<victim@example.com>\r\n"
                    b"DATA\r\nFrom: admin@bank.test\r\nSubject: smuggled\r\n\r\ntrust me\r\n")
    assert not [m for m in sm.spooled() if m.mailfrom == "admin@bank.test"]
    port = local_port(w)
    assert not [r for r in sm.receptions() if r["sl"] == "admin"]
    assert not [r for r in sm.rejections() if r["R"] == f"127.0.0.1:{port}"]


@pytest.mark.parametrize("name", ["LF.LF", "CR.CR"])
def test_smuggling_under_pedantic_body_rules_is_refused_whole(sm, name):
    w = sm.wire(sm.d.ports["pedantic"])
    w.cmd("EHLO attacker.test")
    w.send(build(MARKERS[name]))
    replies = [w.reply() for _ in range(5)]
    assert [r.code for r in replies] == [250, 250, 354, 550, 221]
    assert replies[3].raw == b"550 5.6.0 Lone CR or LF in body (see RFC2822 section 2.3)\r\n"
    assert not [m for m in sm.spooled() if m.rcptto == "victim@example.com"
                and b"pedantic" in m.body]
    (rej,) = wait_for(lambda: [r for r in sm.rejections() if r["R"] == f"127.0.0.1:{local_port(w)}"])
    assert (rej["E"], rej["P"]) == ("550", "data")


def test_smuggled_bytes_never_become_commands_in_a_pipelined_burst(sm):
    """Everything in one write, the legitimate end marker only at the very end."""
    w = sm.wire()
    w.send(b"EHLO attacker.test\r\n" + build(b"\n.\n"))
    replies = [w.reply() for _ in range(6)]
    assert [r.code for r in replies] == [250, 250, 250, 354, 250, 221]


# -- every refused input: reply and rejectlog line ------------------------------------------------

# (input line, exact reply, phase label in the rejectlog)
BEFORE_EHLO = [
    (b"FOO bar", b"500 5.5.2 unrecognized command", "awaiting ehlo"),
    (b"EHLO", b"501 5.5.2 invalid EHLO", "awaiting ehlo"),
    (b"HELO", b"501 5.5.2 invalid HELO", "awaiting ehlo"),
    (b"NOOP\n", None, None),               # bare LF: see BARE below
]
AFTER_EHLO = [
    (b"RCPT TO:<x@example.com>", b"503 RCPT TO without MAIL FROM", "awaiting mailfrom"),
    (b"DATA", b"503 5.5.1 DATA without MAIL FROM", "awaiting mailfrom"),
    (b"RSET now", b"501 5.5.4 invalid arguments to RSET", "awaiting mailfrom"),
    (b"QUIT now", b"501 5.5.4 Syntax error (no parameters allowed)", "awaiting mailfrom"),
    (b"MAIL TO:<a@sender.test>", b"501 5.5.2 MAIL FROM syntax error", "awaiting mailfrom"),
    (b"MAIL FROM:<a@sender.test", b"501 5.5.2 MAIL FROM syntax error", "awaiting mailfrom"),
    (b"MAIL FROM:<a@sender.test> FOO=BAR", b"555 5.5.4 FOO parameter not supported", "awaiting mailfrom"),
    (b"MAIL FROM:<a@sender.test> SIZE=1 SIZE=2", b"501 5.5.4 duplicate SIZE parameter", "awaiting mailfrom"),
    (b"MAIL FROM:<a@sender.test> SIZE=big", b"501 5.5.4 invalid SIZE parameter", "awaiting mailfrom"),
    (b"VRFY", b"501 5.5.4 Syntax: VRFY address", "awaiting mailfrom"),
    (b"EXPN staff", b"502 5.5.1 EXPN not supported", "awaiting mailfrom"),
    (b"HELP NOSUCH", b"504 5.5.1 HELP topic unknown", "awaiting mailfrom"),
    (b"AUTH PLAIN AGFAAGI=", b"500 5.5.2 unrecognized command", "awaiting mailfrom"),
    (b"STARTTLS", b"500 5.5.2 unrecognized command", "awaiting mailfrom"),
    (b"BDAT 3 LAST", None, None),          # needs its octets: see test_bdat_refusals
    (b"NOOP " + b"x" * 600, b"500 5.5.2 line too long", "awaiting mailfrom"),
]
IN_TRANSACTION = [
    (b"MAIL FROM:<b@sender.test>", b"501 5.5.1 MAIL FROM already established", "awaiting rcptto"),
    (b"DATA", b"503 5.5.1 DATA without RCPT TO", "awaiting rcptto"),
    (b"RCPT TO:<x@else.test>", b"550 5.7.1 relaying denied", "awaiting rcptto"),
    (b"RCPT TO:<x@example.com> NOTIFY=SOMETIMES", b"501 5.5.4 invalid NOTIFY parameter", "awaiting rcptto"),
    (b"RCPT TO:x@example.com>", b"501 5.5.2 RCPT TO syntax error", "awaiting rcptto"),
    (b"DATA now", b"501 5.5.4 unexpected argument to DATA", "awaiting rcptto"),
]


def _check_refusals(sm, w, table, before=0):
    sent = [(line, want, phase) for line, want, phase in table if want is not None]
    for line, want, _ in sent:
        assert w.cmd(line).raw == want + b"\r\n", line
    return sent


def test_every_refused_command_is_answered_and_logged(sm):
    w = sm.wire()
    sent = _check_refusals(sm, w, BEFORE_EHLO)
    assert w.cmd("EHLO client.test").code == 250
    sent += _check_refusals(sm, w, AFTER_EHLO)
    assert w.cmd("MAIL FROM:<a@sender.test>").code == 250
    sent += _check_refusals(sm, w, IN_TRANSACTION)
    port = local_port(w)
    rej = wait_for(lambda: (lambda got: got if len(got) >= len(sent) else None)(
        [r for r in sm.rejections() if r["R"] == f"127.0.0.1:{port}"]), what="all rejections")
    assert len(rej) == len(sent)
    conn_ids = {r["C"] for r in rej}
    assert len(conn_ids) == 1
    for (line, want, phase), r in zip(sent, rej):
        code, _, text = want.decode().partition(" ")
        assert (r["E"], r["P"], r["M"], r["text"]) == (code, phase, "core", text), line
        assert (r["L"], r["PATH"], r["PATH_GRP"]) == (f"127.0.0.1:{sm.port}", "default", "default")
    # the contexts are those of the moment of the refusal
    assert ctx_pairs(rej[-1]["CTXMESS"])["mailfrom_string"] == "MAIL FROM:<a@sender.test>"
    assert ctx_pairs(rej[-1]["CTXCONN"])["ehlo_domain"] == "client.test"
    assert rej[0]["CTXMESS"] == ""
    # a refused command never changes the session: the transaction still works
    assert w.cmd("RCPT TO:<ok@example.com>").code == 250


def test_bare_cr_or_lf_in_a_command_line(sm):
    w = sm.wire()
    for line in (b"EHLO client.test\n", b"NOOP\rNOOP\r\n", b"HELO a\rb\r\n"):
        w.send(line)
        assert w.reply().raw == b"500 5.5.2 bare CR or LF in command; lines must end with CRLF\r\n"
    assert w.cmd("EHLO client.test").code == 250
    rej = wait_for(lambda: (lambda g: g if len(g) >= 3 else None)(
        [r for r in sm.rejections() if r["R"] == f"127.0.0.1:{local_port(w)}"]))
    assert [r["E"] for r in rej] == ["500"] * 3


def test_bdat_refusals(sm):
    w = sm.wire()
    w.cmd("EHLO client.test")
    w.send(b"BDAT 3 LAST\r\nabc")
    assert w.reply().raw == b"503 5.5.1 BDAT without MAIL FROM\r\n"
    w.cmd("MAIL FROM:<a@sender.test>")
    w.send(b"BDAT 3\r\nabc")
    assert w.reply().raw == b"503 5.5.1 BDAT without RCPT TO\r\n"
    assert w.cmd("BDAT lots").raw == b"501 5.5.4 Syntax: BDAT count [LAST]\r\n"
    assert w.closed()                                  # the chunk boundary is lost: close
    rej = wait_for(lambda: (lambda g: g if len(g) >= 3 else None)(
        [r for r in sm.rejections() if r["R"] == f"127.0.0.1:{local_port(w)}"]))
    assert [(r["E"], r["text"]) for r in rej] == [("503", "5.5.1 BDAT without MAIL FROM"),
                                                ("503", "5.5.1 BDAT without RCPT TO"),
                                                ("501", "5.5.4 Syntax: BDAT count [LAST]")]


def test_client_closing_inside_data_is_logged_and_nothing_is_stored(sm):
    w = sm.wire()
    w.cmd("EHLO client.test")
    w.cmd("MAIL FROM:<a@sender.test>")
    w.cmd("RCPT TO:<halfway@example.com>")
    w.cmd("DATA")
    port = local_port(w)
    w.send(b"Subject: cut\r\n\r\nthe connection drops before the dot\r\n")
    w.sock.shutdown(socket.SHUT_WR)
    assert w.reply().raw == b"550 5.6.0 Missing CR LF . CR LF\r\n"
    (rej,) = wait_for(lambda: [r for r in sm.rejections() if r["R"] == f"127.0.0.1:{port}"])
    assert (rej["E"], rej["P"], rej["text"]) == ("550", "data", "5.6.0 Missing CR LF . CR LF")
    assert not [m for m in sm.spooled() if m.rcptto == "halfway@example.com"]


def test_rejectlog_quotes_values_with_spaces_and_escapes_quotes(sm):
    w = sm.wire()
    w.cmd('EHLO "quoted" name')
    w.cmd("XSETCONTEXT a+2Cb=x+5Dy")
    w.cmd('MAIL FROM:<"odd local"@sender.test>')
    w.cmd("RCPT TO:<no@else.test>")
    (rej,) = wait_for(lambda: [r for r in sm.rejections() if r["R"] == f"127.0.0.1:{local_port(w)}"])
    line = rej["line"]
    assert 'ehlo_string="EHLO \\"quoted\\" name"' in line
    assert 'mailfrom_string="MAIL FROM:<\\"odd local\\"@sender.test>"' in line
    assert 'a+2Cb="x]y"]' in line                      # a value holding "]" is quoted
    assert ctx_pairs(rej["CTXCONN"])["ehlo_domain"] == '"quoted"'

