"""The logger actor: one log module instance, records in, lines out.

Owns: the rule every log module follows. A `LoggerActor` subclass declares the record
types it renders (`kinds`) and a `render(record)` that yields (target, line) pairs, one
target per file it writes (e.g. "mainlog", "rejectlog"); the actor tells each line to the
FileWriterActor of that target. `attach()` subscribes a started logger to the log bus, so
publishing a record costs one tell per logger and never waits for a disk.

Talks to: the log bus (records arrive by tell), its writer actors, and the stream taps:
`TAPS` maps (actor class name, instance name) and a target to callables that
`loggers/streams.py` installs to copy what a log module writes into a log stream; each is
called with (record, target, line) after the line is told to its writer (an empty table
costs one truth test per record). A render that raises is a failure of that record only:
the actor restart rule writes it to the paniclog and the next record is rendered as usual.
"""

from __future__ import annotations

from ecmta.actors.base import EcActor
from ecmta.loggers import bus
from ecmta.loggers.writer import WriterFlush, WriterLine

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
        if isinstance(record, bus.LogBarrier):
            self._barrier(record)
            return
        taps = TAPS
        for target, line in self.render(record):
            writer = self.writers.get(target)
            if writer is not None:
                writer.tell(WriterLine(line))
            if taps:
                for tap in taps.get((self.tap_key, target), ()):
                    tap(record, target, line)


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
            msg = WriterFlush()
            ref.tell(msg)
            msg.done.rawlink(one)


def attach(ref, kinds) -> object:
    """Subscribe a running logger actor to the bus; returns the handle for bus.unsubscribe."""
    def deliver(record, _ref=ref):
        _ref.tell(record)
    return bus.subscribe(tuple(kinds) + (bus.LogBarrier,), deliver)
