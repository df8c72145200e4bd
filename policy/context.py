"""The plain objects policy shares with the SMTP session driver.

Owns: `ValidationContext` (Momentum's vctx: connection and message dictionaries, the
disposition policy set, tarpit, the batch's recipient list, the current phase),
`AcceptConstruct` (the accept construct `ac`: listener and peer, the EHLO capability list,
the session counter) and `PhaseResult` (what `PolicyEngine.run` hands back after a phase).

Who talks to it: the session driver creates one ValidationContext and one AcceptConstruct
per connection, fills the predefined ctx variables (policy.context.variables), calls
`new_message()` at each MAIL FROM and reads a PhaseResult after each phase. The Lua API
(policy/objects.py) edits them on behalf of scripts. Plain Python, no I/O, no gevent.

Failure: recipient edits after the list is final raise `PolicyUsageError`; the Lua layer
turns that into a Lua error in the calling script.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

TRUE_WORDS = frozenset({"true", "1", "yes", "on", "enabled"})

# Phases in which the batch has been split per recipient: the recipient list is final.
POST_SPLIT_PHASES = frozenset({
    "validate_data_spool_each_rcpt", "validate_set_binding", "core_final_validation",
})


def split_hostport(addr: str) -> tuple[str, str]:
    """("ip", "port") of "ip:port", "[v6]:port", a bare address or ""."""
    if not addr:
        return "", ""
    if addr.startswith("["):
        host, _, rest = addr[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else ""
    if addr.count(":") == 1:
        host, _, port = addr.partition(":")
        return host, port
    if addr.count(":") > 1:
        try:
            ipaddress.ip_address(addr)
            return addr, ""             # a bare IPv6 address
        except ValueError:
            host, _, port = addr.rpartition(":")
            return host, port
    return addr, ""


class PolicyUsageError(Exception):
    """A script used an API in a way Momentum forbids (message names the function)."""


_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})(?:\s+|$)")


@dataclass(slots=True)
class Disposition:
    """A reply policy chose for the current command (vctx:set_code / vctx:disconnect)."""
    code: int
    enhanced: str | None
    text: str
    disconnect: bool = False


def make_disposition(code, message, disconnect: bool = False) -> Disposition:
    """Parse `code` ("550" or 550) and a message that may start with an enhanced code."""
    try:
        num = int(str(code).strip())
    except ValueError:
        raise PolicyUsageError(f"invalid SMTP code {code!r}") from None
    if not 200 <= num <= 599:
        raise PolicyUsageError(f"invalid SMTP code {num}")
    text = "" if message is None else str(message)
    # Tolerate a message that repeats the code ("550 5.7.1 no").
    if text[:3] == str(num) and text[3:4] in (" ", "-", ""):
        text = text[4:]
    enhanced = None
    m = _ENHANCED.match(text)
    if m:
        enhanced, text = m.group(1), text[m.end():]
    return Disposition(num, enhanced, text, disconnect)


class ValidationContext:
    """Momentum's validation context for one connection (the Lua `vctx`).

    `conn` lives as long as the connection; `mess` is emptied by `new_message()`. Keys and
    values are strings. `disposition`/`tarpit` are what policy asked for during the phase
    now running; `PolicyEngine.run` moves them into the PhaseResult and clears them.
    """

    __slots__ = ("conn", "mess", "disposition", "tarpit", "recipients", "rcptlist_final",
                 "phase", "conn_id", "_policy", "__weakref__")

    def __init__(self, conn: dict | None = None, conn_id: str = "") -> None:
        self.conn: dict[str, str] = dict(conn or {})
        self.mess: dict[str, str] = {}
        self.disposition: Disposition | None = None
        self.tarpit: float = 0.0
        self.recipients: list[str] = []
        self.rcptlist_final = False
        self.phase = ""
        self.conn_id = conn_id
        self._policy = None          # the engine's per-session state (policy/engine.py)

    # -- dictionaries ---------------------------------------------------------------
    def new_message(self) -> None:
        """MAIL FROM: a new message context, recipient list and disposition."""
        self.mess.clear()
        self.recipients.clear()
        self.rcptlist_final = False
        self.disposition = None

    def bypass(self, module: str) -> bool:
        """True when the connection ctx says `__bypass_<module>` = true (policy.md 62.1.2)."""
        return str(self.conn.get("__bypass_" + module, "")).lower() in TRUE_WORDS

    # -- dispositions ------------------------------------------------------------------
    def set_code(self, code, message) -> None:
        self.disposition = make_disposition(code, message)

    def disconnect(self, code, message) -> None:
        self.disposition = make_disposition(code, message, disconnect=True)

    def set_tarpit(self, seconds) -> None:
        seconds = float(seconds)
        if seconds < 0:
            raise PolicyUsageError("vctx:tarpit: interval must not be negative")
        self.tarpit = seconds

    # -- recipients --------------------------------------------------------------------
    def _check_rcpt_edit(self, fn: str) -> None:
        if self.rcptlist_final or self.phase in POST_SPLIT_PHASES:
            raise PolicyUsageError(f"vctx:{fn}: the recipient list is final (rcptlist final)")

    def finalize_recipients(self) -> None:
        """The driver calls this when it splits the batch per recipient."""
        self.rcptlist_final = True

    def add_recipient(self, addrs) -> None:
        self._check_rcpt_edit("add_recipient")
        for addr in ([addrs] if isinstance(addrs, str) else addrs):
            if addr not in self.recipients:
                self.recipients.append(addr)

    def remove_recipient(self, addrs) -> None:
        self._check_rcpt_edit("remove_recipient")
        drop = {addrs} if isinstance(addrs, str) else set(addrs)
        self.recipients[:] = [r for r in self.recipients if r not in drop]

    def set_recipients(self, addrs) -> None:
        self._check_rcpt_edit("recipient_list")
        self.recipients[:] = [addrs] if isinstance(addrs, str) else list(addrs)


class AcceptConstruct:
    """The accept construct (Lua `ac`): one per connection.

    `capabilities` is the EHLO keyword list the driver advertises (ac:esmtp_capability_add
    and _remove edit it; matching is on the keyword, case-insensitive). `session_count`
    is the driver's counter: `session_count(cidr or None, service or "SMTP") -> int`.
    """

    __slots__ = ("listener_addr", "peer_addr", "capabilities", "session_count", "smtp",
                 "__weakref__")

    def __init__(self, listener_addr: str = "", peer_addr: str = "",
                 capabilities: list[str] | None = None, session_count=None,
                 smtp: bool = True) -> None:
        self.listener_addr = listener_addr
        self.peer_addr = peer_addr
        self.capabilities: list[str] = list(capabilities or [])
        self.session_count = session_count
        self.smtp = smtp

    def _require_smtp(self, fn: str) -> None:
        if not self.smtp:
            raise PolicyUsageError(f"ac:{fn}: the session is not attached to an SMTP listener")

    def add_capability(self, cap: str) -> None:
        self._require_smtp("esmtp_capability_add")
        key = cap.split(None, 1)[0].upper() if cap.strip() else ""
        if not key:
            raise PolicyUsageError("ac:esmtp_capability_add: empty capability")
        if any(c.split(None, 1)[0].upper() == key for c in self.capabilities if c.strip()):
            self.capabilities[:] = [c for c in self.capabilities
                                    if not c.strip() or c.split(None, 1)[0].upper() != key]
        self.capabilities.append(cap)

    def remove_capability(self, cap: str) -> None:
        self._require_smtp("esmtp_capability_remove")
        key = cap.split(None, 1)[0].upper() if cap.strip() else ""
        self.capabilities[:] = [c for c in self.capabilities
                                if not c.strip() or c.split(None, 1)[0].upper() != key]


@dataclass(slots=True, frozen=True)
class PhaseResult:
    """What one phase decided. `reply is None` means: the driver's default reply.

    reply       (code, enhanced or None, text) policy set (vctx:set_code / disconnect /
                a script error); text may hold several lines separated by "\\n"
    disconnect  send `reply`, then close the session (vctx:disconnect)
    tarpit      seconds to hold the session before replying (vctx:tarpit)
    discard     msg:discard reason ("550 5.7.0 discarded by policy"): accept, log it as a
                rejection, do not deliver
    msg_code    the message code msg:code set in this phase (normalised), else None
    verdict     VALIDATE_CONT / DONE / AGAIN of the last module that ran (CONT if none)
    again       a module returned VALIDATE_AGAIN: call run() again after `retry_after`
                seconds with the same arguments; it resumes at that module
    error       a callout failed (Lua error or illegal return value); reply is the 4xx
    module      who answered, for the rejectlog `M=` field ("scriptlet"), else None
    """
    reply: tuple | None = None
    disconnect: bool = False
    tarpit: float = 0.0
    discard: str | None = None
    msg_code: str | None = None
    verdict: int = 0
    again: bool = False
    retry_after: float = 0.0
    error: bool = False
    module: str | None = None


# The result of a phase in which no module did anything (shared; PhaseResult is frozen).
CONTINUE = PhaseResult()
