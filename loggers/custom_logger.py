"""custom_logger (modules.custom_logger): log lines in formats the operator writes.

Owns: one logger actor per `custom_logger "name" { ... }` stanza, the writers of its
files, the compiled formats of its stages and their sanitizer. Also the building of every
log module of this family for the logging service (`build_log_modules`: custom_logger
here, exim_logger / postfix_logger / sendmail_logger in `loggers.mta_formats`) and the
setting of `records.NEEDS` (which headers and contexts the producers attach) from the
formats in use.

Stages: reception, delivery, xfer (a Delivery record of kind X), transient_failure,
permanent_failure, rejection. A stage is logged when it has a format (`<stage>_format`
turns it on) unless its `log_*` switch is explicitly off, and its lines go to its own file
(`<stage>_logfile`, mode `<stage>_log_mode`) and to `mainlog` (every stage), each one
wherever it is set. A `log_*` switch set on without a format logs nothing and says so in
the paniclog. `paniclog` receives the daemon's paniclog lines when `log_errors` is on.
Destinations are what ec_logger's `destination()` accepts: file paths, file://, jlog://
(`jlog://var/log/ecelerity/delivery_log_rt=>my_subscriber`), cluster://, syslog://.

Formats: literal text with `%` specifiers. A specifier is `%` followed by a name made of
letters and digits, possibly joined by `_` or `:` (`%BI`, `%vctx_mess`,
`%outbound_tls_cipher`), optionally followed by `{argument}` (`%t{%Y-%m-%d}`, `%h{Subject}`,
`%T{3}`, `%us{6}`, `%vctx_conn{key}`), or the Sieve++ form `%{namespace:name}`
(`%{vctx_mess:key}`, `%{outbound_tls:outbound_tls_cipher}`). Names are taken whole, so a
letter right after a specifier is part of its name (the page's `%mx` is one unknown macro
and prints nothing, as its example line shows); `%%` is a literal `%`; a `%` followed by
anything else is printed as is. Names are looked up in the `namespace` list in order
(default `custom_logger,sieve`): `custom_logger` holds the page's specifiers, `sieve` the
`%{vctx_conn:k}` / `%{vctx_mess:k}` context macros, `outbound_tls` the tls_macros module's
macros (only when a `tls_macros` stanza is configured). A name no namespace knows prints
nothing.

What each specifier prints for each record kind (empty when the record has no such fact):
%A auth method and %U auth user (when the session authenticated), %b / %g binding and
binding group, %B size, %BI batch id, %c / %C bounce class name / number (failures, from
the bounce classifier), %CI connection id, %d routing domain, %H the remote host's IP
(the client for receptions and rejections, the receiving server for deliveries and
failures), %h{X} the first header X, %i message id (rejections: the batch's, or
00/00-00000-00000000 before MAIL FROM), %m / %M MAIL FROM local part / domain, %n the
remote's reply (deliveries and failures) or the rejection text, %N tries, %P / %PG pathway
and pathway group, %p protocol (`unknown` for a rejection before MAIL FROM), %r / %R RCPT
TO local part / domain, %s / %S stage text / number (failures; other records: empty / 22,
"in unknown state", as the page's rejection example shows), %t unix time, %t{fmt} strftime
(local time), %T / %T{N} seconds in queue (2 / N decimals), %us{N} the time with N decimals
(1-6, default 6), %vctx_conn{k} / %vctx_mess{k} context values.

Sanitize (`sanitize = "special_characters,non_printable,tr/ /_/"`, steps applied in the
order written) acts on data that comes from outside: addresses, the remote's or the
rejection's text, header and context values, auth and TLS strings. special_characters:
`\\` and control characters escaped (`\\\\`, `\\n`, `\\r`, `\\t`, `\\xHH`); non_printable: every
byte outside printable ASCII written as `\\ddd` (its decimal code); tr/set1/set2/: tr(1)
style mapping (ranges `a-z`, escapes `\\/ \\\\ \\n \\t`; a shorter set2 repeats its last
character). Whatever the sanitize setting, control characters left in a value are escaped
as special_characters does, so one record is always one line.

concurrency / thread_pool: without thread_pool, an instance gets a pool of its own
(`custom_logger:<name>`, shown by `threads stats`) with `concurrency` threads (default 1) and
a backlog of 1024; with thread_pool, the named pool (a ThreadPool stanza) runs the appends
and its own Concurrency applies. Every file has one writer with one batch in flight, so the
lines of a file keep their order whatever the concurrency.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from ecmta.loggers import records
from ecmta.loggers.base import LoggerActor, attach

NULL_ID = "00/00-00000-00000000"

# log_formats.connection.stages
STAGE_TEXT = (
    "while not connected", "while idle", "during MAIL FROM", "after MAIL FROM", "during RCPT TO",
    "after RCPT TO", "during DATA", "after DATA", "while sending BODY", "reading confirmation",
    "during EHLO", "after EHLO", "reading BANNER", "during RSET", "after RSET", "during STARTTLS",
    "after STARTTLS", "handshaking TLS", "renegotiating TLS", "during XCLIENT", "after XCLIENT",
    "out of band bounce", "in unknown state",
)
STAGE_UNKNOWN = 22

# stage -> (logfile option, format option, mode option, switch option)
STAGES = {
    "reception": ("reception_logfile", "reception_format", "reception_log_mode", "log_receptions"),
    "delivery": ("delivery_logfile", "delivery_format", "delivery_log_mode", "log_deliveries"),
    "xfer": ("xfer_logfile", "xfer_format", "xfer_log_mode", None),
    "transient_failure": ("transient_failure_logfile", "transient_failure_format",
                          "transient_failure_log_mode", "log_transient_failures"),
    "permanent_failure": ("permanent_failure_logfile", "permanent_failure_format",
                          "permanent_failure_log_mode", "log_permanent_failures"),
    "rejection": ("rejection_logfile", "rejection_format", "rejection_log_mode", "log_rejections"),
}
STAGE_RECORDS = {
    "reception": records.Reception, "delivery": records.Delivery, "xfer": records.Delivery,
    "transient_failure": records.Failure, "permanent_failure": records.Failure,
    "rejection": records.Rejection,
}
DEFAULT_NAMESPACES = ("custom_logger", "sieve")


class FormatError(ValueError):
    pass


def stage_of(rec) -> str:
    if isinstance(rec, records.Reception):
        return "reception"
    if isinstance(rec, records.Delivery):
        return "xfer" if rec.kind == "X" else "delivery"
    if isinstance(rec, records.Failure):
        return "permanent_failure" if rec.permanent else "transient_failure"
    if isinstance(rec, records.Rejection):
        return "rejection"
    return ""


# -- sanitize ---------------------------------------------------------------------------------

_CTRL = re.compile(r"[\x00-\x1f\x7f]")
_CTRL_NAMES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _ctrl_escape(m: re.Match) -> str:
    ch = m.group(0)
    return _CTRL_NAMES.get(ch) or f"\\x{ord(ch):02x}"


def line_safe(text: str) -> str:
    """Control characters written as \\n, \\r, \\t, \\xHH: a value never breaks a line."""
    return _CTRL.sub(_ctrl_escape, text) if _CTRL.search(text) else text


def _special(text: str) -> str:
    return line_safe(text.replace("\\", "\\\\"))


def _non_printable(text: str) -> str:
    if all(" " <= ch <= "~" for ch in text):
        return text
    out = []
    for ch in text:
        if " " <= ch <= "~":
            out.append(ch)
        else:
            data = ch.encode("utf-8", "surrogateescape")
            out.extend(f"\\{b:03d}" for b in data)
    return "".join(out)


_TR_ESC = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "/": "/", "-": "-"}


def _tr_set(spec: str) -> str:
    chars, i = [], 0
    while i < len(spec):
        ch = spec[i]
        if ch == "\\" and i + 1 < len(spec):
            chars.append(_TR_ESC.get(spec[i + 1], spec[i + 1]))
            i += 2
            continue
        if ch == "-" and chars and i + 1 < len(spec):
            hi = spec[i + 1]
            if hi == "\\" and i + 2 < len(spec):
                hi = _TR_ESC.get(spec[i + 2], spec[i + 2])
                i += 1
            lo = chars.pop()
            if ord(hi) < ord(lo):
                raise FormatError(f"tr range {lo}-{hi} is reversed")
            chars.extend(chr(c) for c in range(ord(lo), ord(hi) + 1))
            i += 2
            continue
        chars.append(ch)
        i += 1
    return "".join(chars)


def _tr_table(src: str, dst: str) -> dict:
    a, b = _tr_set(src), _tr_set(dst)
    if not a:
        raise FormatError("tr: empty first set")
    if not b:
        b = a
    b = b + b[-1] * max(0, len(a) - len(b))
    table = {}
    for x, y in zip(a, b):
        table.setdefault(ord(x), y)
    return table


def _split_tr(spec: str, start: int) -> tuple[str, str, int]:
    """The two sets of `tr/a/b/` starting at spec[start] (just after "tr/")."""
    parts, buf, i = [], [], start
    while i < len(spec):
        ch = spec[i]
        if ch == "\\" and i + 1 < len(spec):
            buf.append(spec[i:i + 2])
            i += 2
            continue
        if ch == "/":
            parts.append("".join(buf))
            buf = []
            i += 1
            if len(parts) == 2:
                return parts[0], parts[1], i
            continue
        buf.append(ch)
        i += 1
    raise FormatError(f"unterminated tr/// in sanitize \"{spec}\"")


class Sanitizer:
    """The `sanitize` option compiled: steps applied in order, then line_safe."""

    def __init__(self, spec: str = "") -> None:
        self.spec = spec or ""
        self.steps: list = []
        i, s = 0, self.spec
        while i < len(s):
            if s[i] in ", \t":
                i += 1
                continue
            if s.startswith("tr/", i):
                a, b, i = _split_tr(s, i + 3)
                table = _tr_table(a, b)
                self.steps.append(lambda t, _tb=table: t.translate(_tb))
                continue
            end = s.find(",", i)
            word = (s[i:] if end < 0 else s[i:end]).strip()
            i = len(s) if end < 0 else end + 1
            if word == "special_characters":
                self.steps.append(_special)
            elif word == "non_printable":
                self.steps.append(_non_printable)
            elif word:
                raise FormatError(f"unknown sanitize rule '{word}' (special_characters, "
                                  "non_printable, tr/.../.../)")

    def __call__(self, text) -> str:
        text = "" if text is None else str(text)
        for step in self.steps:
            text = step(text)
        return line_safe(text)


# -- the facts of a record ---------------------------------------------------------------------

def _ctx_conn(rec) -> dict:
    return getattr(rec, "ctx_conn", None) or {}


def _ctx_mess(rec) -> dict:
    return getattr(rec, "ctx_mess", None) or {}


def _has_message(rec) -> bool:
    return not isinstance(rec, records.Rejection) or bool(rec.batch_id)


def _split(addr: str) -> tuple[str, str]:
    if not addr:
        return "", ""
    local, at, domain = addr.rpartition("@")
    return (local, domain.lower()) if at else (addr, "")


def rcpt_of(rec) -> tuple[str, str]:
    if isinstance(rec, records.Rejection):
        if rec.rcptto:
            return _split(rec.rcptto)
        mess = rec.ctx_mess or {}
        return mess.get("rcptto_localpart", ""), mess.get("rcptto_domain", "")
    return getattr(rec, "rcpt_local", ""), getattr(rec, "rcpt_domain", "")


def sender_of(rec) -> tuple[str, str]:
    if isinstance(rec, records.Rejection):
        return _split(rec.mailfrom)
    return getattr(rec, "sender_local", ""), getattr(rec, "sender_domain", "")


def remote_ip_of(rec) -> str:
    if isinstance(rec, (records.Delivery, records.Failure)):
        return rec.remote_ip
    return getattr(rec, "peer_ip", "") or ""


def auth_of(rec) -> tuple[str, str]:
    conn = _ctx_conn(rec)
    user = conn.get("auth_user", "")
    return (conn.get("auth_name", "") if user else ""), user


def response_of(rec) -> str:
    if isinstance(rec, records.Failure):
        return rec.response
    if isinstance(rec, records.Delivery):
        return rec.response
    if isinstance(rec, records.Rejection):
        return rec.text
    return ""


def classify(rec):
    """The bounce classifier's class of a failure's reply, or None."""
    if not isinstance(rec, records.Failure):
        return None
    try:
        from ecmta.loggers import bounce_classifier
    except ImportError:
        return None
    try:
        return bounce_classifier.current().classify_smtp(rec.response, rec.domain).klass
    except Exception:
        return None


def _num(value) -> str:
    return "" if value is None else str(value)


def _queue_time(rec):
    if isinstance(rec, (records.Delivery, records.Failure)):
        return rec.seconds
    if isinstance(rec, records.Reception):
        return 0.0
    return None


def _decimals(arg, default: int, lo: int = 0, hi: int = 9) -> int:
    if arg is None or str(arg).strip() == "":
        return default
    try:
        return max(lo, min(hi, int(str(arg).strip())))
    except ValueError:
        return default


def _f_t(rec, arg, lg):
    if arg is None:
        return str(int(rec.ts))
    try:
        return time.strftime(arg, time.localtime(rec.ts))
    except (ValueError, OverflowError):
        return ""


def _f_T(rec, arg, lg):
    t = _queue_time(rec)
    return "" if t is None else f"{t:.{_decimals(arg, 2)}f}"


def _f_us(rec, arg, lg):
    return f"{rec.ts:.{_decimals(arg, 6, 1, 6)}f}"


def _f_size(rec, arg, lg):
    if isinstance(rec, records.Rejection):
        return "0" if rec.batch_id else ""
    return str(rec.size)


def _f_tries(rec, arg, lg):
    if isinstance(rec, (records.Delivery, records.Failure)):
        return str(rec.retries)
    return "0" if isinstance(rec, records.Reception) else ""


def _f_domain(rec, arg, lg):
    if isinstance(rec, (records.Delivery, records.Failure)):
        return rec.domain
    if isinstance(rec, records.Reception):
        return rec.routing_domain or rec.rcpt_domain
    return ""


def _f_protocol(rec, arg, lg):
    if isinstance(rec, records.Rejection):
        return "esmtp" if rec.batch_id else "unknown"
    return getattr(rec, "protocol", "") or ""


def _f_pathway(rec, arg, lg):
    if isinstance(rec, records.Rejection):
        return rec.pathway
    conn = _ctx_conn(rec)
    if not conn:
        return ""
    return conn.get("pathway", "default")


def _f_pathway_group(rec, arg, lg):
    if isinstance(rec, records.Rejection):
        return rec.pathway_group
    conn = _ctx_conn(rec)
    if not conn:
        return ""
    return conn.get("pathway_group", "default")


def _f_stage(rec, arg, lg):
    return str(rec.stage) if isinstance(rec, records.Failure) else str(STAGE_UNKNOWN)


def _f_stage_text(rec, arg, lg):
    if isinstance(rec, records.Failure) and 0 <= rec.stage < len(STAGE_TEXT):
        return STAGE_TEXT[rec.stage]
    return ""


def _f_class_name(rec, arg, lg):
    k = classify(rec)
    return k.name if k is not None else ""


def _f_class_code(rec, arg, lg):
    k = classify(rec)
    return str(k.code) if k is not None else ""


def _f_msg_id(rec, arg, lg):
    if isinstance(rec, records.Rejection):
        return rec.msg_id or rec.batch_id or NULL_ID
    return rec.msg_id or NULL_ID


def _f_batch_id(rec, arg, lg):
    return getattr(rec, "batch_id", "") or NULL_ID


def _f_conn_id(rec, arg, lg):
    return getattr(rec, "conn_id", "") or NULL_ID


def _f_binding(rec, arg, lg):
    return "" if isinstance(rec, records.Rejection) else rec.binding


def _f_group(rec, arg, lg):
    return "" if isinstance(rec, records.Rejection) else rec.binding_group


def _f_header(rec, arg, lg):
    if not arg:
        return ""
    return (getattr(rec, "headers", None) or {}).get(arg.strip().lower(), "")


def _f_vctx_conn(rec, arg, lg):
    return str(_ctx_conn(rec).get(arg or "", "")) if arg else ""


def _f_vctx_mess(rec, arg, lg):
    return str(_ctx_mess(rec).get(arg or "", "")) if arg else ""


# name -> (function, user data?)  user data is sanitized
CUSTOM_LOGGER_MACROS = {
    "A": (lambda r, a, lg: auth_of(r)[0], True),
    "b": (_f_binding, False),
    "B": (_f_size, False),
    "BI": (_f_batch_id, False),
    "c": (_f_class_name, False),
    "C": (_f_class_code, False),
    "CI": (_f_conn_id, False),
    "d": (_f_domain, True),
    "g": (_f_group, False),
    "H": (lambda r, a, lg: remote_ip_of(r), False),
    "h": (_f_header, True),
    "i": (_f_msg_id, False),
    "m": (lambda r, a, lg: sender_of(r)[0], True),
    "M": (lambda r, a, lg: sender_of(r)[1], True),
    "n": (lambda r, a, lg: response_of(r), True),
    "N": (_f_tries, False),
    "P": (_f_pathway, False),
    "PG": (_f_pathway_group, False),
    "p": (_f_protocol, False),
    "r": (lambda r, a, lg: rcpt_of(r)[0], True),
    "R": (lambda r, a, lg: rcpt_of(r)[1], True),
    "s": (_f_stage_text, False),
    "S": (_f_stage, False),
    "t": (_f_t, False),
    "T": (_f_T, False),
    "U": (lambda r, a, lg: auth_of(r)[1], True),
    "us": (_f_us, False),
    "vctx_conn": (_f_vctx_conn, True),
    "vctx_mess": (_f_vctx_mess, True),
}

# Sieve++ style `%{vctx_conn:key}` / `%{vctx_mess:key}`.
SIEVE_NAMESPACES = {"vctx_conn": _ctx_conn, "vctx_mess": _ctx_mess}


# -- formats ---------------------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z0-9]+(?:[_:]+[A-Za-z0-9]+)*")


@dataclass
class Compiled:
    """A format: literal strings and (function, argument, user-data) parts."""
    text: str
    parts: list = field(default_factory=list)
    headers: set = field(default_factory=set)      # %h{X} names (lower-cased)
    uses_ctx: bool = False                           # %vctx_*, %A, %U, %P, %PG

    def render(self, rec, sanitize) -> str:
        out = []
        for part in self.parts:
            if type(part) is str:
                out.append(part)
                continue
            fn, arg, user = part
            value = fn(rec, arg, None)
            out.append(sanitize(value) if user else line_safe(str(value)))
        return "".join(out)


_CTX_NAMES = {"vctx_conn", "vctx_mess", "A", "U", "P", "PG"}


class MacroSet:
    """The namespaces one instance searches, in order."""

    def __init__(self, namespaces=DEFAULT_NAMESPACES, tls_macros: bool = False) -> None:
        self.namespaces = [n.strip() for n in namespaces if n and n.strip()]
        self.tls = tls_macros

    def _in(self, ns: str, name: str):
        if ns == "custom_logger":
            return CUSTOM_LOGGER_MACROS.get(name)
        if ns == "outbound_tls" and self.tls:
            from ecmta.loggers import tls_macros
            fn = tls_macros.MACROS.get(name)
            if fn is not None:
                return (lambda r, a, lg, _fn=fn: _fn(r), True)
        return None

    def lookup(self, name: str):
        for ns in self.namespaces:
            hit = self._in(ns, name)
            if hit is not None:
                return hit
        return None

    def qualified(self, ns: str, name: str):
        if ns in SIEVE_NAMESPACES:
            if "sieve" not in self.namespaces:
                return None
            getter = SIEVE_NAMESPACES[ns]
            return (lambda r, a, lg, _g=getter, _k=name: str(_g(r).get(_k, "")), True)
        if ns not in self.namespaces:
            return None
        return self._in(ns, name)


_NOTHING = (lambda r, a, lg: "", False)


def compile_format(text: str, macros: MacroSet | None = None) -> Compiled:
    macros = macros or MacroSet()
    c = Compiled(text)
    lit: list[str] = []
    i, n = 0, len(text)

    def flush():
        if lit:
            c.parts.append("".join(lit))
            lit.clear()
    while i < n:
        ch = text[i]
        if ch != "%":
            lit.append(ch)
            i += 1
            continue
        if i + 1 < n and text[i + 1] == "%":
            lit.append("%")
            i += 2
            continue
        if i + 1 < n and text[i + 1] == "{":
            end = text.find("}", i + 2)
            if end < 0:
                raise FormatError(f"unterminated %{{ in format \"{text}\"")
            inner = text[i + 2:end]
            ns, colon, name = inner.partition(":")
            if colon:
                hit = macros.qualified(ns.strip(), name.strip())
                if ns.strip() in SIEVE_NAMESPACES:
                    c.uses_ctx = True
            else:
                hit = macros.lookup(inner.strip())
                if inner.strip() in _CTX_NAMES:
                    c.uses_ctx = True
            flush()
            fn, user = hit or _NOTHING
            c.parts.append((fn, None, user))
            i = end + 1
            continue
        m = _NAME.match(text, i + 1)
        if not m:
            lit.append("%")
            i += 1
            continue
        name = m.group(0)
        j = m.end()
        arg = None
        if j < n and text[j] == "{":
            end = text.find("}", j + 1)
            if end < 0:
                raise FormatError(f"unterminated {{ after %{name} in format \"{text}\"")
            arg = text[j + 1:end]
            j = end + 1
        hit = macros.lookup(name)
        if hit is not None and name == "h" and arg:
            c.headers.add(arg.strip().lower())
        if hit is not None and name in _CTX_NAMES:
            c.uses_ctx = True
        flush()
        fn, user = hit or _NOTHING
        c.parts.append((fn, arg, user))
        i = j
    flush()
    return c


# -- the logger actor ------------------------------------------------------------------------------

class CustomLoggerActor(LoggerActor):
    """One custom_logger instance: each stage's line to its file and to the mainlog."""

    def __init__(self, name: str, writers: dict, formats: dict, targets: dict, sanitize: Sanitizer) -> None:
        super().__init__(name, writers)
        self.formats = formats          # stage -> Compiled
        self.targets = targets          # stage -> tuple of writer keys
        self.sanitize = sanitize

    def render(self, rec):
        stage = stage_of(rec)
        fmt = self.formats.get(stage)
        if fmt is None:
            return
        line = fmt.render(rec, self.sanitize)
        for target in self.targets.get(stage, ()):
            yield target, line


def render_line(fmt_text: str, rec, sanitize: str = "", namespaces=DEFAULT_NAMESPACES,
                tls_macros: bool = False) -> str:
    """One record through one format (tests, msys.expandMacro-like uses)."""
    return compile_format(fmt_text, MacroSet(namespaces, tls_macros)).render(rec, Sanitizer(sanitize))


# -- building the instances (called by the logging service) -----------------------------------------

def _opt(scope, name, default=None):
    value = scope.options.get(name) if scope is not None else None
    return default if value is None else value.value


def _explicit(scope, name):
    value = scope.options.get(name)
    return None if value is None else value.value


@dataclass
class Plan:
    """A validated instance, before anything is spawned."""
    module: str
    name: str
    files: dict                     # writer key -> (destination, option, mode)
    actor: type
    args: tuple
    kinds: tuple
    panic_key: str | None = None
    notes: list = field(default_factory=list)
    headers: set = field(default_factory=set)
    delivery_headers: set = field(default_factory=set)
    delivery_ctx: bool = False
    pool: str | None = None


def plan_custom_logger(scope, state: str, destination, tls_loaded: bool) -> Plan:
    name = scope.name or "custom_logger"
    namespaces = [n for n in str(_opt(scope, "namespace", ",".join(DEFAULT_NAMESPACES))).split(",")]
    macros = MacroSet(namespaces, tls_loaded)
    try:
        sanitize = Sanitizer(str(_opt(scope, "sanitize", "") or ""))
    except FormatError as exc:
        raise _config_error(f"custom_logger \"{name}\" sanitize: {exc}")
    files: dict = {}
    by_dest: dict = {}
    notes: list[str] = []

    def writer_key(raw: str, option: str, mode: int) -> str:
        dest = destination(raw, option, state)
        key = repr(dest)
        if key not in by_dest:
            by_dest[key] = option
            files[option] = (dest, option, mode)
        return by_dest[key]
    mainlog = _opt(scope, "mainlog")
    main_key = writer_key(mainlog, "mainlog", _opt(scope, "mainlog_mode", 0o644)) if mainlog else None
    formats, targets = {}, {}
    plan = Plan("custom_logger", name, files, CustomLoggerActor, (), ())
    for stage, (file_opt, fmt_opt, mode_opt, switch) in STAGES.items():
        fmt_text = _opt(scope, fmt_opt)
        explicit = _explicit(scope, switch) if switch else None
        on = bool(fmt_text) if explicit is None else bool(explicit)
        if not on:
            continue
        if not fmt_text:
            notes.append(f"custom_logger \"{name}\": {switch} is on but {fmt_opt} is not set; "
                         f"nothing is logged for that stage")
            continue
        path = _opt(scope, file_opt)
        keys = []
        if path:
            keys.append(writer_key(path, file_opt, _opt(scope, mode_opt, 0o644)))
        if main_key and main_key not in keys:
            keys.append(main_key)
        if not keys:
            notes.append(f"custom_logger \"{name}\": {fmt_opt} is set but neither {file_opt} nor "
                         "mainlog is; nothing is logged for that stage")
            continue
        try:
            compiled = compile_format(str(fmt_text), macros)
        except FormatError as exc:
            raise _config_error(f"custom_logger \"{name}\" {fmt_opt}: {exc}")
        formats[stage] = compiled
        targets[stage] = tuple(keys)
        if stage == "reception":
            plan.headers |= compiled.headers
        elif stage != "rejection":
            plan.delivery_headers |= compiled.headers
            plan.delivery_ctx = plan.delivery_ctx or compiled.uses_ctx
    panic_key = None
    paniclog = _opt(scope, "paniclog")
    if paniclog and bool(_opt(scope, "log_errors", False)):
        panic_key = writer_key(paniclog, "paniclog", _opt(scope, "paniclog_mode", 0o644))
    plan.args = (formats, targets, sanitize)
    plan.kinds = tuple(dict.fromkeys(STAGE_RECORDS[s] for s in formats))
    plan.panic_key = panic_key
    plan.notes = notes
    pool = _opt(scope, "thread_pool")
    plan.pool = str(pool) if pool else None
    conc = _opt(scope, "concurrency")
    # Without thread_pool the instance writes through a pool of its own with `concurrency`
    # threads (default 1) and the documented backlog of 1024.
    plan.own_pool = None if pool else (f"custom_logger:{name}", int(conc or 1), 1024)
    return plan


def _config_error(text: str) -> Exception:
    from ecmta.loggers.ec_logger import LogConfigError
    return LogConfigError(text)


def build_log_modules(service, cfg, state: str) -> list:
    """Instances (ec_logger._Instance) of every custom_logger / exim_logger /
    postfix_logger / sendmail_logger stanza, with their writers and actors started and
    attached to the bus; also sets records.NEEDS. Validates every stanza before spawning
    anything, so a configuration error leaves nothing running."""
    from ecmta.loggers import mta_formats
    from ecmta.loggers.ec_logger import _Instance
    from ecmta.loggers.ec_logger import destination as dest
    from ecmta.loggers.panic import panic

    tls_loaded = any(bool(_opt(s, "enabled", True)) for s in cfg.scopes("tls_macros"))
    plans = [plan_custom_logger(s, state, dest, tls_loaded)
             for s in cfg.scopes("custom_logger") if bool(_opt(s, "enabled", True))]
    plans += mta_formats.plans(cfg, state, dest)
    for p in plans:
        if p.pool and not _pool_exists(p.pool, cfg):
            raise _config_error(f"{p.module} \"{p.name}\" thread_pool = \"{p.pool}\": no such ThreadPool")
    pools = getattr(service.daemon, "pools", None)
    for p in plans:
        own = getattr(p, "own_pool", None)
        if own and pools is not None:
            pools.ensure(*own)
            p.pool = own[0]
    headers, dheaders, dctx = set(), set(), False
    for p in plans:
        headers |= p.headers
        dheaders |= p.delivery_headers
        dctx = dctx or p.delivery_ctx
    records.NEEDS.set(headers, dheaders, dctx)
    instances = []
    for p in plans:
        writers = {key: _spawn_writer(service, d, f"{p.module}:{option}", mode, p.pool)
                   for key, (d, option, mode) in p.files.items()}
        inst = _Instance(f"{p.module}:{p.name}", writers, {}, [])
        if p.kinds:
            ref = service.spawn_logger(p.actor, inst.name, writers, *p.args, kind=p.module)
            inst.actor = ref
            inst.handles.append(attach(ref, p.kinds))
        inst.panic_key = p.panic_key
        instances.append(inst)
    # the notes go to these modules' paniclogs too
    from ecmta.loggers import panic as paniclog
    if getattr(service, "panic_writer", None) is not None:
        paniclog.set_sink(service._panic_sink(service.panic_writer, *panic_writers(instances)))
    for p in plans:
        for note in p.notes:
            panic(note, subsystem=p.module)
    return instances


def panic_writers(instances) -> list:
    """The writers of these instances that receive the daemon's paniclog lines."""
    out = []
    for inst in instances:
        key = getattr(inst, "panic_key", None)
        if key and key in inst.writers:
            out.append(inst.writers[key])
    return out


def _pool_exists(name: str, cfg) -> bool:
    from ecmta import pools
    if name in pools.current():
        return True
    return any((sc.name or "").lower() == name.lower() for sc in cfg.scopes("ThreadPool"))


def _spawn_writer(service, dest, kind: str, mode: int, pool: str | None):
    if pool:
        return service._writer(dest, kind, mode, pool=pool)
    return service._writer(dest, kind, mode)
