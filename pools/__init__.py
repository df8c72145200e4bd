"""Named thread pools: where blocking work (disk, fsync, CPU-heavy crypto, blocking
drivers) runs, so the one gevent hub never blocks (docs/design.md §2, §3.1).

    pools.install(registry)                       # the daemon installs its PoolRegistry
    pools.current() -> PoolRegistry               # installed, else a lazily started default
    pools.submit(name, fn, *a, **kw) -> AsyncResult   # from the hub thread; one tell, no ask
    pools.run(name, fn, *a, **kw) -> value        # submit + wait cooperatively; re-raises

Names are case-insensitive ("IO", "io"); an unknown name raises KeyError naming it.
`submit(...).rawlink(cb)` runs `cb(result)` on the hub when the job is done, without a
greenlet per job (what msys.runInPool's completion callbacks use). `run` waits in the
calling greenlet, so it must not be called on the hub itself (RuntimeError says so).

A process that never patched threading has no hub to protect (command-line tools,
pytest's own process): there `run` calls fn inline in the calling thread, and `submit`
raises RuntimeError because nothing would ever deliver its result.
"""

from __future__ import annotations

import gevent.monkey

from ecmta.pools.registry import DEFAULT_POOLS, PoolRegistry
from ecmta.pools.threadpool import Pool, PoolStopped

__all__ = ["DEFAULT_POOLS", "Pool", "PoolRegistry", "PoolStopped", "current", "install",
           "run", "submit"]

_registry: PoolRegistry | None = None
_lazy = False     # _registry was made here, not installed: start it on first use


def install(registry: PoolRegistry | None) -> None:
    """Make `registry` the process-wide one (None forgets it; the next use makes a default)."""
    global _registry, _lazy
    _registry, _lazy = registry, False


def current() -> PoolRegistry:
    """The installed registry; else a default one, started on first use under gevent."""
    global _registry, _lazy
    reg = _registry
    if reg is None:
        reg, _lazy = PoolRegistry(), True
        _registry = reg
    if _lazy and not reg.started and _patched():
        reg.start()
    return reg


def _patched() -> bool:
    return gevent.monkey.is_module_patched("threading")


def submit(name, fn, *args, **kwargs):
    reg = _registry
    if reg is None or not reg.started:
        if not _patched():
            raise RuntimeError("pools.submit needs the gevent hub: call "
                               "gevent.monkey.patch_all() first (or use pools.run)")
        reg = current()
    return reg.submit(name, fn, *args, **kwargs)


def run(name, fn, *args, **kwargs):
    reg = _registry
    if reg is None or not reg.started:
        reg = current()
        if not reg.started and not _patched():
            reg.get(name)              # an unknown name fails the same way everywhere
            return fn(*args, **kwargs)
    return reg.run(name, fn, *args, **kwargs)
