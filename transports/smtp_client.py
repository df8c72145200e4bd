"""Sans-IO SMTP/LMTP client: the outbound state machine, Momentum (ecelerity) compatible.

Owns: the client side of RFC 5321 (banner, EHLO with HELO fallback, MAIL/RCPT/DATA, RSET,
QUIT), PIPELINING (2920), SIZE (1870), 8BITMIME (6152) with Momentum's send_8bitmime and
transform_8bitmime_content, DSN parameters (3461), SMTPUTF8 (6531), CHUNKING/BDAT (3030,
opt-in), STARTTLS sequencing (3207), Postfix XCLIENT, LMTP (2033: LHLO, one reply per
recipient after the body), dot-stuffing, and the per-recipient outcome of a transaction
with Momentum's connection stage codes and internal failure texts.

No sockets, clocks or config here. A driver (transports/smtp_outbound.py) owns the socket,
the timeouts and the TLS handshake, and talks to the machine h11-style:

    cli = SMTPClient(ClientOptions(ehlo_hostname="mta.example", tls="ifavailable"))
    while True:                              # session set-up: banner, EHLO, STARTTLS
        ev = cli.next_event()
        if ev is NEED_DATA:
            sock.sendall(cli.data_to_send())
            data = recv_with_timeout(sock, TIMEOUTS[cli.waiting_for])   # None = timed out
            cli.timed_out() if data is None else cli.receive_data(data)  # b"" = EOF
        elif isinstance(ev, UpgradeTLS):
            sock.sendall(cli.data_to_send()); sock = handshake(sock)
            cli.tls_started(info)            # or cli.tls_failed(Failure) on error
        elif isinstance(ev, SessionFailed): failure = ev.failure   # CLOSED follows
        elif isinstance(ev, TransactionDone): done[ev.transaction] = ev.outcomes
        elif ev is IDLE: break               # ready: cli.send_mail(txn, body) or cli.quit()
        elif ev is CLOSED: sock.sendall(cli.data_to_send()); sock.close(); break

A write error is reported with cli.send_failed() (after feeding any reply still readable).
Several transactions may be submitted at once (send_mail() while busy queues them): with
PIPELINING each envelope is written right behind the previous body, so a reused connection
costs one round trip per message instead of two (RFC 2920 3.1: message content may open a
group). Each transaction ends with its own TransactionDone.

Stage codes and texts (log_formats.connection.stages, message_responses):

    where                       stage  reply refused       no reply / EOF / write error
    connect                      0     -                   (driver) 450 4.4.1 Connection
                                                           Timed Out / 451 4.4.1 No valid hosts
    banner                      12     remote text         451 4.4.2 [internal] no banner
    EHLO/HELO/LHLO              10     remote text         no HELO/EHLO response | send ...
    after EHLO (decisions)      11     STARTTLS/XCLIENT required but not advertised,
                                       SMTPUTF8, 8-bit conversion (strict)
    STARTTLS                    15     451 4.7.5 no tls    451 4.7.5 no tls go-ahead /
                                       go-ahead (required) send STARTTLS failed
    TLS handshake, cert check   17     451 4.7.5 TLS negotiation failed, 4.7.5 SSL
                                       certificate subject does not match host, ...
    XCLIENT                     19     remote text (required)   no XCLIENT response
    RSET                        13     remote text         no RSET response
    MAIL FROM                    2     remote text         no MAIL FROM response
    RCPT TO                      4     remote text         no RCPT TO response
    DATA                         6     remote text         no DATA response
    writing the body             8     -                   send BODY failed
    reply after the body         9     remote text         no BODY response
    idle (reused connection)     1     connection closed by remote host

The data model the domain queue builds on:
- `Transaction`: one envelope (mailfrom, up to max_recipients_per_batch recipients with
  their RFC 3461 `DsnParams`), the body loader, RET/ENVID, SMTPUTF8, 8-bit flag and the
  XCLIENT attributes of the original reception (`xclient_attrs()` builds them).
- `RecipientOutcome(rcpt, status, code, text, stage, bytes_sent)`, one per recipient, in
  the order of `Transaction.recipients`: status `delivered` (2xx after the body), `transient`
  (4xx, internal 4xx, timeouts, lost connections) or `permanent` (5xx). `text` is the reply
  as the mainlog logs it: the remote's lines exactly as received, joined by one space
  ("550-5.1.1 first 550 5.1.1 second"), or an internal text (`451 4.4.2 [internal] no
  banner`, MESSAGE_RESPONSES / MOMENTUM_DIGEST Appendix A). `stage` is the connection stage
  code of log_formats.connection.stages (0..22). `bytes_sent` counts the octets this
  transaction wrote (for the first transaction on a connection, the set-up included).

Choices where the RFCs or Momentum's pages leave room:
- Bodies are sent with CRLF line ends only: a bare CR or LF becomes CRLF (RFC 5321 2.3.8),
  then every line starting with "." gets another "." and CRLF.CRLF ends the data. So a
  stored body holding `\\n.\\n` can never end DATA early on a server that accepts bare LF
  (SMTP smuggling); a body that already uses CRLF arrives byte for byte (plus a final CRLF
  when it lacks one). BDAT (ClientOptions.chunking, off by default as in Momentum) sends
  the octets unchanged.
- RSET is sent only before a transaction that follows an unfinished one (Momentum's
  rset_timeout page: after a failure in the middle of a session), pipelined with MAIL.
- EHLO answered 5xx falls back to HELO (ESMTP only); a 421 anywhere closes the session
  and fails what is outstanding with that reply.
- SMTPUTF8 is required when an address is non-ASCII or the message was received with
  SMTPUTF8 and its header block holds 8-bit octets (Postfix's autodetection); without the
  extension such recipients fail permanently (`SMTPUTF8_NOT_OFFERED`).
- Read timeouts are `no <X> response`, an early close is `connection closed by remote
  host`, a write error is `send <X> failed`; the banner stage says `no banner` for all
  three. A reply that is not SMTP (no code, mixed codes, 1xx, over-long) fails the session
  with `invalid <X> response: "<excerpt>"` (ecmta wording) and closes it.
- Momentum lists certificate-check texts without an SMTP code; outcomes carry code 451
  and the text exactly as listed (`4.7.5 [internal] SSL certificate ...`).

Fails: never raises on server input (property-tested). Driver misuse (send_mail() during
set-up or after close, more recipients than max_recipients_per_batch, tls_started()
without UpgradeTLS) raises `SMTPClientError`. Memory: a reply line is capped at 8192
octets and a reply at 512 lines; more is a protocol error.
"""
from __future__ import annotations

import io
import quopri
import re
from collections import deque
from dataclasses import dataclass
from typing import Callable

from ecmta.transports.smtp_address import xtext_encode

# --- sentinels returned by next_event() ---------------------------------------------------


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA = _Sentinel("NEED_DATA")   # flush data_to_send(), then feed receive_data()
PAUSED = _Sentinel("PAUSED")         # the TLS handshake (UpgradeTLS) is outstanding
IDLE = _Sentinel("IDLE")             # flush; ready for send_mail() or quit()
CLOSED = _Sentinel("CLOSED")         # flush data_to_send() and close the socket

DELIVERED, TRANSIENT, PERMANENT = "delivered", "transient", "permanent"

# Connection stage codes (log_formats.connection.stages).
ST_NOT_CONNECTED, ST_IDLE, ST_MAIL, ST_AFTER_MAIL, ST_RCPT, ST_AFTER_RCPT = 0, 1, 2, 3, 4, 5
ST_DATA, ST_AFTER_DATA, ST_BODY, ST_CONFIRM, ST_EHLO, ST_AFTER_EHLO = 6, 7, 8, 9, 10, 11
ST_BANNER, ST_RSET, ST_AFTER_RSET, ST_STARTTLS, ST_AFTER_STARTTLS = 12, 13, 14, 15, 16
ST_TLS, ST_TLS_RENEGOTIATE, ST_XCLIENT, ST_AFTER_XCLIENT, ST_OOB, ST_UNKNOWN = \
    17, 18, 19, 20, 21, 22
STAGE_NAMES = (
    "while not connected", "while idle", "during MAIL FROM", "after MAIL FROM",
    "during RCPT TO", "after RCPT TO", "during DATA", "after DATA", "while sending BODY",
    "reading confirmation", "during EHLO", "after EHLO", "reading BANNER", "during RSET",
    "after RSET", "during STARTTLS", "after STARTTLS", "handshaking TLS",
    "renegotiating TLS", "during XCLIENT", "after XCLIENT", "out of band bounce",
    "in unknown state")

MAX_REPLY_LINE = 8192     # octets of one reply line (RFC 5321 says 512; be generous)
MAX_REPLY_LINES = 512
MAX_COMMAND = 2048        # MAIL/RCPT line with parameters, CRLF included


class SMTPClientError(RuntimeError):
    """The driver used the machine wrongly (a bug in the caller, never server input)."""


# --- the data model -----------------------------------------------------------------------


@dataclass(slots=True)
class Transaction:
    """One outbound SMTP transaction: an envelope and how to get its body.

    `recipients` is a list of (address, DsnParams or None), at most
    max_recipients_per_batch of them (the caller splits bigger batches). Addresses are
    `local@domain` in wire form, "" for the null sender. `body_loader()` returns the
    message bytes (CRLF line ends; the driver calls it once, after the session is up, and
    a failure or None fails every recipient with `550 5.3.0 [internal] message body
    missing`). `size` is the spool's size (informational: SIZE= uses the octets sent).
    `eight_bit` None = detect from the body. `ret`/`envid` are RFC 3461 per-message
    parameters, sent when the peer offers DSN. `smtputf8`: the message was received with
    SMTPUTF8. `xclient`: NAME/ADDR/PORT/HELO/PROTO(/LOGIN) of the original reception for
    `xclient = ifavailable|required` (see `xclient_attrs()`); None = nothing to send.
    """

    mailfrom: str
    recipients: list
    body_loader: Callable[[], bytes] | None = None
    size: int = 0
    eight_bit: bool | None = None
    ret: str | None = None
    envid: str | None = None
    smtputf8: bool = False
    xclient: dict | None = None

    @classmethod
    def for_messages(cls, msgs: list, body_loader: Callable[[], bytes],
                     **kw) -> "Transaction":
        """A transaction for message instances of one batch (actors.mail.MailMessage):
        the first instance gives the sender, RET/ENVID and the XCLIENT origin."""
        first = msgs[0]
        kw.setdefault("ret", first.dsn.ret)
        kw.setdefault("envid", first.dsn.envid)
        kw.setdefault("xclient", xclient_attrs(first))
        return cls(first.mailfrom, [(m.rcptto, m.dsn) for m in msgs], body_loader,
                   size=first.size, **kw)


def xclient_attrs(msg) -> dict:
    """XCLIENT attributes of a MailMessage's reception (Postfix XCLIENT_README names)."""
    ctx = msg.ctx_conn or {}
    attrs = {"NAME": ctx.get("rdns_name") or "[UNAVAILABLE]",
             "ADDR": msg.peer_ip or "[UNAVAILABLE]",
             "PORT": str(msg.peer_port) if msg.peer_port else "[UNAVAILABLE]",
             "HELO": ctx.get("ehlo_domain") or "[UNAVAILABLE]",
             "PROTO": "SMTP" if msg.protocol == "smtp" else "ESMTP"}
    if msg.auth_user:
        attrs["LOGIN"] = msg.auth_user
    return attrs


@dataclass(slots=True, frozen=True)
class RecipientOutcome:
    """What happened to one recipient of a transaction (see the module docstring)."""

    rcpt: str
    status: str          # DELIVERED | TRANSIENT | PERMANENT
    code: int            # the reply code (internal failures: the code of their text)
    text: str            # the reply as logged, code included
    stage: int           # connection stage code 0..22
    bytes_sent: int


@dataclass(slots=True, frozen=True)
class Failure:
    """A failure that applies to every recipient still outstanding."""

    status: str
    code: int
    text: str
    stage: int

    def outcome(self, rcpt: str, bytes_sent: int) -> RecipientOutcome:
        return RecipientOutcome(rcpt, self.status, self.code, self.text, self.stage,
                                bytes_sent)


def _internal(code: int, text: str, stage: int) -> Failure:
    return Failure(TRANSIENT if code < 500 else PERMANENT, code, text, stage)


def _status(code: int) -> str:
    return DELIVERED if code < 400 else TRANSIENT if code < 500 else PERMANENT


# Momentum's internal texts (message_responses); (ecmta) where Momentum documents none.
NO_BANNER = "451 4.4.2 [internal] no banner"
CONNECTION_CLOSED = "451 4.4.2 [internal] connection closed by remote host"
CONNECT_TIMED_OUT = "450 4.4.1 [internal] Connection Timed Out"
NO_VALID_HOSTS = "451 4.4.1 [internal] No valid hosts (unable to make any connections)"
TLS_FAILED = "451 4.7.5 [internal] TLS negotiation failed"
TLS_NO_GO_AHEAD = "451 4.7.5 [internal] no tls go-ahead"
TLS_SEND_FAILED = "451 4.7.5 [internal] send STARTTLS failed"
STARTTLS_NOT_OFFERED = "451 4.7.6 [internal] STARTTLS required but not advertised"
XCLIENT_NOT_OFFERED = "451 4.7.6 [internal] XCLIENT required but not advertised"
TLS_SUBJECT_MISMATCH = "4.7.5 [internal] SSL certificate subject does not match host"
TLS_NOT_CA_SIGNED = "4.7.5 [internal] remote node SSL certificate not signed by a valid CA"
BODY_MISSING = "550 5.3.0 [internal] message body missing"
MAIL_TOO_LONG = "451 4.4.2 [internal] MAIL FROM arguments too long"
RCPT_TOO_LONG = "451 4.4.2 [internal] RCPT TO arguments too long"
SMTPUTF8_NOT_OFFERED = "554 5.6.7 [internal] SMTPUTF8 required but not advertised"  # (ecmta)
EIGHTBIT_UNCONVERTIBLE = \
    "554 5.6.3 [internal] 8-bit content could not be converted to 7-bit"        # (ecmta)
UNKNOWN_STATE = "451 4.4.2 [internal] no response in unknown state"              # (ecmta)


def failure(text: str, stage: int) -> Failure:
    """A Failure from one of the texts above (451 for the code-less certificate texts)."""
    head = text[:3]
    return _internal(int(head) if head.isdigit() else 451, text, stage)


# --- events --------------------------------------------------------------------------------


class Event:
    __slots__ = ()


@dataclass(slots=True)
class UpgradeTLS(Event):
    """STARTTLS got 220: flush, do the handshake, then tls_started() or tls_failed().
    `discarded` counts plaintext octets the server sent after its 220; they were dropped
    so that nothing injected before the handshake is read as a reply after it."""

    discarded: int = 0


@dataclass(slots=True)
class TransactionDone(Event):
    """Every recipient of `transaction` has its outcome (in Transaction order)."""

    outcomes: list
    transaction: Transaction | None = None


@dataclass(slots=True)
class SessionFailed(Event):
    """The session died while no transaction was in progress (set-up or idle);
    the driver applies `failure` to the transaction it opened the connection for."""

    failure: Failure


# --- options -------------------------------------------------------------------------------


@dataclass(slots=True)
class ClientOptions:
    """What the machine takes from the config (binding/domain scopes, Momentum names)."""

    ehlo_hostname: str = "localhost"         # already resolved (__hostname__/__message__)
    delivery_method: str = "ESMTP"           # ESMTP | SMTP (plain HELO) | LMTP
    tls: str = "no"                          # no | ifavailable | required
    xclient: str = "no"                      # no | ifavailable | required
    send_8bitmime: str = "no"                # no | ifavailable (BODY=8BITMIME)
    transform_8bitmime_content: str = "ifneeded"  # no | ifneeded | strict | strip
    max_recipients_per_batch: int = 100      # 0 = unlimited
    pipelining: bool = True                  # use PIPELINING when offered
    chunking: bool = False                   # (ecmta) use BDAT when CHUNKING is offered


# --- body transforms (pure functions) ------------------------------------------------------


def dot_stuff(body: bytes) -> bytes:
    """DATA content for `body`: CRLF line ends only, leading dots doubled, CRLF.CRLF end."""
    if not body:
        return b".\r\n"
    # bytes methods, not a regex: this runs on the hub for every body (1 MB: ~1 ms, not ~14)
    if b"\r" not in body:
        body = body.replace(b"\n", b"\r\n")
    else:
        crlf = body.count(b"\r\n")
        if crlf != body.count(b"\n") or crlf != body.count(b"\r"):   # a bare CR or LF
            body = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if body[0] == 46:
        body = b"." + body
    if b"\r\n." in body:
        body = body.replace(b"\r\n.", b"\r\n..")
    if body.endswith(b"\r\n"):
        return body + b".\r\n"
    return body + b"\r\n.\r\n"


def header_block(body: bytes) -> bytes:
    """The header section of a message (up to the first empty line)."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = body.find(sep)
        if i >= 0:
            return body[:i]
    return body


_STRIP = bytes(b & 0x7F for b in range(256))


def downgrade_8bit(body: bytes, mode: str) -> bytes | None:
    """transform_8bitmime_content for a peer without 8BITMIME.

    `no`: as is. `strip`: clear the high bit of every octet. `ifneeded`: re-encode each
    8-bit 7bit/8bit MIME leaf part as quoted-printable (RFC 1652 3.) and send any 8-bit
    octets left (headers) as they are. `strict`: the same conversion, None when 8-bit
    octets remain (the caller fails the message permanently).
    """
    mode = (mode or "ifneeded").lower()
    if mode == "no":
        return body
    if mode == "strip":
        return body.translate(_STRIP)
    out = _to_quoted_printable(body)
    if mode == "strict" and not out.isascii():
        return None
    return out


def _to_quoted_printable(body: bytes) -> bytes:
    from email import policy
    from email.generator import BytesGenerator
    from email.parser import BytesParser

    pol = policy.compat32.clone(linesep="\r\n")
    msg = BytesParser(policy=pol).parsebytes(body)
    changed = False
    for part in msg.walk():
        if part.is_multipart():
            continue
        cte = str(part.get("Content-Transfer-Encoding", "7bit")).strip().lower()
        if cte not in ("7bit", "8bit", ""):
            continue
        data = part.get_payload(decode=True) or b""
        if data.isascii():
            continue
        encoded = quopri.encodestring(data).decode("ascii")
        part.set_payload(encoded)
        if "Content-Transfer-Encoding" in part:
            part.replace_header("Content-Transfer-Encoding", "quoted-printable")
        else:
            part["Content-Transfer-Encoding"] = "quoted-printable"
        changed = True
    if not changed:
        return body
    out = io.BytesIO()
    try:
        BytesGenerator(out, mangle_from_=False, maxheaderlen=0, policy=pol).flatten(msg)
    except (ValueError, LookupError):
        # A broken part the email package cannot write back (a multipart without a
        # boundary holding 8-bit text): the octets go as they are, as 8-bit headers do.
        return body
    return out.getvalue()


# --- expectations: what the next reply answers -----------------------------------------------

_BANNER, _HELLO, _STARTTLS, _XCLIENT, _RSET, _MAIL, _RCPT, _DATA, _BODY, _QUIT = range(10)

# kind -> (what, timeout class, stage while sending, stage while waiting)
_KINDS = {
    _BANNER: ("banner", "banner", ST_BANNER, ST_BANNER),
    _HELLO: ("HELO/EHLO", "ehlo", ST_EHLO, ST_EHLO),
    _STARTTLS: ("STARTTLS", "starttls", ST_STARTTLS, ST_STARTTLS),
    _XCLIENT: ("XCLIENT", "xclient", ST_XCLIENT, ST_XCLIENT),
    _RSET: ("RSET", "rset", ST_RSET, ST_RSET),
    _MAIL: ("MAIL FROM", "mailfrom", ST_MAIL, ST_MAIL),
    _RCPT: ("RCPT TO", "rcptto", ST_RCPT, ST_RCPT),
    _DATA: ("DATA", "data", ST_DATA, ST_DATA),
    _BODY: ("BODY", "body", ST_BODY, ST_CONFIRM),
    _QUIT: ("QUIT", "quit", ST_UNKNOWN, ST_UNKNOWN),
}


class _Txn:
    """A transaction in the machine: its outcomes so far and how many of its commands
    and replies are still outstanding (`inflight`; 0 = finished)."""

    __slots__ = ("t", "rcpts", "outcomes", "accepted", "mark", "end", "body", "payload",
                 "inflight")

    def __init__(self, t: Transaction, body: bytes, mark: int) -> None:
        self.t = t
        self.rcpts = [r[0] for r in t.recipients]
        self.outcomes: list = [None] * len(self.rcpts)
        self.accepted: list[int] = []
        self.mark = mark
        self.end = -1                      # bytes_out when its body was written
        self.body = body
        self.payload = b""                 # the DATA content, written after 354
        self.inflight = 0

    def sent(self, now: int) -> int:
        return (self.end if self.end >= 0 else now) - self.mark


class _Exp:
    """One reply we wait for: its kind, handler, the transaction it belongs to (None for
    session commands) and an argument (a recipient index, the HELO verb...)."""

    __slots__ = ("kind", "handler", "txn", "arg")

    def __init__(self, kind: int, handler: Callable, txn: _Txn | None, arg=None) -> None:
        self.kind = kind
        self.handler = handler
        self.txn = txn
        self.arg = arg


class _Step:
    """A command not written yet. `pipelinable`: may join a PIPELINING group; `barrier`:
    nothing may be written after it before its reply (DATA, EHLO, STARTTLS...);
    `payload`: DATA/BDAT, skipped when no recipient was accepted."""

    __slots__ = ("data", "exp", "pipelinable", "barrier", "payload")

    def __init__(self, data: bytes, exp: _Exp, pipelinable: bool, barrier: bool,
                 payload: bool = False) -> None:
        self.data = data
        self.exp = exp
        self.pipelinable = pipelinable
        self.barrier = barrier
        self.payload = payload


_SETUP, _TLS, _READY, _TXN, _QUITTING, _CLOSED = range(6)


def _sanitize(text: str, limit: int = 80) -> str:
    """A log-safe excerpt of hostile input: printable, without quotes, bounded."""
    return "".join(c if c.isprintable() and c != '"' else "?" for c in text[:limit])


# --- the machine ---------------------------------------------------------------------------


class SMTPClient:
    """One outbound SMTP/LMTP session. See the module docstring for the driver loop."""

    def __init__(self, opts: ClientOptions) -> None:
        self.opts = opts
        method = (opts.delivery_method or "ESMTP").upper()
        if method not in ("ESMTP", "SMTP", "LMTP"):
            raise SMTPClientError(f"delivery_method {opts.delivery_method!r} is not SMTP")
        self.lmtp = method == "LMTP"
        self._verb = "LHLO" if self.lmtp else "HELO" if method == "SMTP" else "EHLO"
        self.capabilities: dict[str, str] = {}
        self.size_limit = 0
        self.greeting = ""
        self.esmtp = False
        self.tls = False
        self.tls_info: dict | None = None
        self.tls_declined = False          # STARTTLS refused by the peer (ifavailable)
        self.bytes_out = 0
        self.transactions = 0
        self.closed_reason = ""            # the reply or internal text that ended it
        self._buf = bytearray()
        self._scanned = 0
        self._lines: list[bytes] = []
        self._eof = False
        self._send_failed = False
        self._out: list[bytes] = []
        self._events: deque = deque()
        self._expect: deque = deque()
        self._todo: deque = deque()
        self._last_barrier = True
        self._pipelining = False
        self._state = _SETUP
        self._txn: _Txn | None = None      # the transaction whose commands are being built
        self._active: deque = deque()      # started, not finished, in order
        self._queued: deque = deque()      # submitted, not started
        self._dirty = False                # a MAIL FROM is open on the server
        self._xclient_sent: str | None = None
        self._expect.append(_Exp(_BANNER, self._on_banner, None))

    # ----- public API -------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes from the socket; b"" means the server closed its side."""
        if self._state == _CLOSED:
            return
        if not data:
            self._eof = True
            return
        self._buf += data

    def data_to_send(self) -> bytes:
        """Everything queued for the server since the last call."""
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data

    def next_event(self):
        """The next Event, or NEED_DATA / PAUSED / IDLE / CLOSED."""
        events = self._events
        while True:
            if events:
                return events.popleft()
            st = self._state
            if st == _CLOSED:
                return CLOSED
            if st == _TLS:
                return PAUSED
            if self._step():
                continue
            if self._eof:
                self._on_eof()
                continue
            if st == _READY and not self._expect:
                return IDLE
            return NEED_DATA

    def send_mail(self, txn: Transaction, body: bytes) -> None:
        """Submit a transaction with its loaded body. When idle it starts at once; while
        transactions are in flight it queues, and with PIPELINING its envelope follows
        the previous body in the same write (RFC 2920 3.1). Each one ends with its own
        TransactionDone."""
        if self._state not in (_READY, _TXN):
            raise SMTPClientError("send_mail() while the session is not ready")
        limit = self.opts.max_recipients_per_batch
        if not txn.recipients:
            raise SMTPClientError("a transaction needs at least one recipient")
        if limit and len(txn.recipients) > limit:
            raise SMTPClientError(f"{len(txn.recipients)} recipients exceed "
                                  f"max_recipients_per_batch {limit}; split the batch")
        self._queued.append(_Txn(txn, body, -1))
        self._advance()

    def quit(self) -> None:
        """Say QUIT (when idle); CLOSED follows the reply, EOF or a timeout."""
        if self._state == _READY:
            self._state = _QUITTING
            self._write(b"QUIT\r\n")
            self._expect.append(_Exp(_QUIT, self._on_quit, None))
        elif self._state != _CLOSED:
            self._close()

    def tls_started(self, info: dict | None = None) -> None:
        """The handshake after UpgradeTLS succeeded: EHLO again (RFC 3207 4.2)."""
        if self._state != _TLS:
            raise SMTPClientError("tls_started() without a STARTTLS in progress")
        self.tls = True
        self.tls_info = info
        self._state = _SETUP
        self._forget_input()
        self._hello()

    def tls_failed(self, fail: Failure | None = None) -> None:
        """The handshake (or the certificate check) failed: the session ends."""
        if self._state != _TLS:
            raise SMTPClientError("tls_failed() without a STARTTLS in progress")
        self._fail_session(fail or failure(TLS_FAILED, ST_TLS), quit=False)

    def timed_out(self) -> None:
        """The reply the machine waits for did not come in time."""
        if self._state == _CLOSED:
            return
        if not self._expect:
            return self._close()
        self._fail_session(self._io_failure("no"), quit=False)

    def send_failed(self) -> None:
        """Writing failed. Feed any reply still readable first: it is processed before
        the failure (a server that refuses a body and closes gets its reply logged)."""
        self._send_failed = True
        self._eof = True

    @property
    def waiting_for(self) -> str:
        """The timeout class of the reply awaited: banner, ehlo, starttls, xclient, rset,
        mailfrom, rcptto, data, body, quit; "idle" when nothing is awaited."""
        if self._expect:
            return _KINDS[self._expect[0].kind][1]
        return "idle"

    @property
    def stage(self) -> int:
        """The connection stage code of the current state."""
        if self._expect:
            return _KINDS[self._expect[0].kind][3]
        return {_TLS: ST_TLS, _READY: ST_IDLE}.get(self._state, ST_UNKNOWN)

    @property
    def idle(self) -> bool:
        return self._state == _READY and not self._expect

    @property
    def closed(self) -> bool:
        return self._state == _CLOSED

    @property
    def pipelining(self) -> bool:
        return self.opts.pipelining and "PIPELINING" in self.capabilities

    # ----- plumbing ---------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        self._out.append(data)
        self.bytes_out += len(data)

    def _forget_input(self) -> int:
        n = len(self._buf)
        self._buf.clear()
        self._scanned = 0
        self._lines = []
        return n

    def _close(self) -> None:
        self._state = _CLOSED
        self._expect.clear()
        self._todo.clear()
        self._forget_input()

    def _queue(self, data: bytes, kind: int, handler: Callable, arg=None, *,
               txn: _Txn | None = None, pipelinable: bool = False, barrier: bool = True,
               payload: bool = False) -> None:
        if txn is not None:
            txn.inflight += 1
        self._todo.append(_Step(data, _Exp(kind, handler, txn, arg), pipelinable, barrier,
                                payload))

    def _expect_reply(self, kind: int, handler: Callable, txn: _Txn, arg=None) -> None:
        txn.inflight += 1
        self._expect.append(_Exp(kind, handler, txn, arg))

    def _emit(self) -> bool:
        """Write the queued commands the pipelining rules allow now, chaining queued
        transactions behind written bodies. True when a transaction ended here."""
        todo, expect = self._todo, self._expect
        while True:
            pipe = self._pipelining
            while todo:
                step = todo[0]
                if expect and not (pipe and step.pipelinable and not self._last_barrier):
                    return False
                todo.popleft()
                tx = step.exp.txn
                if step.payload and not pipe and not tx.accepted:
                    tx.inflight -= 1       # every RCPT failed: no DATA (RFC 5321 3.3)
                    if tx.inflight == 0:
                        self._complete(tx)
                        return True
                    continue
                self._write(step.data)
                expect.append(step.exp)
                self._last_barrier = step.barrier
                if step.payload and step.exp.kind == _BODY:    # BDAT LAST: the body is out
                    tx.end = self.bytes_out
            if not self._can_chain():
                return False
            self._start(self._queued.popleft(), chained=True)

    def _can_chain(self) -> bool:
        """RFC 2920 3.1: message content may open a group, so once the last body is
        written the next envelope may follow without waiting. The transaction ends with
        the body's reply whatever it says: no RSET is needed. Never with XCLIENT (it
        resets the session per message)."""
        return bool(self._queued) and self._pipelining and self._state == _TXN \
            and bool(self._active) and self._active[-1].end >= 0 and not self._todo \
            and (self.opts.xclient or "no").lower() == "no"

    def _discard_todo(self) -> None:
        for step in self._todo:
            if step.exp.txn is not None:
                step.exp.txn.inflight -= 1
        self._todo.clear()

    def _io_failure(self, how: str) -> Failure:
        """`no X response` / `send X failed` / `connection closed` for the awaited reply."""
        kind = self._expect[0].kind
        what, _, send_stage, wait_stage = _KINDS[kind]
        if kind == _BANNER:
            return failure(NO_BANNER, ST_BANNER)
        if how == "send":
            if kind == _STARTTLS:
                return failure(TLS_SEND_FAILED, send_stage)
            return failure(f"451 4.4.2 [internal] send {what} failed", send_stage)
        if how == "eof":
            return failure(CONNECTION_CLOSED, wait_stage)
        if kind == _STARTTLS:
            return failure(TLS_NO_GO_AHEAD, wait_stage)
        return failure(f"451 4.4.2 [internal] no {what} response", wait_stage)

    def _fail_session(self, fail: Failure, *, quit: bool) -> None:
        """End the session: every unfinished transaction (or the set-up) gets `fail`."""
        self.closed_reason = fail.text
        if self._active or self._queued:
            for tx in list(self._active) + list(self._queued):
                self._set_all(tx, fail)
                self._complete(tx)
            self._queued.clear()
        elif self._state in (_SETUP, _TLS, _READY):
            self._events.append(SessionFailed(fail))
        self._close()
        if quit:
            self._write(b"QUIT\r\n")     # polite, not awaited: the socket closes next

    def _on_eof(self) -> None:
        self._eof = False
        if self._state == _CLOSED:
            return
        if not self._expect:                       # idle: the server hung up
            self.closed_reason = self.closed_reason or CONNECTION_CLOSED
            return self._close()
        if self._expect[0].kind == _QUIT:
            return self._close()
        self._fail_session(self._io_failure("send" if self._send_failed else "eof"),
                           quit=False)

    # ----- reading replies ----------------------------------------------------------------

    def _step(self) -> bool:
        """Consume one reply from the input; False when none is complete."""
        if not self._buf:
            return False
        try:
            reply = self._take_reply()
        except _Garbage as bad:
            self._garbage(bad.excerpt)
            return True
        if reply is None:
            return False
        code, lines = reply
        if not self._expect:
            return self._unsolicited(code, lines)
        exp = self._expect.popleft()
        tx = exp.txn
        if tx is not None:
            tx.inflight -= 1
        exp.handler(exp, code, lines)
        if self._state != _CLOSED:
            if tx is not None and tx.inflight == 0 and tx in self._active:
                self._complete(tx)
            self._advance()
        return True

    def _take_reply(self):
        """(code, [lines]) of the next complete reply, None if incomplete."""
        buf = self._buf
        lines = self._lines
        while True:
            i = buf.find(b"\n", self._scanned)
            if i < 0:
                if len(buf) > MAX_REPLY_LINE + 1:      # + 1: the CR of a line at the cap
                    raise _Garbage(bytes(buf[:80]))
                self._scanned = len(buf)
                return None
            line = bytes(buf[:i])
            del buf[:i + 1]
            self._scanned = 0
            if line.endswith(b"\r"):
                line = line[:-1]
            n = len(line)
            if n > MAX_REPLY_LINE or n < 3 or not line[:3].isdigit() or line[0] not in b"2345" \
                    or (n > 3 and line[3] not in b" -") \
                    or (lines and line[:3] != lines[0][:3]):
                raise _Garbage(line)
            lines.append(line)
            if n == 3 or line[3] == 32:
                self._lines = []
                return int(line[:3]), lines
            if len(lines) >= MAX_REPLY_LINES:
                raise _Garbage(line)

    def _garbage(self, raw: bytes) -> None:
        excerpt = _sanitize(raw.decode("utf-8", "replace"))
        if not self._expect:
            self.closed_reason = f'451 4.4.2 [internal] invalid response: "{excerpt}"'
            if self._state == _READY:
                self._events.append(SessionFailed(failure(self.closed_reason, ST_IDLE)))
            return self._close()
        kind = self._expect[0].kind
        what, _, _, stage = _KINDS[kind]
        name = "banner" if kind == _BANNER else f"{what} response"
        text = f'451 4.4.2 [internal] invalid {name}: "{excerpt}"'
        self._fail_session(failure(text, stage), quit=False)

    def _unsolicited(self, code: int, lines: list) -> bool:
        """A reply nobody asked for (a 421 before an idle-timeout close, typically)."""
        self.closed_reason = _text(lines)
        if self._state == _READY:
            self._events.append(SessionFailed(_reply_failure(code, self.closed_reason,
                                                             ST_IDLE)))
        self._close()
        return True

    def _invalid(self, exp: _Exp, lines: list) -> None:
        what, _, _, stage = _KINDS[exp.kind]
        excerpt = _sanitize(_text(lines))
        self._fail_session(failure(f'451 4.4.2 [internal] invalid {what} response: '
                                   f'"{excerpt}"', stage), quit=False)

    # ----- session set-up -----------------------------------------------------------------

    def _on_banner(self, exp: _Exp, code: int, lines: list) -> None:
        text = _text(lines)
        self.greeting = text
        if code // 100 == 2:                       # 220; any 2xx, as Postfix accepts
            return self._hello()
        fail = _reply_failure(code, text, ST_BANNER)
        self._fail_session(fail, quit=code != 421)   # RFC 5321 3.1: QUIT after a 554

    def _hello(self, verb: str | None = None) -> None:
        verb = verb or self._verb
        host = "".join(c for c in self.opts.ehlo_hostname if " " < c <= "~") or "localhost"
        self.capabilities = {}
        self.size_limit = 0
        self._pipelining = False
        txn = self._txn if self._state == _TXN else None        # EHLO after XCLIENT
        self._queue(f"{verb} {host}\r\n".encode("ascii"), _HELLO, self._on_hello, verb,
                    txn=txn)
        self._emit()

    def _on_hello(self, exp: _Exp, code: int, lines: list) -> None:
        verb = exp.arg
        if code // 100 == 2:
            self.esmtp = verb != "HELO"
            if self.esmtp:
                self._parse_capabilities(lines[1:])
            self._pipelining = self.pipelining
            return self._after_hello()
        if code // 100 == 5 and verb == "EHLO":
            return self._hello("HELO")              # RFC 5321 3.2: fall back to HELO
        self._fail_session(_reply_failure(code, _text(lines), ST_EHLO), quit=code != 421)

    def _parse_capabilities(self, lines: list) -> None:
        caps = self.capabilities
        for raw in lines:
            words = raw[4:].decode("utf-8", "replace").split()
            if not words:
                continue                               # smtp-sink ends with "250 "
            kw = words[0].upper()
            if kw.startswith("AUTH="):
                words = ["AUTH", *words[0][5:].split(","), *words[1:]]
                kw = "AUTH"
            caps.setdefault(kw, " ".join(words[1:]))
        size = caps.get("SIZE", "")
        self.size_limit = int(size) if size.isdigit() and len(size) < 19 else 0

    def _after_hello(self) -> None:
        if self._state == _TXN:                        # EHLO after XCLIENT
            return self._txn_envelope(self._txn, self._dirty)
        mode = (self.opts.tls or "no").lower()
        if mode in ("ifavailable", "required") and not self.tls and not self.tls_declined:
            if "STARTTLS" in self.capabilities:
                self._queue(b"STARTTLS\r\n", _STARTTLS, self._on_starttls)
                return self._emit()
            if mode == "required":
                return self._fail_session(failure(STARTTLS_NOT_OFFERED, ST_AFTER_EHLO),
                                          quit=True)
        self._state = _READY

    def _on_starttls(self, exp: _Exp, code: int, lines: list) -> None:
        if code // 100 == 2:                       # 220 (RFC 3207); any 2xx, as Postfix
            self._state = _TLS
            # RFC 3207 / CVE-2011-0411 reversed: plaintext after the 220 is never a reply.
            self._events.append(UpgradeTLS(self._forget_input()))
            return
        if code == 421 or (self.opts.tls or "").lower() == "required":
            fail = (_reply_failure(code, _text(lines), ST_STARTTLS) if code == 421
                    else failure(TLS_NO_GO_AHEAD, ST_STARTTLS))
            return self._fail_session(fail, quit=code != 421)
        self.tls_declined = True                       # ifavailable: go on in clear
        self._state = _READY

    def _on_quit(self, exp: _Exp, code: int, lines: list) -> None:
        self._close()

    # ----- transactions ---------------------------------------------------------------------

    def _advance(self) -> None:
        """Start queued transactions once nothing is in flight (idle when none is left),
        then write what may be written."""
        while True:
            while not self._active and self._queued and self._state in (_READY, _TXN):
                self._start(self._queued.popleft())
            if not self._active and self._state == _TXN:
                self._state = _READY
            if not self._emit():
                return

    def _start(self, tx: _Txn, *, chained: bool = False) -> None:
        """Queue a transaction's first commands (the caller emits them)."""
        tx.mark = self.bytes_out if self.transactions else 0   # the first pays the set-up
        self.transactions += 1
        self._state = _TXN
        self._txn = tx
        self._active.append(tx)
        if chained:
            return self._txn_envelope(tx, rset=False)
        self._txn_start(tx)

    def _txn_start(self, tx: _Txn) -> None:
        """XCLIENT first when configured, then the envelope."""
        mode = (self.opts.xclient or "no").lower()
        t = tx.t
        if mode in ("ifavailable", "required"):
            if "XCLIENT" not in self.capabilities:
                if mode == "required":
                    return self._fail_all(tx, failure(XCLIENT_NOT_OFFERED, ST_AFTER_EHLO))
            elif t.xclient:
                line = self._xclient_line(t.xclient)
                if line and line != self._xclient_sent:
                    if self._dirty:                    # XCLIENT is refused inside MAIL
                        self._queue(b"RSET\r\n", _RSET, self._on_rset, txn=tx)
                    return self._queue(line.encode("ascii"), _XCLIENT, self._on_xclient,
                                       line, txn=tx)
        self._txn_envelope(tx, self._dirty)

    def _xclient_line(self, attrs: dict) -> str:
        offered = set(self.capabilities.get("XCLIENT", "").upper().split())
        parts = []
        for name, value in attrs.items():
            name = name.upper()
            if name not in offered or value is None:
                continue
            value = str(value)
            if name == "ADDR" and ":" in value and not value.upper().startswith("IPV6:"):
                value = "IPV6:" + value
            if value not in ("[UNAVAILABLE]", "[TEMPUNAVAIL]"):
                value = xtext_encode(value)
            parts.append(f"{name}={value}")
        return f"XCLIENT {' '.join(parts)}\r\n" if parts else ""

    def _on_xclient(self, exp: _Exp, code: int, lines: list) -> None:
        tx = exp.txn
        if code // 100 == 2:
            self._xclient_sent = exp.arg
            self._dirty = False                    # XCLIENT resets the session
            return self._hello()                    # Postfix: greet again after XCLIENT
        text = _text(lines)
        if code == 421:
            return self._fail_session(_reply_failure(code, text, ST_XCLIENT), quit=False)
        if (self.opts.xclient or "").lower() == "required":
            return self._set_all(tx, Failure(TRANSIENT, code, text, ST_XCLIENT))
        self._txn_envelope(tx, self._dirty)        # ifavailable: send without XCLIENT

    def _txn_envelope(self, tx: _Txn, rset: bool) -> None:
        """Checks that need the peer's extensions, then MAIL, RCPTs and DATA/BDAT."""
        t = tx.t
        caps = self.capabilities
        body = tx.body
        utf8 = "SMTPUTF8" in caps
        need_utf8 = not t.mailfrom.isascii() or \
            (t.smtputf8 and not header_block(body).isascii())
        if need_utf8 and not utf8:
            return self._fail_all(tx, failure(SMTPUTF8_NOT_OFFERED, ST_AFTER_EHLO))
        eight = t.eight_bit if t.eight_bit is not None else not body.isascii()
        params = ""
        if eight:
            if "8BITMIME" in caps:
                if (self.opts.send_8bitmime or "").lower() == "ifavailable":
                    params += " BODY=8BITMIME"
            else:
                body = downgrade_8bit(body, self.opts.transform_8bitmime_content)
                if body is None:
                    return self._fail_all(tx, failure(EIGHTBIT_UNCONVERTIBLE, ST_AFTER_EHLO))
        tx.body = b""                                  # keep one copy only: the payload
        bdat = self.opts.chunking and "CHUNKING" in caps
        if "SIZE" in caps:
            params = f" SIZE={len(body)}" + params
        dsn = "DSN" in caps
        if dsn and t.ret:
            params += f" RET={t.ret.upper()}"
        if dsn and t.envid:
            params += f" ENVID={xtext_encode(t.envid)}"
        if utf8 and (need_utf8 or not all(r.isascii() for r in tx.rcpts)):
            params += " SMTPUTF8"
        mail = f"MAIL FROM:<{t.mailfrom}>{params}\r\n"
        if len(mail) > MAX_COMMAND or not _clean(t.mailfrom):
            return self._fail_all(tx, failure(MAIL_TOO_LONG, ST_MAIL))
        rcpt_lines = self._rcpt_lines(tx, dsn, utf8)
        if not rcpt_lines:                     # every recipient already has its outcome
            return self._fail_all(tx, failure(UNKNOWN_STATE, ST_UNKNOWN))
        if rset:
            self._queue(b"RSET\r\n", _RSET, self._on_rset, txn=tx, pipelinable=True,
                        barrier=False)
        self._queue(mail.encode("utf-8"), _MAIL, self._on_mail, txn=tx, pipelinable=True,
                    barrier=False)
        for i, line in rcpt_lines:
            self._queue(line, _RCPT, self._on_rcpt, i, txn=tx, pipelinable=True,
                        barrier=False)
        if bdat:
            # The chunk goes with the envelope; the transaction ends with its reply.
            self._queue(b"BDAT %d LAST\r\n" % len(body) + body, _BODY, self._on_bdat,
                        txn=tx, pipelinable=True, barrier=False, payload=True)
        else:
            tx.payload = dot_stuff(body)
            self._queue(b"DATA\r\n", _DATA, self._on_data, txn=tx, pipelinable=True,
                        barrier=True, payload=True)

    def _rcpt_lines(self, tx: _Txn, dsn: bool, utf8: bool) -> list:
        out = []
        for i, (addr, params) in enumerate(tx.t.recipients):
            if not addr.isascii() and not utf8:
                tx.outcomes[i] = failure(SMTPUTF8_NOT_OFFERED, ST_AFTER_EHLO).outcome(addr, 0)
                continue
            extra = ""
            if dsn and params is not None:
                if params.notify:
                    extra += " NOTIFY=" + ",".join(params.notify)
                if params.orcpt:
                    kind, _, value = params.orcpt.partition(";")
                    if value:
                        extra += f" ORCPT={kind or 'rfc822'};{xtext_encode(value)}"
            line = f"RCPT TO:<{addr}>{extra}\r\n"
            if len(line) > MAX_COMMAND or not _clean(addr):
                tx.outcomes[i] = failure(RCPT_TOO_LONG, ST_RCPT).outcome(addr, 0)
                continue
            out.append((i, line.encode("utf-8")))
        return out

    def _on_rset(self, exp: _Exp, code: int, lines: list) -> None:
        if code // 100 == 2:
            self._dirty = False
            return
        # The server's transaction state is unknown: give up on this connection.
        self._fail_session(Failure(TRANSIENT, code, _text(lines), ST_RSET), quit=code != 421)

    def _on_mail(self, exp: _Exp, code: int, lines: list) -> None:
        if code // 100 == 2:
            self._dirty = True
            return
        if code == 421:
            return self._fail_session(_reply_failure(code, _text(lines), ST_MAIL), quit=False)
        if code // 100 == 3:
            return self._invalid(exp, lines)
        self._set_all(exp.txn, _reply_failure(code, _text(lines), ST_MAIL))
        if not self._pipelining:
            self._discard_todo()

    def _on_rcpt(self, exp: _Exp, code: int, lines: list) -> None:
        tx = exp.txn
        i = exp.arg
        if tx.outcomes[i] is not None:
            return                                  # MAIL failed: the reply is moot
        if code // 100 == 2:
            tx.accepted.append(i)
            return
        if code == 421:
            return self._fail_session(_reply_failure(code, _text(lines), ST_RCPT), quit=False)
        if code // 100 == 3:
            return self._invalid(exp, lines)
        tx.outcomes[i] = _reply_failure(code, _text(lines), ST_RCPT).outcome(
            tx.rcpts[i], tx.sent(self.bytes_out))

    def _on_data(self, exp: _Exp, code: int, lines: list) -> None:
        tx = exp.txn
        if code == 354:
            if not tx.accepted:
                # RFC 2920 3.1: a 354 with no valid recipient gets an empty message.
                self._write(b".\r\n")
                self._expect_reply(_BODY, self._on_moot, tx)
                return
            self._write(tx.payload)
            tx.payload = b""
            tx.end = self.bytes_out
            for i in (tx.accepted if self.lmtp else (None,)):
                self._expect_reply(_BODY, self._on_confirm, tx, i)
            self._last_barrier = False             # the body may open the next group
            return
        if code == 421:
            return self._fail_session(_reply_failure(code, _text(lines), ST_DATA), quit=False)
        if code // 100 not in (4, 5):
            return self._invalid(exp, lines)
        fail = _reply_failure(code, _text(lines), ST_DATA)
        for i in tx.accepted:
            tx.outcomes[i] = fail.outcome(tx.rcpts[i], tx.sent(self.bytes_out))

    def _on_bdat(self, exp: _Exp, code: int, lines: list) -> None:
        """The reply to BDAT LAST: the confirmation (LMTP: the first recipient's)."""
        tx = exp.txn
        if not tx.accepted:
            if code // 100 == 2:
                self._dirty = False
            return
        if self.lmtp:
            # RFC 2033 4.2: the other recipients' replies come next, ahead of the replies to
            # anything pipelined behind the chunk (a chained transaction's envelope).
            for i in reversed(tx.accepted[1:]):
                tx.inflight += 1
                self._expect.appendleft(_Exp(_BODY, self._on_confirm, tx, i))
            exp.arg = tx.accepted[0]
        self._on_confirm(exp, code, lines)

    def _on_confirm(self, exp: _Exp, code: int, lines: list) -> None:
        tx = exp.txn
        if code // 100 == 3:
            return self._invalid(exp, lines)
        self._dirty = False
        fail = Failure(_status(code), code, _text(lines), ST_CONFIRM)
        n = tx.sent(self.bytes_out)
        for i in (tx.accepted if exp.arg is None else (exp.arg,)):
            tx.outcomes[i] = fail.outcome(tx.rcpts[i], n)
        if code == 421:
            self._fail_session(fail, quit=False)

    def _on_moot(self, exp: _Exp, code: int, lines: list) -> None:
        self._dirty = False

    def _set_all(self, tx: _Txn, fail: Failure) -> None:
        n = tx.sent(self.bytes_out) if tx.mark >= 0 else 0
        for i, o in enumerate(tx.outcomes):
            if o is None:
                tx.outcomes[i] = fail.outcome(tx.rcpts[i], n)

    def _fail_all(self, tx: _Txn, fail: Failure) -> None:
        """Fail what is left of a transaction before its envelope went out."""
        self._set_all(tx, fail)
        if tx.inflight == 0:
            self._complete(tx)

    def _complete(self, tx: _Txn) -> None:
        self._set_all(tx, failure(UNKNOWN_STATE, ST_UNKNOWN))   # defensive: never happens
        try:
            self._active.remove(tx)
        except ValueError:
            pass
        if self._txn is tx:
            self._txn = None
        tx.body = tx.payload = b""
        self._events.append(TransactionDone(tx.outcomes, tx.t))


class _Garbage(Exception):
    def __init__(self, raw: bytes) -> None:
        super().__init__("invalid reply")
        self.excerpt = raw


def _text(lines: list) -> str:
    """A reply as Momentum logs it: the lines as received, joined by one space."""
    if len(lines) == 1:
        return lines[0].decode("utf-8", "replace")
    return " ".join(ln.decode("utf-8", "replace") for ln in lines)


def _reply_failure(code: int, text: str, stage: int) -> Failure:
    return Failure(PERMANENT if code >= 500 else TRANSIENT, code, text, stage)


_BAD_ADDR = re.compile(r"[\x00-\x20<>\x7f]")


def _clean(addr: str) -> bool:
    """No character that could end or split the command line (defence in depth: the
    spool holds validated addresses)."""
    return _BAD_ADDR.search(addr) is None or (
        addr.startswith('"') and not re.search(r"[\x00-\x1f\x7f]", addr))


__all__ = [
    "NEED_DATA", "PAUSED", "IDLE", "CLOSED", "DELIVERED", "TRANSIENT", "PERMANENT",
    "STAGE_NAMES", "SMTPClient", "SMTPClientError", "ClientOptions", "Transaction",
    "RecipientOutcome", "Failure", "UpgradeTLS", "TransactionDone", "SessionFailed",
    "dot_stuff", "downgrade_8bit", "header_block", "xclient_attrs", "failure",
]
