"""One actor per jlog destination: lines in, jlog records out, appended from a named pool.

Owns: one jlog (a `jlog:///path=>subscriber` or `cluster:///path=>subscriber` log
destination), its open `JlogWriter`, and the lines not yet appended. It takes the same
messages as `loggers.writer.FileWriterActor` (WriterLine(s), WriterFlush, WriterReopen), so
a logger tells it lines without knowing which kind of writer it has. Each line becomes one
record: the line's bytes plus "\n" (what the file writer would have written), stamped
with the time the actor received it. Records are appended in batches from a pool thread,
one batch in flight, so they keep their order. At start the jlog is opened, and created
with the subscriber named after `=>` if either is missing, as Momentum's io layer does
when it opens one (so a consumer can subscribe before the first line is logged).

Talks to: nobody but the pool. Fails like the file writer: the I/O error goes to stderr,
the lines not yet appended are kept and tried again a second later, the writer is reopened;
it never drops a line it was given while the process lives (a batch that failed half way
is retried from the first record that was not written).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import gevent

from ecmta import paths, pools
from ecmta.actors.base import EcActor
from ecmta.loggers.jlog import DEFAULT_FILE_MODE, Jlog, JlogWriter
from ecmta.loggers.writer import WriterFlush, WriterLine, WriterLines, WriterReopen

RETRY_DELAY = 1.0
DEFAULT_SUBSCRIBER = "master"   # modules.ec_logger: "The default subscriber name is master."
SCHEMES = ("jlog", "cluster")


@dataclass(frozen=True, slots=True)
class JlogDestination:
    """Where a jlog log destination writes: the jlog directory and the subscriber to ensure."""
    path: str
    subscriber: str | None = DEFAULT_SUBSCRIBER

    def __str__(self) -> str:
        return f"jlog://{self.path}" + (f"=>{self.subscriber}" if self.subscriber else "")


def parse_destination(rest: str, state_dir: str | None = None) -> JlogDestination:
    """The part of a jlog:// or cluster:// URI after the scheme's "//".

    `jlog:///var/log/x=>sub` is /var/log/x; `jlog://var/log/x` (Momentum's custom_logger
    example) is relative to the working directory, which for ecmta is the state directory.
    Without `=>subscriber` the subscriber is `master`, the documented default.
    """
    path, sep, sub = rest.rpartition("=>")
    if not sep:
        path, sub = rest, ""
    if not path:
        raise ValueError("a jlog destination needs a path (jlog:///path/to/jlog=>subscriber)")
    if path.startswith("/"):
        path = "/" + path.lstrip("/")
    return JlogDestination(paths.resolve(path, state_dir), sub or DEFAULT_SUBSCRIBER)


def open_writer(path: str, subscriber: str | None, mode: int) -> JlogWriter:
    """Pool job: create the jlog and its subscriber if needed, open a writer."""
    return Jlog.ensure(path, subscriber, file_mode=mode).open_writer()


def append_records(writer: JlogWriter | None, path: str, subscriber: str | None, mode: int,
                   records: list, reopen: bool) -> tuple[JlogWriter | None, int, str | None]:
    """Pool job: append records, opening (or reopening) the writer first when needed.
    Returns (writer to keep, records written, error text or None)."""
    if writer is not None and reopen:
        writer.close()
        writer = None
    try:
        if writer is None:
            writer = open_writer(path, subscriber, mode)
        writer.write_many(records)
        return writer, len(records), None
    except Exception as exc:
        done = writer.batch_written if writer is not None else 0
        if writer is not None:
            try:
                writer.close()
            except Exception:
                pass
        return None, done, repr(exc)


def close_writer(writer: JlogWriter | None) -> None:
    if writer is not None:
        writer.close()


@dataclass(frozen=True, slots=True)
class _Retry:
    open: bool = False


@dataclass(frozen=True, slots=True)
class _BatchDone:
    writer: object
    count: int
    error: str | None


class JlogWriterActor(EcActor):
    kind = "logwriter"

    def __init__(self, path: str, subscriber: str | None = DEFAULT_SUBSCRIBER, *,
                 name: str | None = None, mode: int = DEFAULT_FILE_MODE, pool: str = "IO",
                 newline: bool = True) -> None:
        super().__init__(name or os.path.basename(path.rstrip("/")))
        self.path = path
        self.subscriber = subscriber
        self.mode = mode
        self.pool = pool
        self.newline = newline
        self.writer: JlogWriter | None = None
        self.reopen = False
        self.pending: list[tuple[bytes, float]] = []
        self.in_flight: list[tuple[bytes, float]] = []
        self.busy = False
        self.result = None
        self.waiters: list = []
        self.written = 0
        self.queued = 0

    def on_start(self) -> None:
        self._kick(force=True)          # open (create) the jlog now, not at the first line

    def on_receive(self, message):
        if isinstance(message, WriterLine):
            text = message.text + "\n" if self.newline else message.text
            self.pending.append((text.encode("utf-8", "surrogateescape"), time.time()))
            self.queued += 1
            self._kick()
        elif isinstance(message, WriterLines):
            now, nl = time.time(), "\n" if self.newline else ""
            self.pending.extend(((text + nl).encode("utf-8", "surrogateescape"), now)
                                for text in message.lines)
            self.queued += len(message.lines)
            self._kick()
        elif isinstance(message, _BatchDone):
            self._batch_done(message)
        elif isinstance(message, WriterFlush):
            if self.written >= self.queued:
                message.done.set(True)
            else:
                self.waiters.append((self.queued, message.done))
        elif isinstance(message, _Retry):
            self._kick(force=message.open)
        elif isinstance(message, WriterReopen):
            self.reopen = True
        return None

    def _kick(self, force: bool = False) -> None:
        if self.busy or not (self.pending or force):
            return
        batch, self.pending = self.pending, []
        self.in_flight, self.busy = batch, True
        reopen, self.reopen = self.reopen, False
        writer, self.writer = self.writer, None
        self.result = pools.submit(self.pool, append_records, writer, self.path, self.subscriber,
                                   self.mode, batch, reopen)
        me = self.actor_ref

        def done(res):
            if res.successful():
                msg = _BatchDone(*res.value)
            else:
                msg = _BatchDone(None, 0, repr(res.exception))
            if me.is_alive():
                me.tell(msg)        # a stopping actor collects it in on_stop instead
        self.result.rawlink(done)

    def _batch_done(self, msg: _BatchDone) -> None:
        batch, self.in_flight, self.result = self.in_flight, [], None
        self.busy = False
        self.writer = msg.writer
        self.written += msg.count
        if msg.error:
            print(f"ecmta: cannot write jlog {self.path}: {msg.error}", file=sys.stderr, flush=True)
            self.pending[:0] = batch[msg.count:]
            gevent.spawn_later(RETRY_DELAY, self._tell_self, _Retry(open=not self.pending))
        still = []
        for upto, fut in self.waiters:
            (fut.set(True) if self.written >= upto else still.append((upto, fut)))
        self.waiters = still
        if not msg.error:
            self._kick()

    def _tell_self(self, msg) -> None:
        if self.actor_ref.is_alive():
            self.actor_ref.tell(msg)

    def on_stop(self) -> None:
        # Graceful stop: let the batch in flight finish, append what is left, close.
        if self.result is not None:
            self.result.wait(30)
            if self.result.successful():
                writer, count, error = self.result.value
                self.writer = writer
                if error:
                    self.pending[:0] = self.in_flight[count:]
            else:
                self.pending[:0] = self.in_flight
            self.in_flight, self.result, self.busy = [], None, False
        try:
            if self.pending:
                writer, _count, error = pools.run(self.pool, append_records, self.writer,
                                                  self.path, self.subscriber, self.mode,
                                                  self.pending, self.reopen)
                self.writer = writer
                if error:
                    print(f"ecmta: cannot write jlog {self.path}: {error}", file=sys.stderr,
                          flush=True)
                self.pending = []
            pools.run(self.pool, close_writer, self.writer)
        except Exception as exc:
            print(f"ecmta: cannot write jlog {self.path}: {exc}", file=sys.stderr, flush=True)
        self.writer = None
