"""Side-by-side benchmark plumbing: a Postfix instance, an ecmta instance, smtp-source load,
smtp-sink counting, and process-tree RSS/CPU sampling. Loopback only; every run is bounded
by its message count and a timeout; everything started here is stopped here.

Postfix is configured like ../shared/tools/perf_anchor.sh (stock durability: cleanup
fsync()s every queue file), listening on 127.0.0.1 only, relaying everything to the sink;
`held=True` adds `defer_transports = smtp relay` so it only accepts (the accept-only
comparison of issue 3). ecmta gets the equivalent config: durable spool (force_fsync
default), relay for 127.0.0.0/8, every domain to the sink through a Gateway, mainlog on.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

RCPT_DOMAIN = "example.test"


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def ensure_postfix() -> None:
    if all(os.path.exists(p) for p in ("/usr/sbin/smtp-source", "/usr/sbin/smtp-sink", "/usr/sbin/postfix")):
        return
    if os.geteuid() != 0:
        raise SystemExit("Postfix is missing: run as root (it is installed from Debian) or install it")
    subprocess.run("echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections",
                   shell=True, check=True)
    subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-q", "postfix"], check=True, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


# -- process sampling ------------------------------------------------------------------------

def _children(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        if os.path.exists(f"/proc/{p}"):
            out.append(p)
        todo.extend(kids.get(p, []))
    return out


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            f = fh.read().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])   # utime stime cutime cstime
    except (OSError, ValueError, IndexError):
        return 0


class Sampler(threading.Thread):
    """Peak RSS (sum over the process tree) and CPU seconds of the tree while it runs."""

    def __init__(self, root_pid: int, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.root, self.interval = root_pid, interval
        self.peak_kb = 0
        self._halt = threading.Event()
        self._cpu0 = self._tree_cpu()
        self.cpu_s = 0.0

    def _tree_cpu(self) -> int:
        return sum(_cpu_ticks(p) for p in _children(self.root))

    def run(self) -> None:
        while not self._halt.is_set():
            self.peak_kb = max(self.peak_kb, sum(_rss_kb(p) for p in _children(self.root)))
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)
        self.cpu_s = (self._tree_cpu() - self._cpu0) / os.sysconf("SC_CLK_TCK")


# -- the sink ----------------------------------------------------------------------------------

class Sink:
    """Postfix's smtp-sink with a message counter (`-c`)."""

    def __init__(self, workdir: str) -> None:
        self.port = free_port()
        self.out = os.path.join(workdir, "sink.counter")
        self.proc = None

    def start(self) -> "Sink":
        fh = open(self.out, "w")
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        self.proc = subprocess.Popen(["smtp-sink", "-c", *user, f"127.0.0.1:{self.port}", "1024"],
                                     stdout=fh, stderr=subprocess.STDOUT)
        wait_port(self.port)
        return self

    def count(self) -> int:
        try:
            with open(self.out, "rb") as fh:
                fh.seek(0, 2)
                size = fh.tell()
                fh.seek(max(0, size - 256))
                tail = fh.read().decode(errors="replace")
        except OSError:
            return 0
        marks = [p for p in tail.replace("\r", " ").split() if p.startswith("mesg=")]
        return int(marks[-1][5:]) if marks else 0

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


# -- the systems under test --------------------------------------------------------------------

class Postfix:
    def __init__(self, workdir: str, sink_port: int, held: bool, tls: dict | None = None) -> None:
        self.dir = os.path.join(workdir, "postfix")
        self.port = free_port()
        self.sink_port, self.held, self.tls = sink_port, held, tls or {}

    def _main_cf(self) -> str:
        spool = os.path.join(self.dir, "spool")
        lines = [
            "compatibility_level = 3.6", f"queue_directory = {spool}",
            f"data_directory = {os.path.join(self.dir, 'data')}", "myhostname = pfx.perf.test",
            "mydomain = perf.test", "myorigin = $myhostname", "mydestination =",
            "local_transport = error:no local delivery", "alias_maps =", "alias_database =",
            "local_recipient_maps =", "inet_interfaces = 127.0.0.1", "inet_protocols = ipv4",
            "mynetworks = 127.0.0.0/8", "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination",
            f"relayhost = [127.0.0.1]:{self.sink_port}", "default_transport = smtp",
            "relay_transport = smtp", "smtp_host_lookup = native", "biff = no",
            "append_dot_mydomain = no", "notify_classes =",
            f"maillog_file_prefixes = /var, /dev/stdout, {self.dir}",
            f"maillog_file = {os.path.join(self.dir, 'maillog')}",
        ]
        if self.held:
            lines.append("defer_transports = smtp relay")
        if self.tls.get("cert"):
            lines += [f"smtpd_tls_cert_file = {self.tls['cert']}", f"smtpd_tls_key_file = {self.tls['key']}",
                      "smtpd_tls_security_level = may"]
        if self.tls.get("outbound"):
            lines += ["smtp_tls_security_level = encrypt"]
        return "\n".join(lines) + "\n"

    def _master_cf(self) -> str:
        rows = [
            f"127.0.0.1:{self.port} inet n - n - - smtpd", "pickup unix n - n 60 1 pickup",
            "cleanup unix n - n - 0 cleanup", "qmgr unix n - n 300 1 qmgr",
            "rewrite unix - - n - - trivial-rewrite", "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce", "trace unix - - n - 0 bounce", "verify unix - - n - 1 verify",
            "flush unix n - n 1000? 0 flush", "proxymap unix - - n - - proxymap",
            "proxywrite unix - - n - 1 proxymap", "smtp unix - - n - - smtp", "relay unix - - n - - smtp",
            "showq unix n - n - - showq", "error unix - - n - - error", "retry unix - - n - - error",
            "discard unix - - n - - discard", "anvil unix - - n - 1 anvil", "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd",
        ]
        return "\n".join(rows) + "\n"

    def start(self) -> "Postfix":
        etc = os.path.join(self.dir, "etc")
        os.makedirs(etc, exist_ok=True)
        os.makedirs(os.path.join(self.dir, "spool"), exist_ok=True)
        os.makedirs(os.path.join(self.dir, "data"), exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(os.path.join(self.dir, "data"), "postfix")
        with open(os.path.join(etc, "main.cf"), "w") as fh:
            fh.write(self._main_cf())
        with open(os.path.join(etc, "master.cf"), "w") as fh:
            fh.write(self._master_cf())
        subprocess.run(["postfix", "-c", etc, "check"], check=True)
        p = subprocess.run(["postfix", "-c", etc, "start"], capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"postfix start failed: {p.stdout}{p.stderr}")
        wait_port(self.port)
        return self

    @property
    def pid(self) -> int:
        with open(os.path.join(self.dir, "spool", "pid", "master.pid")) as fh:
            return int(fh.read().strip())

    def queued(self) -> int:
        n = 0
        for sub in ("incoming", "active", "deferred", "hold", "maildrop"):
            for _root, _dirs, files in os.walk(os.path.join(self.dir, "spool", sub)):
                n += len(files)
        return n

    def purge(self) -> None:
        subprocess.run(["postsuper", "-c", os.path.join(self.dir, "etc"), "-d", "ALL"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", os.path.join(self.dir, "etc"), "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Ecmta:
    def __init__(self, workdir: str, sink_port: int, held: bool, extra: str = "") -> None:
        self.dir = os.path.join(workdir, "ecmta")
        self.port = free_port()
        self.sink_port, self.held, self.extra = sink_port, held, extra
        self.proc = None

    def config(self) -> str:
        d = self.dir
        return f"""
pidfile = "{d}/ecelerity.pid"
spoolbase = "{d}/spool"
relay_hosts = ( "127.0.0.0/8" )
Gateway = "127.0.0.1:{self.sink_port}"
ESMTP_Listener {{
  SMTP_Extensions = ( "ENHANCEDSTATUSCODES" "PIPELINING" "8BITMIME" "SIZE" )
  Listen "127.0.0.1:{self.port}" {{ }}
}}
Control_Listener {{ Listen "{d}/ctl" {{ }} }}
ec_logger "ec_logger" {{
  mainlog = "{d}/log/mainlog.ec"
  rejectlog = "{d}/log/rejectlog.ec"
  paniclog = "{d}/log/paniclog.ec"
}}
{self.extra}
"""

    def start(self) -> "Ecmta":
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        conf = os.path.join(self.dir, "ecelerity.conf")
        with open(conf, "w") as fh:
            fh.write(self.config())
        cmd = [sys.executable, "-m", "ecmta", "-d", "-c", conf] + (["-n", "queue"] if self.held else [])
        self.proc = subprocess.Popen(cmd, env=dict(os.environ, ECMTA_HOME=self.dir),
                                     stdout=open(os.path.join(self.dir, "stderr.log"), "w"),
                                     stderr=subprocess.STDOUT)
        wait_port(self.port)
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def accepted(self) -> int:
        try:
            with open(os.path.join(self.dir, "log", "mainlog.ec"), "rb") as fh:
                return sum(1 for line in fh if b"@R@" in line)
        except OSError:
            return 0


# -- one run ------------------------------------------------------------------------------------

@dataclass
class Run:
    system: str
    scenario: str
    count: int
    size: int
    conc: int
    accept_s: float = 0.0
    e2e_s: float | None = None
    ok: bool = False
    rss_mb: float = 0.0
    cpu_s: float = 0.0
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def rate(self) -> float:
        secs = self.e2e_s if self.e2e_s is not None else self.accept_s
        return self.count / secs if secs else 0.0


def smtp_source(port: int, count: int, size: int, conc: int, timeout: float, tls: bool = False,
                recipients: int = 1, domains: int = 0) -> tuple[float, int, str]:
    """Run smtp-source; (seconds, return code, last stderr line)."""
    cmd = ["smtp-source", "-d", "-s", str(conc), "-m", str(count), "-l", str(size), "-N",
           "-f", "sender@perf.test", "-M", "perf.test"]
    if recipients > 1:
        cmd += ["-r", str(recipients)]
    cmd += ["-t", f"rcpt@{RCPT_DOMAIN}"]
    if tls:
        cmd.insert(1, "-T")
    cmd.append(f"127.0.0.1:{port}")
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return time.monotonic() - t0, -1, "timeout"
    err = p.stderr.strip().splitlines()
    return time.monotonic() - t0, p.returncode, err[-1] if err else ""


def summarize(runs: list[Run]) -> list[dict]:
    rows = []
    keys = sorted({(r.scenario, r.conc) for r in runs})
    for scen, conc in keys:
        for system in ("postfix", "ecmta"):
            rs = [r for r in runs if r.scenario == scen and r.conc == conc and r.system == system]
            if not rs:
                continue
            rates = [r.rate for r in rs if r.ok]
            rows.append({"scenario": scen, "conc": conc, "system": system, "runs": len(rs),
                         "failed": sum(1 for r in rs if not r.ok),
                         "median": statistics.median(rates) if rates else 0.0,
                         "min": min(rates) if rates else 0.0, "max": max(rates) if rates else 0.0,
                         "peak_rss_mb": max(r.rss_mb for r in rs),
                         "cpu_ms_per_msg": statistics.median([1000 * r.cpu_s / r.count for r in rs])})
    # ratio per pair: ecmta median / postfix median
    for row in rows:
        if row["system"] == "ecmta":
            pf = [x for x in rows if x["scenario"] == row["scenario"] and x["conc"] == row["conc"]
                  and x["system"] == "postfix"]
            row["ratio"] = row["median"] / pf[0]["median"] if pf and pf[0]["median"] else None
    return rows


def table(rows: list[dict]) -> str:
    out = ["| scenario | conc | system | msgs/s median | min–max | runs (failed) | peak RSS MB | CPU ms/msg | ecmta/Postfix |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{r['ratio']:.2f}" if r.get("ratio") else ""
        out.append(f"| {r['scenario']} | {r['conc']} | {r['system']} | {r['median']:.0f} | "
                   f"{r['min']:.0f}–{r['max']:.0f} | {r['runs']} ({r['failed']}) | {r['peak_rss_mb']:.0f} | "
                   f"{r['cpu_ms_per_msg']:.2f} | {ratio} |")
    return "\n".join(out)


def machine() -> str:
    import platform
    cpu = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), {platform.platform()}, Python {platform.python_version()}"


def write_results(path: str, runs: list[Run], rows: list[dict]) -> None:
    with open(path, "w") as fh:
        json.dump({"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                   "runs": [r.__dict__ for r in runs], "summary": rows}, fh, indent=1)


def workdir() -> str:
    d = tempfile.mkdtemp(prefix="ecbench-", dir="/tmp")
    os.chmod(d, 0o755)          # Postfix's daemons run as `postfix` and must reach the spool
    return d
