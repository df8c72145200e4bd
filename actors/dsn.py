"""Bounces (failure DSNs), delay DSNs and policy-rejection notices: rendering only.

Owns: `render_failure_dsn`, `render_delay_dsn`, `render_policy_rejection_dsn` (RFC 3464
multipart/report messages as bytes), the notification rules `should_bounce` (RFC 3461
NOTIFY + the null-sender rule), `bounce_recipient` (who gets a failure notice, including
`mdn_failures_notify`), `policy_rejection_recipients`
(generate_bounces_for_multi_recipient_policy_rejections), the delay-DSN schedule
`next_delay_dsn` (modules.delay_dsn) and `required_extensions` (what the injection needs).

Everything here is a pure function: no I/O, no clock unless `now` is left out, no id
counter unless `msg_id` is left out. With `now` and `msg_id` given the output is
byte-for-byte deterministic (the golden tests rely on that). Rendering a bounce for a 5 KB
original costs about 0.15 ms, so `async_bounce_rendering` is a choice of thread, not a
necessity.

Contract for the caller (the queue / delivery side):
- Inject every DSN with a NULL envelope sender, `MAIL FROM:<>`, and `RCPT TO:<to>`
  (`to` defaults to the original sender); it is received with protocol `internal`.
  The null sender is what stops bounce loops (RFC 5321 6.1, RFC 3461 6.2).
- Ask `should_bounce` / `bounce_recipient` first: the renderers report whatever recipients
  they are given and refuse only a DSN with nowhere to go (null original sender, no `to`).
- `required_extensions(dsn)` says whether the DSN needs 8BITMIME (an 8-bit original part,
  a UTF-8 report) and SMTPUTF8 (UTF-8 in its own header block) on the way out.

Output rules: CRLF line ends; no line longer than 998 octets (our fields are folded at
78 where there is whitespace; an original with a longer body line is returned as headers
only, with a note, because message/rfc822 may not be re-encoded); 7-bit unless the
original part or UTF-8 addresses need 8 bits, which the part then declares
(`Content-Transfer-Encoding: 8bit`, or the RFC 6533 message/global* types). Bare CR or LF
in the original become CRLF; replies, ENVID, ORCPT and addresses lose control characters,
so nothing a remote server says can add a field or a line to the report.
"""

from __future__ import annotations

import base64
import re
import textwrap
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Iterable, Sequence

from ecmta.actors.mail import Body, DsnParams, message_id_header, new_id

__all__ = [
    "DsnRecipient", "render_failure_dsn", "render_delay_dsn", "render_policy_rejection_dsn",
    "should_bounce", "bounce_recipient", "policy_rejection_recipients", "next_delay_dsn",
    "derive_status", "required_extensions", "INLINE_CHOICES",
]

INLINE_CHOICES = ("none", "headers", "all")
MAX_LINE = 998            # RFC 5322 2.1.1, without the CRLF
FOLD_AT = 78              # RFC 5322 2.1.1 SHOULD


@dataclass(frozen=True, slots=True)
class DsnRecipient:
    """One recipient to report on.

    `reply` is the SMTP reply as received or as Momentum words it for internal failures
    ("554 5.4.7 [internal] exceeded max time without delivery"); a multi-line reply may
    keep its line breaks. `status` overrides the status derived from `reply`.
    `remote_mta` / `remote_ip` name the host that answered ("" = the failure was ours).
    `log_id` (the message id of this recipient's instance) becomes Final-Log-ID.
    `will_retry_until` overrides the message-wide value for delay DSNs.
    """
    rcptto: str
    reply: str = ""
    dsn: DsnParams = field(default_factory=DsnParams)
    remote_mta: str = ""
    remote_ip: str = ""
    diagnostic_type: str = "smtp"
    last_attempt: float | None = None
    will_retry_until: float | None = None
    log_id: str = ""
    status: str = ""

    @classmethod
    def from_message(cls, msg, **kw) -> "DsnRecipient":
        """From a MailMessage: its recipient, DSN parameters, last reply and id."""
        kw.setdefault("reply", msg.code)
        kw.setdefault("log_id", msg.id)
        return cls(rcptto=msg.rcptto, dsn=msg.dsn, **kw)


# -- notification rules -------------------------------------------------------------------

def _notify_set(notify: Iterable[str] | None) -> frozenset:
    return frozenset(n.strip().upper() for n in notify or ())


def should_bounce(mailfrom: str, notify: Iterable[str] | None, kind: str, *,
                  generate_bounces: bool = True, generate_delay_dsn: bool = False) -> bool:
    """Whether the original sender gets a DSN of `kind` ("failure" | "delay" | "success").

    - null sender (`mailfrom == ""`): never, whatever NOTIFY says (RFC 3461 6.2, no loops);
    - NOTIFY=NEVER: never;
    - failure: NOTIFY absent or containing FAILURE, and `generate_bounces` (the operator's
      switch for in-band bounces, conf.ref.generate_bounces);
    - delay: only where the operator turned delay DSNs on (`generate_delay_dsn`, per
      scope: the delay_dsn module's example switches them off for one domain), and then
      when NOTIFY is absent (RFC 3461 4.1 lets the MTA decide) or contains DELAY; delay
      DSNs still require the delay_dsn module, which is the caller's check;
    - success: only NOTIFY containing SUCCESS (never a default).
    """
    if not mailfrom:
        return False
    flags = _notify_set(notify)
    if "NEVER" in flags:
        return False
    if kind == "failure":
        return bool(generate_bounces) and (not flags or "FAILURE" in flags)
    if kind == "delay":
        return bool(generate_delay_dsn) and (not flags or "DELAY" in flags)
    if kind == "success":
        return "SUCCESS" in flags
    raise ValueError(f"unknown DSN kind {kind!r}")


def bounce_recipient(mailfrom: str, notify: Iterable[str] | None, rcptto: str, *,
                     generate_bounces: bool = True, mdn_failures_notify: str = "") -> str | None:
    """Where the failure notice for one failed recipient goes, or None for no notice.

    A real sender gets it when `should_bounce` allows. A null-sender message (itself a
    bounce or another notification) has nobody to tell, so Momentum skips it unless
    `mdn_failures_notify` names a mailbox (conf.ref.mdn_failures_notify); that copy is the
    operator's, so the absent sender's NOTIFY does not apply, but `generate_bounces` does.
    When the failed recipient *is* that mailbox the notice is dropped: otherwise a dead
    postmaster address would be notified of its own notices for ever.
    """
    if mailfrom:
        return mailfrom if should_bounce(mailfrom, notify, "failure",
                                         generate_bounces=generate_bounces) else None
    target = (mdn_failures_notify or "").strip()
    if not generate_bounces or not target or target.lower() == (rcptto or "").lower():
        return None
    return target


def policy_rejection_recipients(mailfrom: str, rejected: Sequence[DsnRecipient],
                                accepted_count: int, *, enabled: bool = True) -> list[DsnRecipient]:
    """The recipients refused in each_rcpt that a notice should report (empty = no notice).

    generate_bounces_for_multi_recipient_policy_rejections: only when some recipients were
    accepted (when all were refused, the client got the failures in the SMTP dialogue);
    `enabled` is that option. The null-sender and NOTIFY rules apply per recipient. There
    is no mdn_failures_notify copy: a null-sender message with policy rejections is most
    likely unwanted mail and would only flood the postmaster.
    """
    if not enabled or accepted_count <= 0 or not mailfrom:
        return []
    return [r for r in rejected if should_bounce(mailfrom, r.dsn.notify, "failure")]


# -- delay DSN schedule -------------------------------------------------------------------

def next_delay_dsn(queued_at: float, sent_count: int, retry_interval: float,
                   max_retry_interval: float = 0) -> float:
    """When delay DSN number `sent_count + 1` is due (unix time).

    The first is due `retry_interval` after queueing; each further interval doubles and is
    capped by `max_retry_interval` (0 or less = no cap; the option page's default is 0).
    10800 / 86400 gives 3 h, 9 h, 21 h, 45 h, then every 24 h (modules.delay_dsn). The
    caller stops asking once the message is delivered, failed or expired.
    """
    if retry_interval <= 0:
        raise ValueError("delay_dsn_retry_interval must be positive")
    if sent_count < 0:
        raise ValueError("sent_count must not be negative")
    cap = max_retry_interval if max_retry_interval and max_retry_interval > 0 else None
    total, step, k = 0.0, float(retry_interval), 0
    # Sum the doubling intervals until the cap takes over, then add whole caps at once.
    while k <= sent_count:
        if cap is not None and step >= cap:
            total += cap * (sent_count - k + 1)
            break
        total += step
        if step > 1e18:           # uncapped: further DSNs are beyond any real queue life
            total = float("inf")
            break
        step *= 2
        k += 1
    return queued_at + total


# -- status ---------------------------------------------------------------------------------

_BASIC = re.compile(r"\s*([1-5])\d\d(?:[ -]|$)")
_ENHANCED = re.compile(r"\s*([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")


def derive_status(reply: str, action: str = "failed") -> str:
    """RFC 3464 Status for a reply: its enhanced code when present, else x.0.0.

    The class follows the basic reply code when both are present and disagree (RFC 3463:
    the class of the enhanced code must match it). A delayed recipient is always class 4
    (its condition is transient by definition); a failure without any code is 5.0.0.
    """
    first = (reply or "").split("\n", 1)[0]
    basic = _BASIC.match(first)
    rest = first[basic.end():] if basic else first
    enh = _ENHANCED.match(rest)
    cls = basic.group(1) if basic else (enh.group(1) if enh else "")
    if action == "delayed":
        cls = "4"
    elif cls not in ("4", "5"):
        cls = "5"
    if enh:
        return f"{cls}.{int(enh.group(2))}.{int(enh.group(3))}"
    return f"{cls}.0.0"


# -- text helpers ---------------------------------------------------------------------------

# C0, DEL, C1 and the Unicode line separators: anything some parser could take as a break.
_CTL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _clean(text: str, utf8: bool, ctl: str = " ") -> str:
    """One line of field text: controls become `ctl` (no header injection from a remote
    reply), bytes that are not valid UTF-8 become "?", non-ASCII too unless `utf8`."""
    text = _CTL.sub(ctl, text)
    if not text.isascii():
        text = _SURROGATE.sub("?", text)
        if not utf8:
            text = _NON_ASCII.sub("?", text)
    return text


def _unfold_reply(reply: str) -> str:
    """A multi-line SMTP reply as one line: '550-5.1.1 a' / '550 5.1.1 b' -> '550 5.1.1 a b'.
    The code and the enhanced code are kept once, from the first line."""
    lines = [ln for ln in re.split(r"\r?\n", (reply or "").strip()) if ln.strip()]
    if not lines:
        return ""
    out = []
    for i, ln in enumerate(lines):
        m = re.match(r"(\d{3})[ -]?", ln)
        if m:
            code, body = m.group(1), ln[m.end():]
            if i == 0:
                out.append(f"{code} {body}".rstrip())
                continue
            body = _ENHANCED.sub("", body, count=1).lstrip()
            out.append(body)
        else:
            out.append(ln.strip())
    return " ".join(x for x in out if x)


def _olen(s: str) -> int:
    return len(s) if s.isascii() else len(s.encode("utf-8", "surrogateescape"))


def _fold(name: str, value: str) -> str:
    """`Name: value` folded at spaces to 78 columns where possible, never over 998 octets."""
    line = f"{name}: {value}"
    if len(line) <= FOLD_AT and line.isascii():
        return line + "\r\n"
    out, cur = [], f"{name}:"
    for w in value.split(" "):
        if not w:
            continue
        if cur != f"{name}:" and _olen(cur) + 1 + _olen(w) > FOLD_AT:
            out.append(cur)
            cur = " " + w
        else:
            cur += " " + w
        while _olen(cur) > MAX_LINE:      # an unbreakable run: split it (adds a space)
            cut = MAX_LINE
            while _olen(cur[:cut]) > MAX_LINE:
                cut -= 1
            out.append(cur[:cut])
            cur = " " + cur[cut:]
    out.append(cur)
    return "\r\n".join(out) + "\r\n"


def _date(ts: float) -> str:
    return format_datetime(datetime.fromtimestamp(int(ts), timezone.utc))


def _encode_words(text: str) -> str:
    """RFC 2047 B encoded-words for a non-ASCII header text, each at most 75 chars."""
    words, chunk = [], b""
    for ch in text:
        b = ch.encode("utf-8")
        if len(chunk) + len(b) > 45:       # 45 octets -> 60 base64 chars + 12 overhead
            words.append(chunk)
            chunk = b""
        chunk += b
    if chunk:
        words.append(chunk)
    return " ".join("=?utf-8?b?" + base64.b64encode(w).decode("ascii") + "?=" for w in words)


def _is_utf8(s: str) -> bool:
    return s.isascii() or not _SURROGATE.search(s)


# -- the original message ---------------------------------------------------------------------

_BARE_EOL = re.compile(rb"\r\n|\r|\n")


def _has_long_line(data: bytes) -> bool:
    # split + max runs in C; a regex scan for 999 non-CRLF octets is ~20x slower on 5 KB.
    return len(data) > MAX_LINE and max(map(len, data.split(b"\r\n"))) > MAX_LINE


def _split_original(original) -> tuple[bytes, bytes, Body | None]:
    """(header block, whole message, Body over it), CRLF line ends throughout.

    The header block is what Body's parser takes as headers (up to the blank line or the
    first line that is not a header), each line CRLF-ended, without the blank line.
    """
    if original is None:
        return b"", b"", None
    body = original if isinstance(original, Body) else None
    raw = body.data if body is not None else bytes(original)
    crlf = raw.count(b"\r\n")
    if raw.count(b"\n") != crlf or raw.count(b"\r") != crlf:   # bare LF or CR: illegal in SMTP
        raw, body = _BARE_EOL.sub(b"\r\n", raw), None
    if body is None:
        body = Body(raw)
    head = raw[:len(raw) - len(body.body)]
    if head.endswith(b"\r\n\r\n"):
        head = head[:-2]
    elif head and not head.endswith(b"\r\n"):
        head += b"\r\n"                 # headers only, last line without its CRLF
    return head, raw, body


def _fold_long_header_lines(head: bytes) -> bytes:
    """Header lines over 998 octets are folded by force so the part stays legal."""
    if not _has_long_line(head):
        return head
    out = []
    for line in head.split(b"\r\n"):
        while len(line) > MAX_LINE:
            out.append(line[:MAX_LINE])
            line = b" " + line[MAX_LINE:]
        out.append(line)
    return b"\r\n".join(out)


def _header_text(body: Body | None, name: str) -> str:
    if body is None:
        return ""
    values = body.get_header(name)
    if not values:
        return ""
    return re.sub(r"\r?\n(?=[ \t])", "", values[0]).strip()


_MSGID = re.compile(r"<[^<>\s]+>")


# -- rendering ----------------------------------------------------------------------------------

_INTRO = {
    "failure": ("Your message could not be delivered to the recipients listed below.\r\n"
                "Delivery to them has been abandoned; no further attempts will be made.\r\n"),
    "delay": ("Your message has not yet been delivered to the recipients listed below.\r\n"
              "Delivery is still being attempted; you do not need to send it again.\r\n"),
    "policy": ("Your message was accepted for some of its recipients, but this server\r\n"
               "refused the recipients listed below while receiving it, so it will not\r\n"
               "be delivered to them. Delivery to the other recipients is not affected.\r\n"),
}
_SUBJECT = {"failure": "Undeliverable", "delay": "Delivery delayed", "policy": "Undeliverable"}
_ACTION = {"failure": "failed", "delay": "delayed", "policy": "failed"}


def _inline_mode(kind: str, inline_original: str, ret: str | None) -> str:
    mode = (inline_original or "headers").strip().lower()
    if mode not in INLINE_CHOICES:
        mode = "headers"
    r = (ret or "").strip().upper()
    if r == "FULL":                       # RFC 3461 4.3: the sender's RET wins
        mode = "all"
    elif r == "HDRS":
        mode = "headers"
    if kind == "delay" and mode == "all":
        mode = "headers"                  # the message is still queued; a warning never carries it
    return mode


def _address_field(addr: str, utf8: bool) -> str:
    # RFC 6533 3: a non-ASCII address is of type utf-8 (only in message/global-delivery-status).
    return ("utf-8; " if not addr.isascii() and utf8 else "rfc822; ") + _clean(addr, utf8, "?")


def _orcpt_field(orcpt: str, utf8: bool) -> str:
    """Original-Recipient is the ORCPT value as given (RFC 3461 6.3 d). In a 7-bit report a
    non-ASCII value becomes utf-8-addr-xtext (RFC 6533 3: \\x{HEX} for each non-ASCII char)."""
    orcpt = _CTL.sub("?", orcpt)
    if not orcpt.partition(";")[2].strip():
        return ""                          # no address: not a valid ORCPT, leave it out
    if orcpt.isascii() or utf8:
        return _SURROGATE.sub("?", orcpt)
    _type, _, addr = orcpt.partition(";")      # non-ASCII is never rfc822: it becomes utf-8
    enc = "".join(c if "!" <= c <= "~" and c not in "+=\\" else f"\\x{{{ord(c):X}}}"
                  for c in _SURROGATE.sub("?", addr))
    return "utf-8;" + enc


def _remote_mta(r: DsnRecipient) -> str:
    if r.remote_mta:
        return r.remote_mta
    if r.remote_ip:
        return f"[IPv6:{r.remote_ip}]" if ":" in r.remote_ip else f"[{r.remote_ip}]"
    return ""


def _wrap(text: str, indent: str) -> list[str]:
    lines = textwrap.wrap(text, width=76 - len(indent), break_long_words=False,
                          break_on_hyphens=False) or [""]
    out, limit = [], MAX_LINE - len(indent)
    for ln in lines:
        while _olen(ln) > limit:          # an unbreakable run (a URL, a token): cut it
            cut = limit
            while _olen(ln[:cut]) > limit:
                cut -= 1
            out.append(indent + ln[:cut])
            ln = ln[cut:]
        out.append(indent + ln)
    return out


def _human_part(kind, hostname, mailfrom, to, recipients, diags, mode, degraded, utf8,
                will_retry_until) -> str:
    parts = [f"This is the mail delivery system at {hostname}.\r\n\r\n", _INTRO[kind]]
    if not mailfrom:
        parts.append("\r\nYou receive this report because the message had a null envelope\r\n"
                     "sender (it was itself a notification), so no sender can be told.\r\n")
    for r, diag in zip(recipients, diags):
        lines = ["", _clean(f"<{r.rcptto}>", utf8, "?")]
        host = _remote_mta(r)
        if r.remote_mta and r.remote_ip:
            host = f"{r.remote_mta} [{r.remote_ip}]"
        if host:
            lines.append(f"    Remote host {_clean(host, utf8)} replied:")
        lines.extend(_wrap(diag or "No further detail was given.", "    "))
        if kind == "delay":
            until = r.will_retry_until if r.will_retry_until is not None else will_retry_until
            if until is not None:
                lines.append(f"    Delivery will be attempted until {_date(until)}.")
        parts.append("\r\n".join(lines) + "\r\n")
    parts.append("\r\n")
    if degraded:
        parts.append("Your message cannot be returned in full because it has lines longer\r\n"
                     "than 998 characters; only its headers are attached.\r\n")
    tail = {"none": "is attached.",
            "headers": "and the headers of your message are attached.",
            "all": "and your message are attached."}[mode]
    parts.append("\r\n".join(textwrap.wrap(
        f"A delivery report in the standard format (RFC 3464) {tail}", 72)) + "\r\n")
    return "".join(parts)


def _status_part(kind, hostname, recipients, diags, envid, arrival_date, received_from_mta,
                 will_retry_until, utf8) -> str:
    action = _ACTION[kind]
    out = []
    if envid:
        out.append(_fold("Original-Envelope-Id", _clean(envid, utf8)))
    out.append(_fold("Reporting-MTA", "dns; " + hostname))
    if received_from_mta:
        out.append(_fold("Received-From-MTA", "dns; " + _clean(received_from_mta, utf8)))
    if arrival_date is not None:
        out.append(f"Arrival-Date: {_date(arrival_date)}\r\n")
    for r, diag in zip(recipients, diags):
        out.append("\r\n")
        orcpt = _orcpt_field(r.dsn.orcpt, utf8) if r.dsn.orcpt else ""
        if orcpt:
            out.append(_fold("Original-Recipient", orcpt))
        out.append(_fold("Final-Recipient", _address_field(r.rcptto, utf8)))
        out.append(f"Action: {action}\r\n")
        status = r.status or derive_status(r.reply, action)
        out.append(f"Status: {_clean(status, False)}\r\n")
        mta = _remote_mta(r)
        if mta:
            out.append(_fold("Remote-MTA", "dns; " + _clean(mta, utf8)))
        if diag:
            dtype = _clean(r.diagnostic_type or "smtp", False).strip() or "smtp"
            out.append(_fold("Diagnostic-Code", f"{dtype}; {diag}"))
        if r.last_attempt is not None:
            out.append(f"Last-Attempt-Date: {_date(r.last_attempt)}\r\n")
        if r.log_id:
            out.append(_fold("Final-Log-ID", _clean(r.log_id, utf8)))
        if kind == "delay":
            until = r.will_retry_until if r.will_retry_until is not None else will_retry_until
            if until is not None:
                out.append(f"Will-Retry-Until: {_date(until)}\r\n")
    return "".join(out)


def _render(kind: str, *, mailfrom: str, recipients: Sequence[DsnRecipient], hostname: str,
            original, inline_original: str, ret: str | None, envid: str | None,
            arrival_date: float | None, mailerdaemon: str, to: str | None, smtputf8: bool,
            received_from_mta: str, will_retry_until: float | None, msg_id: str | None,
            now: float | None) -> bytes:
    if not recipients:
        raise ValueError("a DSN reports on at least one recipient")
    to = mailfrom if to is None else to
    if not to:
        raise ValueError("no DSN for a null sender (use bounce_recipient for mdn_failures_notify)")
    now = time.time() if now is None else now
    msg_id = msg_id or new_id(now)
    hostname = _clean(hostname, False)
    mailerdaemon = _clean(mailerdaemon or f"mailer-daemon@{hostname}", True)

    # RFC 6533: UTF-8 envelope addresses (or an SMTPUTF8 original) need the global types.
    utf8 = bool(smtputf8) or not (mailfrom.isascii() and to.isascii()
                                  and all(r.rcptto.isascii() for r in recipients))
    head, raw, body = _split_original(original)
    mode = _inline_mode(kind, inline_original, ret) if original is not None else "none"
    degraded = False
    if mode == "all" and _has_long_line(raw):
        mode, degraded = "headers", True
    if mode == "headers" and not head:
        mode = "none"                      # nothing to attach: no empty part

    # Whitespace runs collapse: controls turned to spaces must not leave a blank diagnostic.
    diags = [" ".join(_clean(_unfold_reply(r.reply), utf8).split()) for r in recipients]

    # Original part: type and transfer encoding (8-bit content is declared, never re-encoded).
    orig_part = b""
    if mode != "none":
        content = raw if mode == "all" else _fold_long_header_lines(head)
        eight = not content.isascii()
        global_hdrs = utf8 or (eight and _is_utf8(head.decode("utf-8", "surrogateescape")))
        if mode == "all":
            ctype = "message/global" if global_hdrs else "message/rfc822"
            desc = "Undelivered Message" if kind != "delay" else "Delayed Message"
        else:
            ctype = "message/global-headers" if global_hdrs else "text/rfc822-headers"
            desc = "Undelivered Message Headers" if kind != "delay" else "Delayed Message Headers"
        ph = f"Content-Type: {ctype}\r\nContent-Description: {desc}\r\n"
        if eight:
            ph += "Content-Transfer-Encoding: 8bit\r\n"
        orig_part = ph.encode("ascii") + b"\r\n" + content

    # Headers of the DSN itself. Raw UTF-8 only when the notice needs SMTPUTF8 anyway (its
    # recipient is a UTF-8 address): otherwise an ASCII sender could not receive it.
    raw_utf8 = not to.isascii()
    subject = _header_text(body, "Subject")
    if subject:
        subject = _CTL.sub(" ", subject)
        if not subject.isascii():
            subject = subject if (raw_utf8 and _is_utf8(subject)) else _encode_words(
                subject.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
    subject = f"{_SUBJECT[kind]}: {subject or '(no subject)'}"
    orig_id = ""
    m = _MSGID.search(_header_text(body, "Message-ID"))
    if m and (m.group(0).isascii() or (raw_utf8 and _is_utf8(m.group(0)))):
        orig_id = m.group(0)               # a msg-id cannot be RFC 2047 encoded: else omit it

    human = _human_part(kind, hostname, mailfrom, to, recipients, diags, mode, degraded, utf8,
                        will_retry_until)
    status = _status_part(kind, hostname, recipients, diags, envid, arrival_date,
                          received_from_mta, will_retry_until, utf8)

    # RFC 2046 5.1.1: at most 70 characters; the id makes it unique per notice.
    boundary = "=_ecmta_" + msg_id.replace("/", ".")
    while boundary.encode("utf-8", "surrogateescape") in raw:   # a bounced bounce of ours
        boundary += "_"

    hdr = [
        _fold("From", mailerdaemon),
        _fold("To", _clean(to, True, "?")),
        _fold("Subject", subject),
        f"Date: {_date(now)}\r\n",
        _fold("Message-ID", message_id_header(msg_id, hostname)),
    ]
    if orig_id:
        hdr.append(_fold("In-Reply-To", orig_id))
        hdr.append(_fold("References", orig_id))
    hdr.append("Auto-Submitted: auto-replied\r\n")      # RFC 3834 5: not to be auto-answered
    hdr.append("MIME-Version: 1.0\r\n")
    hdr.append(f'Content-Type: multipart/report; report-type=delivery-status;\r\n'
               f'\tboundary="{boundary}"\r\n')

    text_cs = "us-ascii" if human.isascii() else "utf-8"
    text_hdr = (f"Content-Type: text/plain; charset={text_cs}\r\n"
                "Content-Description: Notification\r\n")
    if text_cs != "us-ascii":
        text_hdr += "Content-Transfer-Encoding: 8bit\r\n"
    st_type = "message/global-delivery-status" if utf8 else "message/delivery-status"
    st_hdr = f"Content-Type: {st_type}\r\nContent-Description: Delivery report\r\n"
    if not status.isascii():
        st_hdr += "Content-Transfer-Encoding: 8bit\r\n"

    delim = f"\r\n--{boundary}\r\n".encode("ascii")
    chunks = [
        b"\r\nThis is a MIME-encapsulated message.\r\n",
        delim, text_hdr.encode("ascii"), b"\r\n", human.encode("utf-8"),
        delim, st_hdr.encode("ascii"), b"\r\n", status.encode("utf-8"),
    ]
    if orig_part:
        chunks += [delim, orig_part]
    chunks.append(f"\r\n--{boundary}--\r\n".encode("ascii"))
    payload = b"".join(chunks)
    if not payload.isascii():             # RFC 2045 6.4: a multipart declares its widest part
        hdr.append("Content-Transfer-Encoding: 8bit\r\n")
    return "".join(hdr).encode("utf-8") + payload


def render_failure_dsn(*, mailfrom: str, recipients: Sequence[DsnRecipient], hostname: str,
                       original: bytes | Body | None = None, inline_original: str = "headers",
                       ret: str | None = None, envid: str | None = None,
                       arrival_date: float | None = None, mailerdaemon: str = "",
                       to: str | None = None, smtputf8: bool = False,
                       received_from_mta: str = "", msg_id: str | None = None,
                       now: float | None = None) -> bytes:
    """A bounce (Action: failed) for `recipients` of one message, as RFC 3464 bytes.

    `original`: the message as received (bytes or Body) or None. How much of it is
    attached: `inline_original` (bounces_inline_original: none | headers | all), overridden
    by the sender's `ret` (RET=HDRS | FULL). `envid`: the decoded ENVID. `hostname`: the
    Reporting-MTA and the Message-ID domain. `mailerdaemon`: the From: address (default
    mailer-daemon@hostname). `to`: the notice's recipient (default `mailfrom`; the
    mdn_failures_notify mailbox for a null-sender original). `smtputf8`: the original was
    received with SMTPUTF8 (forces the RFC 6533 types). `msg_id` / `now`: the new
    message's id and date (generated when omitted). Raises ValueError when there is nobody
    to notify or nothing to report. Inject with MAIL FROM:<> (see the module doc).
    """
    return _render("failure", mailfrom=mailfrom, recipients=recipients, hostname=hostname,
                   original=original, inline_original=inline_original, ret=ret, envid=envid,
                   arrival_date=arrival_date, mailerdaemon=mailerdaemon, to=to,
                   smtputf8=smtputf8, received_from_mta=received_from_mta,
                   will_retry_until=None, msg_id=msg_id, now=now)


def render_delay_dsn(*, mailfrom: str, recipients: Sequence[DsnRecipient], hostname: str,
                     original: bytes | Body | None = None, inline_original: str = "headers",
                     ret: str | None = None, envid: str | None = None,
                     arrival_date: float | None = None, will_retry_until: float | None = None,
                     mailerdaemon: str = "", to: str | None = None, smtputf8: bool = False,
                     received_from_mta: str = "", msg_id: str | None = None,
                     now: float | None = None) -> bytes:
    """A delay warning (Action: delayed) for `recipients`, as RFC 3464 bytes.

    Same arguments as `render_failure_dsn`, plus `will_retry_until` (usually arrival +
    message_expiration; a recipient's own value wins). A delay DSN never carries the
    whole message: `all` / RET=FULL attach the headers only, since the message is still
    queued and a warning is no place to send it back.
    """
    return _render("delay", mailfrom=mailfrom, recipients=recipients, hostname=hostname,
                   original=original, inline_original=inline_original, ret=ret, envid=envid,
                   arrival_date=arrival_date, mailerdaemon=mailerdaemon, to=to,
                   smtputf8=smtputf8, received_from_mta=received_from_mta,
                   will_retry_until=will_retry_until, msg_id=msg_id, now=now)


def render_policy_rejection_dsn(*, mailfrom: str, recipients: Sequence[DsnRecipient],
                                hostname: str, original: bytes | Body | None = None,
                                inline_original: str = "headers", ret: str | None = None,
                                envid: str | None = None, arrival_date: float | None = None,
                                mailerdaemon: str = "", smtputf8: bool = False,
                                received_from_mta: str = "", msg_id: str | None = None,
                                now: float | None = None) -> bytes:
    """The notice for recipients refused in each_rcpt while others were accepted
    (generate_bounces_for_multi_recipient_policy_rejections), as RFC 3464 bytes.

    `recipients` carry the refusal replies we gave (no Remote-MTA: the refusal was ours);
    `received_from_mta` names the client ("helo [ip]"). Pick them with
    `policy_rejection_recipients`. Otherwise as `render_failure_dsn`.
    """
    return _render("policy", mailfrom=mailfrom, recipients=recipients, hostname=hostname,
                   original=original, inline_original=inline_original, ret=ret, envid=envid,
                   arrival_date=arrival_date, mailerdaemon=mailerdaemon, to=None,
                   smtputf8=smtputf8, received_from_mta=received_from_mta,
                   will_retry_until=None, msg_id=msg_id, now=now)


def required_extensions(dsn: bytes) -> frozenset:
    """SMTP extensions the injection of a rendered DSN needs: 8BITMIME when any octet is
    8-bit, SMTPUTF8 when its own header block is (a UTF-8 address or subject)."""
    if dsn.isascii():
        return frozenset()
    end = dsn.find(b"\r\n\r\n")
    head = dsn if end < 0 else dsn[:end]
    return frozenset(("8BITMIME", "SMTPUTF8")) if not head.isascii() else frozenset(("8BITMIME",))
