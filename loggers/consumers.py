"""Attachable log consumers (ecmta addition): read a log stream, checkpoint, resume.

Owns: the stream format (what one jlog record of a stream holds), where a stream's jlog
lives, and the reading side: `follow()`, `Consumer`, `attach()`. The daemon side (which
streams exist, the writers, the taps on the log modules) is `loggers/streams.py`; this
module needs neither gevent nor a running daemon, so any Python program can import it.

Streams. A *stream* is a named sequence of log events that the daemon writes to a jlog
(`<state>/<basedir>/<name>.jlog`, basedir `streams` by default; `stream_path()`), one jlog
record per event, when the `log_streams` stanza names it (or an in-daemon `attach()` asks
for it). The names:

    events              every record published on the log bus (R, D, X, T, P, rejections,
                        auth, out-of-band bounces), whatever the log modules do with it
    mainlog, bouncelog, rejectlog, acctlog, ...
                        what one log file receives: the first log module instance (in
                        configuration order: ec_logger, custom/exim/postfix/sendmail_logger,
                        bounce_logger) that has a file of that name
    <instance>/<file>   one file of one instance, e.g. `ec_logger/mainlog`,
                        `custom_logger:rt/delivery_logfile`, `bounce_logger/bouncelog`
    <instance>          every file of one instance, e.g. `custom_logger:rt` (one record
                        per line written: an event that goes to two files is there twice,
                        `target` tells which)

A stream of a log module carries exactly the events that module wrote, with the line it
wrote; heartbeats and paniclog lines are not events and are not in any stream.

Record format: one JSON object per record, ASCII (non-ASCII escaped), ending with "\\n"
(so a jlog dump is JSON lines); keys in this order:

    {"v": 1, "stream": "mainlog", "type": "D", "record": "Delivery", "target": "mainlog",
     "ts": 1700000000.25, "line": "1700000000@...@D@...", "fields": {...}}

    v       format version (1)
    type    the event type, the same in every stream: R reception, D delivery, X cluster
            transfer, T transient failure, P permanent failure, B out-of-band bounce
            (stage 21), "rejection", "auth"
    record  the typed record's class (loggers/records.py: Reception, Delivery, Failure,
            Rejection, Auth; loggers/bounce_logger.py: OutOfBandBounce)
    target  the log file of the log module that wrote `line` ("events" for that stream)
    ts      the event time (also the jlog record's timestamp)
    line    the line as that log format rendered it (in `events`: the ec_logger line of
            the record kind, the bouncelog line for an out-of-band bounce)
    fields  every field of the typed record (contexts, headers and TLS facts included
            when the record carries them); a dataclass value becomes an object of its
            fields, other values that are not JSON become strings

Reading. A consumer is a jlog subscriber. It reads the records after its checkpoint and
checkpoints after it has processed them, so delivery to it is at-least-once: a consumer
killed (or whose process, or the daemon, restarts) resumes at its checkpoint; only the
records it processed after its last checkpoint are seen again. A consumer that is slow or
stopped never slows the daemon: its records wait on disk and its lag (records behind,
`jlog.Jlog.lag`) grows, shown by the console's `log streams`. Records are deleted once
every subscriber has checkpointed past their segment; a stream nobody subscribes to keeps
only its newest segment (declare `subscribers` in `log_streams` to keep everything from
the daemon's start for a consumer that has not run yet).

    from ecmta.loggers.consumers import follow
    for event in follow("/var/state/ecmta", "mainlog", subscriber="billing", types={"D", "P"}):
        handle(event.fields, event.line)      # a checkpoint follows each batch handled

`follow()` blocks (time.sleep between polls; cooperative when gevent patched the
process). `Consumer` gives explicit control (`read()`, `commit()`, `lag()`); `attach()`
runs a callback on a stream inside the daemon (its own OS thread; see its docstring).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import orjson

from ecmta import paths
from ecmta.loggers.jlog import BEGIN, END, ERR_FILE_OPEN, ERR_SUBSCRIBER_EXISTS, Jlog, JlogError, JlogId

FORMAT_VERSION = 1
DEFAULT_BASEDIR = "streams"
EVENTS = "events"
JLOG_SUFFIX = ".jlog"
DEFAULT_BATCH = 1000
DEFAULT_POLL = 0.2
STARTS = ("checkpoint", "begin", "end")
# the event types (see the module docstring)
TYPES = ("R", "D", "X", "T", "P", "B", "rejection", "auth")

_SAFE = re.compile(r"[^A-Za-z0-9._:@=+-]")


# -- the stream format -------------------------------------------------------------------------

def event_type(rec) -> str | None:
    """The event type of a typed record; None for what is not an event (heartbeats)."""
    name = type(rec).__name__
    if name == "Reception":
        return "R"
    if name == "Delivery":
        return rec.kind or "D"
    if name == "Failure":
        return "P" if rec.permanent else "T"
    if name == "Rejection":
        return "rejection"
    if name == "Auth":
        return "auth"
    if name == "OutOfBandBounce":
        return "B"
    return None


_FIELDS: dict[type, tuple] = {}
_ORJSON_OPTS = orjson.OPT_PASSTHROUGH_DATETIME      # datetimes as str(), as json's path does
_is_dataclass = dataclasses.is_dataclass


def _field_names(cls) -> tuple:
    names = _FIELDS.get(cls)
    if names is None:
        from dataclasses import fields as dc_fields
        try:
            names = tuple(f.name for f in dc_fields(cls))
        except TypeError:
            names = tuple(n for n in getattr(cls, "__slots__", ()) if not n.startswith("_"))
        _FIELDS[cls] = names
    return names


def encode(stream: str, target: str, rec, line: str | None, etype: str | None = None) -> bytes:
    """One stream record (bytes, "\\n" included) for a typed record and its rendered line."""
    etype = etype or event_type(rec)
    cls = type(rec)
    obj = {"v": FORMAT_VERSION, "stream": stream, "type": etype, "record": cls.__name__,
           "target": target, "ts": rec.ts, "line": line, "fields": None}
    try:                 # orjson: a quarter of json's time; the same bytes for ASCII records
        obj["fields"] = rec if _is_dataclass(cls) else _fields_of(rec)   # orjson reads
        data = orjson.dumps(obj, default=str, option=_ORJSON_OPTS)      # dataclasses itself
        if data.isascii():
            return data + b"\n"
    except TypeError:    # a key or value orjson refuses: json says it the documented way
        pass
    obj["fields"] = _fields_of(rec)
    return json.dumps(obj, ensure_ascii=True, separators=(",", ":"),
                      default=_json_default).encode("ascii") + b"\n"


def _fields_of(rec) -> dict:
    return {name: getattr(rec, name) for name in _field_names(type(rec))}


def _json_default(value):
    """What json does with a value it cannot write: a dataclass as its fields (as orjson
    does), anything else as its text."""
    if _is_dataclass(type(value)):
        return _fields_of(value)
    return str(value)


@dataclass(frozen=True, slots=True)
class Event:
    """One event read from a stream. `id` is its jlog id (checkpoint position), `ts` the
    event time; the rest is the record's JSON (`data` holds all of it). A record that is
    not a stream record (written by something else) has type "" and its text as `line`."""
    id: JlogId
    ts: float
    type: str
    record: str
    stream: str
    target: str
    line: str
    fields: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return self.line


def decode(id: JlogId, ts: float, raw: bytes) -> Event:
    try:
        obj = json.loads(raw)
        if not isinstance(obj, dict) or "type" not in obj:
            raise ValueError("not a stream record")
    except ValueError:
        text = raw.decode("utf-8", "replace").rstrip("\n")
        return Event(id, ts, "", "", "", "", text, {}, {})
    return Event(id, float(obj.get("ts") or ts), str(obj.get("type") or ""),
                 str(obj.get("record") or ""), str(obj.get("stream") or ""),
                 str(obj.get("target") or ""), str(obj.get("line") or ""),
                 obj.get("fields") or {}, obj)


def parse_types(spec) -> frozenset | None:
    """A type filter from "D,P", "D P", ["D", "rejection"], ...: None for everything.
    Single letters match the type exactly; longer words match a type or a record class
    name case-insensitively (rejection, Auth, Delivery, OutOfBandBounce)."""
    if spec is None:
        return None
    if isinstance(spec, str):
        spec = spec.replace(",", " ").split()
    out = set()
    for word in spec:
        word = str(word).strip()
        if word:
            out.add(word if len(word) == 1 else word.lower())
    return frozenset(out) or None


def wanted(event: Event, types: frozenset | None) -> bool:
    if not types:
        return True
    t = event.type
    return t in types or (len(t) > 1 and t.lower() in types) or event.record.lower() in types


# -- where a stream lives ----------------------------------------------------------------------

def quote_name(name: str) -> str:
    """The file name of a stream's jlog (without the suffix): `/` and other characters
    unsafe in a file name are written %XX."""
    return _SAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group(0).encode("utf-8")), name)


def unquote_name(text: str) -> str:
    from urllib.parse import unquote
    return unquote(text)


def streams_dir(state_dir: str | None = None, basedir: str = DEFAULT_BASEDIR) -> str:
    """The directory of the stream jlogs: basedir, relative to the state directory."""
    return paths.resolve(basedir or DEFAULT_BASEDIR, state_dir or paths.state_dir())


def stream_path(state_dir: str | None, name: str, basedir: str = DEFAULT_BASEDIR) -> str:
    return os.path.join(streams_dir(state_dir, basedir), quote_name(name) + JLOG_SUFFIX)


def is_jlog(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "metastore"))


def resolve(source: str | None, stream: str | None = None, basedir: str = DEFAULT_BASEDIR) -> str:
    """The jlog of a stream: `source` is a state directory (None: $ECMTA_HOME or the
    default) and `stream` a stream name; or `source` (or `stream`) is the path of a jlog."""
    if stream is None:
        if source and is_jlog(source):
            return source
        raise ValueError("a stream name is needed (or the path of a stream's jlog)")
    if os.sep in stream and is_jlog(stream):
        return stream
    return stream_path(source, stream, basedir)


def list_streams(state_dir: str | None = None, basedir: str = DEFAULT_BASEDIR) -> list[str]:
    """The names of the stream jlogs found under the streams directory."""
    base = streams_dir(state_dir, basedir)
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return []
    return [unquote_name(n[:-len(JLOG_SUFFIX)]) for n in names
            if n.endswith(JLOG_SUFFIX) and is_jlog(os.path.join(base, n))]


def subscriber_status(path: str) -> list[dict]:
    """[{subscriber, lag, checkpoint}] of a stream's jlog, sorted by name (blocking I/O)."""
    jl = Jlog(path)
    out = []
    for sub in sorted(jl.list_subscribers()):
        try:
            out.append({"subscriber": sub, "lag": jl.lag(sub), "checkpoint": str(jl.get_checkpoint(sub))})
        except (JlogError, OSError) as exc:
            out.append({"subscriber": sub, "lag": None, "checkpoint": "", "error": str(exc)})
    return out


# -- reading -----------------------------------------------------------------------------------

class StreamNotFound(FileNotFoundError):
    pass


class Consumer:
    """A subscriber of one stream, read and checkpointed explicitly.

        c = Consumer(state_dir, "mainlog", subscriber="me")
        events = c.read(timeout=5)    # the next events (not yet committed), waits up to 5 s
        ...process them...
        c.commit()                    # checkpoint everything read so far

    start: "checkpoint" resumes an existing subscriber where it checkpointed (a new one
    starts at the oldest record on disk); "begin" / "end" move the subscriber to the
    oldest record on disk / past the newest one first. wait: seconds to wait for the
    stream's jlog to appear (the daemon creates it when it starts), 0 = not at all.
    Not for two threads at once; blocking file I/O.
    """

    def __init__(self, source: str | None, stream: str | None = None, *, subscriber: str,
                 start: str = "checkpoint", types=None, basedir: str = DEFAULT_BASEDIR,
                 wait: float = 0.0, poll: float = DEFAULT_POLL) -> None:
        if not subscriber:
            raise ValueError("a consumer needs a subscriber name")
        if start not in STARTS:
            raise ValueError(f"start must be one of {', '.join(STARTS)}")
        self.path = resolve(source, stream, basedir)
        self.stream = stream or os.path.basename(self.path)
        self.subscriber = subscriber
        self.types = parse_types(types)
        self.poll = poll
        self._last: JlogId | None = None       # last record read, not yet committed
        self._wait_for_jlog(wait)
        self.jlog = Jlog(self.path)
        self._subscribe(start)
        self.reader = self.jlog.open_reader(subscriber)
        self.closed = False

    def _wait_for_jlog(self, wait: float) -> None:
        deadline = time.monotonic() + max(0.0, wait)
        while not is_jlog(self.path):
            if time.monotonic() >= deadline:
                raise StreamNotFound(f"no stream jlog at {self.path} (is the stream configured "
                                     "in log_streams and the daemon started?)")
            time.sleep(min(self.poll, 0.5))

    def _subscribe(self, start: str) -> None:
        jl = self.jlog
        exists = self.subscriber in jl.list_subscribers()
        if start == "end" and exists:
            jl.remove_subscriber(self.subscriber)
            exists = False
        if not exists:
            try:
                jl.add_subscriber(self.subscriber, END if start == "end" else BEGIN)
            except JlogError as exc:
                if exc.code != ERR_SUBSCRIBER_EXISTS:
                    raise
        elif start == "begin":
            jl.set_checkpoint(self.subscriber, jl.first_log_id())

    # -- reading ---------------------------------------------------------------------------
    def _next_ids(self, limit: int) -> list[tuple[JlogId, object]]:
        r = self.reader
        if self._last is None:
            return list(r.pending(limit))
        out = []
        cur = self._last
        while len(out) < limit:
            # the record after `cur` (across segments), if a complete one is there
            found = r._after(cur)          # noqa: SLF001 (the jlog reader's own stepping)
            if found is None:
                break
            cur = found[0]
            out.append((cur, r.read_message(cur)))
        return out

    def read_raw(self, limit: int = DEFAULT_BATCH) -> list[Event]:
        """The next events after what was read (filtered ones included), no waiting."""
        got = self._next_ids(limit)
        if got:
            self._last = got[-1][0]
        return [decode(id, msg.timestamp, msg.data) for id, msg in got]

    def read(self, limit: int = DEFAULT_BATCH, timeout: float = 0.0) -> list[Event]:
        """The next events of the wanted types after what was read, waiting up to `timeout`
        seconds for at least one record. Events of other types are skipped (and committed
        with the rest)."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            events = self.read_raw(limit)
            keep = [e for e in events if wanted(e, self.types)]
            if keep or (events and not timeout):
                return keep
            if time.monotonic() >= deadline:
                return keep
            if not events:
                time.sleep(self.poll)

    def commit(self, upto: JlogId | Event | None = None) -> None:
        """Checkpoint: everything up to `upto` (default: everything read) is processed."""
        if isinstance(upto, Event):
            upto = upto.id
        target = upto or self._last
        if target is None:
            return
        self.reader.checkpoint(target)
        if self._last is not None and tuple(target) >= tuple(self._last):
            self._last = None

    def rewind(self) -> None:
        """Forget what was read and not committed: the next read starts after the checkpoint."""
        self._last = None

    def lag(self) -> int:
        """Records written after this subscriber's checkpoint."""
        return self.jlog.lag(self.subscriber)

    def close(self) -> None:
        if not self.closed:
            self.reader.close()
            self.closed = True

    def unsubscribe(self) -> None:
        """Remove the subscriber (its records no longer wait for it) and close."""
        self.close()
        self.jlog.remove_subscriber(self.subscriber)

    def __enter__(self) -> "Consumer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- following ---------------------------------------------------------------------------
    def follow(self, batch: int = DEFAULT_BATCH, idle_timeout: float | None = None,
               stop: Callable[[], bool] | None = None) -> Iterator[Event]:
        """Yield events as they arrive. A batch is checkpointed once the consumer asks for
        the event after its last one (so every event handed out was processed); an event
        of another type is checkpointed with its batch. Closing the generator (break, an
        exception in the loop) checkpoints up to the event before the one in hand, which is
        seen again next time (at-least-once). idle_timeout: stop after that many seconds
        without a new record (None: never); stop(): checked between polls."""
        self.rewind()
        idle_since = time.monotonic()
        while True:
            events = self.read_raw(batch)
            if not events:
                if stop is not None and stop():
                    return
                if idle_timeout is not None and time.monotonic() - idle_since >= idle_timeout:
                    return
                time.sleep(self.poll)
                continue
            idle_since = time.monotonic()
            done: JlogId | None = None
            try:
                for ev in events:
                    if wanted(ev, self.types):
                        yield ev
                    done = ev.id            # handed out and asked past: processed
            finally:
                if done is not None:
                    self.reader.checkpoint(done)
                self._last = None           # the next read starts after the checkpoint
            if stop is not None and stop():
                return


def follow(source: str | None, stream: str | None = None, *, subscriber: str, types=None,
           start: str = "checkpoint", basedir: str = DEFAULT_BASEDIR, batch: int = DEFAULT_BATCH,
           poll: float = DEFAULT_POLL, idle_timeout: float | None = None, wait: float = 30.0,
           stop: Callable[[], bool] | None = None) -> Iterator[Event]:
    """Follow a stream (blocking): yields Events of the wanted types as they are written,
    checkpointing after each batch the caller has processed (see Consumer.follow).

    source: the daemon's state directory (None: $ECMTA_HOME, else the default) or the path
    of a stream's jlog; stream: its name (mainlog, events, ...); subscriber: this
    consumer's name (created on first use); types: e.g. {"D", "P"} or "D,P" (None: all);
    start: checkpoint | begin | end; wait: seconds to wait for the jlog to appear."""
    consumer = Consumer(source, stream, subscriber=subscriber, start=start, types=types,
                        basedir=basedir, wait=wait, poll=poll)
    try:
        yield from consumer.follow(batch=batch, idle_timeout=idle_timeout, stop=stop)
    finally:
        consumer.close()


# -- inside the daemon -------------------------------------------------------------------------

class Attachment:
    """A consumer running inside the daemon (returned by `attach()`)."""

    def __init__(self, stream: str, subscriber: str, path: str) -> None:
        self.stream, self.subscriber, self.path = stream, subscriber, path
        self.handled = 0
        self.failures = 0
        self.last_error: str | None = None
        self._stopping = False
        self._thread_done = None

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop after the callback in progress; True once the thread has ended."""
        self._stopping = True
        done = self._thread_done
        return True if done is None else done.wait(timeout)

    def lag(self) -> int:
        return Jlog(self.path).lag(self.subscriber)

    @property
    def stopping(self) -> bool:
        return self._stopping


def attach(stream: str, callback: Callable[[Event], object], *, subscriber: str, types=None,
           start: str = "checkpoint", batch: int = DEFAULT_BATCH, poll: float = DEFAULT_POLL,
           service=None) -> Attachment:
    """Attach a consumer to a stream inside the running daemon (from Python code that the
    daemon runs on its hub). The stream is written to its jlog from now on if the
    configuration does not already (it stays written until the daemon stops), and
    `callback(event)` is called for each event of the wanted types, in a thread of its own
    (a real OS thread, not a greenlet): a slow or blocking callback only delays its own
    reading, never the hub. A batch is checkpointed once every callback of it returned; a
    callback that raises is reported to stderr and the event counts as handled (catch
    what you want retried). The callback must not touch actors or gevent objects of the
    hub. Stop it with the returned Attachment's stop()."""
    from ecmta.loggers import streams
    svc = service or streams.current_service()
    if svc is None:
        raise RuntimeError("attach() needs a running daemon (use follow() in other programs)")
    path = svc.ensure_stream(stream, subscriber=subscriber)
    att = Attachment(stream, subscriber, path)
    types = parse_types(types)
    start_thread, event_cls = _native_threading()
    att._thread_done = event_cls()

    def run() -> None:
        import sys
        import traceback
        try:
            consumer = Consumer(None, path, subscriber=subscriber, start=start, types=types,
                                wait=30, poll=poll)
            with consumer:
                while not att.stopping:
                    for ev in consumer.read(batch, timeout=1.0):
                        try:
                            callback(ev)
                        except Exception as exc:
                            att.failures += 1
                            att.last_error = repr(exc)
                            print(f"ecmta: stream consumer {subscriber} of {stream}: callback "
                                  f"failed: {exc!r}\n{traceback.format_exc()}", file=sys.stderr,
                                  flush=True)
                        att.handled += 1
                    consumer.commit()
        except Exception as exc:
            att.last_error = repr(exc)
            print(f"ecmta: stream consumer {subscriber} of {stream} stopped: {exc!r}",
                  file=sys.stderr, flush=True)
        finally:
            att._thread_done.set()
    start_thread(run, ())
    return att


def _native_threading():
    """start_new_thread and Event of the real threading module (gevent may have patched it)."""
    try:
        from gevent.monkey import get_original
        start = get_original("_thread", "start_new_thread")
        lock = get_original("_thread", "allocate_lock")
    except Exception:                          # pragma: no cover - gevent is a dependency
        import _thread
        start, lock = _thread.start_new_thread, _thread.allocate_lock

    class _Done:
        def __init__(self) -> None:
            self._lock = lock()
            self._lock.acquire()
            self._set = False

        def set(self) -> None:
            if not self._set:
                self._set = True
                self._lock.release()

        def wait(self, timeout: float) -> bool:
            if self._set:
                return True
            got = self._lock.acquire(True, timeout)
            if got:
                self._lock.release()
            return got or self._set
    return start, _Done


def iter_events(path: str, types=None) -> Iterable[Event]:
    """Every event still on disk in a stream's jlog, oldest first, read without a
    subscriber (no checkpoint is touched): for inspection and tests."""
    types = parse_types(types)
    jl = Jlog(path)
    for log in jl.segments():
        try:
            last, _closed = jl.resync_index(log)
        except JlogError as exc:
            if exc.code == ERR_FILE_OPEN:
                continue
            raise
        ctx = jl.open_admin()
        try:
            for marker in range(1, last.marker + 1):
                msg = ctx._read_message(JlogId(log, marker))   # noqa: SLF001
                ev = decode(JlogId(log, marker), msg.timestamp, msg.data)
                if wanted(ev, types):
                    yield ev
        finally:
            ctx.close()


__all__ = ["Consumer", "Event", "Attachment", "follow", "attach", "encode", "decode",
           "event_type", "stream_path", "streams_dir", "list_streams", "subscriber_status",
           "parse_types", "iter_events", "EVENTS", "DEFAULT_BASEDIR", "TYPES"]
