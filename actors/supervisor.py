"""The supervisor: starts the daemon's services in dependency order, stops them in reverse,
and brings back any actor that died.

Owns: the ordered list of services and the spawn records of supervised actors. A
*service* is any object with `name`, `start()` and `stop()` (and optionally
`apply_config(cfg)` for reloads); services own their actors and spawn them through
`Supervisor.spawn()` so that a dead actor is restarted from the same factory.

Talks to: every service (start/stop/apply_config). Logs to the paniclog when an actor
has to be restarted or a service fails to start or stop. Fails by raising from
`start_all()` (after stopping what had started) so the daemon exits non-zero.
"""

from __future__ import annotations

import gevent
import pykka
import structlog

from ecmta.loggers.panic import panic

log = structlog.get_logger("ecmta.supervisor")

WATCH_INTERVAL = 1.0


class _Spawned:
    __slots__ = ("factory", "args", "kwargs", "ref", "deaths")

    def __init__(self, factory, args, kwargs, ref):
        self.factory, self.args, self.kwargs, self.ref = factory, args, kwargs, ref
        self.deaths = 0


class Supervisor:
    def __init__(self) -> None:
        self.services: list = []
        self.started: list = []
        self._spawned: dict[str, _Spawned] = {}
        self._watcher: gevent.Greenlet | None = None

    # -- services ----------------------------------------------------------------
    def add(self, service) -> None:
        """Register a service; services start in the order they are added."""
        self.services.append(service)

    def service(self, name: str):
        for svc in self.services:
            if svc.name == name:
                return svc
        raise KeyError(name)

    def start_all(self) -> None:
        for svc in self.services:
            try:
                svc.start()
            except Exception as exc:
                panic(f"service {svc.name} failed to start: {exc}", subsystem="supervisor",
                      level="CRITICAL")
                self.stop_all()
                raise
            self.started.append(svc)
            log.debug("service started", service=svc.name)
        self._watcher = gevent.spawn(self._watch)

    def stop_all(self) -> None:
        if self._watcher is not None:
            self._watcher.kill(block=False)
            self._watcher = None
        while self.started:
            svc = self.started.pop()
            try:
                svc.stop()
            except Exception as exc:
                panic(f"service {svc.name} failed to stop cleanly: {exc}", subsystem="supervisor")
            log.debug("service stopped", service=svc.name)

    def apply_config(self, cfg) -> list[str]:
        """Hand a new config generation to every running service; returns the problems."""
        problems = []
        for svc in self.started:
            apply = getattr(svc, "apply_config", None)
            if apply is None:
                continue
            try:
                apply(cfg)
            except Exception as exc:
                problems.append(f"{svc.name}: {exc}")
                panic(f"service {svc.name} could not apply the new configuration: {exc}",
                      subsystem="config")
        return problems

    # -- supervised actors -------------------------------------------------------
    def spawn(self, factory, *args, key: str | None = None, **kwargs) -> pykka.ActorRef:
        """Start an actor and remember how, so it can be started again if it dies."""
        ref = factory.start(*args, **kwargs)
        key = key or f"{factory.__name__}:{id(ref)}"
        self._spawned[key] = _Spawned(factory, args, kwargs, ref)
        return ref

    def ref(self, key: str) -> pykka.ActorRef:
        return self._spawned[key].ref

    def forget(self, key: str) -> None:
        self._spawned.pop(key, None)

    def _watch(self) -> None:
        while True:
            gevent.sleep(WATCH_INTERVAL)
            self.check_actors()

    def check_actors(self) -> int:
        """Restart every supervised actor that is no longer alive; returns how many."""
        restarted = 0
        for key, rec in list(self._spawned.items()):
            if rec.ref.is_alive():
                continue
            rec.deaths += 1
            panic(f"actor {key} died; starting it again (death {rec.deaths})",
                  subsystem="supervisor", level="CRITICAL")
            try:
                rec.ref = rec.factory.start(*rec.args, **rec.kwargs)
                restarted += 1
            except Exception as exc:
                panic(f"actor {key} could not be restarted: {exc}", subsystem="supervisor",
                      level="CRITICAL")
        return restarted

    @staticmethod
    def live_actors() -> list[pykka.ActorRef]:
        return [ref for ref in pykka.ActorRegistry.get_all() if ref.is_alive()]
