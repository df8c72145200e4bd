"""The log event bus: producers publish typed records, loggers subscribe by record type.

Owns: the subscriber table. `publish()` is called on the hub by the pipeline stages; it
calls each subscriber's callback synchronously, and callbacks only format and `tell`
their writer actor, so publishing never blocks. A callback that raises is reported to the
paniclog and removed from nothing: the next record is offered to it again.
"""

from __future__ import annotations

from typing import Callable

from ecmta.loggers.panic import panic

_subscribers: dict[type, list[Callable]] = {}


def subscribe(kinds, callback: Callable) -> Callable:
    """Offer records of the given types to callback; returns a handle for unsubscribe()."""
    for kind in kinds:
        _subscribers.setdefault(kind, []).append(callback)
    return callback


def unsubscribe(callback: Callable) -> None:
    for subs in _subscribers.values():
        while callback in subs:
            subs.remove(callback)


def publish(record) -> None:
    for callback in _subscribers.get(type(record), ()):
        try:
            callback(record)
        except Exception as exc:
            panic(f"logger callback {getattr(callback, '__qualname__', callback)} failed on "
                  f"{type(record).__name__}: {exc!r}", subsystem="logger")


def has_subscribers(kind: type) -> bool:
    return bool(_subscribers.get(kind))
