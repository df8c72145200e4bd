"""syslog_io (modules.syslog_io): log destinations `syslog://?facility=mail&priority=error`.

Owns: the parsing of syslog:// destinations and the SyslogWriterActor that writes one
destination's lines to the system logger. The writer has the file writer's message
interface (WriterLine(s), WriterFlush, WriterReopen), so any log module's file option may
name a syslog:// destination (the page's example is ec_logger's paniclog).

Configuration: `syslog_io { ident = "ecelerity"  default_facility = "mail" }` (both the
defaults; the stanza is optional). The URI's `facility` overrides default_facility and its
`priority` (default `error`) sets the level of every line; both take the standard syslog
names (facility: kern user mail daemon auth syslog lpr news uucp cron authpriv ftp
local0..local7; priority: emerg alert crit err|error warning|warn notice info debug).

How lines leave: through syslog(3) (Python's `syslog` module), which may block on the
log socket, so each batch is written from a pool thread (IO), one batch in flight so lines
keep their order; or, when syslog_io's `socket` (an ecmta extension) names a Unix datagram
socket, as RFC 3164 datagrams `<PRI>Mmm dd HH:MM:SS ident[pid]: line` sent from the hub
(a datagram send to a local socket does not wait for a disk). A line that cannot be sent is
reported on stderr and retried with the next batch; none is dropped while the process lives.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from urllib.parse import parse_qs

import gevent
from gevent import socket as gsocket

from ecmta import pools
from ecmta.actors.base import EcActor
from ecmta.loggers.writer import WriterFlush, WriterLine, WriterLines, WriterReopen

SCHEME = "syslog"
DEFAULT_IDENT = "ecelerity"
DEFAULT_FACILITY = "mail"
DEFAULT_PRIORITY = "error"
RETRY_DELAY = 1.0

FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
    "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
    **{f"local{i}": 16 + i for i in range(8)},
}
PRIORITIES = {
    "emerg": 0, "panic": 0, "alert": 1, "crit": 2, "err": 3, "error": 3, "warning": 4, "warn": 4,
    "notice": 5, "info": 6, "debug": 7,
}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True, slots=True)
class SyslogDestination:
    facility: int                  # 0..23 (not shifted)
    priority: int                  # 0..7
    ident: str = DEFAULT_IDENT
    socket: str = ""               # "" = syslog(3)

    @property
    def pri(self) -> int:
        return self.facility * 8 + self.priority

    def __str__(self) -> str:
        return f"syslog://?facility={self.facility}&priority={self.priority}"


def is_syslog(raw) -> bool:
    return isinstance(raw, str) and raw.lower().startswith(SCHEME + "://")


def settings(cfg) -> tuple[str, str, str]:
    """(ident, default_facility, socket) from the syslog_io stanza (defaults without one)."""
    ident, facility, sock = DEFAULT_IDENT, DEFAULT_FACILITY, ""
    for scope in cfg.scopes("syslog_io") if cfg is not None else ():
        for name, value in scope.options.items():
            if name == "ident" and value.value:
                ident = str(value.value)
            elif name == "default_facility" and value.value:
                facility = str(value.value)
            elif name == "socket" and value.value:
                sock = str(value.value)
    return ident, facility, sock


_configured = [(DEFAULT_IDENT, DEFAULT_FACILITY, "")]


def configure(cfg) -> None:
    """Take the syslog_io stanza of a configuration (the logging service, before it parses
    any destination)."""
    _configured[0] = settings(cfg)


def parse(raw: str, option: str = "", cfg=None) -> SyslogDestination:
    """A syslog:// destination; ValueError names what is wrong. Without `cfg`, the
    settings of the last `configure()`."""
    if not is_syslog(raw):
        raise ValueError(f"{option} = \"{raw}\": not a syslog:// destination")
    ident, default_facility, sock = settings(cfg) if cfg is not None else _configured[0]
    rest = raw.split("://", 1)[1]
    path, _, query = rest.partition("?")
    if path.strip("/"):
        raise ValueError(f"{option} = \"{raw}\": a syslog destination has no path "
                         "(syslog://?facility=mail&priority=error)")
    args = {k.lower(): v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    unknown = sorted(set(args) - {"facility", "priority"})
    if unknown:
        raise ValueError(f"{option} = \"{raw}\": unknown parameter {unknown[0]} "
                         "(facility, priority)")
    fac_name = (args.get("facility") or default_facility).lower()
    pri_name = (args.get("priority") or DEFAULT_PRIORITY).lower()
    if fac_name.startswith("log_"):
        fac_name = fac_name[4:]
    if pri_name.startswith("log_"):
        pri_name = pri_name[4:]
    if fac_name not in FACILITIES:
        raise ValueError(f"{option} = \"{raw}\": unknown syslog facility '{fac_name}'")
    if pri_name not in PRIORITIES:
        raise ValueError(f"{option} = \"{raw}\": unknown syslog priority '{pri_name}'")
    return SyslogDestination(FACILITIES[fac_name], PRIORITIES[pri_name], ident, sock)


def datagram(dest: SyslogDestination, line: str, now: float | None = None, pid: int | None = None) -> bytes:
    """One RFC 3164 datagram as syslog(3) sends it (no hostname: syslogd adds it)."""
    t = time.localtime(now if now is not None else time.time())
    stamp = f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    text = line.replace("\n", " ").replace("\r", " ")
    return (f"<{dest.pri}>{stamp} {dest.ident}[{pid or os.getpid()}]: {text}"
            .encode("utf-8", "surrogateescape"))


_opened: list = [None]


def write_syslog(ident: str, pri: int, lines: list) -> None:
    """Pool job: the lines through syslog(3)."""
    import syslog
    if _opened[0] != ident:
        syslog.openlog(ident, syslog.LOG_PID)
        _opened[0] = ident
    for line in lines:
        syslog.syslog(pri, line)


def spawn(service, dest: SyslogDestination, kind: str):
    """A supervised SyslogWriterActor registered with the logging service for teardown."""
    service._serial += 1
    key = f"logwriter:{kind}:{service._serial}"
    ref = service.daemon.supervisor.spawn(SyslogWriterActor, dest, name=kind, key=key)
    service._keys[id(ref)] = key
    return ref


@dataclass(frozen=True, slots=True)
class _BatchDone:
    count: int
    error: str | None


@dataclass(frozen=True, slots=True)
class _Retry:
    pass


class SyslogWriterActor(EcActor):
    kind = "logwriter"

    def __init__(self, dest: SyslogDestination, *, name: str | None = None, pool: str = "IO") -> None:
        super().__init__(name or str(dest))
        self.dest = dest
        self.pool = pool
        self.pending: list[str] = []
        self.in_flight: list[str] = []
        self.queued = 0
        self.written = 0
        self.waiters: list = []
        self._sock = None

    def on_receive(self, message):
        if isinstance(message, WriterLine):
            self.pending.append(message.text)
            self.queued += 1
            self._kick()
        elif isinstance(message, WriterLines):
            self.pending.extend(message.lines)
            self.queued += len(message.lines)
            self._kick()
        elif isinstance(message, _BatchDone):
            self._done(message)
        elif isinstance(message, WriterFlush):
            if self.written >= self.queued:
                message.done.set(True)
            else:
                self.waiters.append((self.queued, message.done))
        elif isinstance(message, _Retry):
            self._kick()
        elif isinstance(message, WriterReopen):
            self._close()
        return None

    def _kick(self) -> None:
        if self.in_flight or not self.pending:
            return
        lines, self.pending = self.pending, []
        self.in_flight = lines
        if self.dest.socket:
            err = None
            try:
                self._send(lines)
            except OSError as exc:
                err = repr(exc)
                self._close()
            self._done(_BatchDone(len(lines), err))
            return
        result = pools.submit(self.pool, write_syslog, self.dest.ident, self.dest.pri, lines)
        me = self.actor_ref

        def done(res, n=len(lines)):
            err = None if res.successful() else repr(res.exception)
            if me.is_alive():
                me.tell(_BatchDone(n, err))
        result.rawlink(done)

    def _send(self, lines: list) -> None:
        if self._sock is None:
            s = gsocket.socket(gsocket.AF_UNIX, gsocket.SOCK_DGRAM)
            s.connect(self.dest.socket)
            self._sock = s
        now = time.time()
        pid = os.getpid()
        for i, line in enumerate(lines):
            self._sock.send(datagram(self.dest, line, now, pid))
            self.in_flight = lines[i + 1:]
            self.written += 1

    def _close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None

    def _done(self, msg: _BatchDone) -> None:
        if msg.error:
            print(f"ecmta: cannot write to syslog ({self.dest}): {msg.error}", file=sys.stderr, flush=True)
            self.pending[:0] = self.in_flight
            self.in_flight = []
            gevent.spawn_later(RETRY_DELAY, self._tell_self, _Retry())
            return
        if not self.dest.socket:
            self.written += msg.count
        self.in_flight = []
        still = []
        for upto, fut in self.waiters:
            (fut.set(True) if self.written >= upto else still.append((upto, fut)))
        self.waiters = still
        self._kick()

    def _tell_self(self, msg) -> None:
        if self.actor_ref.is_alive():
            self.actor_ref.tell(msg)

    def on_stop(self) -> None:
        lines = self.in_flight + self.pending if self.dest.socket else self.pending
        if lines:
            try:
                if self.dest.socket:
                    self._send(lines)
                else:
                    pools.run(self.pool, write_syslog, self.dest.ident, self.dest.pri, lines)
            except Exception as exc:
                print(f"ecmta: cannot write to syslog ({self.dest}): {exc}", file=sys.stderr, flush=True)
        self.pending = []
        self._close()
