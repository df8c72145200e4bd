"""Time-weighted statistics of one thread pool, the numbers `threads stats` prints.

Owns: pure bookkeeping, no I/O and no gevent, so it can be tested with a fake clock. The
pool actor calls `started()` when a job leaves the queue for a thread, `finished()` when
its result is back on the hub, and `set_threads()` when the concurrency changes; every
call first integrates the time since the previous call at the old in-flight count.

Definitions (Momentum's labels):
  Total invocations               jobs handed to a thread (or to the delegate pool)
  Observed average concurrency    integral of in-flight jobs over time / time with >= 1 in flight
  Thread pool saturation          % of wall time since the pool started with every thread busy
  Average wallclock time per op   mean time a job ran in its thread, in ms
"""

from __future__ import annotations


class PoolStats:
    __slots__ = ("started_at", "invocations", "completed", "failed", "op_time", "in_flight",
                 "busy_time", "weighted", "saturated_time", "threads", "_mark")

    def __init__(self, now: float, threads: int) -> None:
        self.started_at = now
        self.invocations = 0
        self.completed = 0
        self.failed = 0
        self.op_time = 0.0          # seconds, summed over completed jobs
        self.in_flight = 0
        self.busy_time = 0.0        # seconds with at least one job in flight
        self.weighted = 0.0         # job-seconds (integral of in_flight dt)
        self.saturated_time = 0.0   # seconds with in_flight >= threads > 0
        self.threads = threads
        self._mark = now

    def _advance(self, now: float) -> None:
        dt = now - self._mark
        self._mark = now
        if dt <= 0 or not self.in_flight:
            return
        self.busy_time += dt
        self.weighted += self.in_flight * dt
        if self.threads and self.in_flight >= self.threads:
            self.saturated_time += dt

    def started(self, now: float) -> None:
        self._advance(now)
        self.in_flight += 1
        self.invocations += 1

    def finished(self, now: float, elapsed: float, ok: bool = True) -> None:
        self._advance(now)
        self.in_flight -= 1
        self.completed += 1
        self.op_time += elapsed
        if not ok:
            self.failed += 1

    def set_threads(self, now: float, threads: int) -> None:
        self._advance(now)
        self.threads = threads

    def snapshot(self, now: float) -> dict:
        """The derived numbers as of `now` (does not disturb the running integrals)."""
        dt = max(now - self._mark, 0.0) if self.in_flight else 0.0
        busy = self.busy_time + dt
        weighted = self.weighted + self.in_flight * dt
        saturated = self.saturated_time
        if self.threads and self.in_flight >= self.threads:
            saturated += dt
        wall = now - self.started_at
        return {
            "invocations": self.invocations,
            "completed": self.completed,
            "failed": self.failed,
            "avg_concurrency": weighted / busy if busy > 0 else 0.0,
            "saturation": 100.0 * saturated / wall if wall > 0 else 0.0,
            "avg_wallclock_time_per_op": 1000.0 * self.op_time / self.completed
            if self.completed else 0.0,
            "job_num_running": self.in_flight,
        }
