"""The benchmark suite (bench/) still works: its pieces quickly, and every scenario end to end
with tiny counts (slow: Postfix and ecmta are started for every run; root, Postfix installed).

The tiny runs check the plumbing and the honesty checks (exact sink/spool counts, TLS really
used, the restart recovering every queued message), not speed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "bench")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"ecbench_{name}", os.path.join(BENCH, f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod          # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


lib = _load("lib")
profiling = _load("profiling")


# -- quick: no root, no MTA -----------------------------------------------------------------------

def test_summary_ratio_per_pair_and_failed_runs():
    R = lib.Run
    runs = [R("postfix", "e2e", 100, 5000, 10, 1, e2e_s=1.0, ok=True),
            R("ecmta", "e2e", 100, 5000, 10, 1, e2e_s=0.5, ok=True),
            R("ecmta", "e2e", 100, 5000, 10, 2, e2e_s=0.25, ok=True),
            R("postfix", "e2e", 100, 5000, 10, 2, e2e_s=2.0, ok=True),
            R("postfix", "e2e", 100, 5000, 10, 3, e2e_s=1.0, ok=False),
            R("ecmta", "e2e", 100, 5000, 10, 3, e2e_s=1.0, ok=True)]
    rows = lib.summarize(runs)
    pf, ec = rows
    assert (pf["system"], pf["runs"], pf["failed"], pf["median"]) == ("postfix", 3, 1, 75.0)
    assert (ec["min"], ec["median"], ec["max"]) == (100.0, 200.0, 400.0)
    assert ec["ratios"] == [2.0, 8.0]                   # rep 3 has no passing Postfix run to pair with
    assert ec["ratio"] == 5.0
    text = lib.table(rows)
    assert "| e2e | 10 | ecmta | 200 | 100–400 | 3 (0) | 5.00 (2.00–8.00) |" in text


def test_profile_report_and_flamegraph(tmp_path):
    raw = tmp_path / "stacks.txt"
    raw.write_text("run (a.py:1);hot (/x/ecmta/b.py:2) 30\nrun (a.py:1);cold (c.py:3) 10\n")
    stacks = profiling.read_collapsed(str(raw))
    text = profiling.top_functions(stacks)
    assert "40 samples" in text and " 75.0  hot (b.py)" in text and "100.0  run (a.py)" in text
    svg = tmp_path / "f.svg"
    profiling.flamegraph_svg(stacks, str(svg), "t")
    assert svg.read_text().count("<rect") == 4            # all, run, hot, cold


def test_loadgen_through_pysink_with_starttls(tmp_path):
    certs = lib.make_certs(str(tmp_path / "certs"))
    sink = lib.PySink(str(tmp_path), certs).start()
    try:
        res = lib.send(lib.Load(tool="loadgen", tls=True, domains=7), sink.port, 200, 10, 60)
        deadline = time.monotonic() + 10
        while sink.count() < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert res.ok, res.note
        assert (sink.count(), sink.tls_count()) == (200, 200)
        plain = lib.send(lib.Load(tool="loadgen"), sink.port, 20, 2, 60)
        deadline = time.monotonic() + 10
        while sink.count() < 220 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert plain.ok and (sink.count(), sink.tls_count()) == (220, 200)
    finally:
        sink.stop()


# -- slow: every scenario with tiny counts --------------------------------------------------------

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("smtp-source", path=os.environ.get("PATH", "") + ":/usr/sbin"),
    reason="the bench needs root and Postfix (smtp-source, smtp-sink)")

TINY = ["--count", "200", "--reps", "1", "--conc", "10", "--sweep", "5", "10", "--warmup", "20",
        "--large-count", "10", "--bigqueue-count", "500", "--sessions", "40", "--domains", "50",
        "--timeout", "120"]


def bench(tmp_path, *args: str, timeout: float = 600) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "results"
    p = subprocess.run([sys.executable, os.path.join(BENCH, "run.py"), *args, "--out", str(out)],
                       capture_output=True, text=True, timeout=timeout, cwd=tempfile.gettempdir())
    results = sorted(out.glob("*.json")) if out.exists() else []
    data = json.loads(results[-1].read_text()) if results else {}
    return p, data


@pytest.mark.slow
@needs_root
@pytest.mark.parametrize("scenario", ["ceiling", "accept", "e2e", "domains", "large", "tls", "lua", "sessions500"])
def test_scenario_runs_and_counts_every_message(tmp_path, scenario):
    p, data = bench(tmp_path, scenario, *TINY)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    runs = data["runs"]
    assert runs and all(r["ok"] for r in runs), [r["note"] for r in runs]
    if scenario != "ceiling":
        assert {r["system"] for r in runs} == {"postfix", "ecmta"}
    if scenario in ("accept", "sessions500"):
        assert all(r["note"].startswith("accepted ") for r in runs)
    elif scenario != "ceiling":
        assert all(r["note"].startswith(f"sink got {r['count']}/{r['count']}") for r in runs)
    if scenario == "e2e":
        assert {r["conc"] for r in runs} == {5, 10}
        ratios = [row for row in data["summary"] if row["system"] == "ecmta"]
        assert all(row.get("ratio") for row in ratios)
        if importlib.util.find_spec("matplotlib"):
            assert list((tmp_path / "results").glob("*-throughput.png"))
    if scenario == "sessions500":
        assert all(r["sessions"] >= 36 for r in runs)
    assert "| scenario | conc | system |" in p.stdout


@pytest.mark.slow
@needs_root
def test_bigqueue_restart_recovers_every_message(tmp_path):
    p, data = bench(tmp_path, "bigqueue", *TINY)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    (rec,) = data["memory_restart"]
    assert rec["ok"] and rec["queued_after_inject"] == 500
    assert rec["recover_s"] is not None and rec["peak_rss_restart_mb"] > 0
    assert "restart until all queued" in p.stdout


@pytest.mark.slow
@needs_root
def test_a_run_that_loses_mail_fails(tmp_path):
    """A sink that never sees the mail (ecmta relays to a dead port) must fail the run."""
    p, data = bench(tmp_path, "e2e", *TINY[:-2], "--timeout", "8", "--sweep", "5", "--systems", "ecmta",
                    "--warmup", "0", "--lose-mail")
    assert p.returncode == 1
    assert data["runs"] and not any(r["ok"] for r in data["runs"])
    assert "FAILED" in p.stdout
    for r in data["runs"]:                 # a failed run keeps its work directory: not here
        kept = r["note"].rsplit("kept ", 1)[-1].split(";")[0].strip() if "kept " in r["note"] else ""
        if kept.startswith("/tmp/ecbench-"):
            shutil.rmtree(os.path.dirname(kept), ignore_errors=True)


@pytest.mark.slow
@needs_root
@pytest.mark.skipif(not shutil.which("py-spy"), reason="py-spy is not installed")
def test_profile_mode_writes_a_flamegraph(tmp_path):
    p, _ = bench(tmp_path, "e2e", "--profile", "--count", "300", "--warmup", "20", "--sweep", "10")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "own time (where the CPU was)" in p.stdout
    svg = [ln.split(": ", 1)[1] for ln in p.stdout.splitlines() if ln.startswith("flame graph: ")]
    assert svg and svg[0].startswith(str(tmp_path)) and os.path.getsize(svg[0]) > 1000
