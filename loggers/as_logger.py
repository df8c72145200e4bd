"""as_logger (modules.as_logger): journals audit series to files, one per series per interval.

Owns: the `as_logger { ... }` singleton stanza and `JournalActor`, the actor that writes the
journal files. Momentum runs as_logger on eccmgr for replicated series; ecmta has no
cluster, so it journals the series defined on this node (policy/audit_series.py STORE).
The same actor journals the series defined with `serialize = true` into inbound_audit's
log_dir (policy/audit_series_service.py), without resetting them.

Options: `base_dir` (directory of the files; relative paths are under the state directory;
default audit_series_logs, Momentum's standalone directory), `log_interval` (seconds,
default 60, at least 1), `series_include_default` (all | none, default none),
`series_exclude` (regexes; used with all: a series whose name any of them finds is left
out), `series_include` (regexes; used with none: only series one of them finds are
journaled). Regexes are Python `re` searches ("spam$", "^myseries$"); a bad one is a
config error at its file:line.

Every log_interval seconds, for each selected series, the actor takes a snapshot of the
series and resets it ("The audit series is reset at each interval so that each file
represents only one data period"), then writes `<base_dir>/<series>.<YYYYmmddHHMMSS>`: the
series name with every character but letters, digits and -_.@+= %-escaped, a dot, and the
UTC time the interval ended. A second file for a series in the same second (the last one,
written when the actor stops: a reload or shutdown) gets ".1", ".2" ... appended. Content:

    # audit_series <name> type=<type> interval=<s> windows=<n> start=<ISO UTC> end=<ISO UTC>
    <key><TAB><count>
    ...

one line per key with a non-zero total over the series' windows, sorted (addresses in
numeric order, strings by code point); backslash, tab, CR and LF in a name or key are
written \\\\, \\t, \\r, \\n; counts are integers unless a fractional count was added. start is
when the series was defined or last reset (for a journal without reset: the start of the
oldest window it holds), end the time of the snapshot. A series with no counts gets a file
with the header alone. Times are ISO 8601 UTC with milliseconds (2024-05-01T12:00:00.250Z).
Files are written to a hidden temporary name (".<file>.<pid>.tmp"), fsynced and renamed,
from the IO pool; the hub never waits for a disk. A write that fails is a paniclog line;
the counts of that interval are lost (the series was reset).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass

import gevent
import pykka

from ecmta import paths, pools
from ecmta.actors.base import EcActor
from ecmta.loggers.panic import panic
from ecmta.policy import audit_series

MODULE = "as_logger"
DEFAULT_BASE_DIR = "audit_series_logs"
DEFAULT_INTERVAL = 60
STAMP = "%Y%m%d%H%M%S"


@dataclass(frozen=True)
class Plan:
    """What one journal does: where, how often, which series, whether it resets them."""
    name: str
    base_dir: str
    log_interval: float
    include_all: bool = False
    include: tuple = ()             # compiled regexes
    exclude: tuple = ()
    reset: bool = True
    serialized_only: bool = False   # the inbound_audit journal: series with serialize = true

    def selects(self, series) -> bool:
        if self.serialized_only:
            return bool(series.serialize)
        if self.include_all:
            return not any(rx.search(series.name) for rx in self.exclude)
        return any(rx.search(series.name) for rx in self.include)


def _value(scope, name):
    return scope.options.get(name) if scope is not None else None


def plan(cfg, state: str) -> Plan | None:
    """The as_logger stanza of a configuration, checked; nothing is started. Raises
    LogConfigError (log_interval below one second, at its file:line)."""
    from ecmta.loggers.ec_logger import LogConfigError
    scopes = [s for s in cfg.scopes(MODULE)
              if _value(s, "enabled") is None or _value(s, "enabled").value]
    if not scopes:
        return None
    scope = scopes[0]
    interval = _value(scope, "log_interval")
    every = DEFAULT_INTERVAL if interval is None else interval.value
    if every < 1:
        where = f"{interval.file}:{interval.line}: " if interval.file else ""
        raise LogConfigError(f"{where}as_logger: log_interval must be at least 1 second, "
                             f"not {every}")
    base = _value(scope, "base_dir")
    default = _value(scope, "series_include_default")

    def regexes(option):
        v = _value(scope, option)
        return tuple(re.compile(p) for p in (v.value if v is not None else ()))

    return Plan(MODULE, paths.resolve(str(base.value) if base else DEFAULT_BASE_DIR, state),
                float(every), include_all=(default is not None and default.value == "all"),
                include=regexes("series_include"), exclude=regexes("series_exclude"))


def build_instances(service, p: Plan | None) -> list:
    """The planned stanza as a logging-service instance (its actor is stopped, writing the
    last partial interval, when the service tears its instances down)."""
    from ecmta.loggers.ec_logger import _Instance
    if p is None:
        return []
    ref = service.spawn_logger(JournalActor, p, kind=MODULE)
    return [_Instance(MODULE, {}, {}, [], actor=ref)]


# -- journaling ----------------------------------------------------------------------------
def take(p: Plan, store: audit_series.Store) -> list[tuple[str, str]]:
    """(path stem, text) of every selected series now, resetting them if the plan says so.
    Dictionary work only: runs on the hub."""
    out = []
    for series in store.series():
        if not p.selects(series):
            continue
        snap = store.snapshot(series.name, reset=p.reset)
        if snap is None:
            continue
        s, totals, start, end = snap
        stem = f"{audit_series.file_stem(s.name)}.{time.strftime(STAMP, time.gmtime(end))}"
        out.append((os.path.join(p.base_dir, stem),
                    audit_series.render_snapshot(s, totals, start, end)))
    return out


def write_all(items: list[tuple[str, str]]) -> list[str]:
    """Write each snapshot atomically under a name no other file has (blocking: pool only)."""
    written = []
    for stem, text in items:
        path, n = stem, 0
        while os.path.exists(path):
            n += 1
            path = f"{stem}.{n}"
        paths.write_atomic(path, text)
        written.append(path)
    return written


class _Tick:
    pass


class JournalActor(EcActor):
    """Writes the files of one Plan every log_interval seconds and once more when stopped."""

    kind = "journal"

    def __init__(self, p: Plan, store: audit_series.Store | None = None) -> None:
        super().__init__(p.name)
        self.plan = p
        self.store = store or audit_series.STORE
        self._ticker = None

    def on_start(self) -> None:
        self._ticker = gevent.spawn(self._tick_loop, self.actor_ref)

    def _tick_loop(self, ref) -> None:
        every = self.plan.log_interval
        due = time.monotonic() + every
        while True:
            gevent.sleep(max(0.0, due - time.monotonic()))
            due += every
            try:
                ref.tell(_Tick())
            except pykka.ActorDeadError:
                return

    def on_receive(self, message):
        if isinstance(message, _Tick):
            self.journal()
        return None

    def on_stop(self) -> None:
        if self._ticker is not None:
            self._ticker.kill(block=False)
        self.journal()

    def journal(self) -> list[str]:
        items = take(self.plan, self.store)
        if not items:
            return []
        try:
            return pools.run("IO", write_all, items)
        except Exception as exc:
            panic(f"{self.plan.name}: cannot write audit series files in "
                  f"{self.plan.base_dir}: {exc}", subsystem=self.plan.name)
            return []
