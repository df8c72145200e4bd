"""Momentum's Lua dialect, rewritten at load time to the runtime's Lua (5.4).

Owns: `rewrite(source)`, a tokenizer-aware source preprocessor. Momentum's Lua is 5.1 with
extra operators (lua.ref.msg_get_envelope2): `a ^^ b` (xor), `a \\ b` (integer division)
and, in the doc examples, `!=`. Lua 5.4 has `&`, `|`, `<<`, `>>` and unary `~` natively,
so only three tokens change:

    !=  ->  ~=        ^^  ->  ~        \\  ->  //

Strings (quoted and long-bracket) and comments (line and long) are copied unchanged, and
no newline is added or removed, so error line numbers still point at the operator's file
line. A first line starting with `#` (a shebang) is blanked, as `luaL_loadfile` does.

The metamethod names of Momentum's operators (`__and __or __xor __shl __shr __not
__intdiv`) are mapped to 5.4's by the runtime's `setmetatable` (lua/ecmta/bootstrap.lua),
not here. Fails: never; an unterminated string or comment is copied through as is and
Lua's own compiler reports it with its line number.
"""

from __future__ import annotations

import re

_LONG_OPEN = re.compile(r"\[(=*)\[")


def _long_bracket_end(src: str, pos: int) -> int | None:
    """If a long bracket opens at `pos`, the index just past its close (or len(src))."""
    m = _LONG_OPEN.match(src, pos)
    if not m:
        return None
    close = "]" + m.group(1) + "]"
    end = src.find(close, m.end())
    return len(src) if end < 0 else end + len(close)


def _quoted_end(src: str, pos: int) -> int:
    """Index just past the quoted string opening at `pos` (escapes honoured)."""
    quote = src[pos]
    i, n = pos + 1, len(src)
    while i < n:
        ch = src[i]
        if ch == "\\":
            i += 2
            continue
        if ch == quote or ch == "\n":     # a newline ends an (invalid) short string
            return i + 1
        i += 1
    return n


_REWRITES = {"!=": "~=", "^^": "~"}


def rewrite(src: str) -> str:
    """Return `src` with Momentum's dialect operators replaced by Lua 5.4's."""
    if src.startswith("#"):
        nl = src.find("\n")
        src = "" if nl < 0 else src[nl:]
    if "!=" not in src and "^^" not in src and "\\" not in src:
        return src                        # the common case: nothing to do
    out: list[str] = []
    i, n, start = 0, len(src), 0
    while i < n:
        ch = src[i]
        if ch == "-" and src.startswith("--", i):
            end = _long_bracket_end(src, i + 2)
            if end is None:
                nl = src.find("\n", i)
                end = n if nl < 0 else nl
            i = end
        elif ch == "[":
            end = _long_bracket_end(src, i)
            i = end if end is not None else i + 1
        elif ch == '"' or ch == "'":
            i = _quoted_end(src, i)
        elif ch in "!^" and src[i:i + 2] in _REWRITES:
            out.append(src[start:i])
            out.append(_REWRITES[src[i:i + 2]])
            i += 2
            start = i
        elif ch == "\\":
            out.append(src[start:i])
            out.append("//")
            i += 1
            start = i
        else:
            i += 1
    out.append(src[start:])
    return "".join(out)
