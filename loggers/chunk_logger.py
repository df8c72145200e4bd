"""chunk_logger (modules.chunk_logger): logging from Lua that never waits for a disk.

Owns: the one destination of the `chunk_logger "name" { ... }` stanza (the page: "Currently
chunk_logger only supports one log destination"; a second enabled stanza is refused at start
and on reload; one with `enabled = false` is not loaded) and the Lua call behind
`msys.beta.chunk_logger_int.log(text)` and its alias `msys.ts.chunk_logger.log(text)`
(policy/lua/ecmta/bootstrap.lua). The text is a string or a number (as luaL_checkstring
takes it: a number is logged as tostring prints it); any other argument is the Lua error
"bad argument #1 to 'log' (string expected, got <type>)".

Options: `destination` (required; what ec_logger's `destination()` accepts: a path, relative
ones under the state directory, file://, jlog://, cluster://, syslog://), `timestamp_format`
(strftime, local time; each item is written as `<timestamp> <text>`; unset or empty: the
text alone), `add_newline` (default true: a newline ends every item; false: the item is
written as given, the caller writes its own line ends). A jlog or syslog destination takes
each item as one record whatever add_newline says.

How an item leaves: log() formats the timestamp at the call and tells the item to the
destination's writer (a FileWriterActor with the logging service's other writers, so
`reopen logs`, flushes and reloads treat it like theirs); the writer appends from the IO
pool. Called off the hub (Lua in a msys.runInPool closure runs on a pool thread) the tell
is handed to the hub thread-safely. log() raises nothing: lua_log() returns the error text
for bootstrap.lua to raise at the script's line.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import gevent
import pykka
from gevent.monkey import get_original

from ecmta.loggers.writer import WriterLine

MODULE = "chunk_logger"
LUA_NAME = "msys.beta.chunk_logger_int.log"

_os_thread_ident = get_original("_thread", "get_ident")


@dataclass(frozen=True)
class Plan:
    name: str
    destination: object          # a path, JlogDestination or SyslogDestination
    mode: int
    timestamp_format: str
    add_newline: bool


@dataclass(frozen=True)
class Destination:
    name: str
    writer: object               # the writer actor's ref
    timestamp_format: str


_current: Destination | None = None
_hub_thread = _os_thread_ident()
_hub_loop = None


def _opt(scope, name, default=None):
    value = scope.options.get(name)
    return default if value is None else value.value


def plan(cfg, state: str) -> Plan | None:
    """The enabled chunk_logger stanza of a configuration, checked; nothing is started.
    Raises LogConfigError (two enabled stanzas, no destination, a scheme not built)."""
    from ecmta.loggers.ec_logger import LogConfigError, destination
    scopes = [s for s in cfg.scopes(MODULE) if bool(_opt(s, "enabled", True))]
    if not scopes:
        return None
    if len(scopes) > 1:
        names = ", ".join(f'"{s.name or MODULE}"' for s in scopes)
        raise LogConfigError(f"chunk_logger supports one log destination; {len(scopes)} "
                             f"chunk_logger stanzas are enabled ({names})")
    scope = scopes[0]
    name = scope.name or MODULE
    raw = _opt(scope, "destination")
    if not raw:
        raise LogConfigError(f'chunk_logger "{name}": destination is not set')
    return Plan(name, destination(str(raw), "destination", state), 0o644,
                str(_opt(scope, "timestamp_format", "") or ""),
                bool(_opt(scope, "add_newline", True)))


def build_instances(service, p: Plan | None) -> list:
    """The planned stanza as an ec_logger instance of the logging service (its writer is
    reopened, flushed and torn down with the others); installs it for log()."""
    from ecmta.loggers.ec_logger import _Instance
    if p is None:
        install([])
        return []
    writer = service._writer(p.destination, "chunk_logger", p.mode, newline=p.add_newline)
    inst = _Instance(f"{MODULE}:{p.name}", {"destination": writer}, {}, [])
    inst.chunk = Destination(p.name, writer, p.timestamp_format)
    install([inst])
    return [inst]


def install(instances) -> None:
    """Make the chunk_logger among these logging-service instances the one log() writes to
    (none: log() reports that no chunk_logger is configured). Called on the hub."""
    global _current, _hub_thread, _hub_loop
    _current = next((i.chunk for i in instances if getattr(i, "chunk", None)), None)
    _hub_thread = _os_thread_ident()
    _hub_loop = gevent.get_hub().loop


def render(text: str, timestamp_format: str, now: float) -> str:
    """One item as written (the writer adds the newline when add_newline is on)."""
    if timestamp_format:
        text = f"{time.strftime(timestamp_format, time.localtime(now))} {text}"
    return text


def log(text: str) -> str | None:
    """Hand one item to the writer; the error text when it cannot be logged."""
    dest = _current
    if dest is None:
        return (f"{LUA_NAME}: no chunk_logger is configured (add a chunk_logger stanza "
                "with a destination)")
    line = WriterLine(render(text, dest.timestamp_format, time.time()))
    try:
        if _os_thread_ident() == _hub_thread:
            dest.writer.tell(line)
        else:
            _hub_loop.run_callback_threadsafe(_tell, dest.writer, line)
    except pykka.ActorDeadError:
        return f"{LUA_NAME}: chunk_logger \"{dest.name}\" is not running"
    return None


def _tell(ref, line) -> None:
    try:
        ref.tell(line)
    except pykka.ActorDeadError:
        pass   # torn down meanwhile (reload, shutdown)


def lua_log(text):
    """api.chunk_logger_log for bootstrap.lua: Lua bytes in; nil, or the error text."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    err = log(str(text))
    return None if err is None else err.encode()
