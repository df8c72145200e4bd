"""Renderers of ec_logger's line formats (log_formats.mainlog, .rejectlog).

One pure function per record kind; each returns one line without its newline. Fields of
the `@`-delimited mainlog are escaped as log_formats says for acctlog ("`@`, `\\`, `\\n` and
other control characters ... are escaped by adding an `\\` before them"): `@` -> `\\@`,
`\\` -> `\\\\`, and a control character is written as `\\n`, `\\r`, `\\t` or `\\xHH` so a record
always stays on one line. Every string field is escaped, the ids too.

The rejectlog is space-delimited and its page documents no escaping; ours follows the same
rule so that any value reads back exactly: a quoted value (`R="..."`, `C="..."`, ... and a
context value quoted because it holds a space, `,`, `]`, `"`, `\\` or a control character)
has `\\` -> `\\\\`, `"` -> `\\"` and the control characters as above; an unquoted context
value is literal; a context key has `\\`, `=`, `,`, `]` and the control characters escaped;
M= has `\\`, white space and the control characters escaped; the trailing message text has
`\\` and the control characters but tab escaped, `@` and `"` literal.
"""

from __future__ import annotations

import re

from ecmta.loggers import records

_ESC = re.compile(r"[@\\\x00-\x1f\x7f]")               # mainlog / acctlog / bouncelog fields
_TEXT_ESC = re.compile(r"[\\\x00-\x08\x0a-\x1f\x7f]")     # rejectlog text; paniclog text (tab kept)
_WORD_ESC = re.compile(r"[\\\s\x00-\x1f\x7f]")           # rejectlog M=
_QUOTED_ESC = re.compile(r'[\\"\x00-\x1f\x7f]')          # inside a rejectlog "..."
_KEY_ESC = re.compile(r"[\\=,\]\x00-\x1f\x7f]")          # a rejectlog context key
_NEEDS_QUOTES = re.compile(r'[\s,\]"\\\x00-\x1f\x7f]')    # a rejectlog context value
_CTRL = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _esc_char(m: re.Match) -> str:
    ch = m.group(0)
    if ch >= " " and ch != "\x7f":
        return "\\" + ch
    return _CTRL.get(ch) or f"\\x{ord(ch):02x}"


def _sub(pattern: re.Pattern, value) -> str:
    text = "" if value is None else str(value)
    return pattern.sub(_esc_char, text) if pattern.search(text) else text


def esc(value) -> str:
    """A field of an `@`-delimited line."""
    return _sub(_ESC, value)


def esc_text(value) -> str:
    """Free text that ends a line: `\\` and the control characters but tab (a Lua print
    separates its arguments with tabs, and Momentum's paniclog shows them as they are)."""
    return _sub(_TEXT_ESC, value)


_NEEDS_ESC = re.compile(r"[\\\x00-\x1f\x7f]")      # _ESC but `@`, counted apart in _at_line


def _at_line(*fields) -> str:
    """Fields joined with `@`, each escaped; one scan of the line when none needs it
    (nearly always), which is most of what rendering a mainlog line costs."""
    try:
        line = "@".join(fields)
    except TypeError:                          # a field that is not text (None, a number)
        return "@".join(map(esc, fields))
    if line.count("@") == len(fields) - 1 and _NEEDS_ESC.search(line) is None:
        return line
    return "@".join(map(esc, fields))


def mainlog(rec) -> str:
    if isinstance(rec, records.Reception):
        return _at_line(str(int(rec.ts)), rec.msg_id, rec.batch_id, rec.conn_id, "R",
                        rec.rcpt_local, rec.rcpt_domain, rec.sender_local, rec.sender_domain,
                        rec.peer_ip, str(rec.size), rec.protocol, rec.binding_group, rec.binding)
    if isinstance(rec, records.Delivery):
        return _at_line(str(int(rec.ts)), rec.msg_id, rec.batch_id, rec.conn_id, rec.kind,
                        rec.domain, str(rec.size), rec.binding_group, rec.binding,
                        str(rec.retries), f"{rec.seconds:.3f}", rec.remote_ip)
    if isinstance(rec, records.Failure):
        return _at_line(str(int(rec.ts)), rec.msg_id, rec.batch_id, rec.conn_id,
                        "P" if rec.permanent else "T", rec.domain, str(rec.bytes_sent),
                        rec.binding_group, rec.binding, str(rec.stage), str(rec.retries),
                        f"{rec.seconds:.2f}", rec.remote_ip, rec.response)
    raise TypeError(f"no mainlog format for {type(rec).__name__}")


def mainlog_heartbeat(ts: float) -> str:
    return f"{int(ts)}@@@@M"


def _ctx_value(value) -> str:
    text = "" if value is None else str(value)
    return _quoted(text) if _NEEDS_QUOTES.search(text) else text


def ctx_block(ctx: dict) -> str:
    return "[" + ",".join(f"{_sub(_KEY_ESC, k)}={_ctx_value(v)}" for k, v in ctx.items()) + "]"


def _quoted(text) -> str:
    return '"' + _sub(_QUOTED_ESC, text) + '"'


def rejectlog(rec: records.Rejection) -> str:
    return (f"{int(rec.ts)}: R={_quoted(rec.remote)} L={_quoted(rec.local)} C={_quoted(rec.conn_id)} "
            f"PATH={_quoted(rec.pathway)} PATH_GRP={_quoted(rec.pathway_group)} P={_quoted(rec.phase)} "
            f"E={rec.code} M={_sub(_WORD_ESC, rec.module)} CTXCONN={ctx_block(rec.ctx_conn)} "
            f"CTXMESS={ctx_block(rec.ctx_mess)} {esc_text(rec.text)}")


def rejectlog_heartbeat(ts: float) -> str:
    return f"{int(ts)}: Marker 1"
