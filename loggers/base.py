"""The logger actor: one log module instance, records in, lines out.

Owns: the rule every log module follows. A `LoggerActor` subclass declares the record
types it renders (`kinds`) and a `render(record)` that yields (target, line) pairs, one
target per file it writes (e.g. "mainlog", "rejectlog"); the actor tells the lines to the
FileWriterActor of that target. `attach()` subscribes a started logger to the log bus
through a `Feed`: publishing a record appends it to the feed's list, and the feed tells
the actor what it holds as one RecordBatch, at once after a quiet spell and otherwise at
most once per LINGER (20 ms); the actor renders the batch and tells each writer its lines
in one WriterLines. Publishing never waits for a disk, and under load a logger costs two
actor messages per batch instead of two per record (the messages, not the formatting,
were most of what logging cost). An urgent LogBarrier is told at once, after what the feed
holds; a lazy one (the spool's) waits for the feed's next batch like any record.

Talks to: the log bus (records arrive by tell), its writer actors, and the stream taps:
`TAPS` maps (actor class name, instance name) and a target to callables that
`loggers/streams.py` installs to copy what a log module writes into a log stream; each is
called with (record, target, line) after the line is told to its writer (an empty table
costs one truth test per record). A render that raises is a failure of that record only:
the actor restart rule writes it to the paniclog and the next record is rendered as usual.
"""

from __future__ import annotations

import sys
import time
import weakref

import gevent
from gevent import monkey

from ecmta.actors.base import EcActor
from ecmta.loggers import bus
from ecmta.loggers.writer import WriterFlush, WriterLines

LINGER = 0.02
_real_thread_id = monkey.get_original("_thread", "get_ident")
_feeds: "weakref.WeakSet[Feed]" = weakref.WeakSet()

# ((actor class name, instance name), target) -> [callable(record, target, line)]; owned by
# loggers/streams.py, which changes it in place (never rebinds it).
TAPS: dict = {}


class LoggerActor(EcActor):
    kind = "logger"
    kinds: tuple = ()

    def __init__(self, name: str, writers: dict) -> None:
        super().__init__(name)
        self.writers = writers          # target -> FileWriterActor ref
        self.tap_key = (type(self).__name__, name)

    def render(self, record):
        """Yield (target, line) for a record; nothing for records this logger skips."""
        raise NotImplementedError

    def on_receive(self, record):
        # a feed's batch, or one record told directly (a heartbeat, another thread's record)
        self._render_batch(record.items if isinstance(record, RecordBatch) else (record,))

    def _render_batch(self, items: list) -> None:
        out: dict = {}
        taps = TAPS
        render = self.render
        for record in items:
            if isinstance(record, bus.LogBarrier):
                self._send(out)          # the barrier follows the lines before it
                out = {}
                self._barrier(record)
                continue
            try:
                for target, line in render(record):
                    lines = out.get(target)
                    if lines is None:
                        out[target] = lines = []
                    lines.append(line)
                    if taps:
                        for tap in taps.get((self.tap_key, target), ()):
                            tap(record, target, line)
            except Exception:
                self._record_failure(sys.exc_info())   # that record only: go on with the rest
        self._send(out)

    def _send(self, out: dict) -> None:
        for target, lines in out.items():
            writer = self.writers.get(target)
            if writer is not None:
                writer.tell(WriterLines(lines))

    def _barrier(self, b: bus.LogBarrier) -> None:
        refs = []
        for ref in self.writers.values():
            if ref not in refs and ref.is_alive():
                refs.append(ref)
        if not refs:
            b.one_done()
            return
        left = [len(refs)]

        def one(_result):
            left[0] -= 1
            if left[0] == 0:
                b.one_done()
        for ref in refs:
            msg = WriterFlush(urgent=b.urgent)
            ref.tell(msg)
            msg.done.rawlink(one)


class RecordBatch:
    """Records for a logger actor, in publishing order (a Feed's tell)."""
    __slots__ = ("items",)

    def __init__(self, items: list) -> None:
        self.items = items


class Feed:
    """The bus subscription of one logger actor: records gather here and go to the actor
    as one RecordBatch (see the module docstring). Called on the hub by bus.publish; a
    record published from another thread is told at once."""

    __slots__ = ("ref", "items", "linger", "_last", "_timer", "_thread", "__weakref__")

    def __init__(self, ref, linger: float = LINGER) -> None:
        self.ref = ref
        self.items: list = []
        self.linger = linger
        self._last = 0.0
        self._timer = None
        self._thread = _real_thread_id()

    def __call__(self, record) -> None:
        if _real_thread_id() != self._thread:
            self.ref.tell(record)
            return
        self.items.append(record)
        if isinstance(record, bus.LogBarrier) and record.urgent:
            self.flush()
        elif self._timer is None:
            wait = self._last + self.linger - time.monotonic()
            loop = gevent.get_hub().loop
            if wait > 0:
                self._timer = loop.timer(wait)
                self._timer.start(self.flush)
            else:                        # after a quiet spell: this loop iteration's records
                self._timer = loop.run_callback(self.flush)

    def flush(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.close()
        if not self.items:
            return
        items, self.items = self.items, []
        self._last = time.monotonic()
        if self.ref.is_alive():
            self.ref.tell(RecordBatch(items))
        else:                            # a logger that is gone: barriers must not wait for it
            for record in items:
                if isinstance(record, bus.LogBarrier):
                    record.one_done()


def attach(ref, kinds) -> object:
    """Subscribe a running logger actor to the bus; returns the handle for bus.unsubscribe
    (which hands over what the feed still holds)."""
    feed = Feed(ref)
    _feeds.add(feed)
    return bus.subscribe(tuple(kinds) + (bus.LogBarrier,), feed)


def flush_feeds() -> None:
    """Tell every logger actor what its feed holds now (stop, drain, tests)."""
    for feed in list(_feeds):
        feed.flush()
