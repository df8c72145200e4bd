"""The log event bus: producers publish typed records, loggers subscribe by record type.

Owns: the subscriber table. `publish()` is called on the hub by the pipeline stages; it
calls each subscriber's callback synchronously, and callbacks only gather records for
their actor or `tell` it, so publishing never blocks. A callback that raises is reported
to the paniclog and removed from nothing: the next record is offered to it again.
"""

from __future__ import annotations

from typing import Callable

from gevent.event import AsyncResult

from ecmta.loggers.panic import panic

_subscribers: dict[type, list[Callable]] = {}


def subscribe(kinds, callback: Callable) -> Callable:
    """Offer records of the given types to callback; returns a handle for unsubscribe()."""
    for kind in kinds:
        _subscribers.setdefault(kind, []).append(callback)
    return callback


def unsubscribe(callback: Callable) -> None:
    """Stop offering records to callback; a callback that gathers records (a logger's
    feed, loggers/base.py) hands over what it holds."""
    for subs in _subscribers.values():
        while callback in subs:
            subs.remove(callback)
    flush = getattr(callback, "flush", None)
    if flush is not None:
        flush()


def publish(record) -> None:
    for callback in _subscribers.get(type(record), ()):
        try:
            callback(record)
        except Exception as exc:
            panic(f"logger callback {getattr(callback, '__qualname__', callback)} failed on "
                  f"{type(record).__name__}: {exc!r}", subsystem="logger")


def has_subscribers(kind: type) -> bool:
    return bool(_subscribers.get(kind))


class LogBarrier:
    """A record every logger actor answers by flushing its writers (see `barrier()`)."""

    __slots__ = ("done", "_left", "urgent")

    def __init__(self, left: int, urgent: bool = True) -> None:
        self.done = AsyncResult()
        self._left = left
        self.urgent = urgent
        if left <= 0:
            self.done.set(True)

    def one_done(self) -> None:
        self._left -= 1
        if self._left <= 0 and not self.done.ready():
            self.done.set(True)


def barrier(urgent: bool = True) -> AsyncResult:
    """AsyncResult set once every line rendered from the records published so far has
    been written to its file (the spool waits for it before it removes delivered mail,
    so a crash never leaves a message neither spooled nor logged). Loggers attached with
    `loggers.base.attach` answer it; mailboxes are FIFO, so it follows their records.
    `urgent=False` lets the lines go at the loggers' and writers' own pace (within their
    20 ms lingers) rather than forcing a write now: the spool's way, so that waiting for
    the log costs nothing but that delay."""
    subs = list(_subscribers.get(LogBarrier, ()))
    b = LogBarrier(len(subs), urgent)
    for callback in subs:
        try:
            callback(b)
        except Exception:
            b.one_done()          # a logger that is gone has nothing left to write
    return b.done
