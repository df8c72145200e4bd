"""The daemon's audit series service: inbound_audit's directories for msys.audit_series.

Owns: reading the `inbound_audit { ... }` options that concern audit series, loading the
persisted series at start and saving them at shutdown (`serialize_dir`), and the journal of
series defined with `serialize = true` (`log_dir`, every `maintenance_interval` seconds;
loggers/as_logger.py writes it, without resetting the series). Defaults: Momentum's are
/var/log/ecelerity/audit_series_persist and /var/log/ecelerity/audit_series_logs; ecmta
keeps them under the state directory (audit_series_persist, audit_series_logs), like
every relative path. The module page names the persist directory serialize_dir and the
serialize directory log_dir (the define page calls both serialize_dir): the module page's
names are the options.

Order: started before the ESMTP service, so the persisted state is staged before the
scripts' init() defines the series (each series takes its own at define), and stopped after
it, when no callout can add any more. Files are read and written in the IO pool; the
caller's greenlet waits, the hub does not. Problems (an unreadable file, a series whose
type, interval or windows changed since it was saved) go to the paniclog.
"""

from __future__ import annotations

from dataclasses import dataclass

from ecmta import paths, pools
from ecmta.loggers.panic import panic
from ecmta.policy import audit_series

MODULE = "inbound_audit"
DEFAULT_PERSIST_DIR = "audit_series_persist"
DEFAULT_LOG_DIR = "audit_series_logs"
DEFAULT_MAINTENANCE = 300


@dataclass(frozen=True)
class Settings:
    persist_dir: str
    log_dir: str
    maintenance_interval: int


class AuditConfigError(ValueError):
    pass


def settings(cfg, state: str) -> Settings:
    """The inbound_audit options of a configuration; AuditConfigError (file:line) for a
    maintenance_interval below one second."""
    scopes = cfg.scopes(MODULE)
    scope = scopes[0] if scopes else None

    def opt(name, default):
        v = scope.options.get(name) if scope is not None else None
        return default if v is None else v.value

    every = opt("maintenance_interval", DEFAULT_MAINTENANCE)
    if every < 1:
        v = scope.options.get("maintenance_interval")
        where = f"{v.file}:{v.line}: " if v.file else ""
        raise AuditConfigError(f"{where}inbound_audit: maintenance_interval must be at least "
                               f"1 second, not {every}")
    return Settings(paths.resolve(str(opt("serialize_dir", DEFAULT_PERSIST_DIR)), state),
                    paths.resolve(str(opt("log_dir", DEFAULT_LOG_DIR)), state), int(every))


class AuditSeriesService:
    name = "audit_series"

    def __init__(self, daemon, store: audit_series.Store | None = None) -> None:
        self.daemon = daemon
        self.store = store or audit_series.STORE
        self.settings: Settings | None = None
        self._journal = None
        self._key = "logger:inbound_audit:serialize"

    def start(self) -> None:
        self.settings = settings(self.daemon.config.current, self.daemon.state_dir)
        payloads, problems = pools.run("IO", audit_series.load_persisted,
                                       self.settings.persist_dir)
        for problem in problems:
            panic(f"audit series not restored: {problem}", subsystem=MODULE)
        self.store.stage(payloads)
        self._start_journal()

    def stop(self) -> None:
        self._stop_journal()
        self.save()
        for name in self.store.dropped:
            panic(f"persisted audit series '{name}' was not restored: its type, interval or "
                  "num_windows changed since it was saved", subsystem=MODULE)
        self.store.dropped.clear()

    def save(self) -> list[str]:
        payloads = self.store.persist_payloads()
        if not payloads:
            return []
        try:
            return pools.run("IO", audit_series.save_persisted, self.settings.persist_dir,
                             payloads)
        except OSError as exc:
            panic(f"cannot persist audit series in {self.settings.persist_dir}: {exc}",
                  subsystem=MODULE)
            return []

    def apply_config(self, cfg) -> None:
        new = settings(cfg, self.daemon.state_dir)
        if new != self.settings:
            self._stop_journal()
            self.settings = new
            self._start_journal()

    def _start_journal(self) -> None:
        from ecmta.loggers.as_logger import JournalActor, Plan
        s = self.settings
        plan = Plan(MODULE, s.log_dir, float(s.maintenance_interval), reset=False,
                    serialized_only=True)
        self._journal = self.daemon.supervisor.spawn(JournalActor, plan, key=self._key)

    def _stop_journal(self) -> None:
        ref, self._journal = self._journal, None
        if ref is None:
            return
        self.daemon.supervisor.forget(self._key)
        if ref.is_alive():
            ref.stop(timeout=5)
