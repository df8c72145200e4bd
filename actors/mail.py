"""The mail model shared by reception, policy, spool and delivery.

Owns: `MailMessage` (Momentum's model: one message instance per recipient, a shared body,
a batch id), `Body` (the RFC 5322 content with lazy, copy-on-write header editing),
`DsnParams` (RFC 3461 parameters kept with each recipient) and Momentum's id format.

Ids (MOMENTUM_DIGEST §4.0): `AB/CD-PPPPP-TTTTTTTT` where TTTTTTTT is the 8-digit hex slot
(a unix time) written character-reversed, PPPPP the pid in 5 decimal digits, and AB/CD the
4-digit hex counter, also character-reversed. Message, batch and connection ids share one
counter per process. `NULL_ID` is what logs print for an unknown id.

Nothing here does I/O; a Body holds bytes in memory only while the message is resident.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field

NULL_ID = "00/00-00000-00000000"

class _IdClock:
    """Counter and slot of new ids. The counter has 16 bits: when it wraps within one
    slot the slot moves one second ahead, so ids never repeat however fast they are made.
    It starts at a random value so a daemon restarted within the same second under the
    same pid does not repeat the previous process's first ids."""

    def __init__(self) -> None:
        self.counter = int.from_bytes(os.urandom(2), "big")
        self.slot = 0
        self.start = self.counter

    def next(self, now: float | None) -> tuple[int, int]:
        slot = int(now if now is not None else time.time())
        if slot > self.slot:
            self.slot, self.start = slot, self.counter
        c = self.counter
        self.counter = (c + 1) & 0xFFFF
        if self.counter == self.start:        # a full cycle in this slot: borrow the next
            self.slot += 1
        return self.slot, c


_clock = _IdClock()


def _rev_hex(value: int, width: int) -> str:
    return f"{value:0{width}x}"[::-1].upper()


def format_id(slot: int, pid: int, counter: int) -> str:
    c = _rev_hex(counter & 0xFFFF, 4)
    return f"{c[:2]}/{c[2:]}-{pid % 100000:05d}-{_rev_hex(slot & 0xFFFFFFFF, 8)}"


def parse_id(msg_id: str) -> tuple[int, int, int]:
    """(slot, pid, counter) of an id, as `ec_show` prints them."""
    m = re.fullmatch(r"([0-9A-Fa-f]{2})/([0-9A-Fa-f]{2})-(\d{5})-([0-9A-Fa-f]{8})", msg_id)
    if not m:
        raise ValueError(f"not a message id: {msg_id!r}")
    counter = int((m.group(1) + m.group(2))[::-1], 16)
    slot = int(m.group(4)[::-1], 16)
    return slot, int(m.group(3)), counter


def new_id(now: float | None = None) -> str:
    slot, counter = _clock.next(now)
    return format_id(slot, os.getpid(), counter)


def message_id_header(msg_id: str, hostname: str) -> str:
    """Message-ID value Momentum adds when missing: <00.00.02001.C6DD1CA4@host>."""
    return "<" + msg_id.replace("/", ".").replace("-", ".") + "@" + hostname + ">"


@dataclass(slots=True)
class DsnParams:
    notify: tuple[str, ...] = ()     # SUCCESS/FAILURE/DELAY or ("NEVER",); () = not given
    orcpt: str | None = None         # "rfc822;addr" decoded from xtext
    ret: str | None = None           # FULL | HDRS (per message)
    envid: str | None = None         # decoded from xtext (per message)


class Body:
    """RFC 5322 content: a header block and body bytes, CRLF line ends.

    Headers are parsed only when policy touches them; until then `data` is the received
    bytes unchanged. Instances are shared by every recipient of a batch; a per-recipient
    edit must go through `copy()` first (the policy layer does this on write).
    """

    __slots__ = ("_raw", "_headers", "_body")

    def __init__(self, data: bytes) -> None:
        self._raw: bytes | None = data
        self._headers: list[list[str]] | None = None   # [name, value] with folding kept
        self._body: bytes | None = None

    # -- raw access -------------------------------------------------------------
    @property
    def data(self) -> bytes:
        if self._raw is None:
            self._raw = self._render()
        return self._raw

    def __len__(self) -> int:
        return len(self.data)

    def copy(self) -> "Body":
        clone = Body(self.data)
        return clone

    # -- headers ----------------------------------------------------------------
    def _parse(self) -> None:
        if self._headers is not None:
            return
        raw = self._raw or b""
        headers: list[list[str]] = []
        pos, n = 0, len(raw)
        while pos < n:
            eol = raw.find(b"\n", pos)
            line_end, next_pos = (n, n) if eol < 0 else (eol, eol + 1)
            line = raw[pos:line_end]
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:                      # the blank line ends the header block
                pos = next_pos
                break
            text = line.decode("utf-8", "surrogateescape")
            if text[:1] in (" ", "\t") and headers:
                headers[-1][1] += "\r\n" + text
            elif ":" in text:
                name, value = text.split(":", 1)
                headers.append([name, value[1:] if value.startswith(" ") else value])
            else:
                break                         # not a header: the body starts here
            pos = next_pos
        self._body = raw[pos:]
        self._headers = headers

    def _render(self) -> bytes:
        lines = [f"{name}: {value}" for name, value in self._headers or []]
        head = "\r\n".join(lines).encode("utf-8", "surrogateescape")
        return (head + b"\r\n\r\n" if lines else b"\r\n") + (self._body or b"")

    def _dirty(self) -> None:
        self._raw = None

    def headers(self) -> list[tuple[str, str]]:
        self._parse()
        return [(n, v) for n, v in self._headers]

    def get_header(self, name: str) -> list[str]:
        self._parse()
        key = name.lower()
        return [v for n, v in self._headers if n.lower() == key]

    def has_header(self, name: str) -> bool:
        return bool(self.get_header(name))

    def add_header(self, name: str, value: str, *, prepend: bool = False) -> None:
        _check_header(name, value)
        self._parse()
        (self._headers.insert(0, [name, value]) if prepend else self._headers.append([name, value]))
        self._dirty()

    def set_header(self, name: str, value: str) -> None:
        """Replace every instance of a header with one value (appended if absent)."""
        _check_header(name, value)
        self._parse()
        key = name.lower()
        kept, placed = [], False
        for hdr in self._headers:
            if hdr[0].lower() == key:
                if not placed:
                    kept.append([hdr[0], value])
                    placed = True
            else:
                kept.append(hdr)
        if not placed:
            kept.append([name, value])
        self._headers = kept
        self._dirty()

    def remove_header(self, name: str) -> int:
        self._parse()
        key = name.lower()
        before = len(self._headers)
        self._headers = [h for h in self._headers if h[0].lower() != key]
        if len(self._headers) != before:
            self._dirty()
        return before - len(self._headers)

    @property
    def body(self) -> bytes:
        self._parse()
        return self._body or b""

    def set_body(self, data: bytes) -> None:
        self._parse()
        self._body = data
        self._dirty()


_BAD_NAME = re.compile(r"[^\x21-\x39\x3b-\x7e]")


def _check_header(name: str, value: str) -> None:
    """Refuse header injection: no CR/LF in names, folding only as CRLF + WSP in values."""
    if not name or _BAD_NAME.search(name):
        raise ValueError(f"invalid header name {name!r}")
    for i, ch in enumerate(value):
        if ch in "\r\n":
            ok = value[i:i + 3] in ("\r\n ", "\r\n\t") or (ch == "\n" and value[i - 1:i + 2] in ("\r\n ", "\r\n\t"))
            if not ok:
                raise ValueError(f"header {name} value contains a bare line break")


@dataclass(slots=True, eq=False)
class MailMessage:
    """One recipient's instance of a received message."""
    id: str
    batch_id: str
    conn_id: str
    mailfrom: str                      # "" = null sender
    rcptto: str
    body: Body | None = None           # None when not resident (spool holds it)
    size: int = 0
    received_at: float = field(default_factory=time.time)
    protocol: str = "esmtp"            # esmtp | smtp | internal | rest | xfer
    peer_ip: str = ""
    peer_port: int = 0
    listener_addr: str = ""            # "ip:port" of the listener
    ctx_conn: dict = field(default_factory=dict)
    ctx_mess: dict = field(default_factory=dict)
    binding: str = "default"
    binding_group: str = "default"
    routing_domain: str = ""
    priority: int = 0
    dsn: DsnParams = field(default_factory=DsnParams)
    code: str = ""                     # last SMTP response seen for it
    attempts: int = 0
    next_attempt: float = 0.0
    state: str = "new"                 # new | active | delayed | delivering | done
    auth_user: str = ""

    @property
    def rcpt_localpart(self) -> str:
        return split_address(self.rcptto)[0]

    @property
    def rcpt_domain(self) -> str:
        return split_address(self.rcptto)[1]

    @property
    def sender_localpart(self) -> str:
        return split_address(self.mailfrom)[0]

    @property
    def sender_domain(self) -> str:
        return split_address(self.mailfrom)[1]


def split_address(addr: str) -> tuple[str, str]:
    """(localpart, domain) of an address; the domain is lower-cased, '' when absent."""
    if not addr:
        return "", ""
    local, at, domain = addr.rpartition("@")
    if not at:
        return addr, ""
    return local, domain.lower()
