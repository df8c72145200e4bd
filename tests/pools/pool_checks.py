"""Checks of ecmta.pools and the `threads` commands under gevent, one per process.

    python tests/pools/pool_checks.py <check>      # exit 0 and "OK <check>" on success

pytest's own process is never monkey-patched, so test_pools_runtime.py runs each check
here in a subprocess. Jobs use the original (unpatched) sleep and locks: they run in real
OS threads, where gevent's cooperative versions would not block for real.
"""

from gevent import monkey

monkey.patch_all()

import ctypes  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import gevent  # noqa: E402
from gevent.monkey import get_original  # noqa: E402

from ecmta import pools  # noqa: E402
from ecmta.actors.base import EcActor  # noqa: E402
from ecmta.console import cmd_threads  # noqa: E402,F401  (registers the commands)
from ecmta.console.registry import CommandContext, Session, dispatch  # noqa: E402
from ecmta.pools import PoolRegistry, PoolStopped  # noqa: E402

real_sleep = get_original("time", "sleep")
real_lock = get_original("_thread", "allocate_lock")
os_ident = get_original("_thread", "get_ident")
CHECK_TIMEOUT = 60

CHECKS = {}


def check(fn):
    CHECKS[fn.__name__] = fn
    return fn


# -- stand-ins of the config package's API: cfg.scopes(kind) -> [Scope(.name, .options)] ---
class Value:
    def __init__(self, value):
        self.value = value


class Scope:
    def __init__(self, name, **options):
        self.name = name
        self.options = {k.lower(): Value(v) for k, v in options.items()}


class Cfg:
    def __init__(self, *scopes):
        self._scopes = list(scopes)

    def scopes(self, kind):
        assert kind == "ThreadPool", kind
        return list(self._scopes)


# -- job helpers (run in pool threads: pure, real primitives only) ---------------------------
class InFlight:
    """Counts jobs running at once with a real lock; remembers the maximum."""

    def __init__(self):
        self.lock = real_lock()
        self.now = 0
        self.max = 0

    def job(self, seconds, tag=None):
        with self.lock:
            self.now += 1
            self.max = max(self.max, self.now)
        real_sleep(seconds)
        with self.lock:
            self.now -= 1
        return tag

    def reset_max(self):
        with self.lock:
            self.max = self.now


class Gate:
    """A real lock jobs wait on until the hub opens it."""

    def __init__(self):
        self.lock = real_lock()
        self.lock.acquire()

    def wait_job(self, value=None):
        self.lock.acquire()
        self.lock.release()
        return value

    def open(self):
        self.lock.release()


def wait_until(cond, timeout=10.0, step=0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        gevent.sleep(step)
    return cond()


def console(reg, line):
    ok, out = dispatch(CommandContext(daemon=SimpleNamespace(pools=reg), session=Session()), line)
    assert ok, f"{line!r} failed: {out}"
    return out


def started(cfg=None):
    reg = PoolRegistry(cfg)
    reg.start()
    return reg


# -- checks --------------------------------------------------------------------------------
@check
def defaults():
    reg = started()
    want = {"SwapOut": (5, 0), "SwapIn": (5, 0), "Unlink": (6, 100), "Batch_Unlink": (4, 0),
            "Close": (0, 0), "CPU": (4, 0), "IO": (50, 0), "SpoolIn": (1, 0)}
    assert sorted(reg.names()) == sorted(want), reg.names()
    for name, (conc, backlog) in want.items():
        for spelling in (name, name.lower(), name.upper()):
            pool = reg.get(spelling)
            assert (pool.concurrency, pool.backlog) == (conc, backlog), (spelling, pool)
            assert pool.running
    assert reg.get(0).name == "CPU" and reg.get(1).name == "IO"   # job class ids
    try:
        reg.get("NoSuchPool")
    except KeyError as exc:
        assert "NoSuchPool" in str(exc), exc
    else:
        raise AssertionError("unknown pool did not raise KeyError")
    try:
        reg.submit("nope", len, "x")
    except KeyError as exc:
        assert "nope" in str(exc)
    else:
        raise AssertionError("submit to an unknown pool did not raise")
    reg.stop()


@check
def real_threads_hub_responsive():
    reg = started()
    hub_ident = os_ident()
    ticks = []

    def ticker():
        for _ in range(1000):        # bounded; killed below long before
            ticks.append(time.monotonic())
            gevent.sleep(0.01)
    t = gevent.spawn(ticker)
    gevent.sleep(0)

    def blocking():
        real_sleep(0.5)              # really blocks its OS thread
        return os_ident()
    t0 = time.monotonic()
    ident = reg.run("IO", blocking)
    elapsed = time.monotonic() - t0
    t.kill()
    assert ident != hub_ident, "job ran on the hub thread"
    assert elapsed >= 0.45, elapsed
    during = [x for x in ticks if t0 <= x <= t0 + elapsed]
    assert len(during) >= 20, f"hub ticked only {len(during)} times during a 0.5 s job"
    idents = {reg.run("CPU", os_ident) for _ in range(20)}
    assert hub_ident not in idents
    reg.stop()


@check
def fifo_order():
    reg = started(Cfg(Scope("Serial", concurrency=1)))
    seen = []
    lock = real_lock()

    def record(i):
        with lock:
            seen.append(i)
        return i
    results = [reg.submit("serial", record, i) for i in range(300)]
    assert [r.get(timeout=10) for r in results] == list(range(300))
    assert seen == list(range(300)), seen[:20]
    # several threads: jobs still start in submit order
    started_order = []
    gate = Gate()

    def note(i):
        with lock:
            started_order.append(i)
        return gate.wait_job(i)
    res = [reg.submit("CPU", note, i) for i in range(4)]
    assert wait_until(lambda: len(started_order) == 4)
    more = [reg.submit("CPU", record, i) for i in range(4, 40)]
    gate.open()
    assert [r.get(timeout=10) for r in res + more] == list(range(40))
    assert sorted(started_order) == [0, 1, 2, 3]
    assert seen[300:] == list(range(4, 40)), seen[300:]
    reg.stop()


@check
def concurrency_cap():
    reg = started(Cfg(Scope("Seven", concurrency=7)))
    for name, n in (("CPU", 4), ("Seven", 7), ("SpoolIn", 1)):
        meter = InFlight()
        results = [reg.submit(name, meter.job, 0.02, i) for i in range(n * 6)]
        assert [r.get(timeout=20) for r in results] == list(range(n * 6))
        assert meter.max == n, f"{name}: {meter.max} jobs ran at once, want {n}"
        st = reg.get(name).stats()
        assert st["num_threads"] <= n, st
    reg.stop()


@check
def concurrency_change_runtime():
    reg = started(Cfg(Scope("Elastic", concurrency=2)))
    meter = InFlight()
    results = [reg.submit("Elastic", meter.job, 0.03, i) for i in range(60)]
    assert wait_until(lambda: meter.max == 2)
    reg.apply_config(Cfg(Scope("Elastic", concurrency=6)))       # grow
    assert reg.get("elastic").concurrency == 6
    assert wait_until(lambda: meter.max == 6), meter.max
    gevent.sleep(0.1)
    assert meter.max == 6, meter.max
    reg.apply_config(Cfg(Scope("Elastic", concurrency=1)))       # shrink
    assert wait_until(lambda: meter.now <= 1, timeout=5)
    meter.reset_max()
    gevent.sleep(0.2)
    assert meter.max == 1, meter.max
    assert [r.get(timeout=30) for r in results] == list(range(60)), "queued jobs lost"
    st = reg.get("Elastic").stats()
    assert st["invocations"] == 60 and st["concurrency"] == 1, st
    assert wait_until(lambda: reg.get("Elastic").stats()["num_threads"] <= 1, timeout=5)
    # a default pool whose stanza goes away returns to its default concurrency
    reg.apply_config(Cfg(Scope("CPU", concurrency=9)))
    assert reg.get("CPU").concurrency == 9
    reg.apply_config(Cfg())
    assert reg.get("CPU").concurrency == 4 and reg.get("Elastic").concurrency == 1
    reg.stop()


@check
def backlog_blocks():
    reg = started(Cfg(Scope("Narrow", concurrency=1, backlog=3)))
    gate = Gate()
    submitted = []

    def producer():
        for i in range(10):
            submitted.append(reg.submit("narrow", gate.wait_job, i))
    g = gevent.spawn(producer)
    # 1 running + 3 queued; the 5th submit waits for room
    assert wait_until(lambda: len(submitted) == 4)
    gevent.sleep(0.2)
    assert len(submitted) == 4 and not g.dead, len(submitted)
    q = reg.queue("Narrow")
    assert len(q) == 3 and "wait_job" in q[0]["function"], q
    gate.open()
    g.join(timeout=10)
    assert g.dead and len(submitted) == 10
    assert [r.get(timeout=10) for r in submitted] == list(range(10))
    # the hub itself cannot wait: a submit from a hub callback is admitted over the limit
    gate2 = Gate()
    held = [reg.submit("narrow", gate2.wait_job, i) for i in range(4)]
    from_hub = []
    gevent.get_hub().loop.run_callback(
        lambda: from_hub.append(reg.submit("narrow", gate2.wait_job, "hub")))
    assert wait_until(lambda: from_hub)
    assert reg.get("narrow").over_admitted == 1 and len(reg.queue("narrow")) == 4
    gate2.open()
    assert [r.get(timeout=10) for r in held + from_hub] == [0, 1, 2, 3, "hub"]
    # backlog is fixed while running: the change is reported and ignored
    notes = reg.apply_config(Cfg(Scope("Narrow", concurrency=1, backlog=50)))
    assert reg.get("Narrow").backlog == 3 and notes and "restart" in notes[0], notes
    reg.stop()
    reg.start()    # "until restart": a new start takes the configured backlog
    assert reg.get("Narrow").backlog == 50
    reg.stop()


@check
def exceptions_propagate():
    reg = started()

    def failing_job(x):
        raise ValueError(f"boom {x}")
    for how in ("run", "submit"):
        try:
            if how == "run":
                reg.run("IO", failing_job, 1)
            else:
                reg.submit("cpu", failing_job, 1).get(timeout=10)
        except ValueError as exc:
            assert str(exc) == "boom 1"
            names = [fr.name for fr in traceback.extract_tb(exc.__traceback__)]
            assert "failing_job" in names, names
        else:
            raise AssertionError(f"{how}: no exception")
    assert reg.run("IO", int, "7") == 7        # the pool goes on working
    st = reg.get("IO").stats()
    assert st["failed"] == 1 and st["completed"] == 2, st
    reg.stop()


def _parse_block(lines):
    """The labelled lines of one pool block -> {label: value}."""
    out = {}
    for line in lines:
        if line == "  [inactive threads]":
            out["inactive"] = True
            continue
        label, value = line.split(": ", 1)
        assert len(label) == 32, repr(line)
        key = ("Current thread count (inactive)"
               if out.get("inactive") and "Current" in label else label.strip())
        out[key] = value
    return out


@check
def stats_and_layout():
    reg = started()
    out = console(reg, "threads stats")
    lines = out.splitlines()
    assert lines == [f"{n.upper()} thread pool: concurrency {c}" for n, c, _ in pools.DEFAULT_POOLS], lines
    assert "SWAPOUT thread pool: concurrency 5" in lines
    meter = InFlight()
    results = [reg.submit("IO", meter.job, 0.02) for _ in range(40)]
    for r in results:
        r.get(timeout=10)
    st = next(s for s in reg.stats() if s["name"] == "IO")
    assert st["invocations"] == 40 and st["completed"] == 40, st
    assert 1.0 <= st["avg_concurrency"] <= 50.0, st
    assert 0.0 <= st["saturation"] <= 100.0, st
    assert 15.0 <= st["avg_wallclock_time_per_op"] <= 500.0, st
    assert st["num_active_threads"] == 0 and st["num_inactive_threads"] == st["num_threads"] >= 1
    assert st["queue_sz"] == 0 and st["job_num_running"] == 0
    out = console(reg, "threads stats").splitlines()
    i = out.index("IO thread pool: concurrency 50")
    block = out[i + 1:i + 8]
    assert out[0] == "CPU thread pool: concurrency 4" and out[i + 8] == "SWAPOUT thread pool: concurrency 5"
    assert block[0] == "               Total invocations: 40", block
    assert block[5] == "  [inactive threads]", block
    fields = _parse_block(block)
    assert fields["Observed average concurrency"] == f"{st['avg_concurrency']:.2f}"
    assert fields["Average wallclock time per op"] == f"{st['avg_wallclock_time_per_op']:.2f}ms"
    assert fields["Thread pool saturation"].endswith("%") and len(fields["Thread pool saturation"]) == 6
    assert fields["Average wallclock time per op"].endswith("ms")
    assert fields["Current thread count"] == "0"
    assert int(fields["Current thread count (inactive)"]) >= 1
    # queue views
    assert console(reg, "threads io queue") == "Jobs in the IO pool\n0 jobs"
    assert console(reg, "threads cpu queue") == "Jobs in the CPU pool\n0 jobs"
    gate = Gate()
    held = [reg.submit("SpoolIn", gate.wait_job, i) for i in range(3)]
    assert wait_until(lambda: len(reg.queue("spoolin")) == 2)
    q = console(reg, "threads spoolin queue").splitlines()
    assert q[0] == "Jobs in the SPOOLIN pool" and q[-1] == "2 jobs" and len(q) == 4, q
    assert "Gate.wait_job" in q[1], q
    st = reg.get("SpoolIn").stats()
    assert st["num_active_threads"] == 1 and st["queue_sz"] == 2, st
    assert abs(st["saturation"]) > 0.0
    gate.open()
    assert [r.get(timeout=10) for r in held] == [0, 1, 2]
    ok, err = dispatch(CommandContext(SimpleNamespace(pools=reg), Session()), "threads bogus queue")
    assert not ok and "bogus" in err, err
    reg.stop()


@check
def close_pool_delegates():
    reg = started()
    io_before = reg.get("IO").stats()["invocations"]
    ident = reg.run("Close", os_ident)
    assert ident != os_ident()
    st = reg.get("Close").stats()
    assert st["concurrency"] == 0 and st["delegate"] == "IO" and st["invocations"] == 1, st
    assert st["num_threads"] == 0, st
    assert reg.get("IO").stats()["invocations"] == io_before + 1
    out = console(reg, "threads stats").splitlines()
    i = out.index("CLOSE thread pool: concurrency 0")
    assert out[i + 1] == "               Total invocations: 1", out[i:i + 9]
    assert "  [jobs run in the IO pool]" in out[i:i + 10]
    # a graceful stop waits for delegated jobs too (IO stops only after Close drained)
    meter = InFlight()
    results = [reg.submit("Close", meter.job, 0.05, i) for i in range(10)]
    reg.stop(graceful=True)
    assert [r.get(timeout=0) for r in results] == list(range(10))


@check
def run_from_greenlets_not_hub():
    reg = started()
    pools.install(reg)
    try:
        lets = [gevent.spawn(pools.run, "io", pow, 2, i) for i in range(50)]
        done = gevent.joinall(lets, timeout=10, raise_error=True)   # in completion order
        assert len(done) == 50 and [g.value for g in lets] == [2 ** i for i in range(50)]
        # a completion callback on the hub, without a greenlet per job
        box = []
        r = pools.submit("CPU", sum, [1, 2, 3])
        r.rawlink(lambda res: box.append((gevent.getcurrent() is gevent.get_hub(), res.get())))
        assert wait_until(lambda: box)
        assert box == [(True, 6)], box
        # run() on the hub itself is refused (it would block the hub)
        errors = []

        def on_hub():
            try:
                pools.run("IO", int, "1")
            except RuntimeError as exc:
                errors.append(str(exc))
        gevent.get_hub().loop.run_callback(on_hub)
        assert wait_until(lambda: errors) and "hub" in errors[0], errors
        # a job may not submit jobs
        try:
            pools.run("IO", pools.submit, "CPU", int, "1")
        except RuntimeError as exc:
            assert "pool jobs must not submit" in str(exc), exc
        else:
            raise AssertionError("submit from a pool thread was accepted")
        assert pools.current() is reg
    finally:
        reg.stop()
        pools.install(None)
    # without an installed registry a default one starts on first use
    assert pools.run("SwapIn", int, "5") == 5
    assert pools.current().started and pools.current() is not reg
    pools.current().stop()


@check
def graceful_stop_drains():
    reg = started()
    meter = InFlight()
    results = [reg.submit("CPU", meter.job, 0.02, i) for i in range(40)]
    gevent.sleep(0.01)
    reg.stop(graceful=True)
    assert all(r.ready() for r in results), "stop returned before the queue drained"
    assert [r.get() for r in results] == list(range(40))
    for name in reg.names():
        assert not reg.get(name).running, name
    try:
        reg.submit("CPU", int, "1")
    except PoolStopped:
        pass
    else:
        raise AssertionError("submit after stop was accepted")
    assert wait_until(lambda: _os_threads() <= 2, timeout=10), _os_threads()


@check
def abort_stop_fails_queued():
    reg = started()
    gate = Gate()
    running = [reg.submit("SpoolIn", gate.wait_job, "first")]
    queued = [reg.submit("SpoolIn", gate.wait_job, i) for i in range(5)]
    assert wait_until(lambda: len(reg.queue("SpoolIn")) == 5)
    reg.stop(graceful=False)
    for r in queued:
        assert r.ready() and isinstance(r.exception, PoolStopped), r
    gate.open()
    assert running[0].get(timeout=10) == "first"     # a running job still delivers


@check
def apply_config_pools():
    cfg = Cfg(Scope("Custom", concurrency=3, backlog=7), Scope("io", concurrency=12),
              Scope("Deep", concurrency=2, stack_size=256 * 1024))
    reg = PoolRegistry(cfg)
    assert reg.get("custom").backlog == 7 and reg.get("CUSTOM").concurrency == 3
    assert reg.get("IO").concurrency == 12 and reg.get("IO").name == "IO"
    assert reg.names()[-2:] == ["Custom", "Deep"]
    reg.start()
    size = reg.run("Deep", _my_stack_size)
    assert 256 * 1024 <= size < 512 * 1024, size
    assert get_original("_thread", "stack_size")() == 0, "stack size not restored"
    assert reg.run("CPU", _my_stack_size) > 512 * 1024       # other pools: system default
    # a pool added by a reload starts at once
    reg.apply_config(Cfg(Scope("Late", concurrency=2)))
    assert reg.run("late", int, "3") == 3
    out = console(reg, "threads stats")
    assert "LATE thread pool: concurrency 2" in out and "CUSTOM thread pool: concurrency 3" in out
    # invalid values fail the whole generation and change nothing
    for bad in (Scope("IO", concurrency=-1), Scope("IO", concurrency="lots"),
                Scope("Deep", stack_size=100)):
        try:
            reg.apply_config(Cfg(Scope("CPU", concurrency=8), bad))
        except ValueError as exc:
            assert bad.name in str(exc), exc
        else:
            raise AssertionError(f"accepted {bad.options}")
        assert reg.get("CPU").concurrency == 4
    reg.stop()


@check
def threads_actors_table():
    reg = started()

    class Probe(EcActor):
        kind = "probe"

        def on_receive(self, msg):
            if msg == "fail":
                raise RuntimeError("probe failure")
            if msg == "nap":
                gevent.sleep(3)
            return msg

    refs = {name: Probe.start(name) for name in ("zeta", "alpha", "mid")}
    for i in range(5):
        refs["alpha"].tell(i)
    for i in range(2):
        refs["zeta"].tell(i)
    refs["mid"].tell("fail")
    for ref in refs.values():
        ref.ask("sync", timeout=5)
    out = console(reg, "threads actors").splitlines()
    header = out[0].split()
    assert header == ["KIND", "NAME", "MAILBOX", "HANDLED", "RESTARTS"], out[0]
    rows = [line.split() for line in out[1:-1]]
    assert out[-1] == f"{len(rows)} actors", out[-1]
    probes = [r for r in rows if r[0] == "probe"]
    assert probes == [["probe", "alpha", "0", "6", "0"], ["probe", "mid", "0", "2", "1"],
                      ["probe", "zeta", "0", "3", "0"]], probes
    pool_rows = [r for r in rows if r[0] == "threadpool"]
    assert sorted(r[1] for r in pool_rows) == sorted(reg.names(), key=str), pool_rows
    kinds = [(r[0], r[1].lower()) for r in rows]
    assert kinds == sorted(kinds), kinds
    widths = {len(line) for line in out[:-1]}
    assert len(widths) == 1, widths        # fixed-width columns, numbers right-aligned
    # an actor busy in a message is shown as busy, with its mailbox depth
    refs["zeta"].tell("nap")
    refs["zeta"].tell("queued")
    gevent.sleep(0.05)
    rows = [line.split() for line in console(reg, "threads actors").splitlines()[1:-1]]
    busy = [r for r in rows if r[0] == "probe" and r[3] == "busy"]
    assert len(busy) == 1 and busy[0][2] == "1", rows
    for ref in refs.values():
        ref.stop(block=False)
    reg.stop()


def _my_stack_size():
    """The stack size of the calling OS thread (glibc pthread_getattr_np)."""
    libc = ctypes.CDLL(None)
    libc.pthread_self.restype = ctypes.c_ulong
    attr = ctypes.create_string_buffer(256)
    assert libc.pthread_getattr_np(ctypes.c_ulong(libc.pthread_self()), attr) == 0
    size = ctypes.c_size_t()
    libc.pthread_attr_getstacksize(attr, ctypes.byref(size))
    libc.pthread_attr_destroy(attr)
    return size.value


def _os_threads():
    import os
    return len(os.listdir("/proc/self/task"))


def main(argv):
    if len(argv) != 2 or argv[1] not in CHECKS:
        print("usage: pool_checks.py <check>; checks: " + " ".join(CHECKS), file=sys.stderr)
        return 2
    with gevent.Timeout(CHECK_TIMEOUT):
        CHECKS[argv[1]]()
    print(f"OK {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
