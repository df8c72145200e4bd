"""Sans-IO ESMTP server: the inbound SMTP state machine, Momentum (ecelerity) compatible.

Owns: the SMTP command grammar and sequencing (RFC 5321), PIPELINING (2920), SIZE (1870),
8BITMIME, CHUNKING/BDAT and BINARYMIME (3030), DSN parameters (3461), SMTPUTF8 (6531),
AUTH PLAIN/LOGIN/CRAM-MD5 exchanges (4954), STARTTLS and its injection policy (3207,
CVE-2011-0411), Postfix XCLIENT, Momentum's XREMOTEIP / XSETCONTEXT / XDUMPCONTEXT, the
line and path limits, the DATA transparency rules and the rfc2822 body checks Momentum makes
while receiving (lone CR/LF, line length).

No sockets, clocks-as-timeouts, config or policy here. A session driver owns the socket,
the validation phases (Lua, possibly suspended for a long time) and the spool; it talks to
the machine h11-style:

    srv = SMTPServer(opts, peer=("192.0.2.1", 4711), local=("198.51.100.2", 25))
    while True:
        ev = srv.next_event()
        if ev is NEED_DATA:
            sock.sendall(srv.data_to_send()); srv.receive_data(sock.recv(65536))
        elif ev is CLOSED:
            sock.sendall(srv.data_to_send()); sock.close(); break
        elif isinstance(ev, Decision):
            srv.respond(policy(ev))          # None = ev.default; close=True = disconnect
        elif isinstance(ev, UpgradeTLS):
            sock.sendall(srv.data_to_send()); sock = wrap(sock); srv.tls_started(info)
        else: ...                            # DataChunk -> spool, ProtocolError -> rejectlog

Replies accumulate in an output buffer and are written when the driver flushes, i.e. when
the machine needs more input: the replies of a pipelined group leave together (RFC 2920)
and a pipelined session produces byte-for-byte the replies of the same commands sent one
at a time. Every input the machine refuses by itself is reported as a `ProtocolError`
(reply already queued) so the driver can write its rejectlog line; decisions carry the
Momentum state label (`P="awaiting mailfrom"`) for the same purpose.

Fails: never raises on client input (property-tested over random byte streams). Driver
misuse (respond() with nothing pending, tls_started() outside a STARTTLS) raises
`SMTPServerError`. Memory: input is consumed as it arrives; an unterminated command line
is dropped once it exceeds 12288 octets (the RFC 4954 AUTH limit) and refused with
`500 5.5.2 line too long` when its CRLF finally arrives; DATA/BDAT bodies stream out as
`DataChunk`s and at most 4 octets of a possible end marker stay buffered.

Choices where the RFCs leave room (each also in the docs of the option concerned):
- Only CRLF ends a line. A command line holding a bare CR or LF is refused with
  `500 5.5.2 bare CR or LF in command; lines must end with CRLF` (RFC 5321 2.3.8); inside
  DATA only <CRLF>.<CRLF> ends the message, so `\\n.\\n`, `\\r.\\r`, `\\r\\n.\\n`, `\\n.\\r\\n`
  stay data (SMTP smuggling defence); dot-unstuffing applies after CRLF only.
- Trailing whitespace after a MAIL/RCPT command is refused unless
  rfc2821_allow_whitespace_in_envelope; on other commands it is ignored.
- `MAIL FROM: <a@b>` (space after the colon) and addresses without angle brackets are accepted.
- A BDAT with an unparseable size is answered `501 5.5.4 Syntax: BDAT count [LAST]` and
  the connection closed: the chunk boundary is unknown, so nothing after it can be trusted.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import secrets
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, NamedTuple

from ecmta.transports import smtp_replies as R
from ecmta.transports.smtp_address import (
    E_IP_LITERAL, E_UTF8, Address, AddressError, parse_path, xtext_decode)
from ecmta.transports.smtp_replies import Reply

# --- sentinels returned by next_event() ---------------------------------------------------


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA = _Sentinel("NEED_DATA")   # flush data_to_send(), then feed receive_data()
PAUSED = _Sentinel("PAUSED")         # a decision (or the TLS handshake) is outstanding
CLOSED = _Sentinel("CLOSED")         # flush data_to_send() and close the socket

# Momentum rejectlog phase labels (P="..."). Only "awaiting mailfrom" is documented
# (log_formats.rejectlog); the others follow the same pattern.
S_CONNECT = "connect"
S_EHLO = "awaiting ehlo"
S_MAIL = "awaiting mailfrom"
S_RCPT = "awaiting rcptto"
S_DATA = "awaiting data"
S_BODY = "data"
S_AUTH = "auth"
S_TLS = "starttls"
S_CLOSED = "closed"

MAX_LINE = 12288          # hard cap on any line we buffer (RFC 4954 AUTH lines)
CMD_LINE = 512            # RFC 5321 4.5.3.1.4, CRLF included
ENVELOPE_LINE = 2048      # MAIL/RCPT + RFC 1870/3461/4954/6531 parameter headroom
SASL_MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5")
XCLIENT_ATTRS = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "LOGIN", "DESTADDR", "DESTPORT")
DEFAULT_EXTENSIONS = ("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES")


class SMTPServerError(RuntimeError):
    """The driver used the machine wrongly (a bug in the driver, never client input)."""


# --- options -------------------------------------------------------------------------------


@dataclass(slots=True)
class ServerOptions:
    """What the session driver takes from the config (listener/peer/pathway scopes).

    Names and defaults follow Momentum's options of the same name (momentum-docs/conf.ref.*).
    `smtp_extensions` is SMTP_Extensions: EHLO keywords, with "AUTH LOGIN PLAIN" style
    entries; ecmta also understands SIZE, DSN, CHUNKING, BINARYMIME and SMTPUTF8.
    """

    hostname: str = "localhost"
    banner: str = ""                       # text after "220 "; "" = "<hostname> ESMTP ecelerity"
    smtp_extensions: tuple[str, ...] = DEFAULT_EXTENSIONS
    max_message_size: int = 0              # octets, 0 = unlimited (SIZE, DATA, BDAT)
    max_recipients_per_message: int = 0    # 0 = unlimited
    max_recipients_per_connection: int = 0
    max_receptions_per_connection: int = 0  # messages per connection, 0 = unlimited
    require_ehlo: bool = False
    allow_null_envelope_sender: bool = True
    allow_ip_literal: bool = True
    allow_trailing_whitespace_in_commands: bool = False  # "< user@x >"
    rfc2821_allow_whitespace_in_envelope: bool = False   # "MAIL FROM:<a@b>  " + CRLF
    rfc2821_pedantic_address_rules: bool = True          # False allows a..b@x, ab.@x
    rfc2822_lone_lf_in_headers: str = "pedantic"         # pedantic | fix
    rfc2822_lone_lf_in_body: str = "ignore"              # ignore | pedantic | fix
    rfc2822_max_line_length: str | int = "ignore"        # ignore | pedantic | fix | <octets>
    rfc2822_max_line_length_policy: str = "none"         # none | fix | reject
    domain_for_unqualified_sender_address: str = ""
    domain_for_unqualified_recipient_addresses: str = ""
    starttls_injection_policy: str = "reject"            # reject | ignore | allow
    tls_available: bool = False            # a certificate is configured: STARTTLS can work
    use_ssl: bool = False                  # implicit TLS listener: the session starts in TLS
    auth_requires_tls: bool = False        # hide AUTH (538) until TLS is up
    auth_required: bool = False            # MAIL FROM needs a successful AUTH (530)
    reconfig_message: str = R.RECONFIG     # Reconfig_Message: text of the 421


# --- events --------------------------------------------------------------------------------


class Event:
    """Base of everything next_event() returns besides the sentinels."""

    __slots__ = ()


@dataclass(slots=True, kw_only=True)
class Decision(Event):
    """An event the driver must answer with respond(); `default` is what Momentum says
    when policy does nothing. `state` is the rejectlog phase label at the command."""

    state: str
    default: Reply


@dataclass(slots=True, kw_only=True)
class Connect(Decision):
    """The banner. Answer 220 (default), 554 (refuse: everything but QUIT then gets 503)
    or 421 (closes). `capabilities` is srv.capabilities: edit it to add/remove EHLO keywords."""

    peer: tuple
    local: tuple
    tls: bool
    capabilities: list


@dataclass(slots=True, kw_only=True)
class Helo(Decision):
    """HELO/EHLO. On 2xx the machine writes the reply: the first line is the reply text,
    then (EHLO) the advertised `capabilities`, which policy may edit before answering."""

    verb: str
    domain: str
    raw: str
    capabilities: list


@dataclass(slots=True, kw_only=True)
class AuthAttempt(Decision):
    """A completed SASL exchange. Check the credentials and answer 235 (R.AUTH_OK) to log
    the client in; the default is 535 5.7.8. CRAM-MD5 gives `challenge` and `response`
    (hex digest, see cram_md5_ok()) instead of `password`."""

    mechanism: str
    authcid: str
    authzid: str = ""
    password: str | None = None
    challenge: str = ""
    response: str = ""


@dataclass(slots=True)
class MailParams:
    """MAIL FROM parameters, validated and decoded (xtext undone)."""

    size: int | None = None
    body: str | None = None        # 7BIT | 8BITMIME | BINARYMIME
    ret: str | None = None         # FULL | HDRS
    envid: str | None = None
    smtputf8: bool = False
    auth: str | None = None        # the AUTH= mailbox, "<>" when given as such


@dataclass(slots=True, kw_only=True)
class MailFrom(Decision):
    """MAIL FROM. `address` as sent; `qualified` after domain_for_unqualified_sender_address
    (the same object when nothing was rewritten); `raw` is the command line
    (vctx mailfrom_string). A 2xx answer opens the transaction."""

    address: Address
    qualified: Address
    raw: str
    params: MailParams


@dataclass(slots=True, kw_only=True)
class RcptTo(Decision):
    """RCPT TO. `qualified` applies domain_for_unqualified_recipient_addresses (and
    `<postmaster>` -> postmaster@hostname). `notify` is None or a tuple of NEVER /
    SUCCESS / FAILURE / DELAY; `orcpt` is None or (addr-type, decoded address).
    A 2xx answer counts the recipient against the limits."""

    address: Address
    qualified: Address
    raw: str
    notify: tuple | None = None
    orcpt: tuple | None = None


@dataclass(slots=True, kw_only=True)
class DataStart(Decision):
    """DATA with a valid transaction. 354 (default) starts the body: DataChunk events
    follow, then DataEnd or BodyAborted. Any other code refuses DATA, the transaction stays."""


@dataclass(slots=True)
class BodyFacts:
    """What the rfc2822 checks and the spool need to know about a received body."""

    size: int = 0                  # octets handed out in DataChunks (after fixes)
    received: int = 0              # octets received (after dot-unstuffing, before fixes)
    body_offset: int = -1          # offset of the first body octet; == size if no blank line
    headers_terminated: bool = False
    lone_cr_lf_in_headers: int = 0
    lone_cr_lf_in_body: int = 0
    fixed_lone_cr_lf: bool = False  # rfc2822_lone_lf_in_* = fix changed something
    eight_bit: bool = False
    max_header_line: int = -1      # -1 = not measured (rfc2822_max_line_length ignored)
    max_body_line: int = -1
    broke_long_lines: bool = False
    binary: bool = False           # BODY=BINARYMIME: no line checks were made
    bdat: bool = False


@dataclass(slots=True, kw_only=True)
class DataEnd(Decision):
    """End of a message (DATA's <CRLF>.<CRLF> or BDAT LAST) that passed the machine's own
    checks. Run the data phases, spool, answer (default 250 2.0.0 OK; add the queue id).
    The transaction is over whatever the answer."""

    facts: BodyFacts


@dataclass(slots=True, kw_only=True)
class StartTLS(Decision):
    """STARTTLS. Answer 220 (default) to go on: an UpgradeTLS event follows."""


@dataclass(slots=True, kw_only=True)
class XClient(Decision):
    """XCLIENT (Postfix). `attrs` maps NAME/ADDR/PORT/PROTO/HELO/LOGIN/DESTADDR/DESTPORT
    to decoded values. A 2xx/220 answer (default: the banner) applies ADDR/PORT to
    srv.peer, LOGIN to srv.auth, and resets the session as if the client had just connected."""

    attrs: dict


@dataclass(slots=True, kw_only=True)
class XRemoteIP(Decision):
    """XREMOTEIP <ip> (validated). A 2xx answer changes srv.peer's address."""

    addr: str


@dataclass(slots=True, kw_only=True)
class XSetContext(Decision):
    """XSETCONTEXT name=value... (values xtext-decoded) for the connection vctx."""

    pairs: dict


@dataclass(slots=True, kw_only=True)
class XDumpContext(Decision):
    """XDUMPCONTEXT: answer with the context dump as a multi-line 250 (see default)."""


@dataclass(slots=True, kw_only=True)
class Rset(Decision):
    """RSET (the transaction is already reset when this arrives)."""


@dataclass(slots=True, kw_only=True)
class Noop(Decision):
    arg: str = ""


@dataclass(slots=True, kw_only=True)
class Quit(Decision):
    """QUIT: whatever the answer, the connection closes after it."""


@dataclass(slots=True, kw_only=True)
class Vrfy(Decision):
    arg: str = ""


@dataclass(slots=True, kw_only=True)
class Expn(Decision):
    arg: str = ""


@dataclass(slots=True, kw_only=True)
class Help(Decision):
    arg: str = ""


@dataclass(slots=True)
class DataChunk(Event):
    """Body octets, dot-unstuffed, CRLF preserved (and fixed per rfc2822_lone_lf_*)."""

    data: bytes


@dataclass(slots=True)
class BdatChunk(Event):
    """A BDAT command was accepted: `size` octets follow as DataChunks. `first` opens the
    body; non-LAST chunks are acknowledged by the machine, LAST ends with DataEnd."""

    size: int
    last: bool
    first: bool


@dataclass(slots=True)
class BodyAborted(Event):
    """A body that was streaming (DataChunks sent) will not complete: discard it.
    Follows the ProtocolError that caused it, or an RSET/EHLO/close mid-BDAT."""

    state: str
    reason: str


@dataclass(slots=True)
class ProtocolError(Event):
    """The machine refused input by itself; `reply` is already queued. For the rejectlog:
    `state` (P=), `reply.code` (E=), `command` (verb or ""), `line` (the input, cut).
    `close`: the connection closes after this reply."""

    reply: Reply
    state: str
    command: str
    line: str
    close: bool = False


@dataclass(slots=True)
class EarlyTalker(Event):
    """The client sent data before the banner (ctx early_talker = "yes")."""

    nbytes: int


@dataclass(slots=True)
class StartTLSInjection(Event):
    """Data was pipelined after STARTTLS (CVE-2011-0411), handled per `policy`:
    reject (a ProtocolError and close follow), ignore (discarded), allow (kept)."""

    policy: str
    nbytes: int
    sample: bytes
    state: str


@dataclass(slots=True)
class UpgradeTLS(Event):
    """220 to STARTTLS is queued: flush, do the handshake, then call tls_started()."""


@dataclass(slots=True)
class ClientClosed(Event):
    """The client closed its side (receive_data(b"")). CLOSED follows."""

    state: str
    in_transaction: bool
    unprocessed: int


@dataclass(slots=True, frozen=True)
class AuthInfo:
    mechanism: str
    authcid: str
    authzid: str = ""


def cram_md5_ok(secret: str | bytes, challenge: str, response: str) -> bool:
    """Check a CRAM-MD5 AuthAttempt against the clear-text password (RFC 2195)."""
    key = secret.encode() if isinstance(secret, str) else secret
    want = hmac.new(key, challenge.encode(), "md5").hexdigest()
    return hmac.compare_digest(want, response.lower())


# --- the command table ---------------------------------------------------------------------


class _Cmd(NamedTuple):
    verb: str
    syntax: str          # HELP text
    ext: str | None      # EHLO keyword that must be enabled, None = core command
    max_len: int         # longest line, CRLF included
    fn: Callable


_COMMANDS: dict[str, _Cmd] = {}


def command(verb: str, syntax: str, *, ext: str | None = None, max_len: int = CMD_LINE):
    """Register `smtp_<VERB>(self, arg, line)` in the dispatch table with its help text."""
    def deco(fn):
        _COMMANDS[verb] = _Cmd(verb, syntax, ext, max_len, fn)
        return fn
    return deco


_CMD, _SASL, _DATA, _BDAT, _TLS, _CLOSED = range(6)
_TOO_LONG = object()
_IGNORE, _FIX, _REJECT = 0, 1, 2


def _line_policy(opts: ServerOptions) -> tuple[int, int]:
    """(limit, action) from rfc2822_max_line_length and its _policy."""
    v, pol = opts.rfc2822_max_line_length, opts.rfc2822_max_line_length_policy
    act = {"fix": _FIX, "reject": _REJECT}.get(str(pol).lower(), _IGNORE)
    if isinstance(v, int) or str(v).isdigit():
        return int(v), act
    v = str(v).lower()
    if v == "pedantic":
        return 998, _REJECT
    if v == "fix":
        return 998, _FIX
    return 998, act


def _cut(line: str) -> str:
    """The input as logged: at most 512 characters, always valid UTF-8."""
    if len(line) > CMD_LINE:
        line = line[:CMD_LINE] + "..."
    if not line.isascii():
        line = line.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return line


_CAPS_CACHE: dict[tuple, tuple] = {}   # capability list -> (index, AUTH mechanisms, ESC on)
_EHLO_CACHE: dict[tuple, list] = {}    # (list, TLS state, ...) -> EHLO reply lines


def _index_caps(entries: tuple) -> tuple[dict, list, bool]:
    cap: dict[str, str] = {}
    mechs: list[str] = []
    for entry in entries:
        words = entry.split()
        if not words:
            continue
        kw = words[0].upper()
        if kw.startswith("AUTH="):
            words = ["AUTH", *words[0][5:].split(","), *words[1:]]
            kw = "AUTH"
        if kw == "ENHANCEDSTATUSCODE":   # the docs spell it both ways
            kw = "ENHANCEDSTATUSCODES"
        if kw == "AUTH":
            mechs += [m.upper() for m in words[1:]
                      if m.upper() in SASL_MECHANISMS and m.upper() not in mechs]
        cap.setdefault(kw, entry)
    return cap, mechs, "ENHANCEDSTATUSCODES" in cap


# --- the machine ---------------------------------------------------------------------------


class SMTPServer:
    """One inbound SMTP session. See the module docstring for the driver loop."""

    def __init__(self, opts: ServerOptions, peer: tuple = ("", 0), local: tuple = ("", 0),
                 *, tls_info: dict | None = None) -> None:
        self.opts = opts
        self.peer = peer
        self.local = local
        self.tls = bool(opts.use_ssl)
        self.tls_info = tls_info
        self.capabilities: list[str] = list(opts.smtp_extensions)
        self.helo: str | None = None
        self.esmtp = False
        self.auth: AuthInfo | None = None
        self.xclient: dict = {}
        self.early_talker = False
        self.reconfig_pending = False       # set by the driver after `config reload`
        self.messages_received = 0
        self.connection_rcpt_count = 0
        self.bad_commands = 0               # conntrol_bad_commands
        self.unrecognized_commands = 0      # conntrol_unrecognized_commands
        self._line_limit, self._line_action = _line_policy(opts)
        self._buf = bytearray()
        self._scanned = 0                   # how far _buf is known to hold no LF
        self._overlong = False
        self._out: list[bytes] = []
        self._events: deque = deque()
        self._pending: Decision | None = None
        self._cont: Callable | None = None
        self._mode = _CMD
        self._eof = False
        self._banner_sent = False
        self._refused_session = False
        self._sasl: Callable | None = None
        self._mail: MailFrom | None = None
        self._rcpts = 0
        self._body: _BodyScanner | None = None
        self._line_start = True
        self._oversize = False
        self._bdat_left = 0
        self._bdat_size = 0
        self._bdat_last = False
        self._bdat_err: Reply | None = None
        self._bdat_total = 0
        self._bdat_fail: Reply | None = None
        self._caps_key: tuple | None = None
        self._refresh_caps()
        self._decide(Connect(state=S_CONNECT, default=Reply(220, "", self._banner_text()),
                             peer=peer, local=local, tls=self.tls,
                             capabilities=self.capabilities), self._on_connect)

    # ----- public API -----------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes from the socket; b"" means the client closed its side."""
        if self._mode == _CLOSED:
            return
        if not data:
            self._eof = True
            return
        if not self._banner_sent:
            self.early_talker = True
        self._buf += data

    def next_event(self):
        """The next Event, or NEED_DATA / PAUSED / CLOSED."""
        events = self._events
        while True:
            if events:
                return events.popleft()
            if self._pending is not None or (self._mode == _TLS and not self._eof):
                return PAUSED
            if self._mode == _CLOSED:
                return CLOSED
            if not self._step() and not events:
                if not self._eof:
                    return NEED_DATA
                self._on_eof()

    def respond(self, reply: Reply | None = None, *, close: bool = False) -> None:
        """Answer the pending Decision (None = its default); close=True disconnects after
        the reply (vctx:disconnect). A 421 always closes."""
        ev = self._pending
        if ev is None:
            raise SMTPServerError("respond() called with no decision pending")
        cont = self._cont
        self._pending = self._cont = None
        if reply is None:
            reply = ev.default
        cont(ev, reply)
        if (close or reply.code == 421) and self._mode != _CLOSED:
            self._close()

    def data_to_send(self) -> bytes:
        """Everything queued for the client since the last call."""
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data

    def tls_started(self, info: dict | None = None) -> None:
        """The TLS handshake after UpgradeTLS succeeded: the session restarts (RFC 3207)."""
        if self._mode != _TLS:
            raise SMTPServerError("tls_started() without a STARTTLS in progress")
        self.tls = True
        self.tls_info = info
        self._mode = _CMD
        self._reset_session()

    def close(self, reply: Reply | None = None) -> None:
        """Driver-initiated close (timeout, shutdown): queue `reply` if given, then CLOSED."""
        if self._mode == _CLOSED:
            return
        if reply is not None:
            self._send(reply)
        self._pending = self._cont = None
        self._close()

    @property
    def pending(self) -> Decision | None:
        return self._pending

    @property
    def closed(self) -> bool:
        return self._mode == _CLOSED

    @property
    def transaction(self) -> MailFrom | None:
        """The accepted MAIL FROM of the open transaction."""
        return self._mail

    @property
    def state_label(self) -> str:
        """Momentum's phase label for the current state (rejectlog P=)."""
        m = self._mode
        if m == _DATA or m == _BDAT:
            return S_BODY
        if m == _SASL:
            return S_AUTH
        if m == _TLS:
            return S_TLS
        if m == _CLOSED:
            return S_CLOSED
        if not self._banner_sent:
            return S_CONNECT
        if self._mail is None:
            return S_MAIL if self.helo is not None else S_EHLO
        return S_DATA if self._rcpts else S_RCPT

    def buffered(self) -> int:
        """Octets of client input held (for tests and memory accounting)."""
        return len(self._buf)

    # ----- plumbing -------------------------------------------------------------------

    def _banner_text(self) -> str:
        return self.opts.banner or f"{self.opts.hostname} ESMTP ecelerity"

    def _send(self, reply: Reply) -> None:
        self._out.append(reply.render(self._esc))

    def _decide(self, ev: Decision, cont: Callable) -> None:
        self._pending = ev
        self._cont = cont
        self._events.append(ev)

    def _refuse(self, reply: Reply, command: str, line: str, *, close: bool = False) -> None:
        """Answer by ourselves and tell the driver (rejectlog)."""
        self._events.append(ProtocolError(reply, self.state_label, command, _cut(line), close))
        self._send(reply)
        if reply is R.UNRECOGNIZED:
            self.unrecognized_commands += 1
        else:
            self.bad_commands += 1
        if close or reply.code == 421:
            self._close()

    def _close(self) -> None:
        self._abort_body("connection closed")
        self._mode = _CLOSED
        self._sasl = None
        self._buf.clear()

    def _abort_body(self, reason: str) -> None:
        if self._body is not None:
            self._body = None
            self._events.append(BodyAborted(self.state_label, reason))

    def _reset_transaction(self) -> None:
        self._abort_body("transaction reset")
        self._mail = None
        self._rcpts = 0
        self._bdat_total = 0
        self._bdat_fail = None

    def _reset_session(self) -> None:
        """Back to just-connected (after STARTTLS and XCLIENT)."""
        self._reset_transaction()
        self.helo = None
        self.esmtp = False
        self.auth = None
        self._refresh_caps()

    def _refresh_caps(self) -> None:
        """Index srv.capabilities (policy may have edited it) by EHLO keyword."""
        key = tuple(self.capabilities)
        if key == self._caps_key:
            return
        hit = _CAPS_CACHE.get(key)
        if hit is None:
            hit = _index_caps(key)
            if len(_CAPS_CACHE) > 256:        # policy-edited lists: keep the cache bounded
                _CAPS_CACHE.clear()
            _CAPS_CACHE[key] = hit
        self._caps_key = key
        self._cap, self._mechs, self._esc = hit

    def _offered(self, ext: str | None) -> bool:
        if ext is None:
            return True
        if ext == "STARTTLS":
            return "STARTTLS" in self._cap and self.opts.tls_available and not self.opts.use_ssl
        if ext == "AUTH":
            return "AUTH" in self._cap and bool(self._mechs)
        if ext == "BINARYMIME":
            return "BINARYMIME" in self._cap and "CHUNKING" in self._cap
        return ext in self._cap

    def _ehlo_lines(self) -> list[str]:
        o = self.opts
        hide_auth = o.auth_requires_tls and not self.tls
        key = (self._caps_key, self.tls, hide_auth, self._offered("STARTTLS"),
               o.max_message_size)
        lines = _EHLO_CACHE.get(key)
        if lines is None:
            lines = self._render_ehlo(hide_auth)
            if len(_EHLO_CACHE) > 256:
                _EHLO_CACHE.clear()
            _EHLO_CACHE[key] = lines
        return lines

    def _render_ehlo(self, hide_auth: bool) -> list[str]:
        lines = []
        auth_done = False
        o = self.opts
        for entry in self.capabilities:
            words = entry.split()
            if not words:
                continue
            kw = words[0].upper()
            if kw == "STARTTLS":
                if self.tls or not self._offered("STARTTLS"):
                    continue
            elif kw == "AUTH" or kw.startswith("AUTH="):
                if auth_done or not self._mechs or hide_auth:
                    continue
                auth_done = True
                mechs = " ".join(self._mechs)
                lines += [f"AUTH={mechs}", f"AUTH {mechs}"]   # as Momentum: legacy form first
                continue
            elif kw == "SIZE" and len(words) == 1:
                entry = f"SIZE {o.max_message_size}" if o.max_message_size else "SIZE"
            elif kw == "XCLIENT" and len(words) == 1:
                entry = "XCLIENT " + " ".join(XCLIENT_ATTRS)
            elif kw == "ENHANCEDSTATUSCODE":
                entry = "ENHANCEDSTATUSCODES"
            elif kw == "BINARYMIME" and not self._offered("BINARYMIME"):
                continue
            lines.append(entry)
        return lines

    # ----- input scanning ---------------------------------------------------------------

    def _step(self) -> bool:
        """Consume some input; False when nothing could be done without more."""
        m = self._mode
        if m == _CMD or m == _SASL:
            line = self._take_line()
            if line is None:
                return False
            self._on_raw_line(line)
            return True
        if m == _DATA:
            return self._data_step()
        if m == _BDAT:
            return self._bdat_step()
        return False

    def _take_line(self):
        """The next LF-terminated line (bytes), _TOO_LONG, or None (need more input)."""
        buf = self._buf
        i = buf.find(b"\n", self._scanned)
        if i < 0:
            n = len(buf)
            if n >= MAX_LINE:
                # Never hold an endless line: drop it now, refuse it when it ends.
                self._overlong = True
                buf.clear()
                n = 0
            self._scanned = n
            return None
        line = bytes(buf[:i + 1])
        del buf[:i + 1]
        self._scanned = 0
        if self._overlong or i + 1 > MAX_LINE:
            self._overlong = False
            return _TOO_LONG
        return line

    def _on_raw_line(self, line) -> None:
        if line is _TOO_LONG:
            return self._line_error(R.LINE_TOO_LONG, b"")
        n = len(line)
        if n < 2 or line[n - 2] != 13 or line.count(13) != 1:
            return self._line_error(R.BARE_CR_LF, line)
        if self._mode == _SASL:
            return self._on_sasl_line(line[:-2])
        self._on_command(line[:-2])

    def _line_error(self, reply: Reply, line: bytes) -> None:
        text = line.decode("latin-1").rstrip("\r\n")
        verb = text.split(" ", 1)[0].upper() if text else ""
        if self._mode == _SASL:                   # never log SASL responses
            self._mode, self._sasl, verb, text = _CMD, None, "AUTH", ""
        self._refuse(reply, verb if verb in _COMMANDS else "", text)

    # ----- command dispatch -------------------------------------------------------------

    def _on_command(self, raw: bytes) -> None:
        # Only MAIL/RCPT arguments may carry UTF-8 (RFC 6531); undecodable octets survive
        # as surrogates so that the address parser refuses them.
        line = raw.decode("utf-8", "surrogateescape")
        sp = line.find(" ")
        verb, arg = (line, "") if sp < 0 else (line[:sp], line[sp + 1:])
        cmd = _COMMANDS.get(verb.upper())
        if cmd is None or not self._offered(cmd.ext):
            return self._refuse(R.UNRECOGNIZED, "", line)
        if len(raw) + 2 > cmd.max_len:
            return self._refuse(R.LINE_TOO_LONG, cmd.verb, line)
        if self._refused_session and cmd.verb != "QUIT":
            return self._refuse(R.BAD_SEQUENCE, cmd.verb, line)
        cmd.fn(self, arg, line)

    # ----- connection-level commands ----------------------------------------------------

    def _on_connect(self, ev: Connect, reply: Reply) -> None:
        self._out.append(reply.render(False))   # RFC 2034: no enhanced code in greetings
        self._banner_sent = True
        self._refresh_caps()
        if reply.code == 554:
            self._refused_session = True        # RFC 5321 3.1: wait for QUIT
        elif reply.code >= 400:
            self._close()
        if self.early_talker:
            self._events.append(EarlyTalker(len(self._buf)))

    @command("HELO", "HELO <domain>")
    def smtp_HELO(self, arg: str, line: str) -> None:
        """HELO: identify; no extensions in the reply."""
        self._helo("HELO", arg, line, R.INVALID_HELO)

    @command("EHLO", "EHLO <domain>")
    def smtp_EHLO(self, arg: str, line: str) -> None:
        """EHLO: identify; the reply lists the extensions."""
        self._helo("EHLO", arg, line, R.INVALID_EHLO)

    def _helo(self, verb: str, arg: str, line: str, invalid: Reply) -> None:
        domain = arg.strip().split(" ", 1)[0]
        if not domain or not domain.isprintable():
            return self._refuse(invalid, verb, line)
        state = self.state_label
        self._reset_transaction()              # RFC 5321 4.1.4: EHLO implies RSET
        text = f"{self.opts.hostname} says {verb} to {self.peer[0]}"
        self._decide(Helo(state=state, default=Reply(250, "", text), verb=verb, domain=domain,
                          raw=line, capabilities=self.capabilities), self._on_helo)

    def _on_helo(self, ev: Helo, reply: Reply) -> None:
        if reply.code // 100 != 2:
            return self._send(reply)
        self.helo = ev.domain
        self.esmtp = ev.verb == "EHLO"
        self._refresh_caps()
        text = reply.text
        if self.esmtp:
            text = "\n".join([text, *self._ehlo_lines()])
        self._out.append(Reply(reply.code, "", text).render(False))

    @command("RSET", "RSET")
    def smtp_RSET(self, arg: str, line: str) -> None:
        """RSET: abort the transaction (or 421 after a config reload)."""
        if arg.strip():
            return self._refuse(R.RSET_ARGS, "RSET", line)
        if self.reconfig_pending:
            return self._reconfig("RSET", line)
        state = self.state_label
        self._reset_transaction()
        self._decide(Rset(state=state, default=R.OK), self._reply_only)

    @command("NOOP", "NOOP [<string>]")
    def smtp_NOOP(self, arg: str, line: str) -> None:
        """NOOP: no action."""
        self._decide(Noop(state=self.state_label, default=R.OK, arg=arg.strip()),
                     self._reply_only)

    @command("QUIT", "QUIT")
    def smtp_QUIT(self, arg: str, line: str) -> None:
        """QUIT: 221 and close."""
        if arg.strip():
            return self._refuse(R.NO_PARAMS, "QUIT", line)
        reply = Reply(221, "2.0.0", f"{self.opts.hostname} closing connection")
        self._decide(Quit(state=self.state_label, default=reply), self._on_quit)

    def _on_quit(self, ev: Quit, reply: Reply) -> None:
        self._send(reply)
        self._close()

    @command("HELP", "HELP [<command>]")
    def smtp_HELP(self, arg: str, line: str) -> None:
        """HELP: list the commands, or the syntax of one."""
        topic = arg.strip().upper()
        if not topic:
            verbs = " ".join(c.verb for c in _COMMANDS.values() if self._offered(c.ext))
            default = Reply(214, "2.0.0", f"Commands supported:\n{verbs}")
        else:
            cmd = _COMMANDS.get(topic)
            default = (Reply(214, "2.0.0", f"Syntax: {cmd.syntax}")
                       if cmd and self._offered(cmd.ext) else R.HELP_UNKNOWN)
        self._decide(Help(state=self.state_label, default=default, arg=arg.strip()),
                     self._reply_only)

    @command("VRFY", "VRFY <address>")
    def smtp_VRFY(self, arg: str, line: str) -> None:
        """VRFY: the driver decides (default 252, RFC 5321 3.5.3)."""
        if not arg.strip():
            return self._refuse(R.VRFY_SYNTAX, "VRFY", line)
        self._decide(Vrfy(state=self.state_label, default=R.VRFY_DEFAULT, arg=arg.strip()),
                     self._reply_only)

    @command("EXPN", "EXPN <list>")
    def smtp_EXPN(self, arg: str, line: str) -> None:
        """EXPN: the driver decides (default 502)."""
        if not arg.strip():
            return self._refuse(R.EXPN_SYNTAX, "EXPN", line)
        self._decide(Expn(state=self.state_label, default=R.EXPN_DEFAULT, arg=arg.strip()),
                     self._reply_only)

    def _reply_only(self, ev: Decision, reply: Reply) -> None:
        self._send(reply)

    def _reconfig(self, verb: str, line: str) -> None:
        self._refuse(Reply.parse(421, self.opts.reconfig_message), verb, line, close=True)

    # ----- the mail transaction ---------------------------------------------------------

    @command("MAIL", "MAIL FROM:<reverse-path> [SP <mail-parameters>]", max_len=ENVELOPE_LINE)
    def smtp_MAIL(self, arg: str, line: str) -> None:
        """MAIL FROM: open a transaction."""
        o = self.opts
        if self.reconfig_pending:
            return self._reconfig("MAIL", line)
        if o.require_ehlo and self.helo is None:
            return self._refuse(R.HELO_NEEDED, "MAIL", line)
        if o.auth_required and self.auth is None:
            return self._refuse(R.AUTH_REQUIRED, "MAIL", line)
        if self._mail is not None:
            return self._refuse(R.MAIL_ALREADY, "MAIL", line)
        if o.max_receptions_per_connection and \
                self.messages_received >= o.max_receptions_per_connection:
            return self._refuse(R.RECEPTIONS_PER_CONNECTION, "MAIL", line, close=True)
        if arg[:5].upper() != "FROM:":
            return self._refuse(R.MAIL_SYNTAX, "MAIL", line)
        parsed = self._envelope(arg, 5, R.MAIL_SYNTAX, "MAIL", line, self._offered("SMTPUTF8"))
        if parsed is None:
            return
        addr, rest = parsed
        params = MailParams()
        if rest and not self._params(rest, _MAIL_PARAMS, params, "MAIL", line):
            return
        qualified = addr
        if addr.is_utf8 and not params.smtputf8:
            return self._refuse(R.UTF8_REQUIRED, "MAIL", line)
        if addr.is_null:
            if not o.allow_null_envelope_sender:
                return self._refuse(R.NULL_SENDER_REFUSED, "MAIL", line)
        elif not addr.domain:
            if not o.domain_for_unqualified_sender_address:
                return self._refuse(R.MAIL_SYNTAX, "MAIL", line)
            qualified = addr.qualify(o.domain_for_unqualified_sender_address)
        if params.size is not None and o.max_message_size and params.size > o.max_message_size:
            return self._refuse(R.SIZE_EXCEEDED, "MAIL", line)
        self._decide(MailFrom(state=self.state_label, default=R.MAIL_OK, address=addr,
                              qualified=qualified, raw=line, params=params), self._on_mail)

    def _on_mail(self, ev: MailFrom, reply: Reply) -> None:
        self._send(reply)
        if reply.code < 300:
            self._mail = ev
            self._rcpts = 0
            self._bdat_total = 0
            self._bdat_fail = None

    @command("RCPT", "RCPT TO:<forward-path> [SP <rcpt-parameters>]", max_len=ENVELOPE_LINE)
    def smtp_RCPT(self, arg: str, line: str) -> None:
        """RCPT TO: add a recipient."""
        o = self.opts
        mail = self._mail
        if mail is None:
            return self._refuse(R.RCPT_NO_MAIL, "RCPT", line)
        if self._body is not None or self._bdat_fail is not None:
            return self._refuse(R.BAD_SEQUENCE, "RCPT", line)
        if arg[:3].upper() != "TO:":
            return self._refuse(R.RCPT_SYNTAX, "RCPT", line)
        parsed = self._envelope(arg, 3, R.RCPT_SYNTAX, "RCPT", line, mail.params.smtputf8)
        if parsed is None:
            return
        addr, rest = parsed
        if addr.is_null:
            return self._refuse(R.RCPT_SYNTAX, "RCPT", line)
        qualified = addr
        if not addr.domain:
            if o.domain_for_unqualified_recipient_addresses:
                qualified = addr.qualify(o.domain_for_unqualified_recipient_addresses)
            elif addr.localpart.lower() == "postmaster":   # RFC 5321 4.5.1
                qualified = addr.qualify(o.hostname)
            else:
                return self._refuse(R.RCPT_SYNTAX, "RCPT", line)
        params = _RcptParams()
        if rest and not self._params(rest, _RCPT_PARAMS, params, "RCPT", line):
            return
        if o.max_recipients_per_message and self._rcpts >= o.max_recipients_per_message:
            return self._refuse(R.RCPTS_PER_MESSAGE, "RCPT", line)
        if o.max_recipients_per_connection and \
                self.connection_rcpt_count >= o.max_recipients_per_connection:
            return self._refuse(R.RCPTS_PER_CONNECTION, "RCPT", line)
        self._decide(RcptTo(state=self.state_label, default=R.RCPT_OK, address=addr,
                            qualified=qualified, raw=line, notify=params.notify,
                            orcpt=params.orcpt), self._on_rcpt)

    def _on_rcpt(self, ev: RcptTo, reply: Reply) -> None:
        self._send(reply)
        if reply.code < 300 and self._mail is not None:
            self._rcpts += 1
            self.connection_rcpt_count += 1

    def _envelope(self, arg: str, at: int, syntax: Reply, verb: str, line: str,
                  utf8: bool) -> tuple[Address, str] | None:
        """Parse the path of MAIL/RCPT; None when refused. Returns (address, params)."""
        o = self.opts
        if arg[-1:] in (" ", "\t"):
            if not o.rfc2821_allow_whitespace_in_envelope:
                self._refuse(syntax, verb, line)
                return None
            arg = arg.rstrip(" \t")
        while arg[at:at + 1] == " ":
            at += 1
        if not arg.isascii():
            try:
                arg.encode("utf-8")
            except UnicodeEncodeError:          # invalid UTF-8 on the wire
                self._refuse(syntax, verb, line)
                return None
        try:
            addr, end = parse_path(arg, at, utf8=utf8,
                                   pedantic=o.rfc2821_pedantic_address_rules,
                                   allow_ip_literal=o.allow_ip_literal,
                                   space_in_brackets=o.allow_trailing_whitespace_in_commands)
        except AddressError as e:
            reply = {E_UTF8: R.UTF8_REQUIRED, E_IP_LITERAL: R.IP_LITERAL_REFUSED}.get(
                e.reason, syntax)
            self._refuse(reply, verb, line)
            return None
        rest = arg[end:]
        if rest and rest[0] != " ":
            self._refuse(syntax, verb, line)
            return None
        return addr, rest.strip(" ")

    def _params(self, text: str, table: dict, target, verb: str, line: str) -> bool:
        """Apply ESMTP parameters to `target`; False (and refused) on any error."""
        seen = set()
        for token in text.split():
            key, eq, value = token.partition("=")
            key = key.upper()
            entry = table.get(key)
            if entry is None or not any(self._offered(x) for x in entry[0]):
                self._refuse(Reply(555, "5.5.4", R.PARAM_UNSUPPORTED.format(key)), verb, line)
                return False
            if key in seen:
                self._refuse(Reply(501, "5.5.4", R.PARAM_DUPLICATE.format(key)), verb, line)
                return False
            seen.add(key)
            err = entry[1](self, target, value if eq else None)
            if err is not None:
                self._refuse(err if isinstance(err, Reply) else
                             Reply(501, "5.5.4", R.PARAM_INVALID.format(key)), verb, line)
                return False
        return True

    @command("DATA", "DATA")
    def smtp_DATA(self, arg: str, line: str) -> None:
        """DATA: ask the driver, then stream the body until <CRLF>.<CRLF>."""
        if arg.strip():
            return self._refuse(R.DATA_ARGS, "DATA", line)
        if self._mail is None:
            return self._refuse(R.DATA_NO_MAIL, "DATA", line)
        if self._body is not None or self._bdat_fail is not None:
            return self._refuse(R.BAD_SEQUENCE, "DATA", line)      # DATA after BDAT
        if self._mail.params.body == "BINARYMIME":
            return self._refuse(R.BINARYMIME_NEEDS_BDAT, "DATA", line)
        if not self._rcpts:
            return self._refuse(R.DATA_NO_RCPT, "DATA", line)
        self._decide(DataStart(state=self.state_label, default=R.DATA_GO), self._on_data)

    def _on_data(self, ev: DataStart, reply: Reply) -> None:
        self._send(reply)
        if reply.code == 354:
            self._body = self._new_body(bdat=False)
            self._mode = _DATA
            self._line_start = True
            self._oversize = False

    def _new_body(self, bdat: bool) -> "_BodyScanner":
        o = self.opts
        binary = self._mail is not None and self._mail.params.body == "BINARYMIME"
        return _BodyScanner(o.rfc2822_lone_lf_in_headers == "fix",
                            o.rfc2822_lone_lf_in_body == "fix",
                            self._line_limit, self._line_action, binary, bdat)

    def _data_step(self) -> bool:
        """Stream DATA: unstuff "\\r\\n." and stop at "\\r\\n.\\r\\n", nothing else."""
        buf = self._buf
        n = len(buf)
        if not n:
            return False
        pos = 0
        ls = self._line_start
        pieces: list[tuple[int, int]] = []
        end_at = -1
        while True:
            if ls:
                if pos >= n:
                    break
                if buf[pos] == 46:                            # "." at a line start
                    left = n - pos
                    if left >= 3 and buf[pos + 1] == 13 and buf[pos + 2] == 10:
                        end_at = pos
                        break
                    if left == 1 or (left == 2 and buf[pos + 1] == 13):
                        break                                 # maybe the end: wait
                    pos += 1                                  # dot-stuffing: drop it
                ls = False
            i = buf.find(b"\r\n.", pos)
            if i >= 0:
                pieces.append((pos, i + 2))
                pos = i + 2
                ls = True
                continue
            # No CRLF-dot ahead: hand out all but a final CR whose LF-dot may follow.
            end = n - 1 if buf[n - 1] == 13 else n
            if end > pos:
                pieces.append((pos, end))
                if end == n and n - pos >= 2 and buf[n - 2] == 13 and buf[n - 1] == 10:
                    ls = True
            pos = max(pos, end)
            break
        self._line_start = ls
        consumed = end_at + 3 if end_at >= 0 else pos
        if pieces:
            if len(pieces) == 1:
                a, b = pieces[0]
                data = bytes(buf[a:b])
            else:
                with memoryview(buf) as mv:
                    data = b"".join([mv[a:b] for a, b in pieces])
            del buf[:consumed]
            self._emit_body(data)
        elif consumed:
            del buf[:consumed]
        if end_at >= 0:
            self._end_body("DATA")
            return True
        return consumed > 0

    def _emit_body(self, data: bytes) -> None:
        body = self._body
        if body is None or self._oversize:
            return
        body.received += len(data)
        limit = self.opts.max_message_size
        if limit and body.received > limit:
            self._oversize = True                 # keep reading to the end, hand out nothing
            return
        out = body.feed(data)
        if out:
            self._events.append(DataChunk(out))

    def _end_body(self, verb: str) -> None:
        body = self._body
        self._mode = _CMD
        if body is None:                          # refused chunk / aborted: nothing to end
            return
        state = S_BODY
        tail = body.finish() if not self._oversize else b""
        if tail:
            self._events.append(DataChunk(tail))
        f = body.facts
        o = self.opts
        err = None
        if self._oversize:
            err = R.SIZE_EXCEEDED
        elif f.lone_cr_lf_in_headers and o.rfc2822_lone_lf_in_headers == "pedantic":
            err = R.LONE_LF_HEADERS
        elif f.lone_cr_lf_in_body and o.rfc2822_lone_lf_in_body == "pedantic":
            err = R.LONE_LF_BODY
        elif self._line_action == _REJECT and f.max_header_line > self._line_limit:
            err = R.HEADER_LINE_TOO_LONG
        elif self._line_action == _REJECT and f.max_body_line > self._line_limit:
            err = R.BODY_LINE_TOO_LONG
        self._oversize = False
        if err is not None:
            self._events.append(ProtocolError(err, state, verb, "", False))
            self._send(err)
            self.bad_commands += 1
            self._body = None
            self._events.append(BodyAborted(state, err.text))
            self._reset_transaction()
            return
        self._body = None
        self._decide(DataEnd(state=state, default=R.MESSAGE_OK, facts=f), self._on_data_end)

    def _on_data_end(self, ev: DataEnd, reply: Reply) -> None:
        self._send(reply)
        if reply.code < 300:
            self.messages_received += 1
        self._reset_transaction()

    @command("BDAT", "BDAT <size> [LAST]", ext="CHUNKING")
    def smtp_BDAT(self, arg: str, line: str) -> None:
        """BDAT (RFC 3030): the next <size> octets are message data, no transparency."""
        parts = arg.split()
        if not (1 <= len(parts) <= 2) or not parts[0].isdigit() or len(parts[0]) > 18 \
                or (len(parts) == 2 and parts[1].upper() != "LAST"):
            return self._refuse(R.BDAT_SYNTAX, "BDAT", line, close=True)
        size, last = int(parts[0]), len(parts) == 2
        limit = self.opts.max_message_size
        err = None
        if self._mail is None:
            err = R.BDAT_NO_MAIL
        elif not self._rcpts:
            err = R.BDAT_NO_RCPT
        elif self._bdat_fail is not None:
            err = self._bdat_fail
        elif limit and self._bdat_total + size > limit:
            err = R.SIZE_EXCEEDED
        self._bdat_err = err
        self._bdat_left = self._bdat_size = size
        self._bdat_last = last
        if err is None:
            first = self._body is None
            if first:
                self._body = self._new_body(bdat=True)
            self._bdat_total += size
            self._events.append(BdatChunk(size, last, first))
        elif self._mail is not None and self._rcpts:
            self._bdat_fail = err     # RFC 3030: later chunks of this transaction fail too
        self._mode = _BDAT
        if size == 0:
            self._bdat_done()

    def _bdat_step(self) -> bool:
        buf = self._buf
        n = len(buf)
        if not n:
            return False
        take = min(n, self._bdat_left)
        if take == n:
            data = bytes(buf)
            buf.clear()
        else:
            data = bytes(buf[:take])
            del buf[:take]
        self._bdat_left -= take
        if self._bdat_err is None:
            self._emit_body(data)
        if not self._bdat_left:
            self._bdat_done()
        return True

    def _bdat_done(self) -> None:
        err, last = self._bdat_err, self._bdat_last
        self._mode = _CMD
        if err is not None:
            self._bdat_err = None
            line = f"BDAT {self._bdat_size}{' LAST' if last else ''}"
            self._refuse(err, "BDAT", line)
            self._abort_body(err.text)
            if last:
                self._reset_transaction()
        elif last:
            self._end_body("BDAT")
        else:
            self._send(Reply(250, "2.0.0", f"{self._bdat_size} octets received"))

    # ----- STARTTLS ---------------------------------------------------------------------

    @command("STARTTLS", "STARTTLS", ext="STARTTLS")
    def smtp_STARTTLS(self, arg: str, line: str) -> None:
        """STARTTLS (RFC 3207), guarded against pipelined injection (CVE-2011-0411)."""
        if self.tls:
            return self._refuse(R.TLS_ACTIVE, "STARTTLS", line)
        if arg.strip():
            return self._refuse(R.NO_PARAMS, "STARTTLS", line)
        if self._buf and not self._injection(line):
            return
        self._decide(StartTLS(state=self.state_label, default=R.STARTTLS_GO), self._on_starttls)

    def _injection(self, line: str) -> bool:
        """Apply starttls_injection_policy to buffered input; False = connection dropped."""
        policy = self.opts.starttls_injection_policy.lower()
        buf = self._buf
        self._events.append(StartTLSInjection(policy, len(buf), bytes(buf[:CMD_LINE]),
                                              self.state_label))
        if policy == "allow":
            return True
        if policy == "ignore":
            buf.clear()
            self._scanned = 0
            return True
        self._refuse(R.STARTTLS_INJECTION, "STARTTLS", line, close=True)
        return False

    def _on_starttls(self, ev: StartTLS, reply: Reply) -> None:
        if reply.code != 220:
            return self._send(reply)
        if self._buf and not self._injection("STARTTLS"):   # arrived while deciding
            return
        self._send(reply)
        self._mode = _TLS                        # the session resets in tls_started()
        self._events.append(UpgradeTLS())

    # ----- AUTH -------------------------------------------------------------------------

    @command("AUTH", "AUTH <mechanism> [<initial-response>]", ext="AUTH", max_len=MAX_LINE)
    def smtp_AUTH(self, arg: str, line: str) -> None:
        """AUTH (RFC 4954): run the SASL exchange, then ask the driver (AuthAttempt)."""
        shown = "AUTH " + arg.split(" ", 1)[0]          # never log credentials
        if self.opts.auth_requires_tls and not self.tls:
            return self._refuse(R.AUTH_NEEDS_TLS, "AUTH", shown)
        if self.helo is None:
            return self._refuse(R.BAD_SEQUENCE, "AUTH", shown)
        if self.auth is not None:
            return self._refuse(R.AUTH_ALREADY, "AUTH", shown)
        if self._mail is not None:
            return self._refuse(R.AUTH_IN_TRANSACTION, "AUTH", shown)
        words = arg.split()
        if not 1 <= len(words) <= 2:
            return self._refuse(R.AUTH_SYNTAX, "AUTH", shown)
        mech = words[0].upper()
        if mech not in self._mechs:
            return self._refuse(R.AUTH_MECHANISM, "AUTH", shown)
        initial = words[1] if len(words) == 2 else None
        if mech == "PLAIN":
            if initial is None:
                return self._challenge("", self._plain)
            return self._sasl_input(initial, self._plain)
        if mech == "LOGIN":
            if initial is None:
                return self._challenge("Username:", self._login_user)
            return self._sasl_input(initial, self._login_user)
        if initial is not None:
            return self._refuse(R.AUTH_NO_INITIAL, "AUTH", shown)
        challenge = f"<{secrets.randbelow(10**10)}.{int(time.time())}@{self.opts.hostname}>"
        self._challenge(challenge, lambda raw: self._cram(raw, challenge))

    def _challenge(self, text: str, then: Callable) -> None:
        """Send a 334 challenge; the next line goes to `then`."""
        b64 = base64.b64encode(text.encode()).decode() if text else ""
        self._out.append(f"334 {b64}\r\n".encode())
        self._sasl = lambda s: self._sasl_input(s, then)
        self._mode = _SASL

    def _on_sasl_line(self, raw: bytes) -> None:
        fn = self._sasl
        self._sasl = None
        self._mode = _CMD
        text = raw.decode("latin-1").strip()
        if text == "*":
            return self._refuse(R.AUTH_CANCELLED, "AUTH", "*")
        fn(text)

    def _sasl_input(self, text: str, then: Callable) -> None:
        """Decode one base64 client response and pass the octets on."""
        if text == "=":
            data = b""
        else:
            try:
                data = binascii.a2b_base64(text.encode("latin-1"), strict_mode=True)
            except (binascii.Error, ValueError):
                return self._refuse(R.AUTH_BAD_BASE64, "AUTH", "")
        try:
            then(data.decode("utf-8"))
        except UnicodeDecodeError:
            self._refuse(R.AUTH_BAD_RESPONSE, "AUTH", "")

    def _plain(self, msg: str) -> None:
        parts = msg.split("\0")
        if len(parts) != 3 or not parts[1]:
            return self._refuse(R.AUTH_BAD_RESPONSE, "AUTH", "")
        self._auth_attempt("PLAIN", parts[1], parts[0], password=parts[2])

    def _login_user(self, user: str) -> None:
        if not user:
            return self._refuse(R.AUTH_BAD_RESPONSE, "AUTH", "")
        self._challenge("Password:", lambda pw: self._auth_attempt("LOGIN", user, "", pw))

    def _cram(self, raw: str, challenge: str) -> None:
        user, _, digest = raw.rpartition(" ")
        if not user or len(digest) != 32 or any(c not in "0123456789abcdefABCDEF" for c in digest):
            return self._refuse(R.AUTH_BAD_RESPONSE, "AUTH", "")
        self._auth_attempt("CRAM-MD5", user, "", None, challenge, digest.lower())

    def _auth_attempt(self, mech: str, authcid: str, authzid: str, password: str | None,
                      challenge: str = "", response: str = "") -> None:
        self._decide(AuthAttempt(state=self.state_label, default=R.AUTH_FAILED,
                                 mechanism=mech, authcid=authcid, authzid=authzid,
                                 password=password, challenge=challenge, response=response),
                     self._on_auth)

    def _on_auth(self, ev: AuthAttempt, reply: Reply) -> None:
        self._send(reply)
        if reply.code // 100 == 2:
            self.auth = AuthInfo(ev.mechanism, ev.authcid, ev.authzid)

    # ----- Momentum / Postfix extensions ------------------------------------------------

    @command("XCLIENT", "XCLIENT attribute=value ...", ext="XCLIENT", max_len=ENVELOPE_LINE)
    def smtp_XCLIENT(self, arg: str, line: str) -> None:
        """XCLIENT (Postfix): a trusted proxy overrides the client's identity."""
        if self._mail is not None:
            return self._refuse(R.XCLIENT_IN_TRANSACTION, "XCLIENT", line)
        tokens = arg.split()
        if not tokens:
            return self._refuse(R.XCLIENT_SYNTAX, "XCLIENT", line)
        attrs = {}
        for tok in tokens:
            name, eq, value = tok.partition("=")
            name = name.upper()
            if name not in XCLIENT_ATTRS or not eq:
                return self._refuse(Reply(501, "5.5.4", R.XCLIENT_BAD_NAME.format(name)),
                                    "XCLIENT", line)
            try:
                value = xtext_decode(value)
            except ValueError:
                value = None
            if value is None or not _xclient_value_ok(name, value):
                return self._refuse(Reply(501, "5.5.4", R.XCLIENT_BAD_VALUE.format(name, tok)),
                                    "XCLIENT", line)
            attrs[name] = value
        self._decide(XClient(state=self.state_label, default=Reply(220, "", self._banner_text()),
                             attrs=attrs), self._on_xclient)

    def _on_xclient(self, ev: XClient, reply: Reply) -> None:
        if reply.code // 100 != 2:
            return self._send(reply)
        self._out.append(reply.render(reply.code != 220 and self._esc))
        a = ev.attrs
        addr, port = self.peer[0], self.peer[1] if len(self.peer) > 1 else 0
        if a.get("ADDR", "[UNAVAILABLE]")[:1] != "[":
            addr = a["ADDR"][5:] if a["ADDR"][:5].upper() == "IPV6:" else a["ADDR"]
        if a.get("PORT", "[")[:1] != "[":
            port = int(a["PORT"])
        self.peer = (addr, port)
        self.xclient.update(a)
        self._reset_session()
        login = a.get("LOGIN", "[")
        if login[:1] != "[":
            self.auth = AuthInfo("XCLIENT", login)

    @command("XREMOTEIP", "XREMOTEIP <ip-address>", ext="XREMOTEIP")
    def smtp_XREMOTEIP(self, arg: str, line: str) -> None:
        """XREMOTEIP (Momentum): a trusted gateway names the real client address."""
        text = arg.strip()
        if text[:5].upper() == "IPV6:":
            text = text[5:]
        try:
            ip = str(ipaddress.ip_address(text.strip("[]")))
        except ValueError:
            return self._refuse(R.XREMOTEIP_SYNTAX, "XREMOTEIP", line)
        self._decide(XRemoteIP(state=self.state_label, default=R.XREMOTEIP_OK, addr=ip),
                     self._on_xremoteip)

    def _on_xremoteip(self, ev: XRemoteIP, reply: Reply) -> None:
        self._send(reply)
        if reply.code // 100 == 2:
            self.peer = (ev.addr, *self.peer[1:])

    @command("XSETCONTEXT", "XSETCONTEXT name=value ...", ext="XSETCONTEXT",
             max_len=ENVELOPE_LINE)
    def smtp_XSETCONTEXT(self, arg: str, line: str) -> None:
        """XSETCONTEXT (Momentum): set connection vctx keys; values are xtext."""
        pairs = {}
        for tok in arg.split():
            name, eq, value = tok.partition("=")
            try:
                value = xtext_decode(value) if eq and name else None
            except ValueError:
                value = None
            if value is None:
                return self._refuse(R.XSETCONTEXT_SYNTAX, "XSETCONTEXT", line)
            pairs[name] = value
        if not pairs:
            return self._refuse(R.XSETCONTEXT_SYNTAX, "XSETCONTEXT", line)
        self._decide(XSetContext(state=self.state_label, default=R.XSETCONTEXT_OK, pairs=pairs),
                     self._reply_only)

    @command("XDUMPCONTEXT", "XDUMPCONTEXT", ext="XDUMPCONTEXT")
    def smtp_XDUMPCONTEXT(self, arg: str, line: str) -> None:
        """XDUMPCONTEXT (Momentum): the driver answers with the context dump."""
        if arg.strip():
            return self._refuse(R.NO_PARAMS, "XDUMPCONTEXT", line)
        self._decide(XDumpContext(state=self.state_label, default=R.XDUMPCONTEXT_DONE),
                     self._reply_only)

    # ----- end of input -----------------------------------------------------------------

    def _on_eof(self) -> None:
        state = self.state_label
        if self._mode == _DATA:
            self._refuse(R.MISSING_DOT, "DATA", "")
        elif self._mode == _BDAT:
            self._refuse(R.BDAT_INCOMPLETE, "BDAT", "")
        in_tx, left = self._mail is not None, len(self._buf)
        self._close()
        self._events.append(ClientClosed(state, in_tx, left))


# --- ESMTP parameters (keyword -> (extensions that enable it, handler)) --------------------


@dataclass(slots=True)
class _RcptParams:
    notify: tuple | None = None
    orcpt: tuple | None = None


def _p_size(srv: SMTPServer, p: MailParams, v: str | None):
    if v is None or not v.isdigit() or len(v) > 20:
        return "bad"
    p.size = int(v)
    return None


def _p_body(srv: SMTPServer, p: MailParams, v: str | None):
    v = (v or "").upper()
    if v == "BINARYMIME":
        if not srv._offered("BINARYMIME"):
            return Reply(555, "5.5.4", R.PARAM_UNSUPPORTED.format("BODY=BINARYMIME"))
    elif v == "8BITMIME":
        if not srv._offered("8BITMIME"):
            return Reply(555, "5.5.4", R.PARAM_UNSUPPORTED.format("BODY=8BITMIME"))
    elif v != "7BIT":
        return "bad"
    p.body = v
    return None


def _p_ret(srv: SMTPServer, p: MailParams, v: str | None):
    v = (v or "").upper()
    if v not in ("FULL", "HDRS"):
        return "bad"
    p.ret = v
    return None


def _p_envid(srv: SMTPServer, p: MailParams, v: str | None):
    if not v or len(v) > 100:
        return "bad"
    try:
        p.envid = xtext_decode(v)
    except ValueError:
        return "bad"
    return None


def _p_smtputf8(srv: SMTPServer, p: MailParams, v: str | None):
    if v is not None:
        return "bad"
    p.smtputf8 = True
    return None


def _p_auth(srv: SMTPServer, p: MailParams, v: str | None):
    try:
        p.auth = xtext_decode(v or "")
    except ValueError:
        return "bad"
    return None if p.auth else "bad"


_NOTIFY = frozenset(("SUCCESS", "FAILURE", "DELAY"))


def _p_notify(srv: SMTPServer, p: _RcptParams, v: str | None):
    items = [x.upper() for x in (v or "").split(",")]
    if items == ["NEVER"]:
        p.notify = ("NEVER",)
        return None
    if not items or any(x not in _NOTIFY for x in items) or len(set(items)) != len(items):
        return "bad"   # NEVER must stand alone; no empty or repeated keywords
    p.notify = tuple(items)
    return None


def _p_orcpt(srv: SMTPServer, p: _RcptParams, v: str | None):
    kind, semi, value = (v or "").partition(";")
    if not semi or not kind or not value or not all(c.isalnum() or c == "-" for c in kind) \
            or not kind.isascii() or len(v) > 500:
        return "bad"
    try:
        p.orcpt = (kind.lower(), xtext_decode(value))
    except ValueError:
        return "bad"
    return None


_MAIL_PARAMS = {
    "SIZE": (("SIZE",), _p_size),
    "BODY": (("8BITMIME", "BINARYMIME"), _p_body),
    "RET": (("DSN",), _p_ret),
    "ENVID": (("DSN",), _p_envid),
    "SMTPUTF8": (("SMTPUTF8",), _p_smtputf8),
    "AUTH": (("AUTH",), _p_auth),
}
_RCPT_PARAMS = {
    "NOTIFY": (("DSN",), _p_notify),
    "ORCPT": (("DSN",), _p_orcpt),
}


def _xclient_value_ok(name: str, value: str) -> bool:
    if value in ("[UNAVAILABLE]", "[TEMPUNAVAIL]"):
        return True
    if name in ("ADDR", "DESTADDR"):
        text = value[5:] if value[:5].upper() == "IPV6:" else value
        try:
            ipaddress.ip_address(text)
        except ValueError:
            return False
        return True
    if name in ("PORT", "DESTPORT"):
        return value.isdigit() and int(value) <= 65535
    if name == "PROTO":
        return value.upper() in ("SMTP", "ESMTP")
    return 0 < len(value) <= 255 and value.isprintable()


# --- the body scanner ----------------------------------------------------------------------


class _BodyScanner:
    """Facts about a streamed body (header/body split, lone CR/LF, line lengths, 8-bit)
    and the rfc2822 "fix" rewrites, chunk by chunk with carried state."""

    __slots__ = ("facts", "in_headers", "tail", "pending_cr", "fix_hdr", "fix_body",
                 "limit", "action", "binary", "cur", "received")

    def __init__(self, fix_hdr: bool, fix_body: bool, limit: int, action: int,
                 binary: bool, bdat: bool) -> None:
        self.facts = BodyFacts(binary=binary, bdat=bdat)
        self.in_headers = True
        self.tail = b"\n"      # a virtual line start: an empty first line = no headers
        self.pending_cr = False
        self.fix_hdr, self.fix_body = fix_hdr, fix_body
        self.limit, self.action, self.binary = limit, action, binary
        self.cur = 0           # length of the line in progress
        self.received = 0
        if action != _IGNORE and not binary:
            self.facts.max_header_line = self.facts.max_body_line = 0

    def feed(self, c: bytes) -> bytes:
        f = self.facts
        if not f.eight_bit and not c.isascii():
            f.eight_bit = True
        if self.binary:
            f.size += len(c)
            return c
        if self.in_headers:
            e = self._blank_line_end(c)
            if e < 0:
                self.tail = (self.tail + c)[-2:] if len(c) < 2 else c[-2:]
                out = self._part(c, True)
            else:
                self.in_headers = False
                head = self._part(c[:e], True)
                f.headers_terminated = True
                f.body_offset = f.size + len(head)
                out = head + self._part(c[e:], False) if e < len(c) else head
        else:
            out = self._part(c, False)
        f.size += len(out)
        return out

    def _blank_line_end(self, c: bytes) -> int:
        """Offset in `c` just past the empty line that ends the headers, or -1."""
        best = -1
        t = self.tail
        joint = t + c[:2]
        for pat in (b"\n\r\n", b"\n\n"):
            p = joint.find(pat)
            if p >= 0 and p + len(pat) > len(t):
                e = p + len(pat) - len(t)
                best = e if best < 0 else min(best, e)
            p = c.find(pat)
            if p >= 0:
                e = p + len(pat)
                best = e if best < 0 else min(best, e)
        return best

    def _part(self, p: bytes, hdr: bool) -> bytes:
        if not p:
            return p
        lone = p.count(b"\n") + p.count(b"\r") - 2 * p.count(b"\r\n")
        pend = self.pending_cr
        if pend:
            lone += -1 if p[0] == 10 else 1   # LF pairs with the CR before / that CR was lone
        ends_cr = p[-1] == 13
        if ends_cr:
            lone -= 1                          # undecided until the next octet
        self.pending_cr = ends_cr
        f = self.facts
        if lone:
            if hdr:
                f.lone_cr_lf_in_headers += lone
            else:
                f.lone_cr_lf_in_body += lone
        if (self.fix_hdr if hdr else self.fix_body) and (lone or pend):
            p = self._fix(p, pend, ends_cr)
            f.fixed_lone_cr_lf = True
        if self.action != _IGNORE:
            p = self._lines(p, hdr)
        return p

    @staticmethod
    def _fix(p: bytes, pend: bool, ends_cr: bool) -> bytes:
        """Every lone CR or LF becomes CRLF (rfc2822_lone_lf_in_* = fix)."""
        lead = b""
        if pend:                    # the CR that ended the last part went out as-is
            lead = b"\n"
            if p[:1] == b"\n":
                p = p[1:]
        core, trail = (p[:-1], b"\r") if ends_cr else (p, b"")
        core = core.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
        return lead + core + trail

    def _lines(self, p: bytes, hdr: bool) -> bytes:
        """Measure line lengths; break body lines over the limit when the action is fix."""
        segs = p.split(b"\n")
        f = self.facts
        start = self.cur
        if len(segs) == 1:
            self.cur += len(p)
            longest = self.cur
        else:
            first = start + len(segs[0]) - (segs[0][-1:] == b"\r")
            mid = max((len(s) - (s[-1:] == b"\r") for s in segs[1:-1]), default=0)
            self.cur = len(segs[-1])
            longest = max(first, mid, self.cur)
        if hdr:
            f.max_header_line = max(f.max_header_line, longest)
        else:
            f.max_body_line = max(f.max_body_line, longest)
        if self.action == _FIX and not hdr and longest > self.limit:
            f.broke_long_lines = True
            return self._break(segs, start)
        return p

    def _break(self, segs: list[bytes], cur: int) -> bytes:
        out = []
        limit = self.limit
        last = len(segs) - 1
        for k, s in enumerate(segs):
            end = b""
            if k < last:
                end = b"\r\n" if s[-1:] == b"\r" else b"\n"
                s = s[:-1] if end == b"\r\n" else s
            while cur + len(s) > limit:
                take = limit - cur
                out += [s[:take], b"\r\n"]
                s = s[take:]
                cur = 0
            out += [s, end]
            cur = 0 if k < last else cur + len(s)
        self.cur = cur
        return b"".join(out)

    def finish(self) -> bytes:
        """End of body: settle a trailing CR; returns octets still to hand out."""
        tail = b""
        if self.pending_cr and not self.binary:
            self.pending_cr = False
            f = self.facts
            if self.in_headers:
                f.lone_cr_lf_in_headers += 1
            else:
                f.lone_cr_lf_in_body += 1
            if self.fix_hdr if self.in_headers else self.fix_body:
                tail = b"\n"
                f.fixed_lone_cr_lf = True
                f.size += 1
        f = self.facts
        f.received = self.received
        if f.body_offset < 0:
            f.body_offset = f.size
        return tail
