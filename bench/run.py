"""ecmta against Postfix, on this machine, in one command:

    python bench/run.py                      # every scenario (about 15 minutes on 2 cores)
    python bench/run.py e2e tls --reps 5     # some scenarios
    python bench/run.py e2e --profile        # ecmta only, sampled with py-spy: flame graph + top functions

Each relay scenario starts a fresh, equivalently configured Postfix and ecmta for every run
(both durable, loopback only), alternates the two systems (P,E then E,P ...), sends the same
messages with the same load generator, and counts what the sink received: a run in which the
sink (or, accept-only, the spool) did not get exactly the messages sent FAILS. The summary
gives msgs/s median, min and max, the ecmta/Postfix ratio of each pair of runs, peak memory
and CPU per message; results go to bench/results/<date>.json/.md/.png. Needs root (Postfix,
dnsmasq on 127.0.0.1:53); Postfix and dnsmasq are installed from Debian when missing.

Scenarios (bench/README.md says what each one does and how the systems are made equivalent):
  ceiling      load generators straight into the sinks: the most any MTA could show here
  accept       accept and spool only (delivery held)
  e2e          smtp-source -> MTA -> smtp-sink, at each --sweep concurrency (the plot)
  domains      1 000 recipient domains routed by MX through a local dnsmasq
  large        1 MB messages
  tls          STARTTLS in (bench/loadgen.py) and out (to bench/pysink.py)
  lua          a policy that works in every phase: ecmta scriptlet / Postfix header_checks
  sessions500  memory with 500 concurrent inbound sessions (accept-only)
  bigqueue     ecmta only: 100 000 messages queued for an unreachable domain, peak RSS and
               the time a restart takes to have them all queued again
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
import profiling  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
ORDER = ["ceiling", "accept", "e2e", "domains", "large", "tls", "lua", "sessions500", "bigqueue"]
TARGETS = {"bigqueue_rss_mb": 400, "bigqueue_recover_s": 30, "sessions500_rss_mb": 150}


@dataclass
class Spec:
    """A relay scenario: the load, what the MTAs must do, and where the mail ends."""
    name: str
    load: lib.Load = field(default_factory=lib.Load)
    held: bool = False
    tls_in: bool = False
    tls_out: bool = False
    dns: bool = False
    lua: bool = False
    count_option: str = "count"


SPECS = {
    "accept": Spec("accept", held=True),
    "e2e": Spec("e2e"),
    "domains": Spec("domains", lib.Load(tool="loadgen", domains=1000), dns=True),
    "large": Spec("large", lib.Load(size=1_000_000), count_option="large_count"),
    "tls": Spec("tls", lib.Load(tool="loadgen", tls=True), tls_in=True, tls_out=True),
    "lua": Spec("lua", lib.Load(subject="bench policy"), lua=True),
}


class Bench:
    def __init__(self, args) -> None:
        self.a = args
        self.wd = lib.workdir()
        self.runs: list[lib.Run] = []
        self.specials: list[dict] = []
        self.sink = lib.Sink(self.wd).start()
        self._tls_sink: lib.PySink | None = None
        self._certs: lib.Certs | None = None
        self._dns: lib.Dnsmasq | None = None
        self.use_pyspy = args.profiler == "py-spy" or (args.profiler == "auto" and bool(profiling.pyspy()))
        if self.use_pyspy and not profiling.pyspy():
            raise SystemExit("py-spy is not installed: pip install py-spy")

    # shared fixtures, made when a scenario first needs them
    @property
    def certs(self) -> lib.Certs:
        if self._certs is None:
            self._certs = lib.make_certs(os.path.join(self.wd, "certs"))
        return self._certs

    @property
    def tls_sink(self) -> lib.PySink:
        if self._tls_sink is None:
            self._tls_sink = lib.PySink(self.wd, self.certs).start()
        return self._tls_sink

    @property
    def dns(self) -> lib.Dnsmasq:
        if self._dns is None:
            self._dns = lib.Dnsmasq(self.wd, self.a.domains).start()
            if not self._dns.on_53:
                print(f"note: 127.0.0.1:53 is busy: dnsmasq runs on port {self._dns.port}; ecmta resolves "
                      f"through it, Postfix gets a transport map of the {self.a.domains} domains instead "
                      f"(no DNS work on the Postfix side)", flush=True)
        return self._dns

    def close(self) -> None:
        for thing in (self.sink, self._tls_sink, self._dns):
            if thing is not None:
                thing.stop()
        if not self.a.keep:
            shutil.rmtree(self.wd, ignore_errors=True)

    def log(self, r: lib.Run) -> None:
        self.runs.append(r)
        secs = f"accept {r.accept_s:.2f}s" + ("" if r.e2e_s is None else f", e2e {r.e2e_s:.2f}s")
        print(f"[{elapsed()}] {r.scenario} conc={r.conc} rep={r.rep} {r.system}: {r.rate:.0f} msgs/s ({secs}) "
              f"PSS {r.pss_mb:.0f} MB (RSS {r.rss_mb:.0f}, {r.procs} procs) cpu {r.cpu_s:.1f}s "
              f"{'ok' if r.ok else 'FAILED'} {r.note}", flush=True)

    # -- the relay scenarios ----------------------------------------------------------------------
    def relay(self, spec: Spec, system: str, conc: int, rep: int, count: int, profile: bool = False) -> lib.Run:
        a = self.a
        sink = self.tls_sink if spec.tls_out else self.sink
        setup = lib.Setup(sink_port=1 if a.lose_mail else sink.port, held=spec.held, tls_in=self.certs if spec.tls_in else None,
                          tls_out=spec.tls_out, dns=self.dns if spec.dns else None, lua=spec.lua)
        cls = lib.Postfix if system == "postfix" else lib.Ecmta
        mta = cls(self.wd, setup, tag=f"-{spec.name}-{conc}-{rep}")
        run = lib.Run(system, spec.name, count, spec.load.size, conc, rep)
        spy = None
        if profile and not self.use_pyspy:
            mta.argv_prefix = [sys.executable, "-m", "cProfile", "-o", self.profile_base + ".prof"]
        try:
            mta.start()
        except Exception as exc:
            run.note = f"{system} did not start: {exc} {start_trouble(mta)}"
            self.a.keep = True
            return run
        counter = mta.accepted if spec.held else sink.count
        notes = []
        try:
            sampler = lib.Sampler(mta.pid)
            sampler.start()
            warm = min(a.warmup, count)
            if warm:
                base = counter()
                res = lib.send(spec.load, mta.port, warm, min(conc, warm), a.timeout)
                got = wait_count(counter, base + warm, 60) - base
                if not res.ok or got != warm:
                    run.note = f"warm-up: {res.note} got {got}/{warm}"
                    return run
            base = counter()
            tls0 = sink.tls_count() if spec.tls_out else None
            if profile and self.use_pyspy:
                spy = profiling.start_pyspy(mta.pid, self.profile_base + ".txt")
            sampler.mark()
            t0 = time.monotonic()
            res = lib.send(spec.load, mta.port, count, conc, a.timeout)
            run.accept_s = res.seconds
            if res.note:
                notes.append(res.note)
            if spec.held:
                got = wait_count(counter, base + count, 30) - base
            else:
                got = wait_count(counter, base + count, max(1.0, t0 + a.timeout - time.monotonic())) - base
                run.e2e_s = time.monotonic() - t0
            sampler.stop()
            if spy is not None:
                profiling.stop_pyspy(spy)
            time.sleep(0.5)                      # late duplicates would show here
            got = counter() - base
            run.ok = res.ok and got == count
            what = "accepted" if spec.held else "sink got"
            notes.insert(0, f"{what} {got}/{count}")
            if spec.tls_out:
                tls_got = sink.tls_count() - tls0
                if tls_got != got:
                    run.ok = False
                    notes.append(f"only {tls_got} of them over TLS")
            run.rss_mb, run.pss_mb = sampler.peak_rss_kb / 1024, sampler.peak_pss_kb / 1024
            run.procs, run.cpu_s = sampler.peak_procs, sampler.cpu_s
        finally:
            trouble = mta.problems()
            if trouble:
                notes.append(trouble)
            mta.stop()
            if run.ok and not a.keep:
                shutil.rmtree(mta.dir, ignore_errors=True)
            elif not run.ok:
                notes.append(f"kept {mta.dir}")
                a.keep = True
            run.note = run.note or "; ".join(notes)
        return run

    def scenario(self, name: str) -> None:
        a = self.a
        if name == "ceiling":
            return self.ceiling()
        if name == "sessions500":
            return self.sessions()
        if name == "bigqueue":
            return self.bigqueue()
        spec = SPECS[name]
        count = getattr(a, spec.count_option)
        concs = a.sweep if name == "e2e" else a.conc
        for conc in concs:
            for rep in range(1, a.reps + 1):
                order = a.systems if rep % 2 == 1 else list(reversed(a.systems))
                for system in order:
                    try:
                        run = self.relay(spec, system, conc, rep, count)
                    except Exception as exc:          # a broken run must not end the suite
                        run = lib.Run(system, spec.name, count, spec.load.size, conc, rep,
                                      note=f"bench error: {exc!r}")
                    self.log(run)

    # -- the load generators' ceiling -------------------------------------------------------------
    def ceiling(self) -> None:
        """What the load generators and sinks manage with no MTA between them: every MTA figure
        below is bounded by these (and they share the same 2 cores with the MTA)."""
        a = self.a
        cases = [("smtp-source>smtp-sink", lib.Load(), self.sink),
                 ("loadgen>smtp-sink", lib.Load(tool="loadgen"), self.sink),
                 ("loadgen+TLS>pysink", lib.Load(tool="loadgen", tls=True), self.tls_sink)]
        for conc in a.conc:
            for rep in range(1, a.reps + 1):
                for system, load, sink in cases:
                    run = lib.Run(system, "ceiling", a.count, load.size, conc, rep)
                    base = sink.count()
                    sampler = lib.Sampler(sink.pid)
                    sampler.start()
                    res = lib.send(load, sink.port, a.count, conc, a.timeout)
                    got = wait_count(sink.count, base + a.count, 10) - base
                    sampler.stop()
                    run.accept_s, run.ok = res.seconds, res.ok and got == a.count
                    run.rss_mb, run.pss_mb = sampler.peak_rss_kb / 1024, sampler.peak_pss_kb / 1024
                    run.procs, run.cpu_s = sampler.peak_procs, sampler.cpu_s
                    run.note = f"sink got {got}/{a.count} (sink's memory/CPU) {res.note}"
                    self.log(run)

    # -- memory with many sessions ------------------------------------------------------------------
    def sessions(self) -> None:
        """N concurrent sessions held open: smtp-source -s N -w 1 (one message per second per
        session, 6 per session), accept-only. Postfix gets an smtpd process limit of N (its
        default of 100 would leave the other sessions waiting in the listen queue)."""
        a = self.a
        n = a.sessions
        count = n * 6
        load = lib.Load(wait=1.0)
        for rep in range(1, a.reps + 1):
            order = a.systems if rep % 2 == 1 else list(reversed(a.systems))
            for system in order:
                setup = lib.Setup(sink_port=self.sink.port, held=True, sessions=n)
                cls = lib.Postfix if system == "postfix" else lib.Ecmta
                mta = cls(self.wd, setup, tag=f"-sessions-{rep}")
                run = lib.Run(system, f"sessions{n}", count, load.size, n, rep)
                try:
                    mta.start()
                except Exception as exc:
                    run.note = f"{system} did not start: {exc} {start_trouble(mta)}"
                    self.log(run)
                    continue
                try:
                    sampler = lib.Sampler(mta.pid, interval=0.5, port=mta.port)
                    sampler.start()
                    base = mta.accepted()
                    res = lib.send(load, mta.port, count, n, a.timeout)
                    got = wait_count(mta.accepted, base + count, 30) - base
                    sampler.stop()
                    run.accept_s, run.ok = res.seconds, res.ok and got == count
                    run.rss_mb, run.pss_mb = sampler.peak_rss_kb / 1024, sampler.peak_pss_kb / 1024
                    run.procs, run.cpu_s, run.sessions = sampler.peak_procs, sampler.cpu_s, sampler.peak_sessions
                    run.note = f"accepted {got}/{count}; peak {run.sessions} sessions {res.note}"
                    if run.sessions < 0.9 * n:
                        run.note += f" (fewer than {n} sessions were open at once)"
                finally:
                    trouble = mta.problems()
                    if trouble:
                        run.note += "; " + trouble
                    mta.stop()
                    shutil.rmtree(mta.dir, ignore_errors=True)
                self.log(run)
                if system == "ecmta":
                    self.specials.append({
                        "scenario": run.scenario, "system": "ecmta", "rep": rep, "ok": run.ok,
                        "peak_sessions": run.sessions, "peak_rss_mb": round(run.rss_mb, 1),
                        "target_rss_mb": TARGETS["sessions500_rss_mb"] if n == 500 else None,
                        "met": run.ok and run.rss_mb < TARGETS["sessions500_rss_mb"] and run.sessions >= 0.9 * n})

    # -- 100 000 queued messages and a restart ------------------------------------------------------
    def bigqueue(self) -> None:
        a = self.a
        n = a.bigqueue_count
        setup = lib.Setup(sink_port=self.sink.port, extra=(
            'Domain "unreach.test" {\n  Gateway = "127.0.0.1:1"\n  retry_interval = 3600\n}\n'
            'Debug_Flags {\n  NOTICE = (ALL)\n}\n'))             # the spool_in summary in the paniclog
        mta = lib.Ecmta(self.wd, setup, tag="-bigqueue")
        load = lib.Load()
        rec = {"scenario": "bigqueue", "system": "ecmta", "messages": n, "size": load.size, "ok": False}
        run = lib.Run("ecmta", "bigqueue", n, load.size, a.bigqueue_conc, 1)
        try:
            mta.start()
        except Exception as exc:
            run.note = f"ecmta did not start: {exc} {start_trouble(mta)}"
            self.specials.append(rec)
            self.log(run)
            return
        try:
            sampler = lib.Sampler(mta.pid, interval=0.5)
            sampler.start()
            t0 = time.monotonic()
            p = subprocess.run(["smtp-source", "-d", "-s", str(a.bigqueue_conc), "-m", str(n), "-l", str(load.size),
                                "-N", "-f", lib.SENDER, "-M", "perf.test", "-t", "rcpt@unreach.test",
                                f"127.0.0.1:{mta.port}"], capture_output=True, text=True, timeout=a.timeout * 4)
            inject_s = time.monotonic() - t0
            queued = wait_count(safe(mta.queued), n, 120)
            sampler.stop()
            rec.update(inject_s=round(inject_s, 1), inject_rate=round(n / inject_s, 1),
                       queued_after_inject=queued, peak_rss_inject_mb=round(sampler.peak_rss_kb / 1024, 1),
                       inject_cpu_s=round(sampler.cpu_s, 1))
            run.accept_s, run.rss_mb, run.pss_mb, run.cpu_s = inject_s, sampler.peak_rss_kb / 1024, \
                sampler.peak_pss_kb / 1024, sampler.cpu_s
            run.procs = sampler.peak_procs
            print(f"[{elapsed()}] bigqueue: injected {n} in {inject_s:.1f}s ({n / inject_s:.0f} msgs/s), queued {queued}, "
                  f"peak RSS {rec['peak_rss_inject_mb']} MB", flush=True)
            if p.returncode != 0 or queued != n:
                run.note = f"smtp-source rc {p.returncode} {p.stderr.strip()[-200:]}; queued {queued}/{n}"
                return
            rec["stop_s"] = round(mta.stop(), 1)
            # restart: from process start until the console reports all n queued again
            open(mta.paniclog_path, "a").close()
            panic_size = os.path.getsize(mta.paniclog_path)
            mta.launch(wait=False)
            sampler = lib.Sampler(mta.pid, interval=0.25)
            sampler.start()
            t_start = mta.started_at
            recover = notice = None
            deadline = t_start + 300
            while time.monotonic() < deadline and (recover is None or notice is None):
                if mta.proc.poll() is not None:
                    break
                if recover is not None and time.monotonic() - t_start > recover + 10:
                    break                                # no NOTICE line (Debug_Flags) after all
                if notice is None and "spool_in complete" in lib._read(mta.paniclog_path)[panic_size:]:
                    notice = time.monotonic() - t_start
                if recover is None and safe(mta.queued)() == n:
                    recover = time.monotonic() - t_start
                time.sleep(0.1)
            time.sleep(2)
            sampler.stop()
            rec.update(recover_s=round(recover, 2) if recover else None,
                       spool_in_notice_s=round(notice, 2) if notice else None,
                       peak_rss_restart_mb=round(sampler.peak_rss_kb / 1024, 1),
                       restart_cpu_s=round(sampler.cpu_s, 1))
            run.rss_mb = max(run.rss_mb, sampler.peak_rss_kb / 1024)
            peak = max(rec["peak_rss_inject_mb"], rec["peak_rss_restart_mb"])
            rec["ok"] = run.ok = recover is not None
            rec["met"] = bool(recover is not None and recover < TARGETS["bigqueue_recover_s"]
                              and peak < TARGETS["bigqueue_rss_mb"])
            rec["targets"] = {"peak_rss_mb": TARGETS["bigqueue_rss_mb"], "recover_s": TARGETS["bigqueue_recover_s"]}
            run.note = (f"restart: all {n} queued after {rec['recover_s']}s (spool_in NOTICE at "
                        f"{rec['spool_in_notice_s']}s), peak RSS {peak} MB")
            if recover is None:
                run.note = f"restart: queue never reached {n} (last {safe(mta.queued)()}) within 300s"
        finally:
            trouble = mta.problems()
            if trouble:
                run.note += "; " + trouble
            mta.stop()
            if run.ok and not a.keep:
                shutil.rmtree(mta.dir, ignore_errors=True)
            self.specials.append(rec)
            self.log(run)

    # -- profile mode ---------------------------------------------------------------------------------
    def profile(self, name: str) -> None:
        if name not in SPECS:
            raise SystemExit(f"--profile needs a relay scenario ({', '.join(SPECS)}), not {name}")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        os.makedirs(self.a.out, exist_ok=True)
        self.profile_base = os.path.join(self.a.out, f"profile-{name}-{stamp}")
        spec = SPECS[name]
        count = getattr(self.a, spec.count_option)
        conc = (self.a.sweep if name == "e2e" else self.a.conc)[0]
        if name == "e2e" and len(self.a.sweep) > 1:
            conc = 50 if 50 in self.a.sweep else conc
        run = self.relay(spec, "ecmta", conc, 1, count, profile=True)
        self.log(run)
        if self.use_pyspy:
            stacks = profiling.read_collapsed(self.profile_base + ".txt")
            svg = self.profile_base + ".svg"
            profiling.flamegraph_svg(stacks, svg, f"ecmta {name}, conc {conc}, {count} messages: {lib.machine()}")
            print(profiling.top_functions(stacks))
            print(f"\nflame graph: {svg}\ncollapsed stacks: {self.profile_base}.txt")
        else:
            if self.a.profiler == "auto":
                print("py-spy is not installed (pip install py-spy): profiled with cProfile instead")
            print(profiling.cprofile_top(self.profile_base + ".prof"))
            print(f"\ncProfile dump: {self.profile_base}.prof (python -m pstats)")


T0 = time.monotonic()


def elapsed() -> str:
    s = int(time.monotonic() - T0)
    return f"{s // 60:02d}:{s % 60:02d}"


def start_trouble(mta) -> str:
    """The end of the daemon's stderr (ecmta) after a failed start."""
    text = lib._read(os.path.join(mta.dir, "stderr.log")).strip().splitlines()
    return ("| " + " | ".join(text[-3:]))[:400] if text else ""


def safe(fn):
    """The queue size from the console, or -1 while the daemon cannot answer yet."""
    def call():
        try:
            return fn()
        except (OSError, RuntimeError, ValueError):
            return -1
    return call


def wait_count(counter, target: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    got = counter()
    while got < target and time.monotonic() < deadline:
        time.sleep(0.02 if timeout < 60 else 0.5)
        got = counter()
    return got


def special_table(rows: list[dict]) -> str:
    out = ["| scenario | measure | value | target | met |", "|---|---|---|---|---|"]
    for r in rows:
        met = "yes" if r.get("met") else "NO"
        if r["scenario"] == "bigqueue":
            peak = max(r.get("peak_rss_inject_mb") or 0, r.get("peak_rss_restart_mb") or 0)
            out += [f"| bigqueue ({r['messages']} × {r['size']} B) | inject rate | "
                    f"{r.get('inject_rate', '')} msgs/s | | |",
                    f"| bigqueue | peak RSS (inject {r.get('peak_rss_inject_mb')}, restart "
                    f"{r.get('peak_rss_restart_mb')}) | {peak} MB | < {TARGETS['bigqueue_rss_mb']} MB | {met} |",
                    f"| bigqueue | restart until all queued (summary) | {r.get('recover_s')} s "
                    f"(spool_in NOTICE {r.get('spool_in_notice_s')} s) | < {TARGETS['bigqueue_recover_s']} s | {met} |"]
        else:
            target = f"< {r['target_rss_mb']} MB" if r.get("target_rss_mb") else ""
            out.append(f"| {r['scenario']} rep {r['rep']} | ecmta peak RSS at {r['peak_sessions']} sessions | "
                       f"{r['peak_rss_mb']} MB | {target} | {met if target else ''} |")
    return "\n".join(out)


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenarios", nargs="*", help=f"any of {' '.join(ORDER)} (default: all)")
    ap.add_argument("--count", type=int, default=5000, help="messages per run (default 5000)")
    ap.add_argument("--large-count", type=int, default=300, help="1 MB messages per `large` run (default 300)")
    ap.add_argument("--size", type=int, default=5000, help="payload bytes, all but `large` (default 5000)")
    ap.add_argument("--conc", type=int, nargs="+", default=[50], help="sessions (default 50)")
    ap.add_argument("--sweep", type=int, nargs="+", default=[10, 50, 100],
                    help="e2e concurrencies, the plot's x axis (default 10 50 100)")
    ap.add_argument("--reps", type=int, default=3, help="runs per system and concurrency (default 3)")
    ap.add_argument("--warmup", type=int, default=200, help="messages sent before each measured run (default 200)")
    ap.add_argument("--domains", type=int, default=1000, help="recipient domains of `domains` (default 1000)")
    ap.add_argument("--sessions", type=int, default=500, help="concurrent sessions of sessions500 (default 500)")
    ap.add_argument("--bigqueue-count", type=int, default=100_000, help="messages of bigqueue (default 100000)")
    ap.add_argument("--bigqueue-conc", type=int, default=50, help="sessions injecting bigqueue (default 50)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per run before it fails (default 600)")
    ap.add_argument("--systems", nargs="+", default=["postfix", "ecmta"], choices=["postfix", "ecmta"])
    ap.add_argument("--profile", action="store_true", help="ecmta only, one run of the first scenario, sampled")
    ap.add_argument("--profiler", choices=["auto", "py-spy", "cprofile"], default="auto",
                    help="profile mode: py-spy when installed (auto), or cProfile inside the daemon")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (always kept after a failure)")
    ap.add_argument("--lose-mail", action="store_true", help=argparse.SUPPRESS)   # tests: relay to a dead port
    ap.add_argument("--out", default=RESULTS, help="results directory (default bench/results)")
    a = ap.parse_args(argv)
    a.scenarios = a.scenarios or list(ORDER)
    if a.scenarios == ["all"]:
        a.scenarios = list(ORDER)
    bad = [s for s in a.scenarios if s not in ORDER]
    if bad:
        ap.error(f"unknown scenario {' '.join(bad)} (known: {' '.join(ORDER)})")
    a.scenarios = [s for s in ORDER if s in a.scenarios]          # a fixed order: cheap ones first
    SPECS["accept"].load.size = SPECS["e2e"].load.size = SPECS["domains"].load.size = a.size
    SPECS["tls"].load.size = SPECS["lua"].load.size = a.size
    SPECS["domains"].load.domains = a.domains
    return a


def main(argv=None) -> int:
    a = parse(argv)
    if os.geteuid() != 0:
        print("warning: not root: Postfix cannot start and dnsmasq cannot take port 53", file=sys.stderr)
    lib.ensure_tools(dns="domains" in a.scenarios)
    started = time.monotonic()
    bench = Bench(a)
    print(f"Machine: {lib.machine()}; load average {lib.load_average()}; work dir {bench.wd}", flush=True)
    try:
        if a.profile:
            bench.profile(a.scenarios[0] if a.scenarios != ORDER else "e2e")
            return 0 if all(r.ok for r in bench.runs) else 1
        for scen in a.scenarios:
            bench.scenario(scen)
    except KeyboardInterrupt:
        print("interrupted: summarising the runs so far", file=sys.stderr)
    finally:
        bench.close()
    rows = lib.summarize(bench.runs)
    elapsed = time.monotonic() - started
    head = (f"Machine: {lib.machine()}\nRun: {time.strftime('%Y-%m-%d %H:%M')}, {elapsed / 60:.1f} min, "
            f"load average at the end {lib.load_average()}\n"
            f"Per run: {a.count} messages of {a.size} B (large: {a.large_count} × 1 MB), 1 recipient each, "
            f"{a.reps} runs per system alternating, warm-up {a.warmup} messages per run, "
            f"persistent sessions; msgs/s = messages / time until the sink had them all "
            f"(accept, sessions: until the load generator finished)\n")
    text = head + "\n" + lib.table(rows)
    if bench.specials:
        text += "\n\n" + special_table(bench.specials)
    failed = [r for r in bench.runs if not r.ok]
    if failed:
        text += "\n\nFAILED runs:\n" + "\n".join(f"- {r.scenario} conc={r.conc} rep={r.rep} {r.system}: {r.note}"
                                               for r in failed)
    print("\n" + text)
    os.makedirs(a.out, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = os.path.join(a.out, stamp)
    png = lib.plot(rows, base + "-throughput.png")
    lib.write_results(base + ".json", {"machine": lib.machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                                       "elapsed_s": round(elapsed, 1), "args": vars(a), "runs": bench.runs,
                                       "summary": rows, "memory_restart": bench.specials})
    with open(base + ".md", "w") as fh:
        fh.write(text + "\n")
    print(f"\nresults: {base}.json, {base}.md" + (f", {png}" if png else ""))
    return 0 if not failed and bench.runs else 1


if __name__ == "__main__":
    raise SystemExit(main())
