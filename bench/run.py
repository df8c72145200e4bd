"""`python bench/run.py [scenario ...] [--count N] [--reps R] [--conc C ...]`

Runs each scenario for ecmta and for an equivalently configured Postfix, alternating the
two systems, and prints the table (msgs/s median, min-max, peak RSS, CPU per message,
ecmta/Postfix ratio) and writes bench/results/<date>.json. A run whose mail did not all
arrive (sink count, or accepted count for accept-only) is marked failed.

Scenarios:
  accept   accept and spool only: Postfix with delivery held (defer_transports), ecmta with
           its queue service off (-n queue); accepted = the R lines / Postfix queue files
  e2e      smtp-source -> MTA -> smtp-sink; time until the sink has every message
Needs root for Postfix (installed from Debian when missing) and smtp-source/smtp-sink.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def run_accept(system: str, wd: str, sink, count: int, size: int, conc: int, timeout: float) -> lib.Run:
    run = lib.Run(system, "accept", count, size, conc)
    mta = lib.Postfix(wd, sink.port, held=True) if system == "postfix" else lib.Ecmta(wd, sink.port, held=True)
    mta.start()
    try:
        sampler = lib.Sampler(mta.pid)
        sampler.start()
        secs, rc, err = lib.smtp_source(mta.port, count, size, conc, timeout)
        sampler.stop()
        run.accept_s, run.rss_mb, run.cpu_s = secs, sampler.peak_kb / 1024, sampler.cpu_s
        deadline = time.monotonic() + 30
        got = 0
        while time.monotonic() < deadline:
            got = mta.queued() if system == "postfix" else mta.accepted()
            if got >= count:
                break
            time.sleep(0.2)
        run.ok = rc == 0 and got >= count
        run.note = f"accepted {got}/{count}" + (f"; smtp-source: {err}" if rc else "")
    finally:
        if system == "postfix":
            mta.purge()
        mta.stop()
    return run


def run_e2e(system: str, wd: str, sink, count: int, size: int, conc: int, timeout: float) -> lib.Run:
    run = lib.Run(system, "e2e", count, size, conc)
    mta = lib.Postfix(wd, sink.port, held=False) if system == "postfix" else lib.Ecmta(wd, sink.port, held=False)
    mta.start()
    try:
        base = sink.count()
        sampler = lib.Sampler(mta.pid)
        sampler.start()
        t0 = time.monotonic()
        secs, rc, err = lib.smtp_source(mta.port, count, size, conc, timeout)
        run.accept_s = secs
        deadline = t0 + timeout
        got = 0
        while time.monotonic() < deadline:
            got = sink.count() - base
            if got >= count:
                break
            time.sleep(0.02)
        run.e2e_s = time.monotonic() - t0
        sampler.stop()
        run.rss_mb, run.cpu_s = sampler.peak_kb / 1024, sampler.cpu_s
        run.ok = rc == 0 and got >= count
        run.note = f"sink got {got}/{count}" + (f"; smtp-source: {err}" if rc else "")
    finally:
        mta.stop()
    return run


SCENARIOS = {"accept": run_accept, "e2e": run_e2e}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenarios", nargs="*", default=["accept", "e2e"])
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--size", type=int, default=5000)
    ap.add_argument("--conc", type=int, nargs="+", default=[50])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--systems", nargs="+", default=["postfix", "ecmta"])
    a = ap.parse_args(argv)
    lib.ensure_postfix()
    wd = lib.workdir()
    sink = lib.Sink(wd).start()
    runs: list[lib.Run] = []
    try:
        for scen in a.scenarios:
            for conc in a.conc:
                for rep in range(a.reps):
                    order = a.systems if rep % 2 == 0 else list(reversed(a.systems))
                    for system in order:
                        r = SCENARIOS[scen](system, wd, sink, a.count, a.size, conc, a.timeout)
                        runs.append(r)
                        print(f"{scen} conc={conc} rep={rep + 1} {system}: {r.rate:.0f} msgs/s "
                              f"(accept {r.accept_s:.2f}s{'' if r.e2e_s is None else f', e2e {r.e2e_s:.2f}s'}) "
                              f"rss {r.rss_mb:.0f} MB cpu {r.cpu_s:.1f}s {'ok' if r.ok else 'FAILED'} {r.note}",
                              flush=True)
    finally:
        sink.stop()
    rows = lib.summarize(runs)
    print()
    print(f"Machine: {lib.machine()}")
    print(f"{a.count} messages of {a.size} bytes per run, 1 recipient, smtp-source -d (persistent sessions)")
    print(lib.table(rows))
    os.makedirs(RESULTS, exist_ok=True)
    out = os.path.join(RESULTS, time.strftime("%Y%m%d-%H%M%S") + ".json")
    lib.write_results(out, runs, rows)
    print(f"\nresults: {out}")
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
