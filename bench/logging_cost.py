"""What logging every event costs end to end: ecmta relaying smtp-source's messages to
smtp-sink, with and without its logs (a measurement script, not a test).

    python3 bench/logging_cost.py [--count 3000] [--conc 50] [--reps 3]
                                  [--size 5000] [--variants none,logged]

Variants (everything else as bench/ configures ecmta for its `e2e` scenario: relay_hosts
127.0.0.0/8, Gateway to the sink, max_outbound_connections 20, durable spool):

    none     no log module: only the paniclog (nothing is written per event)
    files    ec_logger mainlog + bounce_logger bouncelog
    events   only the `events` log stream (below): what the jlog alone costs
    logged   ec_logger mainlog + bounce_logger bouncelog + a jlog of every event: the
             `events` log stream (JSON of every typed record, loggers/streams.py) with a
             subscriber declared (records are kept, as for a consumer)

Each repetition runs every variant once, in a rotating order, on a fresh daemon: 200
warm-up messages, then --count measured messages; msgs/s = count / (first connection ->
the sink has them all). The cost of a variant is 1 - its msgs/s / the `none` msgs/s of the
same repetition; the median over repetitions is reported (with min and max), and the
daemon's CPU time per message (less noisy on a shared machine). The target
(issue 5): `logged` costs less than 10 %. Needs Postfix's smtp-source and smtp-sink.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

LOGGING = {
    "none": "",
    "files": """
ec_logger "ec_logger" {
  mainlog = "log/mainlog.ec"
  heartbeat = 0
}
bounce_logger "bounce_logger" {
  bouncelog = "log/bouncelog.ec"
}
""",
}
LOGGING["events"] = """
log_streams {
  streams = ( "events" )
  subscribers = ( "bench" )
}
"""
LOGGING["logged"] = LOGGING["files"] + LOGGING["events"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


class Sink:
    def __init__(self, workdir: str) -> None:
        self.port = free_port()
        self.out = os.path.join(workdir, "sink.counter")
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        exe = shutil.which("smtp-sink", path=os.environ.get("PATH", "") + ":/usr/sbin")
        if not exe:
            raise SystemExit("smtp-sink not found (apt-get install postfix)")
        with open(self.out, "w") as fh:
            self.proc = subprocess.Popen([exe, "-c", *user, "-m", "4000", f"127.0.0.1:{self.port}",
                                          "4096"], stdout=fh, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        wait_port(self.port, self.proc)

    def count(self) -> int:
        try:
            with open(self.out, "rb") as fh:
                fh.seek(0, 2)
                fh.seek(max(0, fh.tell() - 512))
                tail = fh.read().decode(errors="replace")
        except OSError:
            return 0
        marks = [p for p in tail.replace("\r", " ").split() if p.startswith("mesg=")]
        for mark in reversed(marks):
            try:
                return int(mark[5:])
            except ValueError:
                continue
        return 0

    def wait(self, n: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.count()
            if got >= n:
                return got
            time.sleep(0.02)
        return self.count()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def config(d: str, port: int, sink: int, variant: str) -> str:
    return f"""
pidfile = "{d}/ecelerity.pid"
spoolbase = "{d}/spool"
relay_hosts = ( "127.0.0.0/8" )
max_outbound_connections = 20
Gateway = "127.0.0.1:{sink}"
ESMTP_Listener {{
  SMTP_Extensions = ( "ENHANCEDSTATUSCODES" "PIPELINING" "8BITMIME" "SIZE" )
  Listen "127.0.0.1:{port}" {{ }}
}}
Control_Listener {{ Listen "{d}/ctl" {{ }} }}
{LOGGING[variant]}"""


def source(port: int, count: int, conc: int, size: int, timeout: float) -> None:
    exe = shutil.which("smtp-source", path=os.environ.get("PATH", "") + ":/usr/sbin")
    if not exe:
        raise SystemExit("smtp-source not found (apt-get install postfix)")
    subprocess.run([exe, "-d", "-s", str(conc), "-m", str(count), "-l", str(size), "-N",
                    "-f", "sender@perf.test", "-M", "perf.test", "-t", "rcpt@example.test",
                    f"127.0.0.1:{port}"], check=True, capture_output=True, timeout=timeout)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (and its reaped children), from /proc."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def run_once(workdir: str, sink: Sink, variant: str, a) -> tuple[float, float]:
    d = os.path.join(workdir, f"ecmta-{variant}")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    port = free_port()
    conf = os.path.join(d, "ecelerity.conf")
    with open(conf, "w") as fh:
        fh.write(config(d, port, sink.port, variant))
    err = open(os.path.join(d, "stderr.log"), "ab")
    proc = subprocess.Popen([sys.executable, "-m", "ecmta", "-d", "-c", conf], cwd=d,
                            env=dict(os.environ, ECMTA_HOME=d), stdout=err, stderr=err,
                            stdin=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
        base = sink.count()
        source(port, a.warmup, min(a.conc, a.warmup), a.size, a.timeout)
        if sink.wait(base + a.warmup, 120) < base + a.warmup:
            raise RuntimeError(f"{variant}: the warm-up did not reach the sink")
        base = sink.count()
        c0 = cpu_seconds(proc.pid)
        t0 = time.monotonic()
        source(port, a.count, a.conc, a.size, a.timeout)
        got = sink.wait(base + a.count, a.timeout) - base
        secs = time.monotonic() - t0
        cpu_ms = 1000 * (cpu_seconds(proc.pid) - c0) / a.count
        if got < a.count:
            raise RuntimeError(f"{variant}: {got} of {a.count} messages reached the sink")
        if variant in ("logged", "events"):
            from ecmta.loggers.jlog import Jlog
            jl = os.path.join(d, "streams", "events.jlog")
            deadline = time.monotonic() + 30       # the last D records may still be on their way
            while (lag := Jlog(jl).lag("bench")) < 2 * (a.count + a.warmup) and \
                    time.monotonic() < deadline:
                time.sleep(0.1)
            if lag < 2 * (a.count + a.warmup):
                raise RuntimeError(f"events stream has {lag} records, expected "
                                   f"{2 * (a.count + a.warmup)}")
        return a.count / secs, cpu_ms
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        err.close()
        if not a.keep:
            shutil.rmtree(d, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=3000)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--conc", type=int, default=50)
    p.add_argument("--size", type=int, default=5000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--variants", default="none,logged")
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--keep", action="store_true")
    a = p.parse_args(argv)
    variants = [v.strip() for v in a.variants.split(",") if v.strip()]
    if "none" not in variants:
        variants.insert(0, "none")
    workdir = tempfile.mkdtemp(prefix="ecmta-logcost-", dir="/tmp")
    sink = Sink(workdir)
    results: dict[str, list[float]] = {v: [] for v in variants}
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    try:
        for rep in range(a.reps):
            order = variants[rep % len(variants):] + variants[:rep % len(variants)]
            for v in order:
                rate, cpu_ms = run_once(workdir, sink, v, a)
                results[v].append(rate)
                cpu[v].append(cpu_ms)
                print(f"rep {rep + 1} {v:7s} {rate:8.1f} msgs/s  {cpu_ms:.3f} CPU ms/msg", flush=True)
    finally:
        sink.stop()
        if not a.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"\n{a.count} x {a.size} B messages, {a.conc} sessions, {a.reps} repetitions "
          f"({os.cpu_count()} CPUs)")
    print(f"{'variant':8s} {'msgs/s':>8s} {'throughput cost vs none':>30s} {'CPU ms/msg':>11s} "
          f"{'CPU cost':>9s}   (medians; per-repetition min..max)")
    cpu_none = statistics.median(cpu["none"])
    for v in variants:
        rates = results[v]
        med_cpu = statistics.median(cpu[v])
        if v == "none":
            print(f"{v:8s} {statistics.median(rates):8.1f} {'':>30s} {med_cpu:11.3f}")
            continue
        costs = [1 - r / n for r, n in zip(rates, results["none"])]
        span = f"({100 * min(costs):.1f} .. {100 * max(costs):.1f})"
        print(f"{v:8s} {statistics.median(rates):8.1f} {100 * statistics.median(costs):9.1f} % "
              f"{span:>18s} {med_cpu:11.3f} {100 * (med_cpu / cpu_none - 1):8.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
