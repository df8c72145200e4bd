"""SMTP envelope addresses: RFC 5321 paths, RFC 6531 UTF-8 mailboxes, RFC 3461 xtext.

Owns: `parse_path()` (reverse-path / forward-path -> `Address`), the length limits of
RFC 5321 4.5.3.1 (local-part 64, domain 255, path 256 octets) and `xtext_decode()`.
Used by the sans-IO server for MAIL FROM, RCPT TO, DSN parameters, XCLIENT and XSETCONTEXT.

Fails by raising `AddressError(reason)`; `reason` is one of the `E_*` names so the caller
can map it to the right reply (syntax 501, non-ASCII without SMTPUTF8 553 5.6.7, ...).

Leniencies (each deliberate, each documented in the docs of the option that governs it):
- an address without angle brackets is accepted (many old clients send `MAIL FROM:a@b`);
- a source route `<@a,@b:user@d>` is accepted and stripped (RFC 5321 Appendix C), kept in
  `Address.route` for logs;
- `pedantic=False` (rfc2821_pedantic_address_rules = false) allows empty atoms in a
  dot-string: `a..b@x`, `ab.@x`, `.ab@x`;
- `space_in_brackets=True` (allow_trailing_whitespace_in_commands) allows `< user@x >`.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

MAX_LOCALPART = 64
MAX_DOMAIN = 255
MAX_PATH = 256  # includes the angle brackets

E_SYNTAX = "syntax"
E_LENGTH = "length"
E_UTF8 = "utf8"            # non-ASCII address where SMTPUTF8 is not in force
E_IP_LITERAL = "ip_literal"  # address literal while allow_ip_literal is false


class AddressError(ValueError):
    """An envelope address the server must refuse; `reason` is an `E_*` constant."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Address:
    """A parsed mailbox. `localpart` keeps its wire form (quotes included); `domain` is
    "" for the null path and for unqualified addresses (`<postmaster>`); `literal` is
    True for `[1.2.3.4]` / `[IPv6:...]` domains."""

    localpart: str
    domain: str = ""
    route: tuple[str, ...] = ()
    literal: bool = False

    @property
    def is_null(self) -> bool:
        return not self.localpart and not self.domain

    @property
    def is_qualified(self) -> bool:
        return bool(self.domain)

    @property
    def is_utf8(self) -> bool:
        return not (self.localpart.isascii() and self.domain.isascii())

    def qualify(self, domain: str) -> "Address":
        """This address with `domain` filled in when it has none (unqualified rewrite)."""
        if self.domain or self.is_null or not domain:
            return self
        return Address(self.localpart, domain, self.route, False)

    def __str__(self) -> str:
        return f"{self.localpart}@{self.domain}" if self.domain else self.localpart


NULL_ADDRESS = Address("")

_ATEXT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                   "!#$%&'*+-/=?^_`{|}~")
_LDH = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
# The common case, matched in one C-level step: <dot-atom@ldh.domain>.
_SIMPLE = re.compile(rf"<({_ATOM}(?:\.{_ATOM})*)@({_LDH}(?:\.{_LDH})*)>")
_LABEL = re.compile(_LDH)
_LABEL_UTF8 = re.compile(r"[A-Za-z0-9\u0080-\U0010ffff](?:[A-Za-z0-9\u0080-\U0010ffff-]*"
                         r"[A-Za-z0-9\u0080-\U0010ffff])?")
_GENERAL_LIT = re.compile(rf"{_LDH}:[\x21-\x5a\x5e-\x7e]+")


def _octets(s: str) -> int:
    return len(s) if s.isascii() else len(s.encode("utf-8", "surrogateescape"))


def _check_lengths(local: str, domain: str, path_len: int) -> None:
    if _octets(local) > MAX_LOCALPART or _octets(domain) > MAX_DOMAIN or path_len > MAX_PATH:
        raise AddressError(E_LENGTH, "address too long")


def parse_path(s: str, pos: int = 0, *, utf8: bool = True, pedantic: bool = True,
               allow_ip_literal: bool = True, space_in_brackets: bool = False
               ) -> tuple[Address, int]:
    """Parse the path that starts at `s[pos]`; return `(address, end_index)`.

    `utf8=False` refuses non-ASCII (E_UTF8). The null path `<>` returns `NULL_ADDRESS`;
    whether it is allowed is the caller's business, as is an unqualified result.
    """
    m = _SIMPLE.match(s, pos)
    if m is not None:
        local, domain = m.group(1), m.group(2)
        _check_lengths(local, domain, m.end() - pos)
        return Address(local, domain), m.end()
    return _Parser(s, pos, utf8, pedantic, allow_ip_literal, space_in_brackets).path()


class _Parser:
    """The slow path: quoted strings, source routes, literals, UTF-8, relaxed dots."""

    __slots__ = ("s", "i", "n", "utf8", "pedantic", "allow_lit", "spaces")

    def __init__(self, s, pos, utf8, pedantic, allow_lit, spaces):
        self.s, self.i, self.n = s, pos, len(s)
        self.utf8, self.pedantic, self.allow_lit, self.spaces = utf8, pedantic, allow_lit, spaces

    def _peek(self) -> str:
        return self.s[self.i] if self.i < self.n else ""

    def _fail(self, what: str = "") -> AddressError:
        return AddressError(E_SYNTAX, what or f"unexpected character at {self.i}")

    def _skip_spaces(self) -> None:
        if self.spaces:
            while self._peek() == " ":
                self.i += 1

    def path(self) -> tuple[Address, int]:
        start = self.i
        bracket = self._peek() == "<"
        if bracket:
            self.i += 1
            self._skip_spaces()
            if self._peek() == ">":
                self.i += 1
                return NULL_ADDRESS, self.i
        route = self._route() if self._peek() == "@" else ()
        local = self._localpart()
        domain, literal = "", False
        if self._peek() == "@":
            self.i += 1
            domain, literal = self._domain_or_literal()
        if bracket:
            self._skip_spaces()
            if self._peek() != ">":
                raise self._fail("missing '>'")
            self.i += 1
        elif route:
            raise self._fail("source route outside angle brackets")
        _check_lengths(local, domain, self.i - start + (0 if bracket else 2))
        return Address(local, domain, route, literal), self.i

    def _route(self) -> tuple[str, ...]:
        hops = []
        while True:
            if self._peek() != "@":
                raise self._fail("bad source route")
            self.i += 1
            hops.append(self._domain_or_literal()[0])
            c = self._peek()
            if c == ",":
                self.i += 1
            elif c == ":":
                self.i += 1
                return tuple(hops)
            else:
                raise self._fail("bad source route")

    def _localpart(self) -> str:
        if self._peek() == '"':
            return self._quoted()
        s, i, n = self.s, self.i, self.n
        while i < n:
            c = s[i]
            if c in _ATEXT or c == ".":
                i += 1
            elif c >= "\x80" and self.utf8:
                i += 1
            elif c >= "\x80":
                raise AddressError(E_UTF8, "non-ASCII local-part")
            else:
                break
        local = s[self.i:i]
        self.i = i
        if not local:
            raise self._fail("empty local-part")
        if self.pedantic and (local[0] == "." or local[-1] == "." or ".." in local):
            raise self._fail("empty atom in local-part")
        return local

    def _quoted(self) -> str:
        s, i, n = self.s, self.i + 1, self.n
        while i < n:
            c = s[i]
            if c == '"':
                i += 1
                local = s[self.i:i]
                self.i = i
                return local
            if c == "\\":
                if i + 1 >= n or not (" " <= s[i + 1] <= "~"):
                    raise self._fail("bad quoted-pair")
                i += 2
                continue
            if " " <= c <= "~":
                i += 1
            elif c >= "\x80":
                if not self.utf8:
                    raise AddressError(E_UTF8, "non-ASCII local-part")
                i += 1
            else:
                raise self._fail("control character in quoted local-part")
        raise self._fail("unterminated quoted local-part")

    def _domain_or_literal(self) -> tuple[str, bool]:
        if self._peek() == "[":
            return self._literal(), True
        s, i, n = self.s, self.i, self.n
        while i < n and (s[i].isalnum() or s[i] in "-." or s[i] >= "\x80"):
            i += 1
        domain = s[self.i:i]
        self.i = i
        if not domain:
            raise self._fail("empty domain")
        ascii_ = domain.isascii()
        if not ascii_ and not self.utf8:
            raise AddressError(E_UTF8, "non-ASCII domain")
        label = _LABEL if ascii_ else _LABEL_UTF8
        for part in domain.split("."):
            if not label.fullmatch(part):
                raise self._fail("bad domain")
        return domain, False

    def _literal(self) -> str:
        end = self.s.find("]", self.i)
        if end < 0:
            raise self._fail("unterminated address literal")
        body = self.s[self.i + 1:end]
        if not self.allow_lit:
            raise AddressError(E_IP_LITERAL, "address literal not allowed")
        if body[:5].lower() == "ipv6:":
            try:
                ipaddress.IPv6Address(body[5:])
            except ValueError:
                raise self._fail("bad IPv6 literal") from None
        elif ":" in body:
            if not _GENERAL_LIT.fullmatch(body):
                raise self._fail("bad address literal")
        else:
            try:
                ipaddress.IPv4Address(body)
            except ValueError:
                raise self._fail("bad IPv4 literal") from None
        lit = self.s[self.i:end + 1]
        self.i = end + 1
        return lit


def xtext_decode(s: str) -> str:
    """Decode RFC 3461 xtext ("+2B" escapes); ValueError on anything not xtext.

    Escaped octets are read as UTF-8 (RFC 6533 addresses), else as Latin-1.
    """
    if not s.isascii():
        raise ValueError("xtext must be ASCII")
    if "+" not in s:
        if "=" in s or any(not ("!" <= c <= "~") for c in s):
            raise ValueError("bad xtext character")
        return s
    out = bytearray()
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c == "+":
            h = s[i + 1:i + 3]
            if len(h) != 2 or not all(x in "0123456789ABCDEFabcdef" for x in h):
                raise ValueError("bad xtext escape")
            out.append(int(h, 16))
            i += 3
        elif "!" <= c <= "~" and c != "=":
            out.append(ord(c))
            i += 1
        else:
            raise ValueError("bad xtext character")
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        return out.decode("latin-1")


def xtext_encode(s: str) -> str:
    """Encode `s` as xtext (used by tests and the outbound client)."""
    return "".join(c if ("!" <= c <= "~" and c not in "+=") else
                   "".join(f"+{b:02X}" for b in c.encode("utf-8")) for c in s)
