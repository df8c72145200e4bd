"""Tokens of the ecelerity.conf language, each with its exact file, line and offsets.

Owns: the lexical rules of MOMENTUM_DIGEST §1.1 -- `#` line comments, non-nesting
`/* */` comments, double- and single-quoted strings, bare tokens and the punctuation
`= { } [ ] ( ) ,`. Used by `parser.py` (files) and by the console (values typed at the
`config set` prompt). Fails by raising `ConfigError` with one issue naming file:line.

Bare-token rule (decided from the docs' own examples, which write `Listen /tmp/2025 {}`,
`source = msys.boot`, `Listen :25`, `domain [IPv6:..]`-style names quoted): a bare token
runs until whitespace or one of `# " ' = { } [ ] ( ) ,`, or until a `/*` that opens a
comment. A `/` alone is allowed inside a bare token, so paths need no quotes. `[` and `]`
end a bare token because they delimit dictionaries.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from ecmta.config.model import ConfigError, ConfigIssue

# Token kinds.
WORD, STRING, EQ, LBRACE, RBRACE, LPAREN, RPAREN, LBRACK, RBRACK, COMMA, EOF = (
    "word", "string", "=", "{", "}", "(", ")", "[", "]", ",", "eof")

_PUNCT = {"=": EQ, "{": LBRACE, "}": RBRACE, "(": LPAREN, ")": RPAREN,
          "[": LBRACK, "]": RBRACK, ",": COMMA}
_STOP = set(" \t\r\n\f\v#\"'={}[](),")
# Typesetting artefacts of the docs (digest §1.1): never real syntax.
_TYPOGRAPHIC = set("\u201c\u201d\u2018\u2019")


class Token(NamedTuple):
    kind: str
    text: str          # unescaped content for strings, the characters for everything else
    line: int
    start: int         # offset of the first character in the source text
    end: int           # offset just past the last character
    quote: str = ""    # '"' or "'" for strings


def _fail(file: str, line: int, message: str):
    raise ConfigError([ConfigIssue(file, line, None, message)])


_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r\f\v]+)
  | (?P<nl>\n)
  | (?P<hash>\#[^\n]*)
  | (?P<cmt>/\*)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<punct>[={}\[\](),])
  | (?P<word>(?:[^ \t\r\n\f\v\#"'={}\[\](),/]|/(?!\*))+)
""", re.VERBOSE | re.DOTALL)
_ODD = re.compile("[\u201c\u201d\u2018\u2019\x00-\x08\x0e-\x1f\x7f]")
_ESCAPE = {'"': re.compile(r'\\([\\"])'), "'": re.compile(r"\\([\\'])")}


def tokenize(text: str, file: str = "<string>") -> list[Token]:
    """All tokens of `text`, ending with an EOF token."""
    out: list[Token] = []
    i, n, line = 0, len(text), 1
    match = _TOKEN.match
    while i < n:
        m = match(text, i)
        if m is None:               # only an opening quote can fail every alternative
            _fail(file, line, f"unterminated string starting with {text[i]}")
        kind, j = m.lastgroup, m.end()
        if kind == "nl":
            line += 1
        elif kind == "word":
            word = m.group()
            odd = _ODD.search(word)
            if odd is not None:
                _odd(file, line, odd.group())
            out.append(Token(WORD, word, line, i, j))
        elif kind == "punct":
            c = m.group()
            out.append(Token(_PUNCT[c], c, line, i, j))
        elif kind == "str":
            raw = m.group()
            q = raw[0]
            if "\x00" in raw:
                _fail(file, line, "NUL character in configuration text")
            body = raw[1:-1]
            out.append(Token(STRING, _ESCAPE[q].sub(r"\1", body) if "\\" in body else body, line, i, j, q))
            line += raw.count("\n")
        elif kind == "cmt":
            k = text.find("*/", j)
            if k < 0:
                _fail(file, line, "unterminated /* comment")
            line += text.count("\n", j, k)
            j = k + 2
        i = j
    out.append(Token(EOF, "", line, n, n))
    return out


def _odd(file: str, line: int, c: str):
    if c == "\x00":
        _fail(file, line, "NUL character in configuration text")
    if c < " " or c == "\x7f":
        _fail(file, line, f"control character U+{ord(c):04X} outside quotes")
    _fail(file, line, f"typographic quote {c!r} is not valid syntax; use \" or '")


def quote(text: str) -> str:
    """The double-quoted literal that lexes back to `text`."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def needs_quotes(text: str) -> bool:
    """True when `text` cannot be written as a bare token."""
    return (not text or any(c in _STOP or c in _TYPOGRAPHIC or c == "\x00" for c in text)
            or "/*" in text)
