"""One actor per log file: lines in, batched appends out, written in a named pool.

Owns: one file path and the lines not yet written to it. Everyone else only `tell`s it
WriterLine (or WriterLines) messages; the actor appends them in batches from a pool thread (the hub never
touches the disk), one batch in flight at a time, so lines keep their order. At most one
batch starts per `linger` (LINGER, 20 ms): a line arriving sooner after the last batch
waits for company (a pool job per line costs far more CPU than the line itself: at a
thousand lines a second, most of the logging cost), a line after a quiet spell goes at
once; lines that arrive while a batch is being written go as soon as it is done;
WriterFlush sends what is pending at once. Each
batch opens the path anew, which is what makes `reopen logs` after a rename (ec_rotate) take
effect at once. `newline=False` (chunk_logger's add_newline = false) writes each line as
given, without the line end the writer otherwise adds. Fails by writing the I/O error to
stderr and keeping the lines for the next attempt; it never drops a line it was given
while the process lives.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

import gevent
from gevent.event import AsyncResult

from ecmta import paths, pools
from ecmta.actors.base import EcActor

RETRY_DELAY = 1.0
LINGER = 0.02


@dataclass(frozen=True, slots=True)
class WriterLine:
    text: str


@dataclass(frozen=True, slots=True)
class WriterLines:
    """Several lines at once (a logger's render of one batch of records)."""
    lines: list


@dataclass(frozen=True, slots=True)
class WriterFlush:
    """Set `done` once every line told before it is written; `urgent=False`: without
    writing sooner than the writer would anyway."""
    done: AsyncResult = field(default_factory=AsyncResult)
    urgent: bool = True


@dataclass(frozen=True, slots=True)
class WriterReopen:
    pass


@dataclass(frozen=True, slots=True)
class _WriterRetry:
    pass


@dataclass(frozen=True, slots=True)
class _WriterLinger:
    pass


@dataclass(frozen=True, slots=True)
class _WriterBatchDone:
    count: int
    error: str | None


def append_lines(path: str, data: bytes, mode: int, fsync: bool) -> None:
    """Pool job: append bytes to path, creating it (and its directory) if needed."""
    paths.ensure_parent(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


class FileWriterActor(EcActor):
    kind = "logwriter"

    def __init__(self, path: str, *, name: str | None = None, mode: int = 0o644,
                 pool: str = "IO", fsync: bool = False, linger: float = LINGER,
                 newline: bool = True) -> None:
        super().__init__(name or os.path.basename(path))
        self.path = path
        self.mode = mode
        self.pool = pool
        self.fsync = fsync
        self.pending: list[str] = []
        self.in_flight = 0
        self.waiters: list[tuple[int, AsyncResult]] = []
        self.written = 0
        self.queued = 0
        self._unsent: list[str] = []
        self.linger = linger
        self._lingering = False
        self._last_batch = 0.0
        self.newline = newline
        self._result = None

    def on_receive(self, message):
        if isinstance(message, WriterLine):
            self.pending.append(message.text)
            self.queued += 1
            self._kick()
        elif isinstance(message, WriterLines):
            self.pending.extend(message.lines)
            self.queued += len(message.lines)
            self._kick()
        elif isinstance(message, _WriterBatchDone):
            self._batch_done(message)
        elif isinstance(message, WriterFlush):
            if self.written >= self.queued:
                message.done.set(True)
            else:
                self.waiters.append((self.queued, message.done))
                self._kick(now=message.urgent)
        elif isinstance(message, _WriterLinger):
            self._lingering = False
            self._kick(now=True)
        elif isinstance(message, _WriterRetry):
            self._kick(now=True)
        elif isinstance(message, WriterReopen):
            pass  # every batch opens the path anew
        return None

    def _kick(self, now: bool = False) -> None:
        if self.in_flight or not self.pending:
            return
        if not now and self.linger > 0:
            wait = self._last_batch + self.linger - time.monotonic()
            if wait > 0:                 # lines are flowing: let them gather
                if not self._lingering:
                    self._lingering = True
                    gevent.spawn_later(wait, self._tell_self, _WriterLinger())
                return
        self._last_batch = time.monotonic()
        lines, self.pending = self.pending, []
        self.in_flight = len(lines)
        data = self._data(lines)
        result = self._result = pools.submit(self.pool, append_lines, self.path, data,
                                             self.mode, self.fsync)
        me = self.actor_ref

        def done(res, n=len(lines)):
            err = None if res.successful() else repr(res.exception)
            if me.is_alive():
                me.tell(_WriterBatchDone(n, err))
        result.rawlink(done)
        self._unsent = lines

    def _batch_done(self, msg: _WriterBatchDone) -> None:
        self.in_flight = 0
        if msg.error:
            print(f"ecmta: cannot write {self.path}: {msg.error}", file=sys.stderr, flush=True)
            self.pending[:0] = self._unsent
            gevent.spawn_later(RETRY_DELAY, self._tell_self, _WriterRetry())
            return
        self.written += msg.count
        self._unsent = []
        still = []
        for upto, fut in self.waiters:
            (fut.set(True) if self.written >= upto else still.append((upto, fut)))
        self.waiters = still
        self._kick(now=True)         # what came meanwhile has waited long enough

    def _data(self, lines: list[str]) -> bytes:
        text = "\n".join(lines) + "\n" if self.newline else "".join(lines)
        return text.encode("utf-8", "surrogateescape")

    def _tell_self(self, msg) -> None:
        if self.actor_ref.is_alive():
            self.actor_ref.tell(msg)

    def on_stop(self) -> None:
        # Graceful stop: the batch in flight is finished (or its lines taken back), then
        # whatever is still pending is written synchronously from here.
        if self.in_flight and self._result is not None:
            self._result.wait(30)
            if self._result.ready() and not self._result.successful():
                self.pending[:0] = self._unsent
            self.in_flight = 0
        if self.pending:
            data = self._data(self.pending)
            try:
                pools.run(self.pool, append_lines, self.path, data, self.mode, self.fsync)
            except Exception as exc:
                print(f"ecmta: cannot write {self.path}: {exc}", file=sys.stderr, flush=True)
            self.pending = []
