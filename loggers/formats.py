"""Renderers of ec_logger's line formats (log_formats.mainlog, .rejectlog).

One pure function per record kind; each returns one line without its newline. Fields of
the `@`-delimited mainlog are escaped as log_formats says for acctlog ("`@`, `\\`, `\\n` and
other control characters ... are escaped by adding an `\\` before them"): `@` -> `\\@`,
`\\` -> `\\\\`, and a control character is written as `\\n`, `\\r`, `\\t` or `\\xHH` so a record
always stays on one line.
"""

from __future__ import annotations

import re

from ecmta.loggers import records

_ESC = re.compile(r"[@\\\x00-\x1f\x7f]")
_CTRL = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _esc_char(m: re.Match) -> str:
    ch = m.group(0)
    if ch in "@\\":
        return "\\" + ch
    return _CTRL.get(ch) or f"\\x{ord(ch):02x}"


def esc(value) -> str:
    text = "" if value is None else str(value)
    return _ESC.sub(_esc_char, text) if _ESC.search(text) else text


def mainlog(rec) -> str:
    if isinstance(rec, records.Reception):
        return "@".join((str(int(rec.ts)), rec.msg_id, rec.batch_id, rec.conn_id, "R",
                         esc(rec.rcpt_local), esc(rec.rcpt_domain), esc(rec.sender_local),
                         esc(rec.sender_domain), esc(rec.peer_ip), str(rec.size), esc(rec.protocol),
                         esc(rec.binding_group), esc(rec.binding)))
    if isinstance(rec, records.Delivery):
        return "@".join((str(int(rec.ts)), rec.msg_id, rec.batch_id, rec.conn_id, rec.kind,
                         esc(rec.domain), str(rec.size), esc(rec.binding_group), esc(rec.binding),
                         str(rec.retries), f"{rec.seconds:.3f}", esc(rec.remote_ip)))
    if isinstance(rec, records.Failure):
        return "@".join((str(int(rec.ts)), rec.msg_id, rec.batch_id, rec.conn_id,
                         "P" if rec.permanent else "T", esc(rec.domain), str(rec.bytes_sent),
                         esc(rec.binding_group), esc(rec.binding), str(rec.stage), str(rec.retries),
                         f"{rec.seconds:.2f}", esc(rec.remote_ip), esc(rec.response)))
    raise TypeError(f"no mainlog format for {type(rec).__name__}")


def mainlog_heartbeat(ts: float) -> str:
    return f"{int(ts)}@@@@M"


def _ctx_value(value) -> str:
    text = str(value).replace("\r", "\\r").replace("\n", "\\n")
    if re.search(r"[\s,\]\"]", text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def ctx_block(ctx: dict) -> str:
    return "[" + ",".join(f"{k}={_ctx_value(v)}" for k, v in ctx.items()) + "]"


def _quoted(text: str) -> str:
    return '"' + str(text).replace('"', '\\"') + '"'


def rejectlog(rec: records.Rejection) -> str:
    text = str(rec.text).replace("\r", "\\r").replace("\n", "\\n")
    return (f"{int(rec.ts)}: R={_quoted(rec.remote)} L={_quoted(rec.local)} C={_quoted(rec.conn_id)} "
            f"PATH={_quoted(rec.pathway)} PATH_GRP={_quoted(rec.pathway_group)} P={_quoted(rec.phase)} "
            f"E={rec.code} M={rec.module} CTXCONN={ctx_block(rec.ctx_conn)} "
            f"CTXMESS={ctx_block(rec.ctx_mess)} {text}")


def rejectlog_heartbeat(ts: float) -> str:
    return f"{int(ts)}: Marker 1"
