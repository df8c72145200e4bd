"""Side-by-side benchmark plumbing: a Postfix instance, an ecmta instance, the sinks, a local
DNS server, the load generators, process-tree memory/CPU sampling and the summary.

Loopback only; every run is bounded by its message count and a timeout; everything started
here is stopped here, by PID. See bench/README.md for what is measured and why the two
configurations are equivalent.

Postfix is configured like ../shared/tools/perf_anchor.sh (stock durability: cleanup
fsync()s every queue file; stock process limits), listening on 127.0.0.1 only. ecmta gets the
equivalent config: durable spool (force_fsync default), relay for 127.0.0.0/8, mainlog on,
and the same outbound concurrency per destination as Postfix's default (20).
"""

from __future__ import annotations

import datetime
import json
import os
import stat
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

BENCH = os.path.dirname(os.path.abspath(__file__))
RCPT_DOMAIN = "example.test"
SENDER = "sender@perf.test"
# Postfix's default per-destination concurrency, given to ecmta too (README "Equivalence").
# The server-wide caps stay at each system's default: Postfix limits delivery *processes*
# (default_process_limit 100; idle cached connections live in scache and do not count), while
# ecmta's server_max_outbound_connections (default 20000) counts open connections, idle ones
# included (idle_timeout 5 s), so capping it at 100 would not be the same limit.
PER_DESTINATION_CONNECTIONS = 20      # Postfix default_destination_concurrency_limit


# -- ports and tools -----------------------------------------------------------------------------

def port_free(port: int, udp: bool = False) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port() -> int:
    """A TCP port free on 127.0.0.1 whose UDP twin is free too (dnsmasq wants both)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port_free(port, udp=True):
            return port
    raise RuntimeError("no free port on 127.0.0.1")


def wait_port(port: int, timeout: float = 30, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args[:3]} exited with {proc.returncode} before listening")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def _apt_install(*packages: str) -> None:
    if os.geteuid() != 0:
        raise SystemExit(f"missing {' '.join(packages)}: run as root (installed from Debian) or install it")
    subprocess.run("echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections",
                   shell=True, check=True)
    subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-q", *packages], check=True, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def ensure_tools(dns: bool = False) -> None:
    """Postfix (with smtp-source/smtp-sink) and, for the DNS scenario, dnsmasq, from Debian.
    dnsmasq-base only: the `dnsmasq` package would start a system resolver on port 53."""
    if not all(os.path.exists(p) for p in ("/usr/sbin/smtp-source", "/usr/sbin/smtp-sink", "/usr/sbin/postfix")):
        _apt_install("postfix")
    if dns and not dnsmasq_path():
        _apt_install("dnsmasq-base")


def dnsmasq_path() -> str | None:
    return shutil.which("dnsmasq", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def stop_process(proc: subprocess.Popen | None, timeout: float = 30) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


# -- certificates ----------------------------------------------------------------------------------

@dataclass
class Certs:
    ca: str
    cert: str
    key: str


def make_certs(directory: str) -> Certs:
    """A self-signed CA and a server certificate (CN/SAN localhost, 127.0.0.1), EC P-256."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    os.makedirs(directory, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def issue(cn, issuer=None, ca=False):
        key = ec.generate_private_key(ec.SECP256R1())
        b = (x509.CertificateBuilder().subject_name(name(cn))
             .issuer_name(issuer[0].subject if issuer else name(cn)).public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ca:
            b = b.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        else:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(cn), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        return b.sign(issuer[1] if issuer else key, hashes.SHA256()), key

    def write(stem, cert, key):
        c, k = os.path.join(directory, stem + ".pem"), os.path.join(directory, stem + ".key")
        with open(c, "wb") as fh:
            fh.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(k, "wb") as fh:
            fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
        os.chmod(k, 0o644)        # Postfix reads it as root; the sink runs as us
        return c, k

    ca = issue("ecmta bench CA", ca=True)
    ca_path, _ = write("ca", *ca)
    cert, key = write("server", *issue("localhost", ca))
    return Certs(ca_path, cert, key)


# -- process sampling --------------------------------------------------------------------------------

def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""


def tree_pids(root: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        st = _read(f"/proc/{d}/stat")
        try:
            ppid = int(st.rsplit(")", 1)[1].split()[1])
        except (ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        if os.path.exists(f"/proc/{p}"):
            out.append(p)
        todo.extend(kids.get(p, []))
    return out


def _kb(text: str, key: str) -> int:
    for line in text.splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    return 0


def _cpu_ticks(pid: int) -> int:
    f = _read(f"/proc/{pid}/stat").rsplit(")", 1)
    try:
        v = f[1].split()
        return int(v[11]) + int(v[12]) + int(v[13]) + int(v[14])   # utime stime cutime cstime
    except (ValueError, IndexError):
        return 0


def established(port: int) -> int:
    """Established TCP connections whose local port is `port` (server side), IPv4 loopback."""
    hexport = f":{port:04X}"
    n = 0
    for line in _read("/proc/net/tcp").splitlines()[1:]:
        parts = line.split()
        if len(parts) > 3 and parts[1].endswith(hexport) and parts[3] == "01":
            n += 1
    return n


class Sampler(threading.Thread):
    """Peaks of the process tree under `root`: RSS summed over the processes, PSS summed
    (smaps_rollup: shared pages split between the processes sharing them, the fair figure for a
    multi-process MTA), the process count, and optionally the established sessions on `port`.
    CPU seconds of the tree (user+system, children reaped into it included) since `mark()`."""

    def __init__(self, root_pid: int, interval: float = 0.25, port: int | None = None) -> None:
        super().__init__(daemon=True)
        self.root, self.interval, self.port = root_pid, interval, port
        self.peak_rss_kb = self.peak_pss_kb = self.peak_procs = self.peak_sessions = 0
        self._halt = threading.Event()
        self._cpu0 = self._tree_cpu()
        self.cpu_s = 0.0

    def _tree_cpu(self) -> int:
        return sum(_cpu_ticks(p) for p in tree_pids(self.root))

    def mark(self) -> None:
        self._cpu0 = self._tree_cpu()

    def sample(self) -> None:
        pids = tree_pids(self.root)
        rss = pss = 0
        for p in pids:
            rss += _kb(_read(f"/proc/{p}/status"), "VmRSS:")
            pss += _kb(_read(f"/proc/{p}/smaps_rollup"), "Pss:")
        self.peak_rss_kb = max(self.peak_rss_kb, rss)
        self.peak_pss_kb = max(self.peak_pss_kb, pss)
        self.peak_procs = max(self.peak_procs, len(pids))
        if self.port:
            self.peak_sessions = max(self.peak_sessions, established(self.port))

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self.cpu_s = (self._tree_cpu() - self._cpu0) / os.sysconf("SC_CLK_TCK")
        self._halt.set()
        self.join(10)
        self.sample()


# -- sinks -------------------------------------------------------------------------------------

class Sink:
    """Postfix's smtp-sink with its message counter (`-c`): the end of every relay run."""

    kind = "smtp-sink"

    def __init__(self, workdir: str) -> None:
        self.port = free_port()
        self.out = os.path.join(workdir, f"{self.kind}-{self.port}.counter")
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        # -m: smtp-sink serves at most 256 connections at once by default and leaves the rest in
        # the listen queue, which throttles an MTA that keeps idle connections open to 1 000 MXes
        return ["smtp-sink", "-c", *user, "-m", "4000", f"127.0.0.1:{self.port}", "4096"]

    def start(self) -> "Sink":
        with open(self.out, "w") as fh:
            self.proc = subprocess.Popen(self.command(), stdout=fh, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        wait_port(self.port, proc=self.proc)
        return self

    def _tail(self) -> str:
        try:
            with open(self.out, "rb") as fh:
                fh.seek(0, 2)
                size = fh.tell()
                fh.seek(max(0, size - 512))
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def _last(self, key: str) -> int:
        marks = [p for p in self._tail().replace("\r", " ").split() if p.startswith(key + "=")]
        try:
            return int(marks[-1][len(key) + 1:]) if marks else 0
        except ValueError:            # a line being written
            return int(marks[-2][len(key) + 1:]) if len(marks) > 1 else 0

    def count(self) -> int:
        return self._last("mesg")

    def tls_count(self) -> int | None:
        return None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        stop_process(self.proc, 10)


class PySink(Sink):
    """bench/pysink.py: the same counter, with STARTTLS (smtp-sink has no TLS)."""

    kind = "pysink"

    def __init__(self, workdir: str, certs: Certs | None = None) -> None:
        super().__init__(workdir)
        self.certs = certs

    def command(self) -> list[str]:
        cmd = [sys.executable, os.path.join(BENCH, "pysink.py"), "--port", str(self.port)]
        if self.certs:
            cmd += ["--cert", self.certs.cert, "--key", self.certs.key]
        return cmd

    def tls_count(self) -> int | None:
        return self._last("tls")


# -- DNS ---------------------------------------------------------------------------------------

class Dnsmasq:
    """dnsmasq answering for d0.test .. d<N-1>.test: MX 10 mx.dK.test, mx.dK.test A 127.0.0.1,
    TTL 3600 (so a resolver may cache, as a local caching resolver would let it). It listens
    on 127.0.0.1:53 when that port is free, so that Postfix's chrooted smtp client can use it
    through a resolv.conf of its own (glibc's resolv.conf cannot name a port); otherwise on a
    free port, and `on_53` is False."""

    def __init__(self, workdir: str, domains: int) -> None:
        self.domains = domains
        self.dir = os.path.join(workdir, "dnsmasq")
        self.on_53 = port_free(53, udp=True) and port_free(53)
        self.port = 53 if self.on_53 else free_port()
        self.proc: subprocess.Popen | None = None

    def names(self) -> list[str]:
        return [f"d{i}.test" for i in range(self.domains)]

    def start(self) -> "Dnsmasq":
        os.makedirs(self.dir, exist_ok=True)
        conf = os.path.join(self.dir, "dnsmasq.conf")
        with open(conf, "w") as fh:
            for d in self.names():
                fh.write(f"mx-host={d},mx.{d},10\nhost-record=mx.{d},127.0.0.1\n")
        exe = dnsmasq_path()
        if not exe:
            raise SystemExit("dnsmasq is missing (apt-get install dnsmasq-base)")
        self.proc = subprocess.Popen(
            [exe, "--keep-in-foreground", f"--conf-file={conf}", f"--port={self.port}",
             "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
             "--no-poll", "--local=/test/", "--local-ttl=3600", "--cache-size=10000", "--pid-file=",
             "--log-facility=-"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, "stderr.log"), "w"))
        import dns.resolver
        res = dns.resolver.Resolver(configure=False)
        res.nameservers, res.port, res.lifetime = ["127.0.0.1"], self.port, 0.5
        deadline = time.monotonic() + 15
        while True:
            try:
                res.resolve("d0.test", "MX")
                return self
            except Exception:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"dnsmasq did not answer on 127.0.0.1:{self.port}")
                time.sleep(0.1)

    def stop(self) -> None:
        stop_process(self.proc, 10)


# -- the systems under test ----------------------------------------------------------------------

@dataclass
class Setup:
    """What a scenario asks of an MTA; each system turns it into its own configuration."""
    sink_port: int
    held: bool = False                 # accept only: nothing is delivered
    tls_in: Certs | None = None        # offer STARTTLS with this certificate
    tls_out: bool = False              # relay over TLS (required; certificate not verified)
    dns: Dnsmasq | None = None         # no gateway: route by MX through this dnsmasq
    lua: bool = False                  # ecmta: the header-touching scriptlet; Postfix: header_checks
    sessions: int = 0                  # Postfix: smtpd process limit for this many sessions
    extra: str = ""                    # ecmta: extra config text


class Postfix:
    name = "postfix"

    def __init__(self, workdir: str, setup: Setup, tag: str = "") -> None:
        self.dir = os.path.join(workdir, f"postfix{tag}")
        self.etc = os.path.join(self.dir, "etc")
        self.spool = os.path.join(self.dir, "spool")
        self.port = free_port()
        self.s = setup
        self.transport_map = False

    def main_cf(self) -> str:
        s = self.s
        lines = [
            "compatibility_level = 3.6", f"queue_directory = {self.spool}",
            f"data_directory = {os.path.join(self.dir, 'data')}", "myhostname = pfx.perf.test",
            "mydomain = perf.test", "myorigin = $myhostname", "mydestination =",
            "local_transport = error:no local delivery", "alias_maps =", "alias_database =",
            "local_recipient_maps =", "inet_interfaces = 127.0.0.1", "inet_protocols = ipv4",
            "mynetworks = 127.0.0.0/8", "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination",
            "default_transport = smtp", "relay_transport = smtp", "biff = no",
            "append_dot_mydomain = no", "notify_classes =",
            f"maillog_file_prefixes = /var, /dev/stdout, {self.dir}",
            f"maillog_file = {os.path.join(self.dir, 'maillog')}",
        ]
        if s.dns is None:
            lines += [f"relayhost = [127.0.0.1]:{s.sink_port}", "smtp_host_lookup = native"]
        elif s.dns.on_53:
            # MX lookups through the chrooted smtp client's own etc/resolv.conf -> dnsmasq:53
            lines += ["relayhost =", "smtp_host_lookup = dns", f"smtp_tcp_port = {s.sink_port}"]
        else:
            self.transport_map = True
            lines += ["relayhost =", f"transport_maps = texthash:{os.path.join(self.etc, 'transport')}"]
        if s.held:
            lines.append("defer_transports = smtp relay")
        if s.tls_in:
            lines += [f"smtpd_tls_cert_file = {s.tls_in.cert}", f"smtpd_tls_key_file = {s.tls_in.key}",
                      "smtpd_tls_security_level = may"]
        if s.tls_out:
            lines += ["smtp_tls_security_level = encrypt", "smtp_tls_connection_reuse = yes"]
        if s.lua:
            lines.append(f"header_checks = regexp:{os.path.join(self.etc, 'header_checks')}")
        return "\n".join(lines) + "\n"

    def master_cf(self) -> str:
        chroot_smtp = "y" if (self.s.dns is not None and self.s.dns.on_53) else "n"
        smtpd_max = str(self.s.sessions) if self.s.sessions else "-"
        rows = [
            f"127.0.0.1:{self.port} inet n - n - {smtpd_max} smtpd", "pickup unix n - n 60 1 pickup",
            "cleanup unix n - n - 0 cleanup", "qmgr unix n - n 300 1 qmgr",
            "rewrite unix - - n - - trivial-rewrite", "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce", "trace unix - - n - 0 bounce", "verify unix - - n - 1 verify",
            "flush unix n - n 1000? 0 flush", "proxymap unix - - n - - proxymap",
            "proxywrite unix - - n - 1 proxymap", f"smtp unix - - {chroot_smtp} - - smtp",
            f"relay unix - - {chroot_smtp} - - smtp", "showq unix n - n - - showq",
            "error unix - - n - - error", "retry unix - - n - - error",
            "discard unix - - n - - discard", "anvil unix - - n - 1 anvil", "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd", "tlsmgr unix - - n 1000? 1 tlsmgr",
            "tlsproxy unix - - n - 0 tlsproxy",
        ]
        return "\n".join(rows) + "\n"

    def _write(self, name: str, text: str) -> None:
        with open(os.path.join(self.etc, name), "w") as fh:
            fh.write(text)

    def start(self) -> "Postfix":
        shutil.rmtree(self.dir, ignore_errors=True)
        for d in (self.etc, self.spool, os.path.join(self.dir, "data")):
            os.makedirs(d)
        if os.geteuid() == 0:
            shutil.chown(os.path.join(self.dir, "data"), "postfix")
        self._write("main.cf", self.main_cf())
        self._write("master.cf", self.master_cf())
        if self.s.lua:
            self._write("header_checks", "/^Subject:/ PREPEND X-Bench-Data: seen\n"
                                         "/^Message-Id:/ PREPEND X-Bench-Spool: yes\n"
                                         "/^To:/ PREPEND X-Bench-Rcpt: seen\n")
        if self.transport_map:
            self._write("transport", "".join(f"{d} smtp:[127.0.0.1]:{self.s.sink_port}\n"
                                             for d in self.s.dns.names()))
        if self.s.dns is not None and self.s.dns.on_53:
            chroot_etc = os.path.join(self.spool, "etc")
            os.makedirs(chroot_etc)
            for f in ("services", "hosts", "localtime", "nsswitch.conf", "host.conf"):
                if os.path.exists("/etc/" + f):
                    shutil.copy("/etc/" + f, chroot_etc)
            with open(os.path.join(chroot_etc, "resolv.conf"), "w") as fh:
                fh.write("nameserver 127.0.0.1\noptions attempts:2 timeout:2\n")
        # `postfix start` makes the queue directories and checks the configuration itself
        # (a separate `postfix check` would cost seconds per run)
        p = subprocess.run(["postfix", "-c", self.etc, "start"], capture_output=True, text=True)
        if p.returncode != 0:
            chk = subprocess.run(["postfix", "-c", self.etc, "check"], capture_output=True, text=True)
            raise RuntimeError(f"postfix start failed: {p.stdout}{p.stderr}{chk.stdout}{chk.stderr}")
        wait_port(self.port)
        return self

    @property
    def pid(self) -> int:
        with open(os.path.join(self.spool, "pid", "master.pid")) as fh:
            return int(fh.read().strip())

    def accepted(self) -> int:
        # cleanup sets the owner-execute bit once a queue file is complete; a file still
        # being written (without it) is not a message yet
        n = 0
        for sub in ("incoming", "active", "deferred", "hold", "maildrop"):
            for root, _dirs, files in os.walk(os.path.join(self.spool, sub)):
                for name in files:
                    try:
                        if os.stat(os.path.join(root, name)).st_mode & stat.S_IXUSR:
                            n += 1
                    except OSError:
                        pass
        return n

    def problems(self) -> str:
        """Warnings/fatal lines of the maillog (counted), for the run's note."""
        text = _read(os.path.join(self.dir, "maillog"))
        # not counted: this machine's clock skew (cleanup then resets file times, on every
        # message: README "Caveats"), and the chroot resolv.conf that the DNS scenario sets on purpose
        benign = ("file system clock", "resetting file time stamps", "resolv.conf differ")
        bad = [ln for ln in text.splitlines() if (" fatal: " in ln or " panic: " in ln or " warning: " in ln)
               and not any(b in ln for b in benign)]
        return f"{len(bad)} maillog warnings, first: {bad[0][-160:]}" if bad else ""

    def stop(self) -> None:
        try:
            pid = self.pid
        except (OSError, ValueError):
            pid = None
        subprocess.run(["postfix", "-c", self.etc, "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while pid and os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.05)


LUA_POLICY = """\
-- bench policy: work in every phase; headers read and written wherever a message exists
require("msys.core");
require("msys.extended.message");
require("msys.extended.vctx");
local mod = {};
local C, M = msys.core.VCTX_CONN, msys.core.VCTX_MESS
local CONT = msys.core.VALIDATE_CONT

function mod:validate_connect(ac, vctx)
  vctx:set(C, "bench", "connect")
  return CONT
end
function mod:validate_ehlo(str, ac, vctx)
  vctx:set(C, "bench_ehlo", tostring(str))
  return CONT
end
function mod:validate_mailfrom(str, ac, vctx)
  vctx:set(M, "bench_from", tostring(str))
  return CONT
end
function mod:validate_rcptto(msg, str, ac, vctx)
  vctx:set(M, "bench_rcpt", tostring(str))
  return CONT
end
function mod:validate_data(msg, ac, vctx)
  local subj = (msg:header("Subject") or {})[1] or ""
  msg:header("X-Bench-Data", "from=" .. (vctx:get(M, "bench_from") or "") .. " subject=" .. subj)
  return CONT
end
function mod:validate_data_spool(msg, ac, vctx)
  local mid = (msg:header("Message-Id") or {})[1] or ""
  msg:header("X-Bench-Spool", "id=" .. mid)
  return CONT
end
function mod:validate_data_spool_each_rcpt(msg, ac, vctx)
  msg:header("X-Bench-Rcpt", msg:rcptto())
  return CONT
end
function mod:validate_set_binding(msg)
  local seen = (msg:header("X-Bench-Data") or {})[1]
  if seen == nil then error("X-Bench-Data missing") end
  return CONT
end
function mod:core_final_validation(msg, ac, vctx)
  msg:header("X-Bench-Final", "ok")
  return CONT
end
msys.registerModule("bench", mod);
"""


class Ecmta:
    name = "ecmta"

    def __init__(self, workdir: str, setup: Setup, tag: str = "") -> None:
        self.dir = os.path.join(workdir, f"ecmta{tag}")
        self.port = free_port()
        self.s = setup
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self.argv_prefix: list[str] = [sys.executable]      # profile mode swaps in cProfile

    @property
    def ctl(self) -> str:
        return os.path.join(self.dir, "ctl")

    @property
    def paniclog_path(self) -> str:
        return os.path.join(self.dir, "log", "paniclog.ec")

    def config(self) -> str:
        d, s = self.dir, self.s
        ext = '"ENHANCEDSTATUSCODES" "PIPELINING" "8BITMIME" "SIZE"' + (' "STARTTLS"' if s.tls_in else "")
        listen_tls = (f'    TLS_Certificate = "{s.tls_in.cert}"\n    TLS_Key = "{s.tls_in.key}"\n'
                      if s.tls_in else "")
        if s.dns is None:
            route = f'Gateway = "127.0.0.1:{s.sink_port}"\n'
        else:
            with open(os.path.join(d, "resolv.conf"), "w") as fh:
                fh.write(f"nameserver 127.0.0.1#{s.dns.port}\n")
            route = f'remote_smtp_port = {s.sink_port}\nresolv_conf = "{d}/resolv.conf"\n'
        tls_out = 'tls = required\ntls_verify = no\n' if s.tls_out else ""
        lua = ""
        if s.lua:
            with open(os.path.join(d, "bench_policy.lua"), "w") as fh:
                fh.write(LUA_POLICY)
            lua = 'scriptlet "scriptlet" {\n  script "bench" { source = "bench_policy" }\n}\n'
        return f"""
pidfile = "{d}/ecelerity.pid"
spoolbase = "{d}/spool"
relay_hosts = ( "127.0.0.0/8" )
max_outbound_connections = {PER_DESTINATION_CONNECTIONS}
{route}{tls_out}ESMTP_Listener {{
  SMTP_Extensions = ( {ext} )
  Listen "127.0.0.1:{self.port}" {{
{listen_tls}  }}
}}
Control_Listener {{ Listen "{self.ctl}" {{ }} }}
ec_logger "ec_logger" {{
  mainlog = "{d}/log/mainlog.ec"
  rejectlog = "{d}/log/rejectlog.ec"
  paniclog = "{d}/log/paniclog.ec"
}}
{lua}{s.extra}
"""

    def prepare(self) -> str:
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        conf = os.path.join(self.dir, "ecelerity.conf")
        with open(conf, "w") as fh:
            fh.write(self.config())
        return conf

    def launch(self, conf: str | None = None, wait: bool = True) -> "Ecmta":
        """Start the daemon on an existing directory (a restart keeps the spool)."""
        conf = conf or os.path.join(self.dir, "ecelerity.conf")
        cmd = [*self.argv_prefix, "-m", "ecmta", "-d", "-c", conf] + (["-n", "queue"] if self.s.held else [])
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(cmd, env=dict(os.environ, ECMTA_HOME=self.dir), cwd=self.dir,
                                     stdout=open(os.path.join(self.dir, "stderr.log"), "a"),
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if wait:
            wait_port(self.port, timeout=60, proc=self.proc)
        return self

    def start(self) -> "Ecmta":
        return self.launch(self.prepare())

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 120) -> float:
        """SIGTERM and wait; the seconds it took."""
        t0 = time.monotonic()
        stop_process(self.proc, timeout)
        return time.monotonic() - t0

    def console(self, line: str, timeout: float = 30) -> str:
        from ecmta.transports.control_client import ControlClient
        client = ControlClient.connect(self.ctl, timeout=timeout)
        try:
            ok, text = client.command(line)
        finally:
            client.close()
        if not ok:
            raise RuntimeError(f"console {line!r}: {text}")
        return text

    def summary(self) -> dict:
        out = {}
        for line in self.console("summary").splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                out[k.strip()] = v.strip()
        return out

    def queued(self) -> int:
        return int(self.summary().get("Total Queue Size", "0").split()[0])

    def accepted(self) -> int:
        try:
            with open(os.path.join(self.dir, "log", "mainlog.ec"), "rb") as fh:
                return sum(1 for line in fh if b"@R@" in line)
        except OSError:
            return 0

    def problems(self) -> str:
        """ERROR/CRITICAL lines in the paniclog (count and the first), for the run's note."""
        text = _read(self.paniclog_path)
        bad = [ln for ln in text.splitlines()
               if ":start: ecelerity started" not in ln and "spool_in complete" not in ln]
        return f"{len(bad)} paniclog lines, first: {bad[0][:160]}" if bad else ""


# -- load ---------------------------------------------------------------------------------------

@dataclass
class Load:
    """How messages are sent: smtp-source where it can, bench/loadgen.py where it cannot
    (STARTTLS, many recipient domains)."""
    tool: str = "smtp-source"          # or "loadgen"
    size: int = 5000
    tls: bool = False
    domains: int = 0
    subject: str = ""
    wait: float = 0.0                  # smtp-source -w: seconds between messages of one session


@dataclass
class LoadResult:
    seconds: float
    ok: bool
    note: str = ""


def send(load: Load, port: int, count: int, conc: int, timeout: float) -> LoadResult:
    if load.tool == "loadgen":
        cmd = [sys.executable, os.path.join(BENCH, "loadgen.py"), "--port", str(port), "--count", str(count),
               "--conc", str(conc), "--size", str(load.size), "--timeout", str(timeout)]
        if load.tls:
            cmd.append("--tls")
        if load.domains:
            cmd += ["--domains", str(load.domains)]
        if load.subject:
            cmd += ["--subject", load.subject]
    else:
        if load.tls or load.domains:
            raise ValueError("smtp-source does neither STARTTLS nor many recipient domains: use loadgen")
        cmd = ["smtp-source", "-d", "-s", str(conc), "-m", str(count), "-l", str(load.size), "-N",
               "-f", SENDER, "-M", "perf.test", "-t", f"rcpt@{RCPT_DOMAIN}"]
        if load.subject:
            cmd += ["-S", load.subject]
        if load.wait:
            cmd += ["-w", str(int(load.wait))]
        cmd.append(f"127.0.0.1:{port}")
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return LoadResult(time.monotonic() - t0, False, f"{load.tool}: timeout after {timeout:.0f}s")
    secs = time.monotonic() - t0
    if load.tool == "loadgen":
        try:
            res = json.loads(p.stdout.strip().splitlines()[-1])
            secs = res["seconds"]
            note = f"loadgen sent {res['sent']}/{count}" + (f": {res['errors'][0]}" if res["errors"] else "")
        except (ValueError, IndexError, KeyError):
            note = f"loadgen: {p.stderr.strip()[-200:]}"
        return LoadResult(secs, p.returncode == 0, "" if p.returncode == 0 else note)
    err = p.stderr.strip().splitlines()
    return LoadResult(secs, p.returncode == 0, "" if p.returncode == 0 else f"smtp-source: {err[-1] if err else p.returncode}")


# -- one run and the summary ---------------------------------------------------------------------

@dataclass
class Run:
    system: str
    scenario: str
    count: int
    size: int
    conc: int
    rep: int
    accept_s: float = 0.0
    e2e_s: float | None = None
    ok: bool = False
    rss_mb: float = 0.0            # peak RSS summed over the system's processes
    pss_mb: float = 0.0            # peak PSS summed (what the processes really cost together)
    procs: int = 0
    sessions: int = 0
    cpu_s: float = 0.0
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def rate(self) -> float:
        secs = self.e2e_s if self.e2e_s is not None else self.accept_s
        return self.count / secs if secs else 0.0


def _pct(values: list[float]) -> tuple[float, float, float]:
    return (statistics.median(values), min(values), max(values)) if values else (0.0, 0.0, 0.0)


def summarize(runs: list[Run]) -> list[dict]:
    """One row per (scenario, concurrency, system): median/min/max msgs/s of the runs that
    passed, failures, peak memory, CPU per message, and for ecmta the ecmta/Postfix ratio of
    each pair of runs (same repetition) - median, min, max."""
    rows = []
    order = []
    for r in runs:
        if (r.scenario, r.conc) not in order:
            order.append((r.scenario, r.conc))
    systems = list(dict.fromkeys(["postfix", "ecmta"] + [r.system for r in runs]))
    for scen, conc in order:
        for system in systems:
            rs = [r for r in runs if r.scenario == scen and r.conc == conc and r.system == system]
            if not rs:
                continue
            rates = [r.rate for r in rs if r.ok]
            med, lo, hi = _pct(rates)
            row = {"scenario": scen, "conc": conc, "system": system, "runs": len(rs),
                   "failed": sum(1 for r in rs if not r.ok), "count": rs[0].count, "size": rs[0].size,
                   "median": med, "min": lo, "max": hi,
                   "peak_rss_mb": max(r.rss_mb for r in rs), "peak_pss_mb": max(r.pss_mb for r in rs),
                   "peak_procs": max(r.procs for r in rs), "peak_sessions": max(r.sessions for r in rs),
                   "cpu_ms_per_msg": statistics.median([1000 * r.cpu_s / r.count for r in rs if r.count])}
            if system == "ecmta":
                pf = {r.rep: r for r in runs if r.scenario == scen and r.conc == conc
                      and r.system == "postfix" and r.ok}
                ratios = [r.rate / pf[r.rep].rate for r in rs if r.ok and r.rep in pf and pf[r.rep].rate]
                if ratios:
                    row["ratio"], row["ratio_min"], row["ratio_max"] = _pct(ratios)
                    row["ratios"] = [round(x, 3) for x in ratios]
            rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    out = ["| scenario | conc | system | msgs/s median | min–max | runs (failed) | ecmta/Postfix median (min–max) "
           "| peak mem MB: PSS (RSS sum, procs) | CPU ms/msg |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = (f"{r['ratio']:.2f} ({r['ratio_min']:.2f}–{r['ratio_max']:.2f})" if r.get("ratio") else "")
        out.append(f"| {r['scenario']} | {r['conc']} | {r['system']} | {r['median']:.0f} | "
                   f"{r['min']:.0f}–{r['max']:.0f} | {r['runs']} ({r['failed']}) | {ratio} | "
                   f"{r['peak_pss_mb']:.0f} ({r['peak_rss_mb']:.0f}, {r['peak_procs']}) | "
                   f"{r['cpu_ms_per_msg']:.2f} |")
    return "\n".join(out)


def plot(rows: list[dict], path: str) -> str | None:
    """msgs/s against concurrency for every scenario run at more than one concurrency.
    Returns the path, or None (and says why) when there is nothing to plot or no matplotlib."""
    scens = [s for s in dict.fromkeys(r["scenario"] for r in rows)
             if len({r["conc"] for r in rows if r["scenario"] == s}) > 1]
    if not scens:
        return None
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no plot: matplotlib is not installed (pip install matplotlib, or the `bench` extra)")
        return None
    fig, axes = plt.subplots(1, len(scens), figsize=(6 * len(scens), 4.2), squeeze=False)
    for ax, scen in zip(axes[0], scens):
        for system, style in (("postfix", "s--"), ("ecmta", "o-")):
            rs = sorted((r for r in rows if r["scenario"] == scen and r["system"] == system and r["median"]),
                        key=lambda r: r["conc"])
            if not rs:
                continue
            x = [r["conc"] for r in rs]
            y = [r["median"] for r in rs]
            err = [[r["median"] - r["min"] for r in rs], [r["max"] - r["median"] for r in rs]]
            ax.errorbar(x, y, yerr=err, fmt=style, capsize=4, label=system)
        ax.set_xscale("log")
        ax.set_xticks(sorted({r["conc"] for r in rows if r["scenario"] == scen}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("concurrent sessions (smtp-source -s)")
        ax.set_ylabel("messages/s (median, bars min–max)")
        ax.set_title(f"{scen}: throughput against concurrency")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend()
    import textwrap
    fig.suptitle("\n".join(textwrap.wrap(machine(), 110)), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def machine() -> str:
    import platform
    cpu = ""
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = _kb(_read("/proc/meminfo"), "MemTotal:") // 1024
    pv = ""
    try:
        pv = subprocess.run(["postconf", "-d", "-h", "mail_version"], capture_output=True, text=True,
                            timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return (f"{os.cpu_count()} cores ({cpu}), {mem} MB RAM, {platform.platform()}, "
            f"Python {platform.python_version()}, Postfix {pv or '?'}")


def load_average() -> str:
    return " ".join(_read("/proc/loadavg").split(" ")[:3])


def write_results(path: str, payload: dict) -> None:
    with open(path, "w") as fh:
        json.dump(payload, fh, indent=1, default=lambda o: o.__dict__)


def workdir() -> str:
    d = tempfile.mkdtemp(prefix="ecbench-", dir="/tmp")
    os.chmod(d, 0o755)          # Postfix's daemons run as `postfix` and must reach the spool
    return d
