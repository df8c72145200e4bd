"""The paniclog: where something-went-wrong lines go.

Owns: `panic()`, callable from any greenlet on the hub (never from a pool thread), the
in-memory tail the console `paniclog` command shows (last 10 lines per level), and the
hand-off to the paniclog file writer once the daemon has started one.

Line format on disk (log_formats.paniclog): `<unix_ts>:<subsystem>: <text>`, or
`<unix_ts>:<text>` when there is no subsystem. Which levels reach the file is decided by
Debug_Flags (default: ERROR and CRITICAL); the console tail keeps every level it is given.
Before a writer exists (start-up, command-line tools) lines go to stderr.
"""

from __future__ import annotations

import collections
import sys
import time
from typing import Callable

import structlog
from gevent.monkey import get_original

from ecmta.loggers.formats import esc_text

# The OS thread id, not the greenlet id that patched threading would report.
_os_thread_ident = get_original("_thread", "get_ident")

LEVELS = ("DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL")
TAIL_PER_LEVEL = 10

_log = structlog.get_logger("ecmta.panic")
_tail: dict[str, collections.deque] = {lvl: collections.deque(maxlen=TAIL_PER_LEVEL) for lvl in LEVELS}
_sink: Callable[[str], None] | None = None
_enabled_levels: set[str] = {"ERROR", "CRITICAL"}
_seq = 0
_hub_thread = _os_thread_ident()


def set_sink(sink: Callable[[str], None] | None) -> None:
    """Install the writer that receives rendered lines (the paniclog file actor's tell)."""
    global _sink, _hub_thread
    _sink = sink
    _hub_thread = _os_thread_ident()


def set_enabled_levels(levels) -> None:
    """Levels written to the file, from Debug_Flags (a level with an empty mask is off)."""
    global _enabled_levels
    _enabled_levels = {lvl.upper() for lvl in levels}


def render(text: str, subsystem: str | None = None, ts: float | None = None) -> str:
    """One paniclog line. Momentum writes a multi-line text as it is (a Lua print of an
    error with newlines spans lines); ours escapes `\\` and the control characters but tab
    (`\\n`, `\\r`, `\\xHH`, formats.esc_text) so every record is one line and reads back."""
    ts = int(ts if ts is not None else time.time())
    text = esc_text(text)
    return f"{ts}:{esc_text(subsystem)}: {text}" if subsystem else f"{ts}:{text}"


def panic(text: str, subsystem: str | None = None, level: str = "ERROR") -> None:
    global _seq
    level = level.upper()
    if level not in _tail:
        level = "ERROR"
    now = time.time()
    _seq += 1
    _tail[level].append((now, _seq, text if not subsystem else f"{subsystem}: {text}"))
    if level not in _enabled_levels:
        return
    line = render(text, subsystem, now)
    sink = _sink
    if sink is not None and _os_thread_ident() == _hub_thread:
        sink(line)
    else:
        # No file yet (or called off the hub by mistake): never lose the line.
        print(line, file=sys.stderr, flush=True)
    _log.debug("panic", level=level, subsystem=subsystem, text=text)


def tail() -> list[tuple[float, str, str]]:
    """(timestamp, level, text) for the last lines of every level, oldest first."""
    rows = [(ts, seq, lvl, text) for lvl, dq in _tail.items() for ts, seq, text in dq]
    rows.sort(key=lambda r: (r[0], r[1]))
    return [(ts, lvl, text) for ts, _seq, lvl, text in rows]


def reset_tail() -> None:
    for dq in _tail.values():
        dq.clear()
