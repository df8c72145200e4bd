"""Log streams, the daemon side (ecmta addition): every event of a log module, or of the
whole log bus, written to a jlog that consumers read at their own pace.

Owns: the `log_streams` stanza (an ecmta module, not a Momentum one), the stream writers
(one `StreamWriterActor` per stream: a JlogWriterActor that encodes typed records), the
taps that copy what a log module renders into its streams (`loggers.base.TAPS`), the
`events` stream's subscription to the log bus, and the trimming of streams nobody
subscribes to. The stream names, the record format and the reading side are in
`loggers/consumers.py`.

    log_streams {
      streams = ( "mainlog" "bouncelog" "events" )   # which streams are written
      basedir = "streams"          # where their jlogs are: <basedir>/<name>.jlog (relative:
                                   # under the state directory)
      subscribers = ( "billing" )  # created in every stream's jlog at start (at the
                                   # beginning), so they miss nothing before they first run
      mode = 0640                  # file mode of the jlogs' files
      thread_pool = "IO"           # the pool that appends to the jlogs
      trim_interval = 30           # seconds between trims of unsubscribed streams (0: never)
    }

Why a slow consumer never slows delivery: the producers publish to the bus and the log
modules render exactly as without streams; a tap only appends the record and its line to
the stream's buffer on the hub, and every LINGER (50 ms) one batch goes to the stream's
writer actor (one tell), which encodes it (loggers/consumers.py `encode`) and appends it
to the jlog from a pool thread, one batch in flight, like every log file writer (a tell
and a pool job per event would cost more than the event itself). Nothing here ever reads
a subscriber's position or waits for it: a consumer that stops reading only makes the
jlog grow (its lag, `log streams` in the console). A stream without any subscriber keeps
only the segment being written: every `trim_interval` the older segments are removed
(the jlog would otherwise grow for ever).

Lifecycle: the service starts right after the logging service and resolves the stream
names against its log module instances; a reload re-resolves them (a stream whose jlog
stays the same keeps its writer), `reopen logs` reopens the jlogs. At stop (after the
pipeline has stopped, before the logging service) the log modules' mailboxes are drained
through the taps and every writer appends what it holds before it stops. Failures: a name
that no log module writes refuses the configuration (start or reload) with the names that
exist; a jlog that cannot be written is retried as every jlog writer does (stderr, a
second later, nothing dropped while the process lives).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import gevent
import pykka

from ecmta import paths, pools
from ecmta.loggers import base, bus, consumers, formats, records
from ecmta.loggers.jlog import DEFAULT_FILE_MODE, Jlog, JlogError
from ecmta.loggers.jlog_writer import JlogWriterActor
from ecmta.loggers.panic import panic
from ecmta.loggers.writer import WriterFlush, WriterReopen

MODULE = "log_streams"
TRIM_INTERVAL = 30.0
LINGER = 0.05
DRAIN_TIMEOUT = 5.0
_current = None


def current_service():
    """The running StreamService of this process (None outside the daemon)."""
    return _current


class StreamConfigError(ValueError):
    pass


# -- the writer ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class StreamBatch:
    """Events for a stream's writer: [(record, target, line or None for `events`)]."""
    items: list


@dataclass
class StreamStats:
    """What the console shows of a writer (updated by the actor on the hub)."""
    queued: int = 0
    written: int = 0
    dropped: int = 0


def events_line(rec) -> str:
    """The `line` of an events-stream record: the ec_logger line of its kind (bouncelog
    line for an out-of-band bounce)."""
    if isinstance(rec, (records.Reception, records.Delivery, records.Failure)):
        return formats.mainlog(rec)
    if isinstance(rec, records.Rejection):
        return formats.rejectlog(rec)
    if isinstance(rec, records.Auth):
        from ecmta.loggers.ec_logger import acctlog_auth
        return acctlog_auth(rec)
    from ecmta.loggers import bounce_logger
    if isinstance(rec, bounce_logger.OutOfBandBounce):
        rl, _, rd = (rec.orig_rcpt or "").rpartition("@")
        sl, _, sd = (rec.bounce_rcpt or "").rpartition("@")
        return bounce_logger.render_fields(rec.ts, rec.msg_id, rec.batch_id, rec.conn_id, "B", rl,
                                           rd.lower(), sl, sd.lower(), rec.binding_group, rec.binding,
                                           bounce_logger.STAGE_OUT_OF_BAND, rec.classification,
                                           rec.size, rec.remote_ip, rec.response)
    return ""


class StreamWriterActor(JlogWriterActor):
    """One stream's jlog: StreamBatches in, JSON records out (appended from a pool thread,
    one batch in flight; what arrives meanwhile goes right after it)."""

    def __init__(self, path: str, stream: str, stats: StreamStats, *, mode: int = DEFAULT_FILE_MODE,
                 pool: str = "IO") -> None:
        super().__init__(path, None, name=f"stream:{stream}", mode=mode, pool=pool, newline=False)
        self.stream = stream
        self.stats = stats

    def on_receive(self, message):
        if isinstance(message, StreamBatch):
            encode, event_type, stream = consumers.encode, consumers.event_type, self.stream
            pending = self.pending
            for rec, target, line in message.items:
                etype = event_type(rec)
                if etype is None:
                    continue                # a heartbeat: not an event
                try:
                    data = encode(stream, target, rec, events_line(rec) if line is None else line,
                                  etype)
                except Exception as exc:    # never lose the stream over one odd record
                    self.stats.dropped += 1
                    panic(f"log stream {stream}: cannot encode {type(rec).__name__}: {exc!r}",
                          subsystem=MODULE)
                    continue
                pending.append((data, rec.ts))
                self.queued += 1
            self.stats.queued = self.queued
            self._kick()
            return None
        result = super().on_receive(message)
        if isinstance(message, WriterFlush):
            self._kick()
        self.stats.written = self.written
        return result


def prepare_jlog(path: str, subscribers: tuple, mode: int) -> None:
    """Pool job: create the stream's jlog (and its directory) and the declared subscribers."""
    Jlog.ensure(path, None, file_mode=mode)
    jl = Jlog(path, file_mode=mode)
    have = set(jl.list_subscribers())
    for sub in subscribers:
        if sub not in have:
            Jlog.ensure(path, sub, file_mode=mode)


def trim_unsubscribed(path: str) -> int:
    """Pool job: a jlog without subscribers keeps only the segment being written; returns
    how many segments were removed."""
    jl = Jlog(path)
    if not jl.exists() or jl.list_subscribers():
        return 0
    storage = jl.meta().storage_log
    removed = 0
    for log in jl.segments():
        if log >= storage:
            continue
        if jl.list_subscribers():          # someone subscribed meanwhile: keep the rest
            break
        for name in (f"{log:08x}", f"{log:08x}.idx"):
            try:
                os.unlink(os.path.join(path, name))
            except FileNotFoundError:
                pass
        removed += 1
    return removed


def disk_status(path: str) -> dict:
    """Pool job: a stream jlog's subscribers (lag, checkpoint), segments and bytes."""
    try:
        jl = Jlog(path)
        if not jl.exists():
            return {"exists": False, "subscribers": [], "segments": 0, "bytes": 0}
        return {"exists": True, "subscribers": consumers.subscriber_status(path),
                "segments": len(jl.segments()), "bytes": jl.raw_size()}
    except (OSError, JlogError) as exc:
        return {"exists": False, "error": str(exc), "subscribers": [], "segments": 0, "bytes": 0}


# -- the service -----------------------------------------------------------------------------------

@dataclass
class _Stream:
    name: str
    path: str
    ref: object
    key: str
    stats: StreamStats
    sources: list = field(default_factory=list)     # [(tap key, target)] or ["events"]
    dynamic: bool = False
    tap: object = None


def _opt(scope, name, default=None):
    value = scope.options.get(name) if scope is not None else None
    return default if value is None else value.value


@dataclass(frozen=True)
class Settings:
    names: tuple = ()
    basedir: str = consumers.DEFAULT_BASEDIR
    subscribers: tuple = ()
    mode: int = DEFAULT_FILE_MODE
    pool: str = "IO"
    trim_interval: float = TRIM_INTERVAL


def settings_of(cfg) -> Settings:
    scopes = [s for s in cfg.scopes(MODULE) if _opt(s, "enabled", True) is not False]
    if not scopes:
        return Settings()
    scope = scopes[0]
    names = tuple(dict.fromkeys(str(n) for n in (_opt(scope, "streams", ()) or ()) if str(n)))
    for name in names:
        if name.startswith("/") or name.endswith("/") or "\n" in name:
            raise StreamConfigError(f"streams = \"{name}\": not a stream name")
    subs = tuple(dict.fromkeys(str(s) for s in (_opt(scope, "subscribers", ()) or ()) if str(s)))
    basedir = str(_opt(scope, "basedir", consumers.DEFAULT_BASEDIR) or consumers.DEFAULT_BASEDIR)
    return Settings(names, basedir, subs, int(_opt(scope, "mode", DEFAULT_FILE_MODE)),
                    str(_opt(scope, "thread_pool", "IO") or "IO"),
                    float(_opt(scope, "trim_interval", TRIM_INTERVAL) or 0))


EVENT_KINDS = (records.Reception, records.Delivery, records.Failure, records.Rejection, records.Auth)


class StreamService:
    """The daemon's log streams (service name `log_streams`, right after `logging`)."""

    name = MODULE

    def __init__(self, daemon) -> None:
        self.daemon = daemon
        self.streams: dict[str, _Stream] = {}
        self.dynamic: dict[str, tuple] = {}      # name -> subscribers, from attach()
        self.settings = Settings()
        self._events_handle = None
        self._trimmer = None
        self._serial = 0

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        global _current
        self._apply(self.daemon.config.current)
        _current = self
        self._trimmer = gevent.spawn(self._trim_loop)

    def stop(self) -> None:
        global _current
        if self._trimmer is not None:
            self._trimmer.kill(block=False)
            self._trimmer = None
        if self._events_handle is not None:
            bus.unsubscribe(self._events_handle)
            self._events_handle = None
        self._drain_loggers()
        base.TAPS.clear()
        self._stop_writers(list(self.streams.values()))
        self.streams = {}
        if _current is self:
            _current = None

    def apply_config(self, cfg) -> None:
        self._apply(cfg)

    def reopen(self) -> None:
        for st in self.streams.values():
            st.ref.tell(WriterReopen())

    def flush(self, timeout: float = 10.0) -> None:
        msgs = []
        for st in self.streams.values():
            st.tap.flush()
            if st.ref.is_alive():
                msg = WriterFlush()
                st.ref.tell(msg)
                msgs.append(msg)
        for msg in msgs:
            msg.done.wait(timeout)

    # -- what attach() and the console use ------------------------------------------------------
    def ensure_stream(self, name: str, subscriber: str | None = None) -> str:
        """Make sure a stream is written (adding it for the daemon's lifetime if the
        configuration does not name it) and that `subscriber` exists in its jlog (at the
        beginning if new); returns the jlog's path."""
        had = self.dynamic.get(name)
        subs = tuple(dict.fromkeys((*(had or ()), *((subscriber,) if subscriber else ()))))
        self.dynamic[name] = subs
        try:
            if name not in self.streams:
                self._apply(self.daemon.config.current)
        except StreamConfigError:
            if had is None:
                self.dynamic.pop(name, None)
            else:
                self.dynamic[name] = had
            raise
        st = self.streams[name]
        if subscriber:
            pools.run(self.settings.pool, prepare_jlog, st.path, (subscriber,), self.settings.mode)
        return st.path

    def status(self) -> list[dict]:
        """The streams as the console shows them (no disk I/O here)."""
        out = []
        for st in self.streams.values():
            out.append({"name": st.name, "path": st.path, "sources": list(st.sources),
                        "queued": st.stats.queued, "written": st.stats.written,
                        "pending": st.stats.queued - st.stats.written + len(st.tap.buf),
                        "dropped": st.stats.dropped,
                        "dynamic": st.dynamic})
        return out

    # -- building --------------------------------------------------------------------------------
    def _entries(self) -> list[tuple]:
        """(tap key, target, instance name) of every file a running log module renders to."""
        out = []
        logging = getattr(self.daemon, "logging", None)
        for inst in getattr(logging, "instances", ()) or ():
            actor = getattr(inst, "actor", None)
            if actor is None:
                continue
            key = (actor.actor_class.__name__, inst.name)
            for target in inst.writers:
                if target == "paniclog":         # paniclog lines are not events
                    continue
                out.append((key, target, inst.name))
        return out

    def resolve(self, name: str, entries: list | None = None) -> list:
        """The sources of a stream name: ["events"] or [(tap key, target), ...]."""
        if name == consumers.EVENTS:
            return [consumers.EVENTS]
        entries = self._entries() if entries is None else entries
        if "/" in name:
            inst_name, _, target = name.rpartition("/")
            found = [(k, t) for k, t, i in entries if i == inst_name and t == target]
        else:
            found = [(k, t) for k, t, _i in entries if t == name][:1]
            if not found:
                found = [(k, t) for k, t, i in entries if i == name]
        if not found:
            known = sorted({consumers.EVENTS, *(t for _k, t, _i in entries),
                            *(f"{i}/{t}" for _k, t, i in entries), *(i for _k, _t, i in entries)})
            raise StreamConfigError(f"streams = \"{name}\": no log module writes a file or is "
                                    f"named '{name}' (streams available: {', '.join(known)})")
        return found

    def _apply(self, cfg) -> None:
        settings = settings_of(cfg)
        state = getattr(self.daemon, "state_dir", None) or paths.state_dir()
        names = list(settings.names) + [n for n in self.dynamic if n not in settings.names]
        entries = self._entries()
        plan = {}
        for name in names:                       # everything is checked before anything changes
            try:
                sources = self.resolve(name, entries)
            except StreamConfigError as exc:
                if name in settings.names:
                    raise
                panic(f"{exc}; the stream attached at run time is no longer written",
                      subsystem=MODULE, level="WARNING")
                continue
            plan[name] = (sources, consumers.stream_path(state, name, settings.basedir))
        if settings.pool not in pools.current():
            raise StreamConfigError(f"thread_pool = \"{settings.pool}\": no such ThreadPool")
        old = self.streams
        keep, new = {}, {}
        for name, (sources, path) in plan.items():
            st = old.get(name)
            if st is not None and st.path == path and st.ref.is_alive() \
                    and settings.mode == self.settings.mode and settings.pool == self.settings.pool:
                st.sources = sources
                keep[name] = st
                continue
            subs = tuple(dict.fromkeys((*settings.subscribers, *self.dynamic.get(name, ()))))
            pools.run(settings.pool, prepare_jlog, path, subs, settings.mode)
            self._serial += 1
            stats = StreamStats()
            key = f"logwriter:{MODULE}:{self._serial}"
            ref = self.daemon.supervisor.spawn(StreamWriterActor, path, name, stats,
                                               mode=settings.mode, pool=settings.pool, key=key)
            new[name] = _Stream(name, path, ref, key, stats, sources, name not in settings.names,
                                _Tap(self.daemon.supervisor, key, ref))
        if settings.subscribers:                 # subscribers added to a kept stream's jlog
            for st in keep.values():
                if settings.subscribers != self.settings.subscribers:
                    pools.run(settings.pool, prepare_jlog, st.path, settings.subscribers, settings.mode)
        for st in keep.values():
            st.dynamic = st.name not in settings.names
        self.settings = settings
        self.streams = {**keep, **new}
        self.streams = {name: self.streams[name] for name in plan}
        self._install_taps()
        self._stop_writers([st for name, st in old.items() if self.streams.get(name) is not st])

    def _install_taps(self) -> None:
        taps: dict = {}
        events = None
        for st in self.streams.values():
            tap = st.tap
            for source in st.sources:
                if source == consumers.EVENTS:
                    events = tap
                else:
                    tap_key, target = source
                    taps.setdefault((tap_key, target), []).append(tap)
        base.TAPS.clear()
        base.TAPS.update(taps)
        if self._events_handle is not None:
            bus.unsubscribe(self._events_handle)
            self._events_handle = None
        if events is not None:
            from ecmta.loggers.bounce_logger import OutOfBandBounce

            def publish(rec, _tap=events):
                _tap(rec, consumers.EVENTS, None)
            self._events_handle = bus.subscribe((*EVENT_KINDS, OutOfBandBounce), publish)

    def _drain_loggers(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """Wait until every log module actor has rendered what its mailbox holds (so the taps
        have seen every record published before the pipeline stopped)."""
        base.flush_feeds()
        logging = getattr(self.daemon, "logging", None)
        futures = []
        for inst in getattr(logging, "instances", ()) or ():
            actor = getattr(inst, "actor", None)
            if actor is None or not actor.is_alive():
                continue
            try:
                futures.append(actor.proxy().ec_stats())
            except pykka.ActorDeadError:
                continue
        for fut in futures:
            try:
                fut.get(timeout=timeout)
            except Exception:
                pass

    def _stop_writers(self, streams: list) -> None:
        for st in streams:
            st.tap.flush()                       # what the taps still hold goes first
            self.daemon.supervisor.forget(st.key)
        msgs = []
        for st in streams:
            if st.ref.is_alive():
                msg = WriterFlush()
                st.ref.tell(msg)
                msgs.append(msg)
        for msg in msgs:
            msg.done.wait(10)
        for st in streams:
            if st.ref.is_alive():
                st.ref.stop(timeout=10)

    def _trim_loop(self) -> None:
        while True:
            every = self.settings.trim_interval
            gevent.sleep(every if every > 0 else TRIM_INTERVAL)
            if every <= 0:
                continue
            for st in list(self.streams.values()):
                try:
                    pools.run(self.settings.pool, trim_unsubscribed, st.path)
                except Exception as exc:
                    panic(f"log stream {st.name}: trimming {st.path} failed: {exc!r}",
                          subsystem=MODULE, level="WARNING")


class _Tap:
    """What a log module (or the bus, for `events`) calls for each event of a stream: the
    event joins a buffer on the hub, and one StreamBatch per `linger` goes to the stream's
    writer (the supervisor's current actor for it, if it was restarted). One message per
    event would cost more than the event's encoding and appending."""

    __slots__ = ("supervisor", "key", "ref", "linger", "buf", "scheduled")

    def __init__(self, supervisor, key: str, ref, linger: float = LINGER) -> None:
        self.supervisor, self.key, self.ref, self.linger = supervisor, key, ref, linger
        self.buf: list = []
        self.scheduled = False

    def __call__(self, rec, target, line) -> None:
        self.buf.append((rec, target, line))
        if not self.scheduled:
            self.scheduled = True
            gevent.spawn_later(self.linger, self.flush)

    def flush(self) -> None:
        self.scheduled = False
        if not self.buf:
            return
        items, self.buf = self.buf, []
        ref = self.ref
        if not ref.is_alive():
            try:
                ref = self.ref = self.supervisor.ref(self.key)
            except KeyError:
                return
        try:
            ref.tell(StreamBatch(items))
        except pykka.ActorDeadError:
            pass
