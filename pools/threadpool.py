"""One named thread pool: `ThreadPool "Name" { Concurrency = N  Backlog = M  Stack_Size = S }`.

Owns: N native threads (gevent.threadpool.ThreadPool: real OS threads whose results come
back to the hub through an async watcher), the FIFO queue of jobs waiting for a thread, and
the statistics `threads stats` prints. The queue, the dispatching and the statistics belong
to a `PoolActor` (EcActor, kind "threadpool", name = pool name); `Pool` is the front end
callers hold.

Talks to: callers on the hub (`Pool.submit` returns a gevent AsyncResult, never asks),
the worker threads (`run_job`), and for a pool of concurrency 0 the delegate pool (see
below). Jobs and completions reach the actor through two staging deques plus one
doorbell tell per batch (`_Bell`): a pykka message per job would cost more than a short
job itself, and the deques keep submit order. Everything runs on the hub thread, so the
deques need no lock. Logs to the paniclog only when a
thread cannot be started.

Rules:
- Jobs are pure functions (arguments in, value out) that never touch an actor, a future,
  a socket or the pools themselves. A job's exception is re-raised by `result.get()` in
  the caller, with the job's traceback.
- At most `concurrency` jobs run at once; the rest wait in FIFO order. Concurrency can
  change at run time: growing dispatches queued jobs at once, shrinking lets running jobs
  finish and spare threads exit; no queued job is lost.
- Backlog M > 0 bounds the jobs submitted but not yet handed to a thread: the submitting
  greenlet waits (cooperatively) for room. The hub itself cannot wait, so a submit from a
  hub callback is admitted over the limit and counted in `over_admitted`. Backlog is fixed
  for the life of the pool (Momentum: "cannot be changed at runtime").
- Concurrency 0 (Momentum's Close pool runs such jobs without a thread of its own): ecmta
  must not run them on the hub, so they are handed to the delegate pool (the registry
  makes it IO) and count in both pools' invocations; `stats()["delegate"]` names it. If
  there is no usable delegate (missing, itself 0, or stopped) the pool runs one thread.
- Stack_Size S (bytes) applies to threads created after it is set: the process-wide
  `_thread.stack_size` is set around the calls that may start a thread, then restored.
- Stopping: `close()` refuses new jobs (PoolStopped), `drain()` waits until queued and
  running jobs are done, `abort()` fails queued jobs with PoolStopped, `halt()` stops the
  actor and lets the threads exit.
"""

from __future__ import annotations

import collections
from time import monotonic, perf_counter

import gevent
import gevent.threadpool
from gevent.event import AsyncResult
from gevent.lock import Semaphore
from gevent.monkey import get_original
import pykka
from pykka import ActorDeadError

from ecmta.actors.base import EcActor
from ecmta.loggers.panic import panic
from ecmta.pools.stats import PoolStats

_os_stack_size = get_original("_thread", "stack_size")

ASK_TIMEOUT = 2.0


class PoolStopped(RuntimeError):
    """The pool does not accept or will not run the job (daemon shutting down)."""


def run_job(fn, args, kwargs):
    """Runs in the pool thread. Never raises: an exception travels back as a value, so
    gevent's hub does not print it and the caller gets it with its traceback."""
    t0 = perf_counter()
    try:
        value = fn(*args, **kwargs)
    except BaseException as exc:  # SystemExit from a job belongs to its caller too
        return False, exc, perf_counter() - t0
    return True, value, perf_counter() - t0


class Job:
    """One call waiting for or running in a thread; also the message that carries it."""
    __slots__ = ("pool", "fn", "args", "kwargs", "result", "admitted", "queued_at")

    def __init__(self, pool, fn, args, kwargs, admitted: bool) -> None:
        self.pool = pool
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.result = AsyncResult()
        self.admitted = admitted
        self.queued_at = monotonic()

    def complete(self, ar) -> None:
        """rawlink callback on the hub: account first, then wake the caller."""
        if ar.successful():
            ok, value, elapsed = ar.value
        else:  # the worker machinery itself failed
            ok, value, elapsed = False, ar.exception, 0.0
        self.pool._job_done(ok, elapsed)
        self.fn = self.args = self.kwargs = None
        if ok:
            self.result.set(value)
        else:
            self.fail(value)

    def fail(self, exc: BaseException) -> None:
        self.result.set_exception(exc, (type(exc), exc, exc.__traceback__))

    def describe(self, now: float) -> dict:
        fn = self.fn
        name = getattr(fn, "__qualname__", None) or repr(fn)
        module = getattr(fn, "__module__", None)
        return {"function": f"{module}.{name}" if module else name,
                "age": now - self.queued_at}


class _Bell:
    """Doorbell: new jobs or completions wait in the pool's staging deques."""
    __slots__ = ()


_BELL = _Bell()


class _SetConcurrency:
    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n


class _Drain:
    __slots__ = ("waiter",)

    def __init__(self, waiter: AsyncResult) -> None:
        self.waiter = waiter


class _Abort:
    __slots__ = ()


class _GetStats:
    __slots__ = ()


class _GetQueue:
    __slots__ = ()


class _StackSize:
    """Set the process-wide thread stack size while threads may be started."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.saved = 0

    def __enter__(self):
        self.saved = _os_stack_size(self.size)
        return self

    def __exit__(self, *exc) -> None:
        _os_stack_size(self.saved)


class PoolActor(EcActor):
    kind = "threadpool"

    def __init__(self, pool: "Pool") -> None:
        super().__init__(pool.name)
        self.pool = pool
        self.queue: collections.deque[Job] = collections.deque()
        self.concurrency = pool.concurrency
        self.tp: gevent.threadpool.ThreadPool | None = None
        self.stats = PoolStats(monotonic(), self._threads())
        self.drain_waiters: list[AsyncResult] = []

    # -- messages ----------------------------------------------------------------
    def on_receive(self, msg):
        kind = type(msg)
        if kind is _Bell:
            self._on_bell()
        elif kind is _SetConcurrency:
            self._set_concurrency(msg.n)
        elif kind is _GetStats:
            return self._snapshot()
        elif kind is _GetQueue:
            now = monotonic()
            return [job.describe(now) for job in (*self.queue, *self.pool._incoming)]
        elif kind is _Drain:
            self.drain_waiters.append(msg.waiter)
            self._check_drained()
        elif kind is _Abort:
            self._abort()
        return None

    def _on_bell(self) -> None:
        pool = self.pool
        pool._rung = False     # first: whatever arrives while we work rings again
        finished = pool._finished
        if finished:
            stats = self.stats
            while finished:
                ok, elapsed, at = finished.popleft()
                stats.finished(at, elapsed, ok)
        incoming = pool._incoming
        if incoming:
            self.queue.extend(incoming)
            incoming.clear()
        self._pump()
        self._check_drained()

    # -- dispatching -------------------------------------------------------------
    def _delegate(self):
        resolve = self.pool.delegate
        d = resolve() if resolve is not None else None
        if d is None or d is self.pool or d.concurrency <= 0 or not d.running:
            return None
        return d

    def _threads(self) -> int:
        """Threads this pool runs on now: 0 means every job goes to the delegate."""
        if self.concurrency > 0:
            return self.concurrency
        return 0 if self._delegate() is not None else 1

    def _pump(self) -> None:
        q = self.queue
        if not q:
            return
        threads = self._threads()
        if threads != self.stats.threads:
            self.stats.set_threads(monotonic(), threads)
        if threads == 0:
            delegate = self._delegate()
            while q:
                self._dispatch(q.popleft(), None, delegate)
            return
        tp = self._ensure_threads(threads)
        stats = self.stats
        while q and stats.in_flight < threads:
            self._dispatch(q.popleft(), tp, None)

    def _dispatch(self, job: Job, tp, delegate) -> None:
        if job.admitted:
            self.pool._admit.release()
        self.stats.started(monotonic())
        try:
            if tp is not None:
                ar = self._spawn(tp, job)
            else:
                ar = delegate._enqueue(run_job, (job.fn, job.args, job.kwargs), {}, True)
        except Exception as exc:
            self.stats.finished(monotonic(), 0.0, False)
            panic(f"thread pool {self.pool.display}: cannot run job: {exc!r}",
                  subsystem="threadpool")
            job.fail(exc)
            return
        ar.rawlink(job.complete)

    def _spawn(self, tp, job: Job):
        size = self.pool.stack_size
        if size and tp.size < tp.maxsize:  # this spawn may start a thread
            with _StackSize(size):
                return tp.spawn(run_job, job.fn, job.args, job.kwargs)
        return tp.spawn(run_job, job.fn, job.args, job.kwargs)

    def _ensure_threads(self, threads: int):
        tp = self.tp
        if tp is None:
            tp = self.tp = gevent.threadpool.ThreadPool(threads)
        elif tp.maxsize != threads:
            self._resize(threads)
        return tp

    def _resize(self, maxsize: int) -> None:
        # Growing may start threads at once; shrinking lets busy threads finish first.
        size = self.pool.stack_size
        if size and maxsize > self.tp.maxsize:
            with _StackSize(size):
                self.tp.maxsize = maxsize
        else:
            self.tp.maxsize = maxsize

    def _set_concurrency(self, n: int) -> None:
        self.concurrency = n
        threads = self._threads()
        self.stats.set_threads(monotonic(), threads)
        if self.tp is not None and self.tp.maxsize != threads:
            self._resize(threads)
        self._pump()

    # -- stopping ----------------------------------------------------------------
    def _check_drained(self) -> None:
        # Jobs still in the staging deque count: their bell may be behind the drain.
        if (self.drain_waiters and not self.queue and not self.pool._incoming
                and not self.stats.in_flight):
            waiters, self.drain_waiters = self.drain_waiters, []
            for w in waiters:
                w.set(True)

    def _abort(self) -> None:
        exc = PoolStopped(f"thread pool {self.pool.display} stopped before running the job")
        self.queue.extend(self.pool._incoming)
        self.pool._incoming.clear()
        while self.queue:
            job = self.queue.popleft()
            if job.admitted:
                self.pool._admit.release()
            job.fail(exc)
        self._check_drained()

    def on_stop(self) -> None:
        self._abort()
        tp, self.tp = self.tp, None
        if tp is None:
            return
        if self.stats.in_flight:
            tp.maxsize = 0   # busy threads exit after their job; do not wait for them
        else:
            tp.kill()        # idle: wait for the threads to exit

    # -- introspection -----------------------------------------------------------
    def _snapshot(self) -> dict:
        out = self.pool.static_stats()
        out.update(self.stats.snapshot(monotonic()))
        threads = self.tp.size if self.tp is not None else 0
        active = min(self.stats.in_flight, threads)
        delegate = self._delegate() if self._threads() == 0 else None
        queued = len(self.queue) + len(self.pool._incoming)
        out.update({
            "running": True,
            "delegate": delegate.name if delegate is not None else None,
            "queue_sz": queued,
            "job_num_queued": queued,
            "num_threads": threads,
            "num_active_threads": active,
            "num_inactive_threads": threads - active,
            "handled": self.handled,
        })
        return out

    def ec_stats(self) -> dict:
        out = super().ec_stats()
        out["queued"] = len(self.queue)
        out["in_flight"] = self.stats.in_flight
        return out


class Pool:
    """Front end of one pool. Create, start and feed it from the hub thread only."""

    def __init__(self, name: str, concurrency: int, *, backlog: int = 0, stack_size: int = 0,
                 pool_id: int = 0, delegate=None) -> None:
        self.name = name                  # as configured, e.g. "SwapOut"
        self.key = name.lower()
        self.display = name.upper()       # as `threads stats` prints it
        self.id = pool_id                 # Momentum's job class id (msys.threadpool.find)
        self.concurrency = concurrency
        self.backlog = backlog
        self.stack_size = stack_size
        self.delegate = delegate          # callable -> Pool | None, for concurrency 0
        self._admit = Semaphore(backlog) if backlog > 0 else None
        self.pending_backlog: int | None = None
        self._incoming: collections.deque[Job] = collections.deque()   # not yet seen by the actor
        self._finished: collections.deque[tuple] = collections.deque()  # (ok, elapsed, done at)
        self._rung = False       # a _Bell is on its way to the actor
        self._ref = None
        self._closed = True
        self.over_admitted = 0

    def __repr__(self) -> str:
        return f"<Pool {self.name} concurrency={self.concurrency} backlog={self.backlog}>"

    @property
    def running(self) -> bool:
        return self._ref is not None and self._ref.is_alive()

    def start(self) -> None:
        if not self.running:
            self._apply_backlog()
            self._finished.clear()
            self._rung = False
            self._ref = PoolActor.start(self)
        self._closed = False

    # -- feeding -----------------------------------------------------------------
    def submit(self, fn, *args, **kwargs) -> AsyncResult:
        """Queue fn(*args, **kwargs); the AsyncResult gets its value or exception."""
        if self._closed:
            raise PoolStopped(f"thread pool {self.display} is not running")
        return self._enqueue(fn, args, kwargs, False)

    def _enqueue(self, fn, args, kwargs, internal: bool) -> AsyncResult:
        admitted = self._admit is not None and self._wait_for_room(internal)
        ref = self._ref
        if ref is None or not ref.is_alive():
            if admitted:
                self._admit.release()
            raise PoolStopped(f"thread pool {self.display} is not running")
        job = Job(self, fn, args, kwargs, admitted)
        self._incoming.append(job)
        if not self._rung:
            self._rung = True
            ref.tell(_BELL)
        return job.result

    def _wait_for_room(self, internal: bool) -> bool:
        sem = self._admit
        if sem.acquire(blocking=False):
            return True
        if gevent.getcurrent() is gevent.get_hub():
            self.over_admitted += 1   # the hub cannot wait; see the module docstring
            return False
        sem.acquire()
        if self._closed and not internal:
            sem.release()
            raise PoolStopped(f"thread pool {self.display} stopped while the job waited")
        return True

    def _job_done(self, ok: bool, elapsed: float) -> None:
        ref = self._ref
        if ref is None or not ref.is_alive():
            return   # aborted pool: the caller still gets its result
        self._finished.append((ok, elapsed, monotonic()))
        if not self._rung:
            self._rung = True
            ref.tell(_BELL)

    # -- run-time changes --------------------------------------------------------
    def set_concurrency(self, n: int) -> None:
        self.concurrency = n
        if self.running:
            self._ref.tell(_SetConcurrency(n))

    def set_backlog(self, n: int) -> None:
        """Momentum fixes the backlog for the life of a pool: a running pool keeps its
        backlog and takes the new one at its next start."""
        self.pending_backlog = n
        if not self.running:
            self._apply_backlog()

    def _apply_backlog(self) -> None:
        n, self.pending_backlog = self.pending_backlog, None
        if n is not None and n != self.backlog:
            self.backlog = n
            self._admit = Semaphore(n) if n > 0 else None

    def set_stack_size(self, size: int) -> None:
        self.stack_size = size   # read at the next thread start

    # -- stopping ----------------------------------------------------------------
    def close(self) -> None:
        self._closed = True

    def drain(self) -> AsyncResult:
        """An AsyncResult set once nothing is queued or running (call after close())."""
        waiter = AsyncResult()
        try:
            self._ref.tell(_Drain(waiter))
        except (ActorDeadError, AttributeError):
            waiter.set(True)
        return waiter

    def abort(self) -> None:
        if self.running:
            self._ref.tell(_Abort())

    def halt(self, timeout: float | None = ASK_TIMEOUT) -> None:
        ref, self._closed = self._ref, True
        if ref is not None and ref.is_alive():
            try:
                ref.stop(timeout=timeout)
            except pykka.Timeout:
                panic(f"thread pool {self.display} did not stop within {timeout}s",
                      subsystem="threadpool")

    # -- introspection -----------------------------------------------------------
    @property
    def actor_ref(self):
        return self._ref

    def static_stats(self) -> dict:
        """What is known without asking the actor (a pool that is not running)."""
        return {
            "id": self.id, "name": self.name, "display": self.display,
            "concurrency": self.concurrency, "backlog": self.backlog,
            "stack_size": self.stack_size, "over_admitted": self.over_admitted,
            "running": False, "delegate": None,
            "invocations": 0, "completed": 0, "failed": 0, "avg_concurrency": 0.0,
            "saturation": 0.0, "avg_wallclock_time_per_op": 0.0, "job_num_running": 0,
            "queue_sz": 0, "job_num_queued": 0, "num_threads": 0,
            "num_active_threads": 0, "num_inactive_threads": 0, "handled": 0,
        }

    def stats_async(self):
        """A pykka future of stats() (lets the registry ask every pool at once)."""
        if not self.running:
            return None
        return self._ref.ask(_GetStats(), block=False)

    def stats(self, timeout: float = ASK_TIMEOUT) -> dict:
        fut = self.stats_async()
        return fut.get(timeout=timeout) if fut is not None else self.static_stats()

    def queue(self, timeout: float = ASK_TIMEOUT) -> list[dict]:
        """The jobs waiting for a thread, oldest first: {"function", "age"}."""
        if not self.running:
            return []
        return self._ref.ask(_GetQueue(), timeout=timeout)
