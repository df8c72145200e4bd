"""Bounce classification: SMTP replies and out-of-band notices -> Momentum's bounce codes.

Owns: the classification codes of bounce_logger.classification.codes (1..100, their names,
categories and ecmta's symbolic BC_* names), the built-in rules (data: bounce_rules.txt in
this folder, a table of patterns over the reply code, the RFC 3463 enhanced status code
and the text, first match wins), the `bounce_classifier_override` module (custom classes,
SMTP rules per domain and global, MDN rules, from .ovr files refreshed every `refresh`
seconds), and the reading of an inbound message as a bounce (`analyze_message`: a DSN, a
recognisable non-DSN bounce, an auto-reply, a challenge-response probe, a (un)subscribe
request) with its original recipient (bounce_suppress_list honoured).

Order of classification of an SMTP reply (`Classifier.classify_smtp`): user rules for the
domain, global user rules, system rules (the `system_smtp_classification_override` file,
when it exists), then the built-in table. An override rule is a static text or, with `|`
in it, a wildcard (`|` matches anything); it matches any substring of the reply, ignoring
case (modules.bounce_classifier_override). MDN overrides (`bounce_code,rule`) are tried on
the classification text of an out-of-band notice before ecmta's own reading of it.

Symbolic names: Momentum documents BC_UNDETERMINED, BC_SOFT_TIMEOUT and BC_SUBSCRIBE
(lua.ref.msys.bounce.classify); the other names follow the same scheme (category, then
the class). Custom classes are BC_CUSTOM_<code>.

Process-wide state: `current()` is the classifier of the running configuration; the
logging service installs a new one on every configuration (`configure`). Everything else
here is pure. Reading override files happens at configuration time and, on refresh, in
the IO pool.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import fnmatch
import os
import re
from dataclasses import dataclass, field
from importlib import resources

# -- the classification codes -------------------------------------------------------------------


@dataclass(frozen=True)
class BounceClass:
    code: int
    name: str           # "Invalid Recipient"
    symbol: str         # "BC_HARD_INVALID_RECIPIENT"
    category: str       # Hard | Soft | Admin | Block | Undetermined | Custom
    description: str    # the table's description column


_TABLE = (
    (1, "Undetermined", "BC_UNDETERMINED", "Undetermined", "The response text could not be identified."),
    (10, "Invalid Recipient", "BC_HARD_INVALID_RECIPIENT", "Hard", "The recipient is invalid."),
    (20, "Soft Bounce", "BC_SOFT_BOUNCE", "Soft", "The message soft bounced."),
    (21, "DNS Failure", "BC_SOFT_DNS_FAILURE", "Soft", "The message bounced due to a DNS failure."),
    (22, "Mailbox Full", "BC_SOFT_MAILBOX_FULL", "Soft",
     "The message bounced due to the remote mailbox being over quota."),
    (23, "Too Large", "BC_SOFT_TOO_LARGE", "Soft",
     "The message bounced because it was too large for the recipient."),
    (24, "Timeout", "BC_SOFT_TIMEOUT", "Soft", "The message timed out."),
    (25, "Admin Failure", "BC_ADMIN_FAILURE", "Admin",
     "The message was failed by Momentum's configured policies."),
    (30, "Generic Bounce: No RCPT", "BC_HARD_NO_RCPT", "Hard",
     "No recipient could be determined for the message."),
    (40, "Generic Bounce", "BC_SOFT_GENERIC", "Soft", "The message failed for unspecified reasons."),
    (50, "Mail Block", "BC_BLOCK_MAIL", "Block", "The message was blocked by the receiver."),
    (51, "Spam Block", "BC_BLOCK_SPAM", "Block",
     "The message was blocked by the receiver as coming from a known spam source."),
    (52, "Spam Content", "BC_BLOCK_SPAM_CONTENT", "Block",
     "The message was blocked by the receiver as spam."),
    (53, "Prohibited Attachment", "BC_BLOCK_ATTACHMENT", "Block",
     "The message was blocked by the receiver because it contained an attachment."),
    (54, "Relaying Denied", "BC_BLOCK_RELAY_DENIED", "Block",
     "The message was blocked by the receiver because relaying is not allowed."),
    (60, "Auto-Reply", "BC_SOFT_AUTO_REPLY", "Soft", "The message is an auto-reply/vacation mail."),
    (70, "Transient Failure", "BC_SOFT_TRANSIENT", "Soft",
     "Message transmission has been temporarily delayed."),
    (80, "Subscribe", "BC_SUBSCRIBE", "Admin", "The message is a subscribe request."),
    (90, "Unsubscribe", "BC_UNSUBSCRIBE", "Hard", "The message is an unsubscribe request."),
    (100, "Challenge-Response", "BC_CHALLENGE_RESPONSE", "Soft",
     "The message is a challenge-response probe."),
)
CLASSES: dict[int, BounceClass] = {row[0]: BounceClass(*row) for row in _TABLE}
SYMBOLS: dict[str, int] = {c.symbol: c.code for c in CLASSES.values()}

UNDETERMINED, INVALID_RECIPIENT, SOFT_BOUNCE, DNS_FAILURE, MAILBOX_FULL = 1, 10, 20, 21, 22
TOO_LARGE, TIMEOUT, ADMIN_FAILURE, NO_RCPT, GENERIC = 23, 24, 25, 30, 40
MAIL_BLOCK, SPAM_BLOCK, SPAM_CONTENT, ATTACHMENT, RELAY_DENIED = 50, 51, 52, 53, 54
AUTO_REPLY, TRANSIENT, SUBSCRIBE, UNSUBSCRIBE, CHALLENGE_RESPONSE = 60, 70, 80, 90, 100


class ClassifierConfigError(ValueError):
    """A bounce_classifier_override setting that cannot be used (the configuration fails)."""


def custom_class(code: int, description: str) -> BounceClass:
    return BounceClass(code, description, f"BC_CUSTOM_{code}", "Custom", description)


# -- replies ---------------------------------------------------------------------------------------
_CODE = re.compile(r"^\s*([2-5]\d\d)(?=[ -]|$)[ -]?")
_ENH = re.compile(r"\s*#?([2-5]\.\d{1,3}\.\d{1,3})(?!\d|\.\d)")


def parse_reply(text: str) -> tuple[str, str]:
    """(reply code, enhanced status code) at the start of a reply; "" for what is absent."""
    text = text or ""
    m = _CODE.match(text)
    code = m.group(1) if m else ""
    e = _ENH.match(text, m.end() if m else 0)
    return code, e.group(1) if e else ""


# -- rules -----------------------------------------------------------------------------------------
def _globs(spec: str):
    if spec == "*":
        return None
    return re.compile("|".join(fnmatch.translate(g.strip()) for g in spec.split(",") if g.strip()))


@dataclass(frozen=True)
class Rule:
    klass: int
    code: re.Pattern | None
    enhanced: re.Pattern | None
    text: re.Pattern | None
    source: str                 # "bounce_rules.txt:42" or an .ovr file:line
    raw: str

    def matches(self, code: str, enhanced: str, text: str) -> bool:
        if self.code is not None and not self.code.match(code):
            return False
        if self.enhanced is not None and not self.enhanced.match(enhanced):
            return False
        return self.text is None or self.text.search(text) is not None


def parse_rules(text: str, source: str) -> list[Rule]:
    """The built-in table format (see bounce_rules.txt). Raises ValueError naming the line."""
    rules = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 3)
        if len(parts) != 4:
            raise ValueError(f"{source}:{n}: expected <class> <code> <enhanced> <text>")
        klass, code, enh, rx = parts
        try:
            rules.append(Rule(int(klass), _globs(code), _globs(enh),
                              None if rx == "*" else re.compile(rx, re.I), f"{source}:{n}", line))
        except (ValueError, re.error) as exc:
            raise ValueError(f"{source}:{n}: {exc}") from None
    return rules


def _load_builtin() -> list[Rule]:
    text = (resources.files("ecmta.loggers") / "bounce_rules.txt").read_text(encoding="utf-8")
    return parse_rules(text, "bounce_rules.txt")


BUILTIN_RULES: list[Rule] = _load_builtin()


@dataclass(frozen=True)
class OverrideRule:
    klass: int
    domain: str                 # "" = every domain (SMTP rules); MDN rules have none
    pattern: re.Pattern
    source: str
    raw: str


def override_pattern(rule: str) -> re.Pattern:
    """A static substring, or with `|` in it a wildcard where `|` matches anything."""
    return re.compile(".*".join(re.escape(p) for p in rule.split("|")), re.I | re.S)


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def parse_override(text: str, source: str, known, *, mdn: bool) -> tuple[list[OverrideRule], list[str]]:
    """Rules of an .ovr file: `domain,bounce_code,rule` (SMTP) or `bounce_code,rule` (MDN).
    Returns (rules, problems); a bad line is skipped and reported, never fatal."""
    rules, problems = [], []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split(",", 1 if mdn else 2)
        if len(parts) != (2 if mdn else 3):
            shape = "bounce_code,rule" if mdn else "domain,bounce_code,rule"
            problems.append(f"{source}:{n}: expected {shape}")
            continue
        domain = "" if mdn else _unquote(parts[0]).lower()
        code_text, rule = _unquote(parts[-2]), _unquote(parts[-1])
        try:
            code = int(code_text)
        except ValueError:
            problems.append(f"{source}:{n}: bounce_code '{code_text}' is not a number")
            continue
        if code not in known:
            problems.append(f"{source}:{n}: bounce_code {code} is neither a built-in class "
                            "nor one of custom_classes")
            continue
        if not rule:
            problems.append(f"{source}:{n}: empty rule")
            continue
        rules.append(OverrideRule(code, domain, override_pattern(rule), f"{source}:{n}", line.strip()))
    return rules, problems


# -- the classifier ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Result:
    klass: BounceClass
    rule: str = ""              # where the deciding rule is written ("" = default)

    @property
    def code(self) -> int:
        return self.klass.code


@dataclass
class Overrides:
    smtp_user: list = field(default_factory=list)
    smtp_system: list = field(default_factory=list)
    mdn_user: list = field(default_factory=list)
    mdn_system: list = field(default_factory=list)


_CACHE_SIZE = 8192


class Classifier:
    """Classifies SMTP replies and out-of-band notices. Immutable once built, except for
    `replace_overrides` (the refresh) which swaps the override lists as a whole."""

    def __init__(self, rules: list[Rule] | None = None, overrides: Overrides | None = None,
                 custom: dict[int, str] | None = None) -> None:
        self.rules = list(BUILTIN_RULES if rules is None else rules)
        self.classes = dict(CLASSES)
        for code, desc in (custom or {}).items():
            self.classes[int(code)] = custom_class(int(code), str(desc))
        self.overrides = overrides or Overrides()
        self.suppress = (frozenset(), ())     # bounce_suppress_list (see configure)
        self._cache: dict[tuple[str, str], Result] = {}

    def lookup(self, code: int) -> BounceClass:
        return self.classes.get(int(code)) or CLASSES[UNDETERMINED]

    def replace_overrides(self, overrides: Overrides) -> None:
        self.overrides = overrides
        self._cache = {}

    # -- SMTP replies -------------------------------------------------------------------------
    def classify_smtp(self, text: str, domain: str = "") -> Result:
        text = "" if text is None else str(text)
        domain = (domain or "").lower()
        key = (text, domain)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        result = self._classify_smtp(text, domain)
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        self._cache[key] = result
        return result

    def _classify_smtp(self, text: str, domain: str) -> Result:
        ov = self.overrides
        if domain:
            for r in ov.smtp_user:
                if r.domain == domain and r.pattern.search(text):
                    return Result(self.lookup(r.klass), r.source)
        for r in ov.smtp_user:
            if not r.domain and r.pattern.search(text):
                return Result(self.lookup(r.klass), r.source)
        for r in ov.smtp_system:
            if (not r.domain or r.domain == domain) and r.pattern.search(text):
                return Result(self.lookup(r.klass), r.source)
        code, enh = parse_reply(text)
        return self.match_rules(code, enh, text)

    def match_rules(self, code: str, enh: str, text: str) -> Result:
        for rule in self.rules:
            if rule.matches(code, enh, text):
                return Result(self.lookup(rule.klass), rule.source)
        return Result(CLASSES[UNDETERMINED])

    # -- out-of-band notices ----------------------------------------------------------------------
    def classify_mdn(self, notice: "Notice") -> Result:
        ov = self.overrides
        for r in (*ov.mdn_user, *ov.mdn_system):
            if r.pattern.search(notice.classification_text):
                return Result(self.lookup(r.klass), r.source)
        fixed = _KIND_CLASS.get(notice.kind)
        if fixed is not None:
            return Result(self.lookup(fixed), f"<{notice.kind}>")
        if not notice.orig_rcpt:
            return Result(self.lookup(NO_RCPT), "<no original recipient>")
        text = notice.text
        code, enh = parse_reply(text)
        if not code and notice.status:
            code = notice.status[0] + "00"
        if not enh and notice.status:
            enh = notice.status
        result = self.match_rules(code, enh, text)
        if notice.action == "delayed" and result.klass.category not in ("Soft",):
            return Result(self.lookup(TRANSIENT), "<delayed>")
        return result


_KIND_CLASS = {"autoreply": AUTO_REPLY, "challenge": CHALLENGE_RESPONSE,
               "subscribe": SUBSCRIBE, "unsubscribe": UNSUBSCRIBE}

# -- process-wide classifier ------------------------------------------------------------------------
_current = Classifier()


def current() -> Classifier:
    return _current


def install(classifier: Classifier) -> None:
    global _current
    _current = classifier


# -- out-of-band notices ---------------------------------------------------------------------------
MDN_SCAN_LIMIT = 256 * 1024         # bytes of a notice that are read
_ADDR = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+")
_SMTP_LINE = (re.compile(r"\b[45]\d\d[ -]#?[45]\.\d{1,3}\.\d{1,3}\b[^\r\n]*"),
              re.compile(r"(?:^|said:|:)[ \t]*([45]\d\d[ -][^\r\n]*)", re.M))
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery (status notification|failure|has failed|failed|problem)|"
    r"mail delivery (failed|failure|subsystem)|returned mail|failure notice|non[- ]?delivery|"
    r"could not be delivered|delivery notification|returned to sender|mail system error|"
    r"nondeliverable|message not delivered|rejected:", re.I)
_DAEMON_LOCAL = re.compile(r"^(mailer[-_]?daemon|postmaster|mail[-_ ]?delivery[-_ ]?subsystem|"
                           r"mail[-_]?administrator|mdaemon|bounce[sd]?)$", re.I)
_AUTOREPLY_SUBJECT = re.compile(r"^\s*(auto(matic)?[- ]?(reply|response|antwort|answer)|auto:|"
                                r"autoreply|out of (the )?office|abwesenheit|vacation|away from)", re.I)
_CHALLENGE = re.compile(
    r"challenge[- ]?response|please (confirm|verify) (that you are|you are|your (email|e-mail|identity)|"
    r"(that )?you('re| are) (a )?(human|real))|verify (that )?you are (a )?(human|real person)|"
    r"sender verification|held (for|pending) (sender )?(verification|approval)|"
    r"(boxbe|spam ?arrest|mailblocks|choicemail|sendio)\b|"
    r"add (yourself|your address) to (my|the) (approved|allowed|white) ?list", re.I)
_LIST_CMD = re.compile(r"^\s*(un)?subscribe\b", re.I)


@dataclass
class Notice:
    """What an inbound message says as a bounce."""
    kind: str                   # dsn | bounce | autoreply | challenge | subscribe | unsubscribe
    text: str                   # the diagnostic (a reply text) or the subject
    orig_rcpt: str              # "" when none could be determined
    status: str = ""            # DSN Status (enhanced code)
    action: str = ""            # DSN Action (failed, delayed, ...)
    classification_text: str = ""   # what MDN override rules are matched against


def parse_suppress_list(value) -> tuple[frozenset, tuple]:
    """bounce_suppress_list: "a@b.c,@d.e" -> (addresses, domains), lower-cased."""
    addrs, domains = set(), []
    for item in str(value or "").replace(";", ",").split(","):
        item = item.strip().strip("<>").lower()
        if not item:
            continue
        if item.startswith("@"):
            domains.append(item[1:])
        elif "@" in item:
            addrs.add(item)
        else:
            domains.append(item)
    return frozenset(addrs), tuple(domains)


def _suppressed(addr: str, suppress) -> bool:
    a = addr.lower()
    addrs, domains = suppress
    if a in addrs:
        return True
    dom = a.rpartition("@")[2]
    return any(dom == d for d in domains)


def _address_of(value: str) -> str:
    """The address of a DSN recipient field ("rfc822; a@b") or a header ("Name <a@b>")."""
    value = (value or "").strip()
    if ";" in value:
        value = value.split(";", 1)[1].strip()
    _, addr = email.utils.parseaddr(value)
    addr = addr or value
    return addr.strip().strip("<>")


def _text_of(part) -> str:
    payload = part.get_payload(decode=True)
    if payload is None:
        payload = part.get_payload()
        if isinstance(payload, list):
            return ""
        return str(payload)
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except (LookupError, ValueError):       # unknown, or a codec without "replace" (idna)
        return payload.decode("utf-8", "replace")


def _status_blocks(part) -> list:
    """The field blocks of a message/delivery-status part: [per-message, per-recipient...]."""
    payload = part.get_payload()
    if isinstance(payload, list):       # the parser split the blocks into sub-messages
        return [dict((k.lower(), str(v)) for k, v in p.items()) for p in payload]
    text = payload if isinstance(payload, str) else _text_of(part)
    blocks, cur, last = [], {}, None
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            if cur:
                blocks.append(cur)
            cur, last = {}, None
            continue
        if line[0] in " \t" and last:
            cur[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if sep:
            last = name.strip().lower()
            cur[last] = value.strip()
    if cur:
        blocks.append(cur)
    return blocks


def _headers_rcpt(msg, envelope_rcpt: str, suppress) -> str:
    """The To: of a returned original (message/rfc822 or text/rfc822-headers part)."""
    for part in msg.walk():
        ctype = part.get_content_type()
        inner = None
        if ctype in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
        elif ctype in ("text/rfc822-headers", "message/rfc822-headers", "message/global-headers"):
            inner = email.message_from_string(_text_of(part), policy=email.policy.compat32)
        if inner is None:
            continue
        for header in ("To", "Cc"):
            for _, addr in email.utils.getaddresses(inner.get_all(header, [])):
                if addr and "@" in addr and addr.lower() != envelope_rcpt and not _suppressed(addr, suppress):
                    return addr
    return ""


def _body_text(msg, limit: int = 65536) -> str:
    out = []
    for part in msg.walk():
        if part.get_content_maintype() == "text" and part.get_content_type() != "text/rfc822-headers":
            out.append(_text_of(part))
            if sum(map(len, out)) > limit:
                break
        elif part.get_content_type() in ("message/rfc822", "message/global"):
            break                       # the returned original: not the notice's own text
    return "\n".join(out)[:limit]


def _body_rcpt(text: str, envelope_rcpt: str, sender: str, suppress) -> str:
    for addr in _ADDR.findall(text):
        a = addr.lower()
        local = a.rpartition("@")[0]
        if a in (envelope_rcpt, sender) or _DAEMON_LOCAL.match(local) or _suppressed(a, suppress):
            continue
        return addr
    return ""


# Where a bounce text starts quoting the returned message.
_RETURNED = re.compile(
    r"^\s*(-{2,}\s*)?(below this line is a copy|this is a copy of the message|"
    r"(the )?(original|returned|undelivered) message( follows| headers?)?\s*(-{2,}|:|$)|"
    r"(the )?headers? of the original message|original message headers|"
    r"-+ ?original message ?-+|received: )", re.I | re.M)
DIAGNOSTIC_LIMIT = 500


def notice_text(body: str) -> str:
    """The notice's own words: the text before the returned message, on one line."""
    m = _RETURNED.search(body)
    if m:
        body = body[:m.start()]
    return " ".join(body.split())


def _diagnostic(text: str) -> str:
    """The remote's reply quoted in a bounce text, else the text itself (shortened)."""
    m = _RETURNED.search(text)
    own = text[:m.start()] if m else text
    for rx in _SMTP_LINE:
        found = rx.search(own)
        if found:
            return " ".join(found.group(found.lastindex or 0).split())[:DIAGNOSTIC_LIMIT]
    return notice_text(own)[:DIAGNOSTIC_LIMIT]


def analyze_message(data: bytes, envelope_rcpt: str = "", mailfrom: str = "",
                    suppress=(frozenset(), ())) -> Notice | None:
    """Read an inbound message as a bounce; None when it is not one. Pure (pool job)."""
    msg = email.message_from_bytes(bytes(data[:MDN_SCAN_LIMIT]), policy=email.policy.compat32)
    envelope_rcpt = (envelope_rcpt or "").lower()
    subject = " ".join(str(msg.get("Subject", "")).split())
    from_addr = _address_of(str(msg.get("From", "")))
    from_local = from_addr.rpartition("@")[0] if "@" in from_addr else from_addr

    # 1. a DSN (RFC 3464): multipart/report with a delivery-status part
    status_part = None
    for part in msg.walk():
        if part.get_content_type() in ("message/delivery-status", "message/global-delivery-status"):
            status_part = part
            break
    if status_part is not None:
        blocks = _status_blocks(status_part)
        rcpts = [b for b in blocks if "final-recipient" in b or "original-recipient" in b]
        chosen = next((b for b in rcpts if b.get("action", "").lower().startswith("failed")),
                      rcpts[0] if rcpts else {})
        orig = ""
        for b in ([chosen] + [x for x in rcpts if x is not chosen]) if chosen else []:
            for fname in ("original-recipient", "final-recipient"):
                addr = _address_of(b.get(fname, ""))
                if addr and "@" in addr and not _suppressed(addr, suppress):
                    orig = addr
                    break
            if orig:
                break
        if not orig:
            orig = _headers_rcpt(msg, envelope_rcpt, suppress)
        diag = chosen.get("diagnostic-code", "")
        if ";" in diag:
            diag = diag.split(";", 1)[1]
        diag = " ".join(diag.split())
        status = chosen.get("status", "").split()[0] if chosen.get("status", "").split() else ""
        action = chosen.get("action", "").strip().lower()
        text = diag or (f"{status} {action}".strip() if status or action else subject)
        return Notice("dsn", text, orig, status, action, "\n".join(x for x in (diag, subject) if x))

    body = _body_text(msg)
    ctext = subject + "\n" + body[:4096]
    headers = {k.lower(): str(v) for k, v in msg.items()}
    bounce_like = bool(_BOUNCE_SUBJECT.search(subject)) or (
        not mailfrom and bool(_DAEMON_LOCAL.match(from_local or "")))
    from_ok = from_addr if from_addr and "@" in from_addr and not _suppressed(from_addr, suppress) else ""

    # 2. auto-replies (RFC 3834 Auto-Submitted, the usual vendor headers, subjects)
    auto = headers.get("auto-submitted", "").strip().lower()
    if not bounce_like and (auto.startswith("auto-replied") or "x-autoreply" in headers
                            or "x-autorespond" in headers
                            or headers.get("precedence", "").strip().lower() == "auto_reply"
                            or _AUTOREPLY_SUBJECT.search(subject)):
        return Notice("autoreply", subject, from_ok, classification_text=ctext)
    # 3. challenge-response probes
    if not bounce_like and _CHALLENGE.search(ctext):
        return Notice("challenge", subject, from_ok, classification_text=ctext)
    # 4. list commands sent to a bounce address (a List-Unsubscribe mailto:, say)
    first_line = next((ln for ln in body.splitlines() if ln.strip()), "")
    for candidate in (subject, first_line):
        m = _LIST_CMD.match(candidate)
        if m and not bounce_like:
            kind = "unsubscribe" if m.group(1) else "subscribe"
            return Notice(kind, subject or first_line.strip(), from_ok, classification_text=ctext)
    # 5. a bounce that is not a DSN: a mailer-daemon's text
    if bounce_like:
        orig = _headers_rcpt(msg, envelope_rcpt, suppress) or \
            _body_rcpt(body, envelope_rcpt, from_addr.lower(), suppress)
        diag = _diagnostic(body) or subject
        return Notice("bounce", diag, orig, classification_text="\n".join((diag, ctext)))
    return None


# -- configuration (bounce_classifier_override) ------------------------------------------------------
MODULE = "bounce_classifier_override"
DEFAULT_REFRESH = 300
DEFAULT_SYSTEM_SMTP = "/opt/msys/ecelerity/etc/updates/smtp_classification.ovr"
DEFAULT_SYSTEM_MDN = "/opt/msys/ecelerity/etc/updates/mdn_classification.ovr"
DEFAULT_USER_SMTP = "user_smtp_classification.ovr"
DEFAULT_USER_MDN = "user_mdn_classification.ovr"


@dataclass
class OverrideFiles:
    smtp_user: str = ""
    smtp_system: str = ""
    mdn_user: str = ""
    mdn_system: str = ""
    refresh: float = DEFAULT_REFRESH
    explicit: frozenset = frozenset()     # the ones named in the config (missing = reported)


def _opt(scope, name, default=None):
    value = scope.options.get(name) if scope is not None else None
    return default if value is None else value.value


def custom_classes_of(scope) -> dict[int, str]:
    raw = _opt(scope, "custom_classes", None) or {}
    out = {}
    for key, desc in dict(raw).items():
        try:
            code = int(str(key).strip())
        except ValueError:
            raise ClassifierConfigError(f"{MODULE}: custom_classes key '{key}' is not a number") from None
        if not 1 <= code < 100:
            raise ClassifierConfigError(f"{MODULE}: custom class {code} must be a number below 100")
        if code in CLASSES:
            raise ClassifierConfigError(f"{MODULE}: custom class {code} is the built-in class "
                                        f"'{CLASSES[code].name}'; choose an unused number")
        out[code] = str(desc)
    return out


def files_of(scope, state_dir: str) -> OverrideFiles:
    from ecmta import paths
    explicit = set()
    out = {}
    for attr, opt, default in (("smtp_user", "user_smtp_classification_override", DEFAULT_USER_SMTP),
                               ("mdn_user", "user_mdn_classification_override", DEFAULT_USER_MDN),
                               ("smtp_system", "system_smtp_classification_override", DEFAULT_SYSTEM_SMTP),
                               ("mdn_system", "system_mdn_classification_override", DEFAULT_SYSTEM_MDN)):
        raw = _opt(scope, opt, None)
        if raw is not None:
            explicit.add(attr)
        raw = str(raw if raw is not None else default)
        if raw.startswith(":datasource:"):
            raise ClassifierConfigError(f"{MODULE}: {opt} = \"{raw}\": datasource overrides are not "
                                        "available in this version (use a file)")
        out[attr] = paths.resolve(raw, state_dir) if raw else ""
    refresh = float(_opt(scope, "refresh", DEFAULT_REFRESH) or 0)
    return OverrideFiles(refresh=refresh, explicit=frozenset(explicit), **out)


def read_files(files: OverrideFiles) -> dict:
    """Pool job: {attr: (text | None, error | None)} of the override files."""
    out = {}
    for attr in ("smtp_user", "smtp_system", "mdn_user", "mdn_system"):
        path = getattr(files, attr)
        if not path:
            out[attr] = (None, None)
            continue
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                out[attr] = (fh.read(), None)
        except FileNotFoundError:
            out[attr] = (None, None if attr not in files.explicit else f"{path}: no such file")
        except OSError as exc:
            out[attr] = (None, f"{path}: {exc.strerror or exc}")
    return out


def build_overrides(files: OverrideFiles, texts: dict, known) -> tuple[Overrides, list[str]]:
    ov, problems = Overrides(), []
    for attr in ("smtp_user", "smtp_system", "mdn_user", "mdn_system"):
        text, err = texts.get(attr, (None, None))
        if err:
            problems.append(f"{MODULE}: {err}")
        if text is None:
            continue
        rules, probs = parse_override(text, os.path.basename(getattr(files, attr)), known,
                                      mdn=attr.startswith("mdn"))
        setattr(ov, attr, rules)
        problems += [f"{MODULE}: {p}" for p in probs]
    return ov, problems


def configure(cfg, state_dir: str) -> tuple[Classifier, OverrideFiles | None, list[str]]:
    """The classifier of a configuration: (classifier, override files or None, problems).
    Raises ClassifierConfigError for settings that cannot work."""
    suppress = parse_suppress_list(cfg.value("bounce_suppress_list", default="") or "")
    scopes = cfg.scopes(MODULE)
    scope = scopes[0] if scopes else None
    if scope is None or _opt(scope, "enabled", True) is False:
        clf = Classifier()
        clf.suppress = suppress
        return clf, None, []
    custom = custom_classes_of(scope)
    files = files_of(scope, state_dir)
    clf = Classifier(custom=custom)
    clf.suppress = suppress
    ov, problems = build_overrides(files, read_files(files), clf.classes)
    clf.replace_overrides(ov)
    return clf, files, problems


def refresh(clf: Classifier, files: OverrideFiles) -> list[str]:
    """Re-read the override files (from the IO pool) into `clf`; returns the problems."""
    from ecmta import pools
    texts = pools.run("IO", read_files, files)
    ov, problems = build_overrides(files, texts, clf.classes)
    clf.replace_overrides(ov)
    return problems


def describe(result: Result) -> str:
    """`<code> <name> (<rule>)`, as a console or a test shows a classification."""
    return f"{result.klass.code} {result.klass.name}" + (f" ({result.rule})" if result.rule else "")

