"""ec_logger (modules.ec_logger): mainlog, rejectlog, paniclog, heartbeats.

Owns: one FileWriterActor per configured log file of every `ec_logger "name" { ... }`
stanza, the subscriptions of those files to the log bus, and the heartbeat timer
(`heartbeat`, default 60 s: `ts@@@@M` in the mainlog, `ts: Marker 1` in the rejectlog).
Also owns where paniclog lines go: the first ec_logger's `paniclog`, or the state
directory's log/paniclog.ec when no ec_logger is configured (the daemon must always have
a paniclog).

Destinations are file paths (relative ones under the state directory), `file://` URIs, or
jlogs: `jlog:///path=>subscriber` and its alias `cluster:///path=>subscriber`, written by a
`loggers.jlog_writer.JlogWriterActor` (the jlog and the subscriber, `master` when not
named, are created on open if missing), or `syslog://?facility=mail&priority=error`
(loggers/syslog_io.py). Other URI schemes (pipe://, ...) are refused at start with an
error that names them. log_receptions / log_deliveries / log_transient_failures /
log_permanent_failures / log_rejections / log_errors switch the event kinds; *_mode sets
file permissions (octal).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import gevent

from ecmta import paths
from ecmta.loggers import as_logger, bus, chunk_logger, formats, panic, records
from ecmta.loggers.base import LoggerActor, attach
from ecmta.loggers.jlog_writer import SCHEMES as JLOG_SCHEMES
from ecmta.loggers.jlog_writer import JlogDestination, JlogWriterActor, parse_destination
from ecmta.loggers import syslog_io
from ecmta.loggers.writer import FileWriterActor, WriterFlush, WriterLine, WriterReopen

DEFAULT_PANICLOG = "log/paniclog.ec"
REOPEN_WAIT = 5.0
FILE_KINDS = ("mainlog", "rejectlog", "paniclog", "acctlog", "importlog")
SWITCHES = {
    "log_receptions": (records.Reception,),
    "log_deliveries": (records.Delivery,),
    "log_transient_failures": (records.Failure,),
    "log_permanent_failures": (records.Failure,),
    "log_rejections": (records.Rejection,),
}


class LogConfigError(ValueError):
    pass


def _opt(scope, name, default=None):
    value = scope.options.get(name) if scope is not None else None
    return default if value is None else value.value


def destination(raw: str, option: str, state_dir: str) -> str | JlogDestination:
    """File path of a log destination, or a JlogDestination for jlog:// and cluster://;
    refuses URI schemes not built yet."""
    if "://" in raw:
        scheme, rest = raw.split("://", 1)
        if scheme.lower() in JLOG_SCHEMES:
            try:
                return parse_destination(rest, state_dir)
            except ValueError as exc:
                raise LogConfigError(f"{option} = \"{raw}\": {exc}") from None
        if scheme.lower() == syslog_io.SCHEME:
            try:
                return syslog_io.parse(raw, option)
            except ValueError as exc:
                raise LogConfigError(str(exc)) from None
        if scheme.lower() != "file":
            raise LogConfigError(f"{option} = \"{raw}\": log destination scheme '{scheme}://' is not "
                                 "available in this version (use a file path or jlog://)")
        raw = rest
    return paths.resolve(raw, state_dir)


@dataclass
class _Instance:
    name: str
    writers: dict
    switches: dict
    handles: list
    actor: object = None


class EcLoggerActor(LoggerActor):
    """One ec_logger instance: mainlog D/R/T/P, rejectlog, acctlog lines."""

    def __init__(self, name: str, writers: dict, switches: dict) -> None:
        super().__init__(name, writers)
        self.switches = switches

    def render(self, rec):
        if isinstance(rec, records.Rejection):
            yield "rejectlog", formats.rejectlog(rec)
        elif isinstance(rec, records.Auth):
            yield "acctlog", acctlog_auth(rec)
        elif isinstance(rec, records.Failure):
            if self.switches["log_permanent_failures" if rec.permanent else "log_transient_failures"]:
                yield "mainlog", formats.mainlog(rec)
        else:
            yield "mainlog", formats.mainlog(rec)


class LoggingService:
    """The daemon's logging service: paniclog always, ec_logger stanzas when configured."""

    name = "logging"

    def __init__(self, daemon) -> None:
        self.daemon = daemon
        self.instances: list[_Instance] = []
        self.panic_writer = None
        self._heartbeat = None
        self._serial = 0
        self._keys: dict[int, str] = {}

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        self._build(self.daemon.config.current)
        self._heartbeat = gevent.spawn(self._heartbeat_loop)

    def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.kill(block=False)
        panic.set_sink(None)
        chunk_logger.install([])
        self._teardown(self.instances, self.panic_writer)
        self.instances, self.panic_writer = [], None

    def apply_config(self, cfg) -> None:
        old, old_panic = self.instances, self.panic_writer
        self.instances, self.panic_writer = [], None
        try:
            self._build(cfg)
        except LogConfigError:
            self.instances, self.panic_writer = old, old_panic
            from ecmta.loggers import custom_logger
            panic.set_sink(self._panic_sink(old_panic, *custom_logger.panic_writers(old)))
            chunk_logger.install(old)
            raise
        self._teardown(old, old_panic)

    def reopen(self, wait: float = REOPEN_WAIT) -> None:
        """`reopen logs`: every writer of every log module (ec_logger, custom_logger and
        the MTA-format loggers, bounce loggers, chunk_logger, the paniclog) reopens its
        file; then wait (at most `wait` seconds) until each has appended what it held, so a
        batch that was being appended to a file renamed by ec_rotate is finished when this
        returns and the renamed file is complete (every later batch opens the path anew)."""
        refs = self._all_writers()
        for ref in refs:
            ref.tell(WriterReopen())
        flushes = []
        for ref in refs:
            msg = WriterFlush()
            ref.tell(msg)
            flushes.append(msg.done)
        deadline = time.monotonic() + wait
        for done in flushes:
            done.wait(max(0.0, deadline - time.monotonic()))

    def flush(self, timeout: float = 10) -> None:
        """Wait until every line of the records published so far is on disk (tests,
        shutdown): the loggers render what they hold, then every writer appends."""
        bus.barrier().wait(timeout)
        for ref in self._all_writers():
            msg = WriterFlush()
            ref.tell(msg)
            msg.done.wait(timeout)

    # -- building ------------------------------------------------------------------
    def _build(self, cfg) -> None:
        state = self.daemon.state_dir
        chunk = chunk_logger.plan(cfg, state)     # checked before anything is started
        journal = as_logger.plan(cfg, state)
        self._apply_debug_flags(cfg)
        syslog_io.configure(cfg)
        panic_path = None
        for scope in cfg.scopes("ec_logger"):
            inst = self._instance(scope, state)
            self.instances.append(inst)
            if panic_path is None and "paniclog" in inst.writers:
                self.panic_writer = inst.writers["paniclog"]
                panic_path = True
        if self.panic_writer is None:
            self.panic_writer = self._writer(paths.resolve(DEFAULT_PANICLOG, state), "paniclog", 0o644)
        panic.set_sink(self._panic_sink(self.panic_writer))
        # custom_logger / exim_logger / postfix_logger / sendmail_logger stanzas; they reset
        # records.NEEDS, so before the bounce loggers that add to it
        from ecmta.loggers import custom_logger
        extra = custom_logger.build_log_modules(self, cfg, state)
        self.instances.extend(extra)
        panic.set_sink(self._panic_sink(self.panic_writer, *custom_logger.panic_writers(extra)))
        # bounce_logger / custom_bounce_logger stanzas (and the bounce classifier's config)
        from ecmta.loggers import bounce_logger
        self.instances.extend(bounce_logger.build_instances(self, cfg, state))
        # the chunk_logger stanza (msys.beta.chunk_logger_int.log)
        self.instances.extend(chunk_logger.build_instances(self, chunk))
        # the as_logger stanza (journals of msys.audit_series)
        self.instances.extend(as_logger.build_instances(self, journal))

    def _instance(self, scope, state: str) -> _Instance:
        writers = {}
        for kind in FILE_KINDS:
            raw = _opt(scope, kind)
            if raw:
                mode = _opt(scope, f"{kind}_mode", 0o644)
                writers[kind] = self._writer(destination(raw, kind, state), kind, mode)
        switches = {name: bool(_opt(scope, name, True)) for name in SWITCHES}
        switches["log_errors"] = bool(_opt(scope, "log_errors", True))
        inst = _Instance(scope.name or "ec_logger", writers, switches, [])
        kinds = self._kinds(inst)
        if kinds:
            self._serial += 1
            key = f"logger:ec_logger:{self._serial}"
            ref = self.daemon.supervisor.spawn(EcLoggerActor, inst.name, writers, switches, key=key)
            self._keys[id(ref)] = key
            inst.actor = ref
            inst.handles.append(attach(ref, kinds))
        return inst

    @staticmethod
    def _kinds(inst: _Instance) -> tuple:
        sw, w = inst.switches, inst.writers
        kinds = []
        if "mainlog" in w:
            if sw["log_receptions"]:
                kinds.append(records.Reception)
            if sw["log_deliveries"]:
                kinds.append(records.Delivery)
            if sw["log_transient_failures"] or sw["log_permanent_failures"]:
                kinds.append(records.Failure)
        if "rejectlog" in w and sw["log_rejections"]:
            kinds.append(records.Rejection)
        if "acctlog" in w:
            kinds.append(records.Auth)
        return tuple(kinds)

    def spawn_logger(self, cls, *args, kind: str):
        """Start a logger actor of another log module under the supervisor; `_teardown`
        forgets and stops it with its instance."""
        self._serial += 1
        key = f"logger:{kind}:{self._serial}"
        ref = self.daemon.supervisor.spawn(cls, *args, key=key)
        self._keys[id(ref)] = key
        return ref

    def _writer(self, path: str | JlogDestination, kind: str, mode: int, pool: str = "IO",
                newline: bool = True):
        self._serial += 1
        key = f"logwriter:{kind}:{self._serial}"
        if isinstance(path, JlogDestination):
            ref = self.daemon.supervisor.spawn(JlogWriterActor, path.path, path.subscriber,
                                               name=kind, mode=mode, pool=pool, key=key)
        elif isinstance(path, syslog_io.SyslogDestination):
            ref = self.daemon.supervisor.spawn(syslog_io.SyslogWriterActor, path, name=kind,
                                               pool=pool, key=key)
        else:
            ref = self.daemon.supervisor.spawn(FileWriterActor, path, name=kind, mode=mode,
                                               pool=pool, key=key, newline=newline)
        self._keys[id(ref)] = key
        return ref

    @staticmethod
    def _panic_sink(ref, *more):
        """Paniclog lines to `ref` and to the other log modules' paniclogs (`more`)."""
        if ref is None:
            return None
        if not more:
            return lambda line: ref.tell(WriterLine(line))
        refs = (ref, *more)

        def sink(line):
            for r in refs:
                r.tell(WriterLine(line))
        return sink

    @staticmethod
    def _apply_debug_flags(cfg) -> None:
        scopes = cfg.scopes("Debug_Flags")
        if not scopes:
            panic.set_enabled_levels({"ERROR", "CRITICAL"})
            return
        enabled = {name.upper() for s in scopes for name, v in s.options.items() if v.value}
        panic.set_enabled_levels(enabled)

    # -- heartbeats and teardown ------------------------------------------------------
    def _heartbeat_loop(self) -> None:
        last = {}
        while True:
            gevent.sleep(1.0)
            now = time.time()
            for inst in self.instances:
                every = _heartbeat_of(self.daemon.config.current, inst.name)
                if every <= 0 or now - last.get(inst.name, 0) < every:
                    continue
                last[inst.name] = now
                if "mainlog" in inst.writers:
                    inst.writers["mainlog"].tell(WriterLine(formats.mainlog_heartbeat(now)))
                if "rejectlog" in inst.writers:
                    inst.writers["rejectlog"].tell(WriterLine(formats.rejectlog_heartbeat(now)))

    def _all_writers(self):
        refs = [ref for inst in self.instances for ref in inst.writers.values()]
        if self.panic_writer is not None and self.panic_writer not in refs:
            refs.append(self.panic_writer)
        return refs

    def _teardown(self, instances, panic_writer) -> None:
        refs = [ref for inst in instances for ref in inst.writers.values()]
        if panic_writer is not None and panic_writer not in refs:
            refs.append(panic_writer)
        for inst in instances:
            for handle in inst.handles:
                bus.unsubscribe(handle)
            if inst.actor is not None:
                self.daemon.supervisor.forget(self._keys.pop(id(inst.actor), ""))
                if inst.actor.is_alive():
                    inst.actor.stop(timeout=5)   # its mailbox is drained into the writers first
        for ref in refs:
            # Stopped on purpose: the supervisor must not bring it back.
            self.daemon.supervisor.forget(self._keys.pop(id(ref), ""))
            if ref.is_alive():
                msg = WriterFlush()
                ref.tell(msg)
                msg.done.wait(5)
                ref.stop(timeout=5)


def acctlog_auth(rec: records.Auth) -> str:
    """log_formats.acctlog authentication record: ts@N|T@listener@peer@user@1|0."""
    return "@".join((str(int(rec.ts)), "T" if rec.timeout else "N", formats.esc(rec.listener),
                     formats.esc(rec.peer), formats.esc(rec.user), "1" if rec.ok else "0"))


def _heartbeat_of(cfg, name: str) -> float:
    for scope in cfg.scopes("ec_logger"):
        if (scope.name or "ec_logger") == name:
            return float(_opt(scope, "heartbeat", 60) or 0)
    return 0.0
