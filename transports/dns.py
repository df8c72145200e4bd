"""The DNS resolver service: cooperative lookups, the DNS cache and its statistics.

Owns: the nameserver list (from `resolv_conf` or /etc/resolv.conf), the query loop
(dnspython `dns.query.udp`, TCP only when a UDP answer was truncated and
`dns_fallback_to_tcp` is true), the DNS cache with positive and negative entries, in-flight
coalescing (many greenlets asking the same (name, type) share one query), the purge
greenlet (`dns_cache_purge_interval`) and the counters the console shows (`summary`,
`dns_cache stats`, `dns_cache refcnts`).

Talks to: nameservers over UDP/TCP. Used by `transports/routing.py` (delivery targets), the
console (`console/cmd_dns.py` through `daemon.dns`) and may serve `msys.dnsLookup`. The
daemon runs it as a service (`name`, `start`, `stop`, `apply_config`).

Runtime contract: every lookup runs in the calling greenlet. Under gevent's monkey patching
dnspython's sockets and selectors are cooperative, so a lookup waits without blocking the
hub; never use dns.asyncresolver here. In an unpatched process (command-line tools) a lookup
simply blocks its thread.

TTLs: every entry keeps the TTL the server gave and two views of it. The *delivery* view
(`delivery=True`: MX and host address lookups made to find SMTP destinations, and the
console's `X` / `X_AAAA` types) clamps it into [min_dns_ttl, max_dns_ttl]; the plain view
(Lua, DKIM, the console's A/MX/...) uses the server's TTL, as max_dns_ttl's page requires.
Negative answers (NXDOMAIN, NODATA) are cached for the SOA minimum (RFC 2308; dnspython's
300 s when the answer has no SOA), clamped the same way. Transient failures (SERVFAIL,
REFUSED, timeouts) are never cached. Queries carry EDNS0 with a 1232-byte payload; a
truncated UDP answer is retried over TCP only with `dns_fallback_to_tcp`, otherwise the
records that fitted are used (none fitted: SERVFAIL).

resolv.conf: `nameserver`, `options timeout:N attempts:N` (and Momentum's aliases
`retrans:N`, `retry:N`), `search`, `domain`, `sortlist`, `lookup`. resolv.conf(5) has no port
syntax; ecmta also accepts `nameserver 127.0.0.1#5353`, `nameserver 127.0.0.1:5353`,
`nameserver [::1]:5353` and `nameserver ::1#5353` (a bare IPv6 address means port 53).
`search`, `domain`, `sortlist` and `lookup` are read but not applied: mail domains are
always fully qualified, and the hosts file is not consulted.

How it fails: lookups never raise for DNS conditions; they return a `DnsResult` whose
`status` names the condition. A `resolv_conf` that cannot be read raises `OSError` at
construction (a config problem the daemon reports); a missing /etc/resolv.conf falls back
to 127.0.0.1:53 as libc does. An unknown record type raises ValueError (a caller bug). A
failing purge is written to the paniclog (subsystem "dns") and purging goes on.
"""

from __future__ import annotations

import ipaddress
import math
import time
from dataclasses import dataclass, field, replace

import dns.entropy
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import gevent
from gevent.event import AsyncResult

from ecmta.loggers.panic import panic

DEFAULT_RESOLV_CONF = "/etc/resolv.conf"
DEFAULT_TIMEOUT = 5.0          # resolv.conf(5) defaults
DEFAULT_ATTEMPTS = 2
MAX_TTL = 4294967295
EDNS_PAYLOAD = 1232            # the DNS-flag-day size: big enough for MX sets, no fragments

RTYPES = ("A", "AAAA", "MX", "TXT", "PTR", "CNAME", "NS")
# The console's dns_cache types: X and X_AAAA are the address lookups made for MX hosts,
# i.e. the delivery view of A and AAAA.
CONSOLE_TYPES = {"A": ("A", False), "AAAA": ("AAAA", False), "MX": ("MX", False),
                 "PTR": ("PTR", False), "TXT": ("TXT", False), "CNAME": ("CNAME", False),
                 "X": ("A", True), "X_AAAA": ("AAAA", True)}

NOERROR, NXDOMAIN, NODATA = "NOERROR", "NXDOMAIN", "NODATA"
SERVFAIL, TIMEOUT, BADNAME = "SERVFAIL", "TIMEOUT", "BADNAME"
NEGATIVE = frozenset({NXDOMAIN, NODATA})
CACHEABLE = frozenset({NOERROR, NXDOMAIN, NODATA})


# -- resolv.conf ----------------------------------------------------------------------------

def parse_nameserver(text: str, default_port: int = 53) -> tuple[str, int]:
    """`ip`, `ip#port`, `ip:port` (IPv4), `[v6]`, `[v6]:port` or `v6#port` -> (ip, port)."""
    text = text.strip()
    host, port = text, default_port
    if "#" in text:
        host, _, p = text.rpartition("#")
        port = int(p)
    elif text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"bad nameserver {text!r}")
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        port = int(p)
    ip = ipaddress.ip_address(host.strip("[]"))
    if not 0 < port < 65536:
        raise ValueError(f"bad nameserver port in {text!r}")
    return str(ip), port


@dataclass
class ResolvConf:
    nameservers: list = field(default_factory=list)     # [(ip, port)]
    search: list = field(default_factory=list)
    timeout: float | None = None
    attempts: int | None = None
    ndots: int = 1
    lookup: str = "bf"


def parse_resolv_conf(text: str, default_port: int = 53) -> ResolvConf:
    """Parse resolv.conf text; unknown lines and bad nameserver entries are skipped."""
    conf = ResolvConf()
    for raw in text.splitlines():
        words = raw.split()
        # Only whole-line comments: `#` is also ecmta's port separator (127.0.0.1#5353).
        if not words or words[0][0] in "#;":
            continue
        key, args = words[0].lower(), words[1:]
        if key == "nameserver" and args:
            try:
                conf.nameservers.append(parse_nameserver(args[0], default_port))
            except ValueError:
                continue
        elif key in ("search", "domain"):
            conf.search = list(args)
        elif key == "lookup" and args:
            conf.lookup = args[0]
        elif key == "options":
            _apply_options(conf, args)
    return conf


def _apply_options(conf: ResolvConf, args: list[str]) -> None:
    for opt in args:
        name, _, value = opt.partition(":")
        try:
            if name in ("timeout", "retrans"):
                conf.timeout = float(int(value))
            elif name in ("attempts", "retry"):
                conf.attempts = int(value)
            elif name == "ndots":
                conf.ndots = int(value)
        except ValueError:
            continue


def read_resolv_conf(path: str | None, default_port: int = 53) -> ResolvConf:
    """Read `path` (raising OSError), or /etc/resolv.conf (missing = 127.0.0.1) for None."""
    try:
        with open(path or DEFAULT_RESOLV_CONF, encoding="utf-8", errors="replace") as fh:
            conf = parse_resolv_conf(fh.read(), default_port)
    except OSError:
        if path:
            raise
        conf = ResolvConf()
    if not conf.nameservers:
        conf.nameservers = [("127.0.0.1", default_port)]   # resolv.conf(5) default
    return conf


# -- results --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class DnsResult:
    """One lookup's outcome.

    status: NOERROR, NXDOMAIN, NODATA (the name exists, no record of that type), SERVFAIL
    (also REFUSED and unusable answers), TIMEOUT or BADNAME (not a valid domain name).
    records: MX -> ((preference, exchange), ...) best first, "." for a null MX; A/AAAA ->
    address texts; TXT -> strings; PTR/CNAME/NS -> target names (no final dot).
    ttl: seconds left in the view asked for. rrs: the answer's RRs, CNAMEs first, as
    (owner, type, data) texts; `answer_lines()` renders them as dig does.
    """
    name: str
    rtype: str
    status: str
    records: tuple = ()
    ttl: int = 0
    rrs: tuple = ()
    detail: str = ""
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.status == NOERROR

    @property
    def negative(self) -> bool:
        return self.status in NEGATIVE

    @property
    def transient(self) -> bool:
        return self.status in (SERVFAIL, TIMEOUT)


@dataclass
class _Entry:
    result: DnsResult          # ttl = the server's TTL
    fetched: float
    raw_expires: float
    delivery_expires: float
    delivery_ttl: int

    def expires(self, delivery: bool) -> float:
        return self.delivery_expires if delivery else self.raw_expires

    def view(self, now: float, delivery: bool, cached: bool) -> DnsResult:
        left = max(0, math.ceil(self.expires(delivery) - now))
        return replace(self.result, ttl=left, cached=cached)


def normalize(name: str) -> str:
    """Lower-case, no final dot: the cache key spelling of a name."""
    return name.strip().rstrip(".").lower()


def _name_text(n: dns.name.Name) -> str:
    return "." if n == dns.name.root else n.to_text(omit_final_dot=True)


def _records(rtype: str, rrset) -> tuple:
    if rtype == "MX":
        rows = [(r.preference, _name_text(r.exchange)) for r in rrset]
        return tuple(sorted(rows, key=lambda row: row[0]))   # stable: equal prefs keep order
    if rtype in ("A", "AAAA"):
        return tuple(r.address for r in rrset)
    if rtype == "TXT":
        return tuple(b"".join(r.strings).decode("utf-8", "replace") for r in rrset)
    return tuple(_name_text(r.target) for r in rrset)


def rdata_text(rd) -> str:
    """An RR's data as dig shows it, names without their final dot."""
    if hasattr(rd, "exchange"):
        return f"{rd.preference} {_name_text(rd.exchange)}"
    if hasattr(rd, "target"):
        return _name_text(rd.target)
    return rd.to_text()


def _tab_to(text: str, col: int) -> str:
    """Pad with tabs (8 columns each) to reach `col`, at least one tab, as dig does."""
    out = text + "\t"
    width = (len(text) // 8 + 1) * 8
    while width < col:
        out += "\t"
        width += 8
    return out


def rr_line(name: str, ttl: int, rtype: str, rdata: str) -> str:
    """One answer line as dig prints it: name, TTL, class, type, data in tab columns."""
    return f"{_tab_to(name, 24)}{_tab_to(str(ttl), 8)}IN\t{rtype}\t{rdata}"


def question_line(name: str, rtype: str) -> str:
    return f"{_tab_to(';' + name, 24)}IN\t{rtype}"


def answer_lines(result: DnsResult, shown_type: str | None = None) -> list[str]:
    """`dns_cache lookup` output: dig's QUESTION and ANSWER sections, every RR with the
    seconds the cache will still use it; a negative entry says which condition it is."""
    lines = [";; QUESTION SECTION:", question_line(result.name, shown_type or result.rtype), "",
             ";; ANSWER SECTION:"]
    if result.ok:
        lines += [rr_line(owner, result.ttl, rtype, data) for owner, rtype, data in result.rrs]
    else:
        lines.append(f";; {result.status} [{result.ttl}s]")
    return lines + [""]


# -- the resolver ---------------------------------------------------------------------------

class Resolver:
    """Cooperative DNS resolver with a TTL-honouring cache; see the module docstring."""

    name = "dns"

    def __init__(self, resolv_conf: str | None = None, nameservers=None, port: int = 53,
                 timeout: float | None = None, use_tcp_fallback: bool = False, *,
                 attempts: int | None = None, min_ttl: int = 0, max_ttl: int = MAX_TTL,
                 purge_interval: float = 60.0, edns_payload: int = EDNS_PAYLOAD,
                 clock=time.monotonic) -> None:
        self.resolv_conf = resolv_conf
        self._clock = clock
        self.configure(resolv_conf=resolv_conf, nameservers=nameservers, port=port,
                       timeout=timeout, attempts=attempts)
        self.use_tcp_fallback = bool(use_tcp_fallback)
        self.min_ttl, self.max_ttl = int(min_ttl), int(max_ttl)
        self.purge_interval = float(purge_interval)
        self.edns_payload = int(edns_payload)
        self._cache: dict[tuple[str, str], _Entry] = {}
        self._inflight: dict[tuple[str, str], AsyncResult] = {}
        self._holds: dict[tuple[str, str], int] = {}
        self._purger: gevent.Greenlet | None = None
        self.purge_hooks: list = []        # called after each purge (the route cache's own)
        self.counters = dict.fromkeys(
            ("A", "AAAA", "MX", "TXT", "PTR", "CNAME", "NS", "arpa4", "arpa6", "responses",
             "bad", "lookups", "hits"), 0)
        self.started = self._clock()
        self._summary_base = dict(self.counters)
        self._summary_since = self.started

    # -- configuration ----------------------------------------------------------------
    def configure(self, *, resolv_conf=None, nameservers=None, port=53, timeout=None,
                  attempts=None) -> None:
        """(Re)set the nameserver list and timeouts; explicit arguments beat the file."""
        conf = read_resolv_conf(resolv_conf, port) if nameservers is None else ResolvConf(
            nameservers=[parse_nameserver(ns, port) if isinstance(ns, str) else tuple(ns)
                         for ns in nameservers])
        self.nameservers = conf.nameservers
        self.search = conf.search
        self.timeout = float(timeout if timeout is not None else conf.timeout or DEFAULT_TIMEOUT)
        self.attempts = max(1, int(attempts if attempts is not None
                                   else conf.attempts or DEFAULT_ATTEMPTS))

    @classmethod
    def from_config(cls, cfg, **overrides) -> "Resolver":
        """A resolver for the global options of a config generation."""
        kw = cls._config_values(cfg)
        kw.update(overrides)
        return cls(**kw)

    @staticmethod
    def _config_values(cfg) -> dict:
        def val(opt, default):
            v = cfg.value(opt, default=default)
            return default if v is None else v
        return dict(resolv_conf=cfg.value("resolv_conf"),
                    use_tcp_fallback=bool(val("dns_fallback_to_tcp", False)),
                    min_ttl=int(val("min_dns_ttl", 0)), max_ttl=int(val("max_dns_ttl", MAX_TTL)),
                    purge_interval=float(val("dns_cache_purge_interval", 60)))

    def apply_config(self, cfg) -> None:
        """A new generation: TTL bounds, TCP fallback, purge interval, resolv_conf (re-read)."""
        kw = self._config_values(cfg)
        if kw["resolv_conf"] != self.resolv_conf:
            self.configure(resolv_conf=kw["resolv_conf"])
            self.resolv_conf = kw["resolv_conf"]
        self.use_tcp_fallback = kw["use_tcp_fallback"]
        self.min_ttl, self.max_ttl = kw["min_ttl"], kw["max_ttl"]
        self.purge_interval = kw["purge_interval"]

    def now(self) -> float:
        """The resolver's clock (monotonic seconds); the route cache shares it."""
        return self._clock()

    def clamp(self, ttl: int) -> int:
        """A TTL forced into [min_dns_ttl, max_dns_ttl] (the delivery view)."""
        return int(min(max(int(ttl), self.min_ttl), self.max_ttl))

    @property
    def lifetime(self) -> float:
        """The longest one query can take (every attempt on every server, plus TCP)."""
        per_try = self.timeout * (2 if self.use_tcp_fallback else 1)
        return per_try * self.attempts * max(1, len(self.nameservers))

    # -- service ---------------------------------------------------------------------
    def start(self) -> None:
        if self._purger is None:
            self._purger = gevent.spawn(self._purge_loop)

    def stop(self) -> None:
        if self._purger is not None:
            self._purger.kill(block=False)
            self._purger = None

    def _purge_loop(self) -> None:
        while True:
            gevent.sleep(max(0.05, self.purge_interval))
            try:
                self.purge()
            except Exception as exc:       # a broken hook must not end the purging
                panic(f"DNS cache purge failed: {exc!r}", subsystem="dns")

    def purge(self) -> int:
        """Drop entries stale in both views and held by no one; returns how many."""
        now = self._clock()
        stale = [k for k, e in self._cache.items()
                 if now >= max(e.raw_expires, e.delivery_expires) and not self._holds.get(k)]
        for k in stale:
            del self._cache[k]
        for hook in list(self.purge_hooks):
            hook()
        return len(stale)

    # -- lookups ---------------------------------------------------------------------
    def lookup(self, name: str, rtype: str = "A", *, delivery: bool = False,
               use_cache: bool = True) -> DnsResult:
        """Resolve (name, rtype) in this greenlet; cached answers first. Never raises for DNS.

        PTR accepts an IP address and asks for its reverse name. `use_cache=False` always
        asks the network (and refreshes the cache), still sharing a query already in flight.
        """
        rtype = rtype.upper()
        if rtype not in RTYPES:
            raise ValueError(f"unsupported DNS record type {rtype!r}")
        name = self._query_name(name, rtype)
        key = (name, rtype)
        if use_cache:
            self.counters["lookups"] += 1
            hit = self._fresh(key, delivery)
            if hit is not None:
                self.counters["hits"] += 1
                return hit
        return self._coalesced(key, delivery, counted=use_cache)

    def submit(self, name: str, rtype: str = "A", *, delivery: bool = False,
               use_cache: bool = True) -> gevent.Greenlet:
        """Start a lookup in the background (console `dns_cache submit`); returns its greenlet."""
        rtype = rtype.upper()
        if rtype not in RTYPES:
            raise ValueError(f"unsupported DNS record type {rtype!r}")
        return gevent.spawn(self.lookup, name, rtype, delivery=delivery, use_cache=use_cache)

    def cached(self, name: str, rtype: str = "A", *, delivery: bool = False) -> DnsResult | None:
        """The cached answer if still fresh in that view; never queries."""
        rtype = rtype.upper()
        return self._fresh((self._query_name(name, rtype), rtype), delivery)

    def forget(self, name: str, rtype: str | None = None) -> int:
        """Drop the cached answers for `name` (all types, or one); returns how many."""
        key_name = normalize(name)
        keys = [k for k in self._cache if k[0] == key_name and (rtype is None or k[1] == rtype)]
        for k in keys:
            del self._cache[k]
        return len(keys)

    def clear(self) -> int:
        n = len(self._cache)
        self._cache.clear()
        return n

    def hold(self, keys) -> None:
        """Mark cache entries as referenced (the route cache holds what it was built from)."""
        for k in keys:
            self._holds[k] = self._holds.get(k, 0) + 1

    def release(self, keys) -> None:
        for k in keys:
            n = self._holds.get(k, 0) - 1
            if n > 0:
                self._holds[k] = n
            else:
                self._holds.pop(k, None)

    # -- internals -------------------------------------------------------------------
    def _query_name(self, name: str, rtype: str) -> str:
        if rtype == "PTR":
            try:
                ip = ipaddress.ip_address(name.strip())
            except ValueError:
                return normalize(name)
            return normalize(ip.reverse_pointer)
        return normalize(name)

    def _fresh(self, key, delivery: bool) -> DnsResult | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        now = self._clock()
        if now >= entry.expires(delivery):
            return None
        return entry.view(now, delivery, cached=True)

    def _coalesced(self, key, delivery: bool, counted: bool) -> DnsResult:
        deadline = self._clock() + self.lifetime + 1.0
        while True:
            waiting = self._inflight.get(key)
            if waiting is None:
                break
            # Someone is already asking: share their answer. None means the asker was
            # killed before it finished; then ask ourselves.
            waiting.wait(timeout=max(0.0, deadline - self._clock()))
            got = waiting.value if waiting.ready() else None
            if got is not None:
                self.counters["hits"] += counted    # served without a query of its own
                return self._view_of(key, got, delivery)
            if self._clock() >= deadline:
                return DnsResult(key[0], key[1], TIMEOUT, detail="shared query did not finish")
        ar = AsyncResult()
        self._inflight[key] = ar
        got = None
        try:
            got = self._fetch(*key)
        finally:
            del self._inflight[key]
            ar.set(got)
        return self._view_of(key, got, delivery)

    def _view_of(self, key, result: DnsResult, delivery: bool) -> DnsResult:
        entry = self._cache.get(key)
        if entry is not None and entry.result is result:
            return entry.view(self._clock(), delivery, cached=False)
        return result

    def _fetch(self, name: str, rtype: str) -> DnsResult:
        try:
            qname = dns.name.from_text(name)
        except (dns.exception.DNSException, UnicodeError, ValueError) as exc:
            return DnsResult(name, rtype, BADNAME, detail=str(exc) or exc.__class__.__name__)
        self._count_query(name, rtype)
        result = self._query(qname, name, rtype)
        if result.status in CACHEABLE:
            now = self._clock()
            dttl = self.clamp(result.ttl)
            self._cache[(name, rtype)] = _Entry(result, now, now + result.ttl, now + dttl, dttl)
        return result

    def _count_query(self, name: str, rtype: str) -> None:
        self.counters[rtype] += 1
        if rtype == "PTR":
            if name.endswith(".in-addr.arpa"):
                self.counters["arpa4"] += 1
            elif name.endswith(".ip6.arpa"):
                self.counters["arpa6"] += 1

    def _query(self, qname: dns.name.Name, name: str, rtype: str) -> DnsResult:
        rdtype = dns.rdatatype.from_text(rtype)
        if self.edns_payload:
            query = dns.message.make_query(qname, rdtype, use_edns=0, payload=self.edns_payload)
        else:
            query = dns.message.make_query(qname, rdtype)
        status, detail = TIMEOUT, "no nameserver answered"
        for _attempt in range(self.attempts):
            for ip, port in self.nameservers:
                query.id = dns.entropy.random_16()
                response, status, detail = self._ask(query, ip, port)
                if response is not None:
                    return self._result(name, rtype, response)
                if status == SERVFAIL and detail.startswith("truncated"):
                    return DnsResult(name, rtype, status, detail=detail)
        return DnsResult(name, rtype, status, detail=detail)

    def _ask(self, query, ip: str, port: int):
        """One exchange with one server: (usable response | None, failure status, detail)."""
        try:
            r = dns.query.udp(query, ip, timeout=self.timeout, port=port,
                              ignore_unexpected=True, raise_on_truncation=False)
            if r.flags & dns.flags.TC:
                if not self.use_tcp_fallback:
                    self.counters["responses"] += 1
                    if r.answer and r.rcode() == dns.rcode.NOERROR:
                        return r, NOERROR, ""      # use the records that fit
                    return None, SERVFAIL, "truncated response (dns_fallback_to_tcp is false)"
                r = dns.query.tcp(query, ip, timeout=self.timeout, port=port)
        except dns.exception.Timeout:
            return None, TIMEOUT, f"{ip}#{port} did not answer"
        except (OSError, EOFError, dns.exception.DNSException) as exc:
            self.counters["bad"] += 1
            return None, SERVFAIL, f"{ip}#{port}: {exc or exc.__class__.__name__}"
        self.counters["responses"] += 1
        rcode = r.rcode()
        if rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            return r, NOERROR, ""
        self.counters["bad"] += 1
        return None, SERVFAIL, f"{ip}#{port} answered {dns.rcode.to_text(rcode)}"

    def _result(self, name: str, rtype: str, response) -> DnsResult:
        try:
            chain = response.resolve_chaining()
        except dns.exception.DNSException as exc:
            self.counters["bad"] += 1
            return DnsResult(name, rtype, SERVFAIL, detail=f"unusable answer: {exc}")
        ttl = int(chain.minimum_ttl)
        if response.rcode() == dns.rcode.NXDOMAIN:
            return DnsResult(name, rtype, NXDOMAIN, ttl=ttl)
        if chain.answer is None:
            return DnsResult(name, rtype, NODATA, ttl=ttl)
        rrs = tuple((_name_text(rrset.name), dns.rdatatype.to_text(rrset.rdtype), rdata_text(rd))
                    for rrset in (*chain.cnames, chain.answer) for rd in rrset)
        return DnsResult(name, rtype, NOERROR, _records(rtype, chain.answer), ttl, rrs)

    # -- statistics ------------------------------------------------------------------
    def stats(self) -> dict:
        """What `dns_cache stats` prints (counts since start)."""
        c = self.counters
        lookups = c["lookups"]
        return {"TXT": c["TXT"], "PTR": c["PTR"], "MX": c["MX"], "A": c["A"] + c["AAAA"],
                "arpa IPv4": c["arpa4"], "arpa IPv6": c["arpa6"], "responses": c["responses"],
                "bad": c["bad"], "lookups": lookups,
                "hit_rate": (100.0 * c["hits"] / lookups) if lookups else 0.0,
                "entries": len(self._cache), "pending": len(self._inflight)}

    def summary_stats(self) -> dict:
        """The `summary` fields: DNS A Queries (A+AAAA), DNS MX Queries, Pending DNS Queries,
        Query Rate (queries/second), all since start or the last `summary reset`."""
        c, b = self.counters, self._summary_base
        a = (c["A"] + c["AAAA"]) - (b["A"] + b["AAAA"])
        total = sum(c[t] - b[t] for t in RTYPES)
        elapsed = max(1e-9, self._clock() - self._summary_since)
        return {"a_queries": a, "mx_queries": c["MX"] - b["MX"],
                "pending": len(self._inflight), "query_rate": total / elapsed}

    def reset_summary(self) -> None:
        self._summary_base = dict(self.counters)
        self._summary_since = self._clock()

    def refcnts(self) -> list[tuple[int, str, str, int]]:
        """(references, name, type, seconds left) per entry; the cache itself is one
        reference, each holder (a cached route) one more, each waiting greenlet one more."""
        now = self._clock()
        rows = []
        for key, e in self._cache.items():
            refs = 1 + self._holds.get(key, 0)
            left = max(0, math.ceil(max(e.raw_expires, e.delivery_expires) - now))
            rows.append((refs, key[0], key[1], left))
        return sorted(rows, key=lambda r: (r[1], r[2]))

    def pending(self) -> int:
        return len(self._inflight)
