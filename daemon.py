"""One `ecelerity` process: loads the config, starts the services in order, serves until told
to stop, and stops them in reverse.

Owns: the Daemon object console commands see as `ctx.daemon` (design.md §3.4), the pidfile,
signal handling (SIGTERM/SIGINT graceful stop, SIGHUP reload) and the wiring of the config
manager to every service's `apply_config`.

Talks to: the Supervisor (start/stop/apply_config), the ConfigManager (reloads, console
`config set`), the paniclog. Fails at start by raising (the caller prints it and exits 1);
once running, a failed reload keeps the old generation and says why in the paniclog.
"""

from __future__ import annotations

import os
import signal
import time

import gevent
import gevent.monkey
import structlog
from gevent.event import Event

from ecmta import paths, pools
from ecmta.actors.supervisor import Supervisor
from ecmta.config import ConfigError, ConfigManager
from ecmta.loggers import panic as paniclog
from ecmta.loggers.ec_logger import LoggingService
from ecmta.loggers.streams import StreamService

log = structlog.get_logger("ecmta.daemon")

STOP_GRACE = 30.0


def _assert_patched() -> None:
    if not gevent.monkey.is_module_patched("threading"):
        raise RuntimeError("gevent.monkey.patch_all() must run before ecmta.daemon is imported")


class Daemon:
    def __init__(self, config_path: str | None = None, *, skip: frozenset = frozenset()) -> None:
        _assert_patched()
        self.config = ConfigManager(config_path)
        self.config_path = self.config.path
        self.skip = skip
        self.state_dir = paths.state_dir()
        self.pid = os.getpid()
        self.started_at = time.time()
        self.supervisor = Supervisor()
        self.pools = pools.PoolRegistry(self.config.current)
        pools.install(self.pools)
        self._stopping = Event()
        self._stopped = Event()
        self.pidfile: str | None = None
        self.last_apply_problems: list[str] = []
        self.reloading = False                 # True while a reload from disk is applied
        # Delivery attaches here: called with the instances of every accepted message and
        # with every batch recovered from the spool at start.
        self.accepted_hooks: list = []
        self.recovered_hooks: list = []
        self._add_services()
        self.config.subscribe(self._on_new_generation)

    # -- wiring ------------------------------------------------------------------
    def _add_services(self) -> None:
        from ecmta.actors.delivery import DeliveryService
        from ecmta.actors.esmtp_service import ESMTPService
        from ecmta.actors.spool import SpoolService
        from ecmta.config import EvalContext
        from ecmta.console import loader
        from ecmta.policy.audit_series_service import AuditSeriesService
        from ecmta.transports.control import ControlService
        from ecmta.transports.dns import Resolver
        from ecmta.transports.routing import Router, route_options

        loader.load_all()
        self.logging = LoggingService(self)
        self.log_streams = StreamService(self)      # log streams for consumers (ecmta addition)
        self.dns = Resolver.from_config(self.config.current)
        self.router = Router(self.dns, options_for=lambda d: route_options(
            self.config.current, EvalContext(domain=d)))
        self.spool = SpoolService(self.config.current, on_recovered=self._recovered,
                                  state_dir=self.state_dir)
        self.delivery = DeliveryService(self)
        # msys.audit_series' persisted state is staged before the scripts' init() runs
        self.audit_series = AuditSeriesService(self)
        self.esmtp = ESMTPService(self)
        self.control = ControlService(self)
        for svc in (self.pools, self.logging, self.log_streams, self.dns, self.spool, self.delivery,
                    self.audit_series, self.esmtp, self.control):
            if getattr(svc, "name", "") not in self.skip:
                self.supervisor.add(svc)

    def _recovered(self, messages) -> None:
        for hook in self.recovered_hooks:
            hook(messages)

    def _on_new_generation(self, cfg) -> None:
        self.last_apply_problems = self.supervisor.apply_config(cfg)

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        self._write_pidfile()
        try:
            self.supervisor.start_all()
        except Exception:
            self._remove_pidfile()
            raise
        gevent.signal_handler(signal.SIGTERM, self.shutdown)
        gevent.signal_handler(signal.SIGINT, self.shutdown)
        gevent.signal_handler(signal.SIGHUP, self._sighup)
        paniclog.panic(f"ecelerity started (pid {self.pid}, config {self.config_path})",
                       subsystem="start", level="NOTICE")

    def serve_forever(self) -> None:
        self._stopping.wait()
        self._stop_services()

    def run(self) -> None:
        self.start()
        self.serve_forever()

    def shutdown(self) -> None:
        """Graceful stop: stop accepting, finish in-flight work, flush logs."""
        self._stopping.set()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def _stop_services(self) -> None:
        with gevent.Timeout(STOP_GRACE, False):
            self.supervisor.stop_all()
        self._remove_pidfile()
        self._stopped.set()

    def _sighup(self) -> None:
        gevent.spawn(self._reload_logged)

    def _reload_logged(self) -> None:
        try:
            problems = self.reload_config()
        except ConfigError as exc:
            paniclog.panic(f"configuration reload failed, keeping the running configuration: {exc}",
                           subsystem="config", level="CRITICAL")
            return
        for problem in problems:
            paniclog.panic(problem, subsystem="config")

    # -- what console commands use ------------------------------------------------
    def reload_config(self, path: str | None = None) -> list[str]:
        """New generation from disk; raises ConfigError (old generation kept).

        Returns what the operator must know: non-dynamic options kept until a restart, and
        services that could not apply the new generation."""
        self.reloading = True
        try:
            result = self.config.reload(path)
        finally:
            self.reloading = False
        return list(result.restart_needed) + list(result.problems) + list(self.last_apply_problems)

    def reopen_logs(self) -> None:
        for svc in self.supervisor.started:
            reopen = getattr(svc, "reopen", None)
            if reopen is not None:
                reopen()

    def modules(self) -> list[dict]:
        """The module stanzas of the running configuration, as `module list` shows them."""
        from ecmta.config import registry

        out, seen = [], set()
        for spec in registry.MODULES.values():
            for scope in self.config.current.scopes(spec.name):
                key = (spec.name, scope.name)
                if key in seen:
                    continue
                seen.add(key)
                enabled = scope.options.get("enabled")
                out.append({
                    "module": spec.name, "scope_name": spec.name,
                    "instance_name": None if spec.singleton else (scope.name or spec.name),
                    "enabled": "enabled" if enabled is None or enabled.value else "disabled",
                    "api": spec.api, "name": f"ecmta.{spec.name}", "description": spec.description,
                })
        return out

    # -- pidfile -------------------------------------------------------------------
    def _write_pidfile(self) -> None:
        raw = self.config.current.value("pidfile", default="ecelerity.pid")
        path = paths.ensure_parent(paths.resolve(raw, self.state_dir))
        other = read_pid(path)
        if other and other != self.pid and pid_alive(other):
            raise RuntimeError(f"another ecelerity (pid {other}) is running with pidfile {path}")
        tmp = f"{path}.{self.pid}.tmp"
        with open(tmp, "w") as fh:
            fh.write(f"{self.pid}\n")
        os.replace(tmp, path)
        self.pidfile = path

    def _remove_pidfile(self) -> None:
        if self.pidfile and read_pid(self.pidfile) == self.pid:
            try:
                os.unlink(self.pidfile)
            except OSError:
                pass


def read_pid(path: str) -> int | None:
    try:
        with open(path) as fh:
            return int(fh.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
