"""The process's thread pools: Momentum's defaults plus every `ThreadPool` stanza.

Owns: the ordered set of `Pool`s (case-insensitive names, job class ids in creation
order), their life cycle as one supervisor service named "pools" (start, stop,
apply_config), and the aggregate views the console shows (stats, queue).

Talks to: the config generation (`cfg.scopes("ThreadPool")` -> Scope(.name, .options:
lowercased option -> Value(.value))), the supervisor, the console (`threads`), and
`ecmta.pools` (the module API submits through `PoolRegistry.submit/run`).

Config rules (conf.ref.threadpool): Concurrency can change at run time; Stack_Size can too
but only affects threads started afterwards; Backlog cannot: a changed Backlog is reported
(paniclog, WARNING, and in apply_config's returned notes) and ignored until a restart.
A default pool whose stanza disappears goes back to its default concurrency; a user pool
whose stanza disappears keeps running as it is (modules may still feed it). Invalid values
fail the whole generation with a ValueError naming the pool and option, applying nothing.

Fails: unknown pool names raise KeyError naming the pool; submitting to a registry that is
not started or is stopped raises PoolStopped; submitting from a pool thread raises
RuntimeError (jobs must not submit jobs).
"""

from __future__ import annotations

import time

import gevent
import gevent.monkey
import pykka
from gevent.monkey import get_original

from ecmta.loggers.panic import panic
from ecmta.pools.threadpool import ASK_TIMEOUT, Pool, PoolStopped

# Momentum's order of creation as `threads stats` lists them, then user pools in config order.
DEFAULT_POOLS: tuple[tuple[str, int, int], ...] = (
    # name, concurrency, backlog
    ("CPU", 4, 0),
    ("IO", 50, 0),
    ("SwapOut", 5, 0),
    ("SwapIn", 5, 0),
    ("Close", 0, 0),
    ("Unlink", 6, 100),
    ("Batch_Unlink", 4, 0),
    ("SpoolIn", 1, 0),
)
NEW_POOL_DEFAULTS = (1, 0)  # concurrency, backlog of a user pool whose stanza omits them
DELEGATE_POOL = "io"        # where concurrency-0 pools run their jobs
STOP_TIMEOUT = 30.0

_os_thread_ident = get_original("_thread", "get_ident")
OPTION_NAMES = {"concurrency": "Concurrency", "backlog": "Backlog", "stack_size": "Stack_Size"}


def _int_option(scope, option: str, minimum: int) -> int | None:
    value = scope.options.get(option)
    if value is None:
        return None
    raw = getattr(value, "value", value)
    try:
        n = int(raw)
    except (TypeError, ValueError):
        n = None
    if n is None or isinstance(raw, bool) or n < minimum or (isinstance(raw, float) and raw != n):
        raise ValueError(f'ThreadPool "{scope.name}": {OPTION_NAMES[option]} must be an '
                         f"integer >= {minimum}, not {raw!r}")
    return n


def _read_stanza(scope) -> dict:
    """{concurrency, backlog, stack_size} of one ThreadPool scope; None where unset."""
    if not getattr(scope, "name", None):
        raise ValueError("ThreadPool stanza without a pool name")
    return {
        "concurrency": _int_option(scope, "concurrency", 0),
        "backlog": _int_option(scope, "backlog", 0),
        # 32 KiB is the smallest stack the C library lets Python ask for; 0 = system default
        "stack_size": _stack_size_option(scope),
    }


def _stack_size_option(scope) -> int | None:
    n = _int_option(scope, "stack_size", 0)
    if n is not None and 0 < n < 32768:
        raise ValueError(f'ThreadPool "{scope.name}": Stack_Size must be 0 (system default) '
                         f"or at least 32768 bytes, not {n}")
    return n


class PoolRegistry:
    name = "pools"   # as a supervisor service

    def __init__(self, cfg=None) -> None:
        self._pools: dict[str, Pool] = {}
        self._defaults = {name.lower(): (c, b) for name, c, b in DEFAULT_POOLS}
        self._started = False
        self._hub_thread: int | None = None
        for name, concurrency, backlog in DEFAULT_POOLS:
            self._add(name, concurrency, backlog, 0)
        if cfg is not None:
            self.apply_config(cfg)

    # -- lookup --------------------------------------------------------------------
    def get(self, name) -> Pool:
        """The pool by name (any case) or by job class id (int); KeyError names it."""
        if isinstance(name, int) and not isinstance(name, bool):
            for pool in self._pools.values():
                if pool.id == name:
                    return pool
            raise KeyError(f"no thread pool with id {name}")
        pool = self._pools.get(name) or self._pools.get(str(name).lower())
        if pool is None:
            raise KeyError(f"no thread pool named {name!r}")
        return pool

    def names(self) -> list[str]:
        return [p.name for p in self._pools.values()]

    def __contains__(self, name) -> bool:
        return str(name).lower() in self._pools

    def __len__(self) -> int:
        return len(self._pools)

    def _add(self, name: str, concurrency: int, backlog: int, stack_size: int) -> Pool:
        pool = Pool(name, concurrency, backlog=backlog, stack_size=stack_size,
                    pool_id=len(self._pools), delegate=self._delegate)
        self._pools[pool.key] = pool
        return pool

    def ensure(self, name: str, concurrency: int, backlog: int = 0) -> Pool:
        """A pool a module owns (not from a ThreadPool stanza): created, or its concurrency
        brought to `concurrency`; started when the registry runs."""
        pool = self._pools.get(str(name).lower())
        if pool is None:
            pool = self._add(name, int(concurrency), int(backlog), 0)
            if self._started:
                pool.start()
        elif pool.concurrency != int(concurrency):
            pool.set_concurrency(int(concurrency))
        return pool

    def _delegate(self) -> Pool | None:
        return self._pools.get(DELEGATE_POOL)

    # -- service life cycle ----------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._started

    def start(self) -> None:
        if not gevent.monkey.is_module_patched("threading"):
            raise RuntimeError("ecmta.pools needs the gevent hub: call "
                               "gevent.monkey.patch_all() before importing ecmta")
        self._hub_thread = _os_thread_ident()
        for pool in self._pools.values():
            pool.start()
        self._started = True

    def stop(self, graceful: bool = True, timeout: float | None = STOP_TIMEOUT) -> None:
        """Graceful: refuse new jobs, finish every queued and running one (up to
        `timeout` seconds), then stop the threads. Otherwise queued jobs fail with
        PoolStopped and running ones finish on their own."""
        self._started = False
        pools = list(self._pools.values())
        for pool in pools:
            pool.close()
        if graceful:
            self._drain(pools, timeout)
        for pool in pools:
            pool.abort()
        for pool in pools:
            pool.halt()

    @staticmethod
    def _drain(pools: list[Pool], timeout: float | None) -> None:
        # Every pool drains before any stops: a concurrency-0 pool needs IO until it is done.
        waiters = [pool.drain() for pool in pools]
        with gevent.Timeout(timeout, False):
            for waiter in waiters:
                waiter.wait()

    # -- feeding ---------------------------------------------------------------------
    def submit(self, name, fn, *args, **kwargs):
        return self._pool_for_submit(name).submit(fn, *args, **kwargs)

    def run(self, name, fn, *args, **kwargs):
        if gevent.getcurrent() is gevent.get_hub():
            raise RuntimeError("pools.run() cannot wait on the hub itself; use "
                               "pools.submit(...).rawlink(callback) there")
        return self._pool_for_submit(name).submit(fn, *args, **kwargs).get()

    def _pool_for_submit(self, name) -> Pool:
        pool = self._pools.get(name) or self.get(name)
        if not self._started:
            raise PoolStopped(f"thread pools are not running (submit to {pool.display})")
        if _os_thread_ident() != self._hub_thread:
            raise RuntimeError(f"submit to thread pool {pool.display} from outside the hub "
                               "thread: pool jobs must not submit jobs")
        return pool

    # -- views -----------------------------------------------------------------------
    def stats(self, timeout: float = ASK_TIMEOUT) -> list[dict]:
        """One dict per pool in creation order (fields of msys.threadpool.stat)."""
        pools = list(self._pools.values())
        futures = [pool.stats_async() for pool in pools]   # ask all, then collect
        deadline = time.monotonic() + timeout
        return [_collect(pool, fut, deadline) for pool, fut in zip(pools, futures)]

    def queue(self, name, timeout: float = ASK_TIMEOUT) -> list[dict]:
        return self.get(name).queue(timeout)

    # -- configuration ----------------------------------------------------------------
    def apply_config(self, cfg) -> list[str]:
        """Apply every ThreadPool stanza of a generation; returns notes (also in the
        paniclog) about changes that wait for a restart. ValueError: nothing applied."""
        stanzas = [(scope.name, _read_stanza(scope)) for scope in cfg.scopes("ThreadPool")]
        seen = {name.lower() for name, _ in stanzas}
        notes: list[str] = []
        for name, want in stanzas:
            notes += self._apply_stanza(name, want)
        for key, (concurrency, _backlog) in self._defaults.items():
            if key not in seen and self._pools[key].concurrency != concurrency:
                self._pools[key].set_concurrency(concurrency)
        for note in notes:
            panic(note, subsystem="threadpool", level="WARNING")
        return notes

    def _apply_stanza(self, name: str, want: dict) -> list[str]:
        pool = self._pools.get(name.lower())
        if pool is None:
            default = self._defaults.get(name.lower(), NEW_POOL_DEFAULTS)
            pool = self._add(name, _pick(want["concurrency"], default[0]),
                             _pick(want["backlog"], default[1]), want["stack_size"] or 0)
            if self._started:
                pool.start()
            return []
        concurrency = _pick(want["concurrency"], self._defaults.get(pool.key, (pool.concurrency,))[0])
        if concurrency != pool.concurrency:
            pool.set_concurrency(concurrency)
        if want["stack_size"] is not None and want["stack_size"] != pool.stack_size:
            pool.set_stack_size(want["stack_size"])
        return self._backlog_note(pool, want["backlog"])

    def _backlog_note(self, pool: Pool, backlog: int | None) -> list[str]:
        wanted = _pick(backlog, self._defaults.get(pool.key, (0, 0))[1])
        if wanted == pool.backlog:
            pool.pending_backlog = None   # a change reverted before the restart
            return []
        pool.set_backlog(wanted)     # applies now if the pool is not running, else at start
        if not pool.running:
            return []
        return [f'ThreadPool "{pool.name}": Backlog change {pool.backlog} -> {wanted} '
                "takes effect after a restart"]


def _collect(pool: Pool, fut, deadline: float) -> dict:
    if fut is None:
        return pool.static_stats()
    try:
        return fut.get(timeout=max(0.0, deadline - time.monotonic()))
    except pykka.Timeout:   # a stuck actor must not hang `threads stats`
        return dict(pool.static_stats(), running=True, busy=True)


def _pick(value, default):
    return default if value is None else value
