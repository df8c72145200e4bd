"""In-process tests that need no hub: the statistics arithmetic (fake clock), the
`threads` output layouts, config validation, and the unpatched-process rules of the
module API. Everything that runs jobs is in pool_checks.py (subprocesses)."""

import pytest

from ecmta import pools
from ecmta.console import cmd_threads
from ecmta.pools import PoolRegistry
from ecmta.pools.stats import PoolStats


class Value:
    def __init__(self, value):
        self.value = value


class Scope:
    def __init__(self, name, **options):
        self.name = name
        self.options = {k.lower(): Value(v) for k, v in options.items()}


class Cfg:
    def __init__(self, *scopes):
        self._scopes = scopes

    def scopes(self, kind):
        return list(self._scopes) if kind == "ThreadPool" else []


# -- PoolStats ------------------------------------------------------------------------------
def test_stats_time_weighted():
    s = PoolStats(now=0.0, threads=2)
    s.started(10.0)            # 10..20: 1 busy
    s.started(20.0)            # 20..30: 2 busy (saturated)
    s.finished(30.0, 0.015)
    s.finished(40.0, 0.025)    # 30..40: 1 busy; idle afterwards
    snap = s.snapshot(100.0)
    assert snap["invocations"] == 2 and snap["completed"] == 2
    assert snap["avg_concurrency"] == pytest.approx(40.0 / 30.0)     # job-s / busy-s
    assert snap["saturation"] == pytest.approx(10.0)                 # 10 s of 100
    assert snap["avg_wallclock_time_per_op"] == pytest.approx(20.0)  # ms
    assert snap["job_num_running"] == 0


def test_stats_snapshot_counts_the_open_interval_and_thread_changes():
    s = PoolStats(now=0.0, threads=1)
    s.started(0.0)
    assert s.snapshot(50.0)["saturation"] == pytest.approx(100.0)
    s.set_threads(50.0, 4)     # grown: one busy thread no longer saturates
    snap = s.snapshot(100.0)
    assert snap["saturation"] == pytest.approx(50.0)
    assert snap["avg_concurrency"] == pytest.approx(1.0)
    s.finished(100.0, 100.0, ok=False)
    assert s.snapshot(100.0)["failed"] == 1


def test_stats_never_run_is_all_zero():
    snap = PoolStats(now=5.0, threads=4).snapshot(5.0)
    assert snap["invocations"] == 0 and snap["avg_concurrency"] == 0.0
    assert snap["saturation"] == 0.0 and snap["avg_wallclock_time_per_op"] == 0.0


# -- layouts ----------------------------------------------------------------------------------
def _ran(**kw):
    base = PoolRegistry().get("IO").static_stats()
    base.update(concurrency=5, invocations=46010, avg_concurrency=1.0, saturation=0.01,
                avg_wallclock_time_per_op=0.11, num_active_threads=0,
                num_inactive_threads=5, running=True)
    base.update(kw)
    return base


def test_threads_stats_layout_matches_the_page():
    reg = PoolRegistry()
    cpu, io, swapout = (reg.get(n).static_stats() for n in ("CPU", "IO", "SwapOut"))
    io = _ran()
    swapout = dict(_ran(), display="SWAPOUT", invocations=46668, avg_concurrency=3.94,
                   saturation=49.54, avg_wallclock_time_per_op=780.56)
    swapin, close = reg.get("SwapIn").static_stats(), reg.get("Close").static_stats()
    assert cmd_threads.format_stats([cpu, io, swapout, swapin, close]) == """\
CPU thread pool: concurrency 4
IO thread pool: concurrency 5
               Total invocations: 46010
    Observed average concurrency: 1.00
          Thread pool saturation:  0.01%
   Average wallclock time per op: 0.11ms
            Current thread count: 0
  [inactive threads]
            Current thread count: 5
SWAPOUT thread pool: concurrency 5
               Total invocations: 46668
    Observed average concurrency: 3.94
          Thread pool saturation: 49.54%
   Average wallclock time per op: 780.56ms
            Current thread count: 0
  [inactive threads]
            Current thread count: 5
SWAPIN thread pool: concurrency 5
CLOSE thread pool: concurrency 0"""


def test_threads_stats_delegate_and_busy_lines():
    close = dict(_ran(), display="CLOSE", concurrency=0, delegate="IO",
                 num_inactive_threads=0)
    assert cmd_threads.pool_block(close)[-1] == "  [jobs run in the IO pool]"
    busy = dict(_ran(), busy=True)
    assert cmd_threads.pool_block(busy) == [
        "IO thread pool: concurrency 5",
        "  [statistics unavailable: the pool actor did not answer]"]


def test_queue_layout():
    assert cmd_threads.format_queue("IO", []) == "Jobs in the IO pool\n0 jobs"
    out = cmd_threads.format_queue("CPU", [{"function": "m.f", "age": 0.25}])
    assert out == "Jobs in the CPU pool\n  m.f (queued 0.250s)\n1 jobs"


def test_actor_table_layout():
    rows = [{"kind": "threadpool", "name": "IO", "mailbox": 0, "handled": 1234, "restarts": 0},
            {"kind": "logwriter", "name": "paniclog", "mailbox": 12, "handled": "busy",
             "restarts": "-"}]
    assert cmd_threads.format_actors(rows).splitlines() == [
        "KIND        NAME      MAILBOX  HANDLED  RESTARTS",
        "threadpool  IO              0     1234         0",
        "logwriter   paniclog       12     busy         -",
        "2 actors"]


# -- registry without a hub -------------------------------------------------------------------
def test_registry_defaults_and_names():
    reg = PoolRegistry()
    assert reg.name == "pools"
    assert reg.names() == [n for n, _, _ in pools.DEFAULT_POOLS]
    assert [reg.get(n).concurrency for n in ("swapout", "SWAPIN", "Unlink", "batch_unlink",
                                             "close", "cpu", "io", "spoolin")] == \
        [5, 5, 6, 4, 0, 4, 50, 1]
    assert reg.get("unlink").backlog == 100
    with pytest.raises(KeyError, match="Nope"):
        reg.get("Nope")
    assert [s["display"] for s in reg.stats()][:3] == ["CPU", "IO", "SWAPOUT"]


def test_apply_config_before_start():
    reg = PoolRegistry(Cfg(Scope("Unlink", backlog=10), Scope("Mine", concurrency=3),
                           Scope("Other")))
    assert reg.get("unlink").backlog == 10 and reg.get("unlink").concurrency == 6
    assert reg.get("mine").concurrency == 3 and reg.get("other").concurrency == 1
    assert reg.names()[-2:] == ["Mine", "Other"]


@pytest.mark.parametrize("scope, words", [
    (Scope("IO", concurrency=-2), "Concurrency"),
    (Scope("IO", concurrency="many"), "Concurrency"),
    (Scope("IO", concurrency=2.5), "Concurrency"),
    (Scope("IO", backlog=-1), "Backlog"),
    (Scope("IO", stack_size=1000), "stack_size"),
])
def test_apply_config_rejects_bad_values(scope, words):
    reg = PoolRegistry()
    with pytest.raises(ValueError) as err:
        reg.apply_config(Cfg(Scope("CPU", concurrency=7), scope))
    assert "IO" in str(err.value) and words.lower() in str(err.value).lower()
    assert reg.get("CPU").concurrency == 4      # nothing applied


def test_unpatched_process_rules():
    # pytest's process is not monkey-patched: run is inline, submit and start refuse.
    assert pools.run("IO", pow, 2, 10) == 1024
    with pytest.raises(KeyError, match="Missing"):
        pools.run("Missing", pow, 2, 10)
    with pytest.raises(RuntimeError, match="patch_all"):
        pools.submit("IO", pow, 2, 10)
    with pytest.raises(RuntimeError, match="patch_all"):
        PoolRegistry().start()
