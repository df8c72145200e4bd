"""Hostile input for the SMTP client machine and the parsers of received mail: whatever the
bytes, nothing but the documented error types escapes, and nothing claims more than the
input says.

(a) transports.smtp_client.SMTPClient fed arbitrary server byte streams in every phase
    (banner, EHLO/LHLO, STARTTLS, XCLIENT, RSET, MAIL, RCPT, DATA, body/BDAT, QUIT): it
    progresses or reports the failure through its events; every submitted transaction
    ends with one TransactionDone; a recipient is `delivered` only when an independent
    reading of the same byte streams (RFC 5321/2920/2033/3030 reply order) shows its
    MAIL and RCPT accepted, its whole body written and a 2xx reply to that body; and the
    outcomes do not depend on where the server's bytes were split. The client has no
    AUTH, so there is no AUTH phase to fuzz.
(b) the readers of received mail: actors.mail.Body (header parsing, parse -> render),
    policy.objects (msg:header, msg:text, msg:body, msg:raw, msg:code), the bounce
    classifier (analyze_message, classify_smtp, parse_reply, the rule and override
    parsers), the DSN renderer fed hostile originals, and the client's body transforms
    (dot_stuff, header_block, downgrade_8bit), with generated nested MIME: random
    boundaries, broken encodings and charsets, missing terminators, mixed line ends.
"""
from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ecmta.actors import dsn as D
from ecmta.actors.mail import Body, DsnParams, MailMessage
from ecmta.loggers import bounce_classifier as BC
from ecmta.policy import objects as O
from ecmta.policy.context import PolicyUsageError
from ecmta.tests.dsn.helpers import check_lines
from ecmta.transports import smtp_client as C
from ecmta.transports.smtp_client import (
    CLOSED, DELIVERED, IDLE, NEED_DATA, PAUSED, PERMANENT, TRANSIENT, ClientOptions,
    SessionFailed, SMTPClient, SMTPClientError, Transaction, TransactionDone, UpgradeTLS,
    dot_stuff, downgrade_8bit, header_block)

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])
LIGHT = settings(FUZZ, max_examples=60)

# =========================================================================================
# (a) the SMTP client machine
# =========================================================================================

SENTINELS = (NEED_DATA, IDLE, CLOSED, PAUSED)
CAPS = [b"PIPELINING", b"SIZE 100000", b"SIZE", b"SIZE 99999999999999999999", b"8BITMIME",
        b"DSN", b"SMTPUTF8", b"STARTTLS", b"CHUNKING", b"ENHANCEDSTATUSCODES",
        b"XCLIENT NAME ADDR PORT HELO PROTO LOGIN", b"AUTH PLAIN LOGIN", b"AUTH=PLAIN",
        b"", b"\xff\xfe\x00", b"X" * 300]
FULL_CAPS = [b"PIPELINING", b"SIZE 100000", b"8BITMIME", b"DSN", b"SMTPUTF8", b"STARTTLS",
             b"XCLIENT NAME ADDR PORT HELO PROTO", b"ENHANCEDSTATUSCODES"]
GOOD = {"banner": [b"220"], "ehlo": [b"250"], "starttls": [b"220"], "xclient": [b"220", b"250"],
        "rset": [b"250"], "mailfrom": [b"250"], "rcptto": [b"250", b"251"], "data": [b"354"],
        "body": [b"250"], "quit": [b"221"], "idle": [b"421"]}
CODES = [b"220", b"221", b"250", b"251", b"252", b"334", b"354", b"421", b"450", b"451",
         b"452", b"500", b"501", b"503", b"530", b"550", b"552", b"554", b"555"]
# The email package parses this (a boundary-less multipart holding 8-bit text after a
# malformed header) but cannot write it back: downgrade_8bit used to raise from inside
# the client machine (send_mail / next_event).
UNWRITABLE_MIME = (b"Content-Type:multipart/;boundary=b\r--b\nContent-Type:multipart/\n"
                   b"Content-Transfer-Encoding:b\n\x80\n--b\n\x80")
BODIES = [
    b"Subject: t\r\nFrom: a@example.org\r\n\r\nHello\r\n",
    b"",
    b".\r\n",
    b"Subject: dots\r\n\r\n.\r\n..\r\n.x\r\nend",
    b"Subject: bare\n\n.\nline\rmore\r\n.",
    b"Subject: caf\xc3\xa9\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n"
    b"\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n"
    b"--b\r\nContent-Transfer-Encoding: base64\r\n\r\n////\r\n--b--\r\n",
    b"Subject: raw\r\n\r\n\xff\xfe\x00\x80 8-bit\r\n",
    UNWRITABLE_MIME,
]
reply_text = st.binary(max_size=24).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


def _reply(code: bytes, texts: list) -> bytes:
    texts = texts or [b""]
    out = [code + b"-" + t + b"\r\n" for t in texts[:-1]]
    return b"".join(out) + code + (b" " + texts[-1] if texts[-1] else b"") + b"\r\n"


HOSTILE = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([
        b"\r\n", b"25\r\n", b"2500 x\r\n", b"250x\r\n", b"199 x\r\n", b"600 x\r\n", b"099\r\n",
        b"250-a\r\n550 b\r\n", b"250-unfinished", b"250 ok\n", b"250 ok\r250 ok\r\n",
        b"\x00" * 12, b"\xff\xfe\xfd\r\n", b"250-x\r\n" * 513 + b"250 x\r\n",
        b"250 " + b"x" * 8188 + b"\r\n",      # exactly the 8192-octet line cap
        b"250 " + b"x" * 8189 + b"\r\n",      # one octet over
        b"x" * 9000,                          # an endless line
        b"354 go\r\n250 ok\r\n", b"220 tls\r\n250 injected\r\n", b"421 4.4.2 bye\r\n",
    ]),
    st.builds(_reply, st.sampled_from(CODES), st.lists(reply_text, max_size=3)),
)


def fitting_reply(waiting: str):
    """A well-formed reply that lets the session go on (texts may hold NUL and 8-bit)."""
    code = st.sampled_from(GOOD.get(waiting, [b"250"]))
    if waiting == "ehlo":
        caps = st.one_of(st.lists(st.sampled_from(CAPS), max_size=8),
                         st.just(FULL_CAPS + [b"CHUNKING"]),
                         st.lists(st.sampled_from(FULL_CAPS + [b"CHUNKING"]), min_size=4, unique=True))
        return st.builds(lambda c, caps: _reply(c, [b"mx.example.test"] + caps), code, caps)
    return st.builds(_reply, code, st.lists(reply_text, max_size=2))


def other_reply():
    """A well-formed reply with any code: refusals, 421, codes that do not fit."""
    return st.builds(_reply, st.sampled_from(CODES), st.lists(reply_text, max_size=3))


def client_opts():
    return st.builds(
        ClientOptions,
        ehlo_hostname=st.sampled_from(["mta.example.org", "bad host\r\nRSET", ""]),
        delivery_method=st.sampled_from(["ESMTP", "SMTP", "LMTP"]),
        tls=st.sampled_from(["no", "ifavailable", "no", "required"]),
        xclient=st.sampled_from(["no", "ifavailable", "no", "required"]),
        send_8bitmime=st.sampled_from(["no", "ifavailable"]),
        transform_8bitmime_content=st.sampled_from(["no", "ifneeded", "strict", "strip"]),
        max_recipients_per_batch=st.just(100),
        pipelining=st.booleans(),
        chunking=st.booleans())


def make_txn(k: int, n: int, body: bytes, utf8: bool = False, xclient: bool = False) -> tuple:
    """Transaction k: sender s<k>@..., recipients r<k>x<i>@... (findable on the wire)."""
    local = "rü" if utf8 else "r"
    t = Transaction(f"s{k}@example.org",
                    [(f"{local}{k}x{i}@example.net",
                      DsnParams(("SUCCESS", "FAILURE"), f"rfc822;r{k}x{i}@example.net") if i else None)
                     for i in range(n)],
                    size=len(body), ret="HDRS" if k % 2 else None, envid="env+id" if k else None,
                    xclient={"NAME": "c.example", "ADDR": "2001:db8::1", "PORT": "25",
                             "HELO": "c", "PROTO": "ESMTP"} if xclient else None)
    return t, body


class Run:
    """The client machine with a record of both directions (for the reference reading)."""

    def __init__(self, opts: ClientOptions) -> None:
        self.cli = SMTPClient(opts)
        self.lmtp = opts.delivery_method.upper() == "LMTP"
        self.wire = bytearray()          # everything the client wrote
        self.ref = bytearray()           # the server bytes the client may read as replies
        self.events: list = []
        self.submitted: list = []        # (Transaction, body)
        self.deferred = None             # an UpgradeTLS held back by replay()

    def flush(self) -> None:
        self.wire += self.cli.data_to_send()

    def pump(self):
        """Run to the next sentinel or UpgradeTLS; other events are recorded."""
        if self.deferred is not None:
            ev, self.deferred = self.deferred, None
            return ev
        for _ in range(10000):
            ev = self.cli.next_event()
            self.flush()
            if isinstance(ev, UpgradeTLS):
                # The machine dropped the plaintext behind the 220: so does the reference.
                assert 0 <= ev.discarded <= len(self.ref)
                del self.ref[len(self.ref) - ev.discarded:]
                self.events.append(ev)
                return ev
            if ev in SENTINELS:
                return ev
            assert isinstance(ev, (TransactionDone, SessionFailed)), ev
            self.events.append(ev)
        raise AssertionError("the client machine does not settle")

    def feed(self, data: bytes) -> None:
        self.ref += data
        self.cli.receive_data(data)

    def submit(self, t: Transaction, body: bytes) -> bool:
        try:
            self.cli.send_mail(t, body)
        except SMTPClientError:
            assert not (self.cli.idle or self.cli._state == C._TXN)   # refused only when not ready
            return False
        self.submitted.append((t, body))
        return True

    def finish(self) -> None:
        """Bring the session to CLOSED the way a driver does (QUIT, timeouts)."""
        for _ in range(20):
            ev = self.pump()
            if ev is CLOSED:
                self.flush()
                return
            if isinstance(ev, UpgradeTLS):
                self.cli.tls_failed()
            elif ev is IDLE:
                self.cli.quit()
            else:
                assert ev is NEED_DATA, ev
                self.cli.timed_out()
        raise AssertionError("the client machine does not close")


# --- the reference reading ---------------------------------------------------------------


def split_replies(data: bytes) -> list:
    """SMTP replies (code, [lines]) in a server stream, up to the first line that is not
    part of a well-formed reply (the client closes there: nothing later is read)."""
    replies, lines = [], []
    for raw in bytes(data).split(b"\n")[:-1]:
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if len(line) < 3 or not line[:3].isdigit() or line[:1] not in b"2345" \
                or (len(line) > 3 and line[3:4] not in b" -") \
                or (lines and line[:3] != lines[0][:3]) or len(line) > C.MAX_REPLY_LINE:
            break
        lines.append(line)
        if len(line) == 3 or line[3:4] == b" ":
            replies.append((int(line[:3]), lines))
            lines = []
        elif len(lines) >= C.MAX_REPLY_LINES:
            break
    return replies


_MAIL = re.compile(rb"^MAIL FROM:<s(\d+)@example\.org>")
_RCPT = re.compile(rb"^RCPT TO:<([^>]*)>")


def reference_confirmations(run: Run) -> dict:
    """Walk the client's writes against the server's replies in RFC order (each command
    gets the next reply; after DATA's 354 the body; LMTP: one reply per accepted
    recipient after the body, or after BDAT LAST). Returns {(k, rcpt): (code, text,
    body_written)} for every recipient whose body got a reply."""
    replies = split_replies(run.ref)
    wire = bytes(run.wire)
    idx, pos = 1, 0                                   # reply 0 is the banner
    out: dict = {}
    cur = None

    def take():
        nonlocal idx
        r = replies[idx] if idx < len(replies) else None
        idx += 1
        return r

    def text(r) -> str:
        return " ".join(ln.decode("utf-8", "replace") for ln in r[1])

    def confirm(payload_ok: bool) -> None:
        accepted = cur["accepted"] if cur and cur["mail_ok"] else []
        if run.lmtp and accepted:
            for a in accepted:
                r = take()
                if r is None:
                    return
                out[(cur["k"], a)] = (r[0], text(r), payload_ok)
        else:
            r = take()
            if r is not None:
                for a in accepted:
                    out[(cur["k"], a)] = (r[0], text(r), payload_ok)

    if not replies:
        return out
    while pos < len(wire):
        end = wire.find(b"\r\n", pos)
        assert end >= 0, f"a command without CRLF: {wire[pos:pos + 80]!r}"
        line = wire[pos:end]
        pos = end + 2
        assert b"\r" not in line and b"\n" not in line
        m = _MAIL.match(line)
        if m:
            cur = {"k": int(m.group(1)), "mail_ok": False, "accepted": []}
            r = take()
            if r is None:
                break
            cur["mail_ok"] = r[0] // 100 == 2
            continue
        m = _RCPT.match(line)
        if m:
            r = take()
            if r is None:
                break
            if r[0] // 100 == 2:
                cur["accepted"].append(m.group(1).decode("utf-8"))
            continue
        if line == b"DATA":
            r = take()
            if r is None:
                break
            if r[0] != 354:
                continue
            if not (cur["mail_ok"] and cur["accepted"]):
                assert wire[pos:pos + 3] == b".\r\n", "354 without recipients: an empty message"
                pos += 3
                take()
                continue
            t, body = run.submitted[[s[0].mailfrom for s in run.submitted].index(
                f"s{cur['k']}@example.org")]
            if wire[pos:pos + 3] == b".\r\n":
                stop = pos + 3
            else:
                e = wire.find(b"\r\n.\r\n", pos)
                stop = e + 5 if e >= 0 else -1
            ok = stop > 0
            if ok and body.isascii():
                ok = wire[pos:stop] == dot_stuff(body)
            pos = stop if stop > 0 else len(wire)
            confirm(ok)
            continue
        if line.startswith(b"BDAT "):
            n = int(line.split()[1])
            ok = pos + n <= len(wire)
            t, body = run.submitted[[s[0].mailfrom for s in run.submitted].index(
                f"s{cur['k']}@example.org")]
            if ok and body.isascii():
                ok = wire[pos:pos + n] == body
            pos += n
            confirm(ok)
            continue
        if take() is None:                    # EHLO/HELO/LHLO, STARTTLS, XCLIENT, RSET, QUIT
            break
    return out


def check_run(run: Run) -> None:
    """The invariants of a finished run."""
    assert run.cli.closed
    dones = [e for e in run.events if isinstance(e, TransactionDone)]
    assert len(dones) == len(run.submitted), "every submitted transaction ends exactly once"
    assert {id(d.transaction) for d in dones} == {id(t) for t, _ in run.submitted}
    confirmed = reference_confirmations(run)
    for d in dones:
        t = d.transaction
        k = int(t.mailfrom[1:t.mailfrom.index("@")])
        assert [o.rcpt for o in d.outcomes] == [a for a, _ in t.recipients]
        for o in d.outcomes:
            assert o.status in (DELIVERED, TRANSIENT, PERMANENT)
            assert 0 <= o.stage < len(C.STAGE_NAMES) and o.bytes_sent >= 0
            assert isinstance(o.text, str) and o.text
            if o.status == DELIVERED:
                assert 200 <= o.code < 300, o
                ref = confirmed.get((k, o.rcpt))
                assert ref is not None, f"{o.rcpt} delivered without a reply to its body"
                code, text, body_written = ref
                assert body_written, f"{o.rcpt} delivered but its body was not written whole"
                assert (o.code, o.text) == (code, text), (o, ref)
            elif o.status == TRANSIENT:
                # 4xx, or a refused set-up step (3xx/5xx to RSET or a required XCLIENT: the
                # session's fault, not the message's).
                assert o.code >= 300, o
            else:
                assert 500 <= o.code < 600, o
            if "[internal] invalid" in o.text:
                assert o.text.isprintable() and len(o.text) < 200
    for e in run.events:
        if isinstance(e, SessionFailed):
            f = e.failure
            # An unsolicited reply while idle keeps its code (even 2xx); it is never a success.
            assert f.status == (PERMANENT if f.code >= 500 else TRANSIENT), f


# --- the drivers -------------------------------------------------------------------------


def drive(data, run: Run, txns: list, *, steps: int = 60, script: list | None = None):
    """A driver whose every choice is drawn. The server answers with fitting replies,
    written whole or split anywhere, except at a few drawn steps (or at every step in a
    chaos run) where it sends another code, hostile bytes, a reply glued to the next, EOF,
    or the driver reports a timeout or a write error. TLS results, when transactions are
    submitted (at idle or while busy) and QUIT are drawn too. `script` records the
    driver's actions for a replay."""
    pending = b""
    todo = list(txns)
    rec = script.append if script is not None else (lambda item: None)
    chaos = data.draw(st.sampled_from([False, False, False, True]), label="chaos")
    bad = data.draw(st.sets(st.integers(0, 30), max_size=3), label="bad steps")

    def submit(t, body) -> bool:
        rec(("submit", (t, body)))
        return run.submit(t, body)

    for step in range(steps):
        ev = run.pump()
        if ev is CLOSED:
            break
        if isinstance(ev, UpgradeTLS):
            ok = not data.draw(st.sampled_from([False, False, False, True]))
            rec(("tls", ok))
            run.cli.tls_started({"protocol": "TEST"}) if ok else run.cli.tls_failed()
            continue
        assert ev is not PAUSED, "PAUSED without an UpgradeTLS"
        if ev is IDLE and not pending:
            choice = data.draw(st.sampled_from(["submit", "submit", "quit", "junk"]))
            if todo and choice == "submit":
                for _ in range(data.draw(st.integers(1, len(todo)))):
                    submit(*todo.pop(0))
                continue
            if choice != "junk":
                rec(("quit", None))
                run.cli.quit()
                continue
        elif todo and data.draw(st.sampled_from([False, False, False, True])):
            if submit(*todo[0]):                  # while busy: queued, or refused in set-up
                todo.pop(0)
            continue
        if chaos or step in bad or ev is IDLE:
            what = data.draw(st.sampled_from(["other", "hostile", "glued", "eof", "timeout",
                                              "send_failed"]))
            if what in ("eof", "timeout", "send_failed"):
                rec((what, None))
                {"eof": lambda: run.feed(b""), "timeout": run.cli.timed_out,
                 "send_failed": run.cli.send_failed}[what]()
                continue
            if what == "glued":                    # this reply and an unasked-for one
                pending += data.draw(fitting_reply(run.cli.waiting_for)) * 2
            else:
                pending += data.draw(other_reply() if what == "other" else HOSTILE)
        elif not pending:
            pending = data.draw(fitting_reply(run.cli.waiting_for))
        if not pending:
            continue
        cut = len(pending) if not chaos and data.draw(st.booleans()) else \
            data.draw(st.integers(1, len(pending)))
        chunk, pending = pending[:cut], pending[cut:]
        rec(("feed", chunk))
        run.feed(chunk)
    run.finish()


@settings(FUZZ, max_examples=250)
@given(data=st.data(), opts=client_opts(), shapes=st.lists(
    st.tuples(st.integers(1, 3), st.sampled_from(BODIES), st.booleans(), st.booleans()),
    min_size=1, max_size=3))
def test_client_against_a_hostile_server(data, opts, shapes):
    """Random replies, garbage, NUL, 8-bit, over-long lines, EOF, timeouts, split writes, in
    whatever phase they land: no exception, one TransactionDone per transaction, and no
    delivery the server did not confirm after the body."""
    txns = [make_txn(k, n, body, utf8, xc) for k, (n, body, utf8, xc) in enumerate(shapes)]
    run = Run(opts)
    drive(data, run, txns)
    check_run(run)


@example(opts=ClientOptions(delivery_method="LMTP", chunking=True), verdicts=[550, 250, 250])
@LIGHT
@given(opts=st.builds(ClientOptions, delivery_method=st.sampled_from(["ESMTP", "LMTP"]),
                      chunking=st.booleans(), pipelining=st.booleans()),
       verdicts=st.lists(st.sampled_from([250, 450, 550]), min_size=3, max_size=3))
def test_queued_transactions_get_their_own_body_replies(opts, verdicts):
    """Two transactions queued together (with PIPELINING the second envelope follows the
    first body, with BDAT in the same write): each recipient gets the reply meant for it.
    Regression: LMTP + CHUNKING took the second recipient's BDAT reply from the next
    transaction's MAIL reply (a 550 for one recipient came out as a delivery)."""
    run = Run(opts)
    run.feed(b"220 mx\r\n")
    assert run.pump() is NEED_DATA
    run.feed(_reply(b"250", [b"mx", b"PIPELINING", b"CHUNKING"]))
    assert run.pump() is IDLE
    (t1, b1), (t2, b2) = make_txn(1, 2, BODIES[0]), make_txn(2, 1, BODIES[0])
    assert run.submit(t1, b1) and run.submit(t2, b2)
    lmtp = opts.delivery_method == "LMTP"
    # The server answers each complete command line as it arrives; the body's reply (one
    # per accepted recipient with LMTP) follows its end (".") or its BDAT LAST chunk.
    state = {"seen": 0, "cur": None}
    for _ in range(50):
        if run.pump() is not NEED_DATA:
            break
        lines = bytes(run.wire).split(b"\r\n")[:-1]
        new = []
        for ln in lines[state["seen"]:]:
            m = _MAIL.match(ln)
            if m:
                state["cur"] = t1 if m.group(1) == b"1" else t2
            if ln.startswith((b"MAIL", b"RCPT")):
                new.append(b"250 ok\r\n")
            elif ln == b"DATA":
                new.append(b"354 go\r\n")
            elif ln.startswith(b"BDAT") or ln == b".":
                mine = state["cur"]
                vs = (verdicts[:2] if lmtp else verdicts[:1]) if mine is t1 else verdicts[2:3]
                new += [b"%d v%d\r\n" % (v, i) for i, v in enumerate(vs)]
        state["seen"] = len(lines)
        if not new:
            break
        run.feed(b"".join(new))
    run.finish()
    check_run(run)
    outs = {o.rcpt: o for d in run.events if isinstance(d, TransactionDone) for o in d.outcomes}
    expect = ({"r1x0@example.net": verdicts[0], "r1x1@example.net": verdicts[1]} if lmtp
              else {"r1x0@example.net": verdicts[0], "r1x1@example.net": verdicts[0]})
    expect["r2x0@example.net"] = verdicts[2]
    assert {a: o.code for a, o in outs.items()} == expect


PHASES = ["banner", "ehlo", "starttls", "xclient", "rset", "mailfrom", "rcptto", "data", "body",
          "quit"]


@pytest.mark.parametrize("phase", PHASES)
@settings(FUZZ, max_examples=25)
@given(data=st.data(), method=st.sampled_from(["ESMTP", "LMTP"]), pipelining=st.booleans(),
       chunking=st.booleans(), mode=st.sampled_from(["reply", "hostile", "eof", "timeout",
                                                     "send_failed"]))
def test_client_hostile_reply_in_every_phase(phase, data, method, pipelining, chunking, mode):
    """A cooperative server that misbehaves once, in the named phase (with STARTTLS and
    XCLIENT offered, and a refused DATA first so that the next transaction says RSET)."""
    opts = ClientOptions(ehlo_hostname="mta.example.org", delivery_method=method,
                         tls="ifavailable", xclient="ifavailable", pipelining=pipelining,
                         chunking=chunking and phase not in ("rset", "data"))
    run = Run(opts)
    txns = [make_txn(0, 2, BODIES[0], xclient=True), make_txn(1, 2, BODIES[3], xclient=True)]
    state = {"struck": False, "datas": 0}

    def cooperative(waiting):
        if waiting == "ehlo":
            return _reply(b"250", [b"mx.example.test"] + FULL_CAPS + ([b"CHUNKING"] if chunking else []))
        if waiting == "data":
            state["datas"] += 1
            if phase == "rset" and state["datas"] == 1:
                return b"451 4.3.0 not now\r\n"      # MAIL stays open: the next one says RSET
        return _reply(GOOD[waiting][0], [b"ok"])

    todo = list(txns)
    for _ in range(80):
        ev = run.pump()
        if ev is CLOSED:
            break
        if isinstance(ev, UpgradeTLS):
            run.cli.tls_started({"protocol": "TEST"})
            continue
        if ev is IDLE:
            if todo:
                t, body = todo.pop(0)
                run.submit(t, body)
            else:
                run.cli.quit()
            continue
        waiting = run.cli.waiting_for
        if waiting == phase and not state["struck"]:
            state["struck"] = True
            if mode == "eof":
                run.feed(b"")
            elif mode == "timeout":
                run.cli.timed_out()
            elif mode == "send_failed":
                run.cli.send_failed()
            else:
                junk = data.draw(HOSTILE if mode == "hostile" else other_reply())
                run.feed(junk)
            continue
        run.feed(cooperative(waiting))
    run.finish()
    assert state["struck"], f"phase {phase} never reached"
    check_run(run)


def _norm(ev):
    if isinstance(ev, TransactionDone):
        return ("done", [(o.rcpt, o.status, o.code, _norm_text(o.text), o.stage, o.bytes_sent)
                         for o in ev.outcomes])
    if isinstance(ev, SessionFailed):
        f = ev.failure
        return ("failed", f.status, f.code, _norm_text(f.text), f.stage)
    return (type(ev).__name__,)


def _norm_text(text: str) -> str:
    # The excerpt of an invalid reply is a diagnostic: only its kind must not vary.
    return text.split(': "', 1)[0] if "[internal] invalid" in text else text


def _pieces(data, chunk: bytes) -> list:
    how = data.draw(st.sampled_from(["random", "after_cr", "bytes"]))
    if how == "bytes" and len(chunk) <= 64:
        return [chunk[i:i + 1] for i in range(len(chunk))]
    if how == "after_cr" and b"\r" in chunk:
        parts = re.split(rb"(?<=\r)", chunk)
        return [p for p in parts if p]
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(chunk) - 1)), max_size=4))))
    bounds = [0] + [c for c in cuts if c < len(chunk)] + [len(chunk)]
    return [chunk[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


@settings(FUZZ, max_examples=100)
@given(data=st.data(), opts=client_opts(), shapes=st.lists(
    st.tuples(st.integers(1, 2), st.sampled_from(BODIES)), min_size=1, max_size=2))
def test_client_outcomes_do_not_depend_on_how_replies_are_split(data, opts, shapes):
    """Replay a hostile session with every server write cut into pieces (at random, after
    every CR, byte by byte): the same events, outcomes and texts."""
    txns = [make_txn(k, n, body) for k, (n, body) in enumerate(shapes)]
    first = Run(opts)
    script: list = []
    drive(data, first, txns, steps=40, script=script)
    check_run(first)
    second = Run(opts)
    replay(second, script, lambda chunk: _pieces(data, chunk))
    check_run(second)
    assert [_norm(e) for e in second.events] == [_norm(e) for e in first.events]
    assert bytes(second.wire) == bytes(first.wire)


def test_a_line_at_the_cap_split_between_cr_and_lf():
    """An 8192-octet reply line is accepted whether its CR and LF arrive together or not."""
    t = make_txn(0, 1, BODIES[0])
    script = [("feed", b"220 mx\r\n"), ("feed", b"250 " + b"x" * 8188 + b"\r\n"),
              ("submit", t), ("feed", b"250 a\r\n"), ("feed", b"250 b\r\n"),
              ("feed", b"354 c\r\n"), ("feed", b"250 d\r\n"), ("quit", None),
              ("feed", b"221 e\r\n")]
    runs = []
    for split in (lambda chunk: [chunk], lambda chunk: [p for p in re.split(rb"(?<=\r)", chunk) if p]):
        run = Run(ClientOptions())
        replay(run, script, split)
        check_run(run)
        runs.append([_norm(e) for e in run.events])
    assert runs[0] == runs[1]
    assert runs[1][0][0] == "done" and runs[1][0][1][0][1] == DELIVERED


def replay(run: Run, script: list, split) -> None:
    """Play a recorded driver script; each recorded write is fed in pieces, with the
    machine run after every piece (events may surface mid-write: they are kept, and a
    TLS upgrade waits for the rest of the write, as it did when the write was whole)."""
    for kind, arg in script:
        ev = run.pump()
        if ev is CLOSED:
            break
        if kind == "tls":
            assert isinstance(ev, UpgradeTLS), ev
            run.cli.tls_started({"protocol": "TEST"}) if arg else run.cli.tls_failed()
        elif kind == "submit":
            run.submit(*arg)
        elif kind == "quit":
            run.cli.quit()
        elif kind == "eof":
            run.feed(b"")
        elif kind == "timeout":
            run.cli.timed_out()
        elif kind == "send_failed":
            run.cli.send_failed()
        else:
            pieces = split(arg)
            assert b"".join(pieces) == arg
            upgrade = None
            for i, piece in enumerate(pieces):
                if upgrade is not None:
                    run.cli.receive_data(piece)        # PAUSED: buffered, then dropped
                    continue
                run.feed(piece)
                if i < len(pieces) - 1:
                    ev = run.pump()
                    if isinstance(ev, UpgradeTLS):
                        upgrade = ev
            if upgrade is not None:
                run.deferred = upgrade        # where the whole write would have produced it
    run.finish()


# --- the body transforms ------------------------------------------------------------------


def _unstuff(wire: bytes) -> bytes:
    assert wire.endswith(b".\r\n")
    content = wire[:-3]
    lines = content.split(b"\r\n")
    return b"\r\n".join(ln[1:] if ln.startswith(b".") else ln for ln in lines)


LINEISH = st.lists(st.sampled_from([b".", b"..", b"\r", b"\n", b"\r\n", b"a", b" ", b"\x00",
                                    b"\xff", b"\r\n.\r\n", b"\n.\n"]), max_size=30).map(b"".join)


@FUZZ
@given(st.one_of(st.binary(max_size=300), LINEISH))
def test_dot_stuff_any_body(body):
    wire = dot_stuff(body)
    assert wire.endswith(b"\r\n.\r\n") or wire == b".\r\n"
    assert wire.count(b"\r\n.\r\n") == (1 if wire != b".\r\n" else 0)  # only the end marker
    assert b"\r" not in wire.replace(b"\r\n", b"") and b"\n" not in wire.replace(b"\r\n", b"")
    normal = re.sub(rb"\r\n|\r|\n", b"\r\n", body)
    expect = normal if normal.endswith(b"\r\n") or not normal else normal + b"\r\n"
    assert _unstuff(wire) == expect


# =========================================================================================
# (b) the readers of received mail
# =========================================================================================

CHARSETS = ["utf-8", "us-ascii", "iso-8859-1", "utf-16", "iso-2022-jp", "idna", "punycode",
            "undefined", "rot13", "base64", "x-unknown", "", '"', "utf-8\x00", "utf-7",
            "unicode_escape", "utf8'en'%FF"]
CTES = ["7bit", "8bit", "binary", "base64", "quoted-printable", "x-uuencode", "uuencode",
        "bogus", ""]
CTYPES = ["text/plain", "text/html", "application/octet-stream", "message/delivery-status",
          "message/global-delivery-status", "text/rfc822-headers", "message/rfc822",
          "message/global", "multipart/mixed", "garbage/", "", "text"]
PAYLOADS = st.one_of(
    st.binary(max_size=120),
    st.sampled_from([b"YWJj\r\n====\r\n!!", b"=XY=\r\n=", b"=C3=A9 caf=\r\n", b"begin 644 x\n#86)C\n`\nend\n",
                     b"Final-Recipient: rfc822; a@b.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
                     b"Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n",
                     b"Reporting-MTA: dns; x\r\n\r\nFinal-Recipient: ;\r\n Action\r\n:\r\n",
                     b"Original-Recipient: utf-8; \xff@\xfe\r\nAction: delayed\r\nStatus:\r\n",
                     b"To: Jane <jane@example.org>\r\nCc: =?utf-8?b?!!?= <x@y>\r\n",
                     b"550 5.7.1 blocked\r\n--- Below this line is a copy of the message.\r\n"]))
HEADER_VALUES = st.one_of(
    st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.binary(max_size=40),
    st.sampled_from([b"=?utf-8?B?***?=", b"=?idna?Q?x?=", b"=?bogus?Q?=FF?=", b"=?utf-8?q?caf=C3=A9?=",
                     b"=?utf-8?b?w6k=?= =?iso-8859-1?q?=E9?=", b"=?", b"?=", b"=??=",
                     b"MAILER-DAEMON@example.org", b"auto-replied", b"Undelivered Mail Returned",
                     b"Out of Office", b"unsubscribe", b"a\r\n b", b"a\r\n\tb"])).map(
    lambda v: v.replace(b"\r\n", b"\x00").replace(b"\r", b"").replace(b"\n", b"").replace(
        b"\x00", b"\r\n "))


@st.composite
def mime_entity(draw, depth: int = 0) -> bytes:
    """One MIME entity: headers and a body, nested multiparts and message/* parts, with
    random (or wrong, or missing) boundaries, charsets, transfer encodings and ends."""
    kind = draw(st.sampled_from(["leaf", "multipart", "rfc822", "report"] if depth < 3 else ["leaf"]))
    heads = []
    for name in draw(st.lists(st.sampled_from(["Subject", "From", "To", "Auto-Submitted",
                                               "X-Autoreply", "Precedence", "Message-ID",
                                               "MIME-Version", "X-Junk"]), max_size=4)):
        heads.append(name.encode() + b": " + draw(HEADER_VALUES))
    if draw(st.booleans()):
        heads.append(draw(st.binary(max_size=30)).replace(b"\n", b""))   # a line that is not a header
    if kind == "leaf":
        ctype = draw(st.sampled_from(CTYPES))
        cs = draw(st.sampled_from(CHARSETS))
        heads.append(b"Content-Type: " + ctype.encode() + (b"; charset=" + cs.encode() if cs else b""))
        heads.append(b"Content-Transfer-Encoding: " + draw(st.sampled_from(CTES)).encode())
        body = draw(PAYLOADS)
    elif kind == "rfc822":
        heads.append(b"Content-Type: " + draw(st.sampled_from([b"message/rfc822", b"message/global"])))
        body = draw(mime_entity(depth + 1))
    else:
        boundary = draw(st.one_of(
            st.sampled_from([b"b", b"=_x", b"", b'"q"', b"a b", b"--", b"x" * 100, b"\xff\xfe"]),
            st.binary(min_size=1, max_size=12).filter(lambda b: b"\n" not in b and b"\r" not in b)))
        used = boundary if draw(st.integers(0, 4)) else draw(st.sampled_from([b"other", b""]))
        if kind == "report":
            heads.append(b"Content-Type: multipart/report; report-type=delivery-status; boundary=\""
                         + boundary + b"\"")
            kids = [draw(mime_entity(depth + 1)),
                    b"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
                    + draw(PAYLOADS)]
            if draw(st.booleans()):
                kids.append(draw(mime_entity(depth + 1)))
        else:
            quoted = draw(st.booleans())
            heads.append(b"Content-Type: multipart/" + draw(st.sampled_from([b"mixed", b"alternative"]))
                         + b"; boundary=" + (b'"' + boundary + b'"' if quoted else boundary))
            kids = draw(st.lists(mime_entity(depth + 1), max_size=3))
        body = draw(st.binary(max_size=10))                       # the preamble
        for kid in kids:
            body += b"\r\n--" + used + b"\r\n" + kid
        if draw(st.integers(0, 3)):
            body += b"\r\n--" + used + b"--\r\n"                  # else: no closing delimiter
        body += draw(st.binary(max_size=8))                       # the epilogue
    sep = b"\r\n\r\n" if draw(st.integers(0, 5)) else draw(st.sampled_from([b"\r\n", b"\n\n", b""]))
    return b"\r\n".join(heads) + sep + body


@st.composite
def hostile_message(draw) -> bytes:
    raw = draw(mime_entity())
    eol = draw(st.sampled_from(["crlf", "lf", "cr", "mixed"]))
    if eol == "lf":
        raw = raw.replace(b"\r\n", b"\n")
    elif eol == "cr":
        raw = raw.replace(b"\r\n", b"\r")
    elif eol == "mixed":
        raw = raw.replace(b"\r\n", b"\n", draw(st.integers(0, 5)))
    if draw(st.integers(0, 4)) == 0:
        raw = raw[:draw(st.integers(0, len(raw)))]                 # cut short anywhere
    return raw


MESSAGES = st.one_of(hostile_message(), st.binary(max_size=300))


# --- actors.mail.Body ---------------------------------------------------------------------

PROBE = "X-Ecmta-Fuzz-Probe"


@FUZZ
@given(MESSAGES)
def test_body_parses_any_bytes_and_render_reparses_the_same(raw):
    body = Body(raw)
    headers, rest = body.headers(), body.body
    assert body.data == raw, "reading headers must not change the bytes"
    assert raw.endswith(rest)
    for name, value in headers:
        assert isinstance(name, str) and isinstance(value, str) and "\n" not in name
        assert body.get_header(name)
    assert body.copy().data == raw
    body.add_header(PROBE, "1")
    assert body.get_header(PROBE) == ["1"]
    assert body.remove_header(PROBE) == 1
    rendered = body.data
    again = Body(rendered)
    assert again.headers() == headers and again.body == rest
    assert Body(again.data).data == rendered             # render is a fixed point


token = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters=":"),
                min_size=1, max_size=12)
line_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
                    max_size=30)


@st.composite
def canonical_message(draw) -> tuple:
    headers = []
    for _ in range(draw(st.integers(0, 5))):
        first = draw(line_text.filter(lambda t: not t.startswith((" ", "\t"))))
        folds = draw(st.lists(st.tuples(st.sampled_from([" ", "\t"]), line_text), max_size=2))
        headers.append((draw(token), first + "".join("\r\n" + w + t for w, t in folds)))
    body = draw(st.binary(max_size=200))
    head = "".join(f"{n}: {v}\r\n" for n, v in headers).encode("utf-8")
    return head + b"\r\n" + body, headers, body


@FUZZ
@given(canonical_message())
def test_canonical_messages_round_trip_byte_for_byte(msg):
    raw, headers, rest = msg
    body = Body(raw)
    assert body.headers() == headers and body.body == rest
    body.add_header(PROBE, "x", prepend=True)
    body.remove_header(PROBE)
    assert body.data == raw


@FUZZ
@given(raw=MESSAGES, name=st.one_of(token, st.text(max_size=10)),
       value=st.one_of(line_text, st.text(max_size=30),
                       st.lists(line_text, min_size=2, max_size=3).map("\r\n ".join)),
       how=st.sampled_from(["add", "prepend", "set"]))
def test_header_edits_refuse_injection_or_add_exactly_one_field(raw, name, value, how):
    body = Body(raw)
    before = body.headers()
    try:
        if how == "set":
            body.set_header(name, value)
        else:
            body.add_header(name, value, prepend=how == "prepend")
    except ValueError:
        assert Body(body.data).headers() == before
        return
    after = Body(body.data)
    fields = after.headers()
    assert after.body == Body(raw).body
    if how == "set":
        assert [v for n, v in fields if n.lower() == name.lower()] == [value]
        assert [(n, v) for n, v in fields if n.lower() != name.lower()] == \
            [(n, v) for n, v in before if n.lower() != name.lower()]
    else:
        assert len(fields) == len(before) + 1
        assert fields == ([(name, value)] + before if how == "prepend" else before + [(name, value)])


# --- policy.objects: msg:header, msg:text, msg:body, msg:raw, msg:code --------------------


def _ctx(raw: bytes, phase: str = "data"):
    msg = MailMessage("id", "batch", "conn", "a@example.org", "b@example.net", body=Body(raw))
    return SimpleNamespace(msg=msg, phase=phase, owned={})


@example(raw=b"Content-Type: text/plain; charset=idna\r\n\r\nhello\r\n", lua_bytes=b"x")
@example(raw=b"Content-Type: text/plain; charset=undefined\r\n\r\nhello\r\n", lua_bytes=b"x")
@example(raw=b"Content-Type: text/plain; charset=punycode\r\n\r\n\xff\r\n", lua_bytes=b"x")
@example(raw=b":", lua_bytes=b"")
@FUZZ
@given(raw=MESSAGES, lua_bytes=st.binary(max_size=60))
def test_msg_functions_on_any_message(raw, lua_bytes):
    """msg:header/text/body/raw/code never raise anything but PolicyUsageError (a Lua
    error naming the function) on hostile content or hostile Lua strings."""
    c = _ctx(raw)
    for name, _ in Body(raw).headers()[:3] + [("Subject", ""), ("Content-Type", "")]:
        if not name:
            continue                     # a ":" line: msg:header("") is a usage error
        got = O.msg_header_get(c, name.encode("utf-8", "surrogateescape"))
        assert all(isinstance(v, bytes) for v in got)
    texts = O.msg_text_get(c)
    assert all(isinstance(t, bytes) for t in texts)
    assert isinstance(O.msg_body(c, None), bytes)
    for call in (lambda: O.msg_header_set(c, b"X-Fuzz", b"append", lua_bytes),
                 lambda: O.msg_header_set(c, lua_bytes or b"X", None, b"v"),
                 lambda: O.msg_text_set(c, lua_bytes, b"text/plain", b"utf-8"),
                 lambda: O.msg_code(c, 0, lua_bytes),
                 lambda: O.msg_body(c, lua_bytes)):
        try:
            call()
        except PolicyUsageError as exc:
            assert str(exc).startswith("msg:")
    assert isinstance(O.msg_raw(c, lua_bytes), bytes)
    assert isinstance(O.msg_raw(c, None), bytes)


@FUZZ
@given(raw=MESSAGES, value=st.text(st.characters(whitelist_categories=("L", "M", "N", "P", "S"),
                                                 whitelist_characters=" "), max_size=60))
def test_msg_header_set_then_get_gives_the_text_back(raw, value):
    """Printable text (RFC 2047 folds at whitespace: a control that str.split() takes for
    a space, such as \\x1e, does not survive the encoding)."""
    c = _ctx(raw)
    lua = value.encode("utf-8")
    if "=?" in value and value.isascii():
        return                           # ASCII text is stored as is: get decodes words
    O.msg_header_set(c, b"X-Fuzz-Value", b"replace", lua)
    got = O.msg_header_get(c, b"X-Fuzz-Value")
    if value == "":
        assert got == ()                 # msg:header(name, "") deletes
    else:
        assert got == (lua,)


@FUZZ
@given(number=st.one_of(st.none(), st.binary(max_size=5), st.sampled_from([b"250", b"550", b"0", b"999"])),
       text=st.one_of(st.none(), st.binary(max_size=80)))
def test_msg_code_any_input(number, text):
    c = _ctx(b"Subject: x\r\n\r\nbody\r\n")
    try:
        code = O.msg_code(c, number, text)
    except PolicyUsageError:
        return
    if number is None and text is None:
        return
    lines = code.split(b"\r\n")
    assert all(re.match(rb"^[2-5]\d\d[ -]", ln) or re.match(rb"^[2-5]\d\d$", ln) for ln in lines)
    assert all(ln[3:4] == b"-" for ln in lines[:-1]) and lines[-1][3:4] in (b" ", b"")


# --- the bounce classifier ----------------------------------------------------------------

SUPPRESS = BC.parse_suppress_list("forwarder@lists.example.org, @bounces.example.com")


@example(raw=b"From: MAILER-DAEMON@x.org\r\nSubject: Undelivered Mail Returned\r\n"
             b"Content-Type: text/plain; charset=idna\r\n\r\nhello\r\n", mailfrom="")
@example(raw=b"Subject: Out of Office\r\nContent-Type: text/plain; charset=undefined\r\n\r\nx\r\n",
         mailfrom="")
@example(raw=b"Content-Type: multipart/report; boundary=b\r\n\r\n--b\r\n"
             b"Content-Type: message/delivery-status; charset=punycode\r\n"
             b"Content-Transfer-Encoding: base64\r\n\r\n/w==\r\n--b--\r\n", mailfrom="")
@FUZZ
@given(raw=MESSAGES, mailfrom=st.sampled_from(["", "list@example.org"]))
def test_analyze_message_reads_any_message(raw, mailfrom):
    n = BC.analyze_message(raw, "bounces-1@bounces.example.com", mailfrom, SUPPRESS)
    if n is None:
        return
    assert n.kind in ("dsn", "bounce", "autoreply", "challenge", "subscribe", "unsubscribe")
    assert "\n" not in n.text and "\r" not in n.text
    assert n.orig_rcpt == "" or "@" in n.orig_rcpt
    result = BC.Classifier().classify_mdn(n)
    assert result.code in BC.Classifier().classes


@FUZZ
@given(text=st.one_of(st.text(max_size=200),
                      st.builds(lambda c, e, t: f"{c} {e} {t}", st.integers(0, 999),
                                st.from_regex(r"#?[0-9]\.[0-9]{1,4}\.[0-9]{1,4}", fullmatch=True),
                                st.text(max_size=60))),
       domain=st.text(max_size=20))
def test_classify_smtp_any_reply(text, domain):
    code, enh = BC.parse_reply(text)
    assert code == "" or re.fullmatch(r"[2-5]\d\d", code)
    assert enh == "" or re.fullmatch(r"[2-5]\.\d{1,3}\.\d{1,3}", enh)
    result = BC.current().classify_smtp(text, domain)
    assert result.code in BC.Classifier().classes
    assert BC.describe(result)


@LIGHT
@given(st.text(max_size=300))
def test_rule_and_override_parsers_only_report_problems(text):
    try:
        BC.parse_rules(text, "fuzz.txt")
    except ValueError as exc:
        assert str(exc).startswith("fuzz.txt:")
    known = BC.Classifier().classes
    for mdn in (False, True):
        rules, problems = BC.parse_override(text, "fuzz.ovr", known, mdn=mdn)
        assert all(p.startswith("fuzz.ovr:") for p in problems)
        for r in rules:
            r.pattern.search(text)
    BC.parse_suppress_list(text)


# --- DSN rendering over hostile originals -------------------------------------------------


@FUZZ
@given(original=MESSAGES, reply=st.text(max_size=200), as_body=st.booleans(),
       edit=st.booleans(), inline=st.sampled_from(["none", "headers", "all"]),
       delayed=st.booleans())
def test_dsn_of_any_original_is_well_formed(original, reply, as_body, edit, inline, delayed):
    orig = Body(original) if as_body else original
    if as_body and edit:
        orig.add_header("X-Edited", "yes")
    render = D.render_delay_dsn if delayed else D.render_failure_dsn
    data = render(mailfrom="alice@example.com",
                  recipients=[D.DsnRecipient("bob@example.org", reply, remote_mta="mx.example.org")],
                  hostname="mta.example.net", original=orig, inline_original=inline,
                  msg_id="AB/CD-00042-0000A0B6", now=1704067200)
    check_lines(data)
    assert D.required_extensions(data) <= {"8BITMIME", "SMTPUTF8"}
    assert re.fullmatch(r"[45]\.\d+\.\d+", D.derive_status(reply))
    assert re.fullmatch(r"4\.\d+\.\d+", D.derive_status(reply, "delayed"))


# --- the client's body transforms on hostile MIME -----------------------------------------


@example(body=UNWRITABLE_MIME, mode="ifneeded")
@example(body=UNWRITABLE_MIME, mode="strict")
@FUZZ
@given(body=MESSAGES, mode=st.sampled_from(["no", "ifneeded", "strict", "strip", "bogus"]))
def test_downgrade_8bit_and_header_block_on_any_body(body, mode):
    assert body.startswith(header_block(body))
    out = downgrade_8bit(body, mode)
    if out is None:
        assert mode == "strict"
        return
    assert isinstance(out, bytes)
    if mode == "strip":
        assert out.isascii() and len(out) == len(body)
    if mode == "strict":
        assert out.isascii()
    if body.isascii() and mode != "strip":
        assert out == body, "an ASCII body is never converted"
    assert dot_stuff(out).endswith(b".\r\n")
