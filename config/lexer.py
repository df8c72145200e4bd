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

from dataclasses import dataclass

from ecmta.config.model import ConfigError, ConfigIssue

# Token kinds.
WORD, STRING, EQ, LBRACE, RBRACE, LPAREN, RPAREN, LBRACK, RBRACK, COMMA, EOF = (
    "word", "string", "=", "{", "}", "(", ")", "[", "]", ",", "eof")

_PUNCT = {"=": EQ, "{": LBRACE, "}": RBRACE, "(": LPAREN, ")": RPAREN,
          "[": LBRACK, "]": RBRACK, ",": COMMA}
_STOP = set(" \t\r\n\f\v#\"'={}[](),")
# Typesetting artefacts of the docs (digest §1.1): never real syntax.
_TYPOGRAPHIC = set("\u201c\u201d\u2018\u2019")


@dataclass(frozen=True)
class Token:
    kind: str
    text: str          # unescaped content for strings, the characters for everything else
    line: int
    start: int         # offset of the first character in the source text
    end: int           # offset just past the last character
    quote: str = ""    # '"' or "'" for strings


def _fail(file: str, line: int, message: str):
    raise ConfigError([ConfigIssue(file, line, None, message)])


def tokenize(text: str, file: str = "<string>") -> list[Token]:
    """All tokens of `text`, ending with an EOF token."""
    out: list[Token] = []
    i, n, line = 0, len(text), 1
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c in " \t\r\f\v":
            i += 1
        elif c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif c == "/" and text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j < 0:
                _fail(file, line, "unterminated /* comment")
            line += text.count("\n", i, j)
            i = j + 2
        elif c in "\"'":
            tok, i, line = _string(text, i, line, file)
            out.append(tok)
        elif c in _PUNCT:
            out.append(Token(_PUNCT[c], c, line, i, i + 1))
            i += 1
        else:
            j = i
            while j < n and text[j] not in _STOP and not text.startswith("/*", j):
                if text[j] in _TYPOGRAPHIC:
                    _fail(file, line, f"typographic quote {text[j]!r} is not valid syntax; use \" or '")
                if text[j] == "\x00":
                    _fail(file, line, "NUL character in configuration text")
                j += 1
            out.append(Token(WORD, text[i:j], line, i, j))
            i = j
    out.append(Token(EOF, "", line, n, n))
    return out


def _string(text: str, i: int, line: int, file: str):
    """A quoted string starting at text[i]; `\\q` and `\\\\` are the only escapes.

    Other backslashes are kept as written so regexes (`"\\d+"`) survive unchanged.
    """
    quote, start, start_line = text[i], i, line
    parts: list[str] = []
    j, n = i + 1, len(text)
    while j < n:
        c = text[j]
        if c == quote:
            return Token(STRING, "".join(parts), start_line, start, j + 1, quote), j + 1, line
        if c == "\\" and j + 1 < n and text[j + 1] in (quote, "\\"):
            parts.append(text[j + 1])
            j += 2
            continue
        if c == "\n":
            line += 1
        elif c == "\x00":
            _fail(file, line, "NUL character in configuration text")
        parts.append(c)
        j += 1
    _fail(file, start_line, f"unterminated string starting with {quote}")


def quote(text: str) -> str:
    """The double-quoted literal that lexes back to `text`."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def needs_quotes(text: str) -> bool:
    """True when `text` cannot be written as a bare token."""
    return (not text or any(c in _STOP or c in _TYPOGRAPHIC or c == "\x00" for c in text)
            or "/*" in text)
