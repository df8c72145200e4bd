"""Routing: a routing domain in, the ordered delivery targets (or the reason there are none) out.

Owns: Momentum's routing rules (MOMENTUM_DIGEST §3.5; conf.ref.routes, gateway,
prohibited_hosts, skip_hosts, use_ipv6, fully_resolve_before_smtp,
only_use_best_mx_for_relay_domains, mx_failures_fallback_to_a, dns_failures_to_purge;
modules static_routes, mxip, ipv6_lookup), the failure replies they lead to, and the route
cache (`Router`) that `dig`, `domain` and `refresh domain` work on.

Precedence, first match wins: static_routes `target` > `Gateway` > `Routes` > the domain's
own route (an IP literal `[1.2.3.4]` / `[IPv6:...]`, else MX, else A).

- MX (RFC 5321 §5.1): records sorted by preference (equal preferences keep DNS order;
  `RouteResult.groups` gives the tiers so the caller fills each equal-preference tier
  evenly with `choose_target`, never using a worse tier while a better target is below its
  limit and reachable). No MX records (NODATA) -> the domain's own A (and AAAA) as an
  implicit MX of preference 0. MX records that exist but none resolves -> no A fallback.
- Null MX (RFC 7505: a single MX whose exchange is ".") -> permanent
  `550 5.4.4 [internal] NULL MX domain does not accept mail`. A "." among real MXs is
  dropped.
- NXDOMAIN (or a name that is not a domain) -> permanent `554 5.4.4 [internal] Domain
  Lookup Failed`. SERVFAIL / timeout on the MX lookup -> transient `454 4.4.4 [internal] no
  MX or A for domain` with `mx_failure` set; no MX and no address -> the same 454. MX hosts
  that all fail to resolve -> transient `451 4.4.1 [internal] No valid hosts`. Transient DNS
  failures carry `dns_failure`: the caller counts them and calls `escalate()`, which makes
  the result the permanent 554 once `dns_failures_to_purge` is reached.
- `mx_failures_fallback_to_a`: the caller counts MX lookup failures per domain and passes
  `force_a=fallback_to_a(failures, limit)`; an A route is then used without the MX lookup.
- `use_ipv6 = false`: AAAA records are never asked for. `true`: A and AAAA are both asked,
  IPv4 addresses first then IPv6 (the ipv6_lookup module's merge; ecmta always merges).
  Explicit IPv6 addresses (literals, Gateway, Routes, static_routes) are used either way.
- `prohibited_hosts`: Momentum's pages say that, unlike skip_hosts, it denies the domain;
  with `prohibited_fails_domain` (default) any target address inside a prohibited network
  fails the domain with permanent `551 5.4.6 [internal] Private/Loopback Address`; with it
  off, prohibited addresses are dropped and the 551 comes only when nothing else remains.
  `skip_hosts` addresses are dropped; nothing left -> transient 451 No valid hosts.
- `Gateway = "host" | "ip" | "[v6]" | "[v6]:port" | "host:port"`: an IP is used as is, a
  name is routed MX-then-A. `Routes = (...)`: "host" (A lookup), "ip", "__mx__" (this
  domain's MX route, with the MX preferences) and "smtp://host?pref=P&ttl=T&port=O&type=mx|a".
  Items without `pref` come after everything listed before them (preference = highest
  so far + 1), so plain lists are tried strictly in order and `pref` lets items share a
  tier. `type=mx` routes the host MX-then-A (its MX tiers become P, P+1, ...). `ttl`
  replaces the DNS TTL of that item. Failures of a configured host are transient (a
  smarthost outage must not bounce mail), except for prohibited addresses.
- `fully_resolve_before_smtp = false` (and not a relay domain): the route returns as soon
  as one MX host has an address (`complete=False`, ttl 0); the other lookups finish in the
  background and fill the DNS cache for the next call.
- TTL: the smallest TTL of everything the route was built from (delivery view, i.e.
  clamped by min_dns_ttl/max_dns_ttl); static entries (IPs, literals) use `static_ttl`.

Inputs are plain values (`RouteOptions`; `route_options()` builds them from a config
generation). The parsing, ordering and filtering functions are pure; `route()` and `Router`
need a `transports.dns.Resolver` and run cooperatively in the calling greenlet.
How it fails: never raises for DNS or bad route items; a bad item is a transient
`451 4.4.1` whose `detail` says what is wrong (config validation should catch it first).
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Callable, Iterable

import gevent

from ecmta.transports import dns as D
from ecmta.transports.smtp_replies import Reply

NULL_MX = (550, "5.4.4 [internal] NULL MX domain does not accept mail")
LOOKUP_FAILED = (554, "5.4.4 [internal] Domain Lookup Failed")
NO_MX_OR_A = (454, "4.4.4 [internal] no MX or A for domain")
NO_VALID_HOSTS = (451, "4.4.1 [internal] No valid hosts")
PROHIBITED = (551, "5.4.6 [internal] Private/Loopback Address")

STATIC_TTL = 3600          # TTL of routes that involve no DNS (IPs, literals, static_routes)
MXIP_TTL = 600             # the mxip module's default TTL for IPs written in MX records


# -- values ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Target:
    """One address to connect to. host: the MX / route host name (the IP for literals)."""
    host: str
    ip: str
    port: int
    preference: int
    ttl: int


@dataclass(frozen=True, slots=True)
class MXRecord:
    """An MX the route was built from, for the `domain` command."""
    preference: int
    host: str
    ttl: int


@dataclass(frozen=True)
class RouteResult:
    """Targets best first, or the failure. error_text starts with the enhanced code.

    source: "mx", "a", "literal", "gateway", "routes" or "static_routes". dns_failure: a
    transient failure that counts toward dns_failures_to_purge; mx_failure: the MX lookup
    itself failed (counts toward mx_failures_fallback_to_a). dns_keys: the DNS cache
    entries the route was built from.
    """
    targets: tuple = ()
    error_code: int = 0
    error_text: str = ""
    permanent: bool = False
    ttl: int = 0
    source: str = ""
    mxs: tuple = ()
    complete: bool = True
    dns_failure: bool = False
    mx_failure: bool = False
    detail: str = ""
    dns_keys: frozenset = frozenset()

    @property
    def ok(self) -> bool:
        return not self.error_code and bool(self.targets)

    @property
    def groups(self) -> tuple:
        """Targets in tiers of equal preference, best tier first."""
        tiers: dict[int, list] = {}
        for t in self.targets:
            tiers.setdefault(t.preference, []).append(t)
        return tuple(tuple(tiers[p]) for p in sorted(tiers))

    @property
    def reply(self) -> Reply | None:
        return Reply.parse(self.error_code, self.error_text) if self.error_code else None


def failure(reply: tuple, *, permanent: bool = False, ttl: int = 0, **kw) -> RouteResult:
    return RouteResult(error_code=reply[0], error_text=reply[1], permanent=permanent,
                       ttl=ttl, **kw)


@dataclass(frozen=True)
class RouteOptions:
    """Everything routing needs, already evaluated for one (binding, domain).

    port: remote_smtp_port, or lmtp_port for LMTP delivery. fully_resolve:
    fully_resolve_before_smtp, true for relay domains. only_best_mx:
    only_use_best_mx_for_relay_domains and the domain is a (global) relay or bounce domain.
    force_a: fallback_to_a(MX failures, mx_failures_fallback_to_a). prohibited / skip:
    prohibited_hosts / skip_hosts entries (addresses or CIDRs). static_route: the
    static_routes module's `target`. mxip / mxip_ttl: the mxip module is loaded / its TTL.
    """
    port: int = 25
    gateway: str | None = None
    routes: tuple = ()
    static_route: str | None = None
    use_ipv6: bool = False
    fully_resolve: bool = True
    only_best_mx: bool = False
    force_a: bool = False
    prohibited: tuple = ()
    skip: tuple = ()
    prohibited_fails_domain: bool = True
    mxip: bool = False
    mxip_ttl: int = MXIP_TTL
    static_ttl: int = STATIC_TTL


# -- pure parsing ---------------------------------------------------------------------------

def parse_ip_literal(domain: str) -> str | None:
    """`[1.2.3.4]` -> "1.2.3.4", `[IPv6:2001:db8::1]` -> "2001:db8::1", a name -> None.

    Raises ValueError for a bracketed text that is not an address literal (RFC 5321 §4.1.3).
    """
    d = domain.strip()
    if not d.startswith("["):
        return None
    if not d.endswith("]"):
        raise ValueError(f"malformed address literal {domain!r}")
    body = d[1:-1]
    if body[:5].lower() == "ipv6:":
        return str(ipaddress.IPv6Address(body[5:]))
    return str(ipaddress.IPv4Address(body))


def _ip_or_none(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str | None     # a name to resolve, or None when ip is set
    ip: str | None
    port: int | None


def parse_hostport(text: str) -> HostPort:
    """Gateway / static_routes syntax: host, ip, host:port, ip:port, [v6], [v6]:port, v6."""
    t = text.strip()
    if not t:
        raise ValueError("empty host")
    port = None
    if t.startswith("["):
        body, _, rest = t[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"bad host {text!r}")
            port = _port(rest[1:], text)
        ip = _ip_or_none(body[5:] if body[:5].lower() == "ipv6:" else body)
        if ip is None:
            raise ValueError(f"bad IP address in {text!r}")
        return HostPort(None, ip, port)
    ip = _ip_or_none(t)
    if ip is not None:                       # also a bare IPv6 address
        return HostPort(None, ip, None)
    if t.count(":") == 1:
        t, _, p = t.partition(":")
        port = _port(p, text)
        ip = _ip_or_none(t)
        if ip is not None:
            return HostPort(None, ip, port)
    if ":" in t or not t:
        raise ValueError(f"bad host {text!r} (IPv6 addresses with a port need brackets)")
    return HostPort(D.normalize(t), None, port)


def _port(text: str, whole: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise ValueError(f"bad port in {whole!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"bad port in {whole!r}")
    return port


@dataclass(frozen=True, slots=True)
class RouteItem:
    """One `Routes` entry. kind: "mx" (__mx__), "ip" or "host"; lookup: "a" or "mx"."""
    kind: str
    host: str | None = None
    ip: str | None = None
    port: int | None = None
    pref: int | None = None
    ttl: int | None = None
    lookup: str = "a"


def parse_route(item: str) -> RouteItem:
    """Parse one Routes entry; raises ValueError naming what is wrong."""
    text = item.strip()
    if text.lower() == "__mx__":
        return RouteItem("mx")
    if "://" not in text:
        hp = parse_hostport(text)
        return RouteItem("ip" if hp.ip else "host", hp.host, hp.ip, hp.port)
    url = urllib.parse.urlsplit(text)
    if url.scheme.lower() != "smtp":
        raise ValueError(f"route {item!r}: only smtp:// routes are supported for SMTP delivery")
    netloc = url.netloc
    hp = parse_hostport(netloc)
    q = urllib.parse.parse_qs(url.query, keep_blank_values=True)

    def num(key):
        if key not in q:
            return None
        try:
            return int(q[key][-1])
        except ValueError:
            raise ValueError(f"route {item!r}: {key} must be a number") from None
    lookup = (q.get("type", ["a"])[-1] or "a").lower()
    if lookup not in ("a", "mx"):
        raise ValueError(f"route {item!r}: type must be mx or a")
    port = num("port")
    port = hp.port if port is None else port
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"route {item!r}: bad port")
    return RouteItem("ip" if hp.ip else "host", hp.host, hp.ip, port, num("pref"), num("ttl"),
                     lookup)


@lru_cache(maxsize=64)
def parse_networks(items: tuple) -> tuple:
    """prohibited_hosts / skip_hosts entries -> networks; raises ValueError for a bad one."""
    nets = []
    for item in items:
        try:
            nets.append(ipaddress.ip_network(str(item).strip().strip("[]"), strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or CIDR block") from None
    return tuple(nets)


def address_in(ip: str, networks: Iterable) -> bool:
    """True when `ip` (or the IPv4 address an IPv4-mapped IPv6 address carries) is listed."""
    addr = ipaddress.ip_address(ip)
    mapped = getattr(addr, "ipv4_mapped", None)
    for net in networks:
        if addr.version == net.version and addr in net:
            return True
        if mapped is not None and net.version == 4 and mapped in net:
            return True
    return False


# -- pure ordering and choice ---------------------------------------------------------------

def is_null_mx(records) -> bool:
    """RFC 7505: the domain publishes exactly one MX and its exchange is the root."""
    return len(records) == 1 and records[0][1] == "."


def order_mx(records, only_best: bool = False) -> list[tuple[int, str]]:
    """MX (pref, host) best first, equal prefs in DNS order, "." and repeats dropped."""
    seen, out = set(), []
    for pref, host in sorted(records, key=lambda r: r[0]):
        h = D.normalize(host)
        if host == "." or not h or h in seen:
            continue
        seen.add(h)
        out.append((pref, h))
    if only_best and out:
        out = [r for r in out if r[0] == out[0][0]]
    return out


def fallback_to_a(mx_failures: int, limit: int) -> bool:
    """mx_failures_fallback_to_a: after `limit` failed MX lookups (at least one), use A."""
    return mx_failures > 0 and mx_failures >= limit


def escalate(result: RouteResult, dns_failures: int, dns_failures_to_purge: int) -> RouteResult:
    """dns_failures_to_purge: a transient DNS failure seen that many times becomes the
    permanent 554 5.4.4 Domain Lookup Failed (`dns_failures` includes this one)."""
    if (result.dns_failure and not result.permanent and dns_failures_to_purge > 0
            and dns_failures >= dns_failures_to_purge):
        return replace(result, error_code=LOOKUP_FAILED[0], error_text=LOOKUP_FAILED[1],
                       permanent=True)
    return result


def routing_domain(domain: str, gateway: str | None) -> str:
    """The queue's routing domain: the gateway host when one is set (custom_logger %d)."""
    if not gateway:
        return domain
    hp = parse_hostport(gateway)
    return hp.host or hp.ip


def choose_target(groups, connections: dict, limit: Callable[[Target], int] | int,
                  reachable: Callable[[Target], bool] = lambda t: True,
                  key: Callable[[Target], object] = lambda t: t.ip) -> Target | None:
    """The target for a new connection: the best tier with a reachable target below its
    limit; inside it the target with the fewest open connections (even spreading, not
    proportional to limits). `connections` maps key(target) -> open connections; a limit
    below 0 means unlimited. None when every target is full or unreachable."""
    lim = limit if callable(limit) else (lambda t: limit)
    for tier in groups:
        best, best_n = None, None
        for t in tier:
            n = connections.get(key(t), 0)
            cap = lim(t)
            if (cap < 0 or n < cap) and reachable(t) and (best_n is None or n < best_n):
                best, best_n = t, n
        if best is not None:
            return best
    return None


# -- resolution -----------------------------------------------------------------------------

@dataclass
class _Hosts:
    """Addresses of a list of (pref, host): what came back and what failed."""
    targets: list = field(default_factory=list)
    ttl: int | None = None
    transient: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    keys: set = field(default_factory=set)
    complete: bool = True

    def min_ttl(self, ttl: int) -> None:
        self.ttl = ttl if self.ttl is None else min(self.ttl, ttl)


def _address_types(use_ipv6: bool) -> tuple:
    return ("A", "AAAA") if use_ipv6 else ("A",)


def _host_lookup(resolver, host: str, use_ipv6: bool) -> list:
    """The A (and AAAA) answers for one host, asked in parallel when not cached."""
    types = _address_types(use_ipv6)
    cached = [resolver.cached(host, t, delivery=True) for t in types]
    if all(c is not None for c in cached):
        return cached
    jobs = [gevent.spawn(resolver.lookup, host, t, delivery=True) for t in types]
    gevent.joinall(jobs)
    return [j.value if j.successful() else
            D.DnsResult(host, t, D.SERVFAIL, detail=str(j.exception)) for j, t in zip(jobs, types)]


def _add_host(acc: _Hosts, pref: int, host: str, answers: list, port: int) -> None:
    ips, transient = [], False
    for ans in answers:
        acc.keys.add((ans.name, ans.rtype))
        if ans.ok:
            ips.extend(ans.records)
            acc.min_ttl(ans.ttl)
        elif ans.transient:
            transient = True
    if ips:
        ttl = min(a.ttl for a in answers if a.ok)
        acc.targets.extend(Target(host, ip, port, pref, ttl) for ip in ips)
    elif transient:
        acc.transient.append(host)
    else:
        acc.failed.append(host)


def resolve_hosts(resolver, hosts, opts: RouteOptions, port: int,
                  wait_all: bool = True) -> _Hosts:
    """Addresses of (pref, host) pairs, in their order. With mxip, hosts that are IPv4
    texts are used as addresses. Uncached hosts are looked up in parallel; with wait_all
    false this returns once one host has an address (`complete` false if some are left)."""
    acc = _Hosts()
    plan = []                    # (pref, host, kind, value) in MX order
    usable_now = False
    for pref, host in hosts:
        ip = _ip_or_none(host) if opts.mxip else None
        if ip is not None and ipaddress.ip_address(ip).version == 4:   # mxip: IPv4 only
            plan.append((pref, host, "ip", Target(host, ip, port, pref,
                                                  resolver.clamp(opts.mxip_ttl))))
            usable_now = True
            continue
        cached = [resolver.cached(host, t, delivery=True) for t in _address_types(opts.use_ipv6)]
        if all(c is not None for c in cached):
            plan.append((pref, host, "done", cached))
            usable_now = usable_now or any(c.ok for c in cached)
        else:
            plan.append((pref, host, "job",
                         gevent.spawn(_host_lookup, resolver, host, opts.use_ipv6)))
    jobs = [v for _p, _h, kind, v in plan if kind == "job"]
    if jobs and wait_all:
        gevent.joinall(jobs)
    elif jobs and not usable_now:
        _wait_first_usable(jobs)
    for pref, host, kind, val in plan:
        if kind == "ip":
            acc.targets.append(val)
            acc.min_ttl(val.ttl)
        elif kind == "done":
            _add_host(acc, pref, host, val, port)
        elif val.ready():
            answers = val.value if val.successful() else [
                D.DnsResult(D.normalize(host), "A", D.SERVFAIL, detail=str(val.exception))]
            _add_host(acc, pref, host, answers, port)
        else:
            acc.complete = False
    return acc


def _wait_first_usable(jobs) -> None:
    """Wait until one lookup job gave an address, or all are done."""
    left = list(jobs)
    while left:
        done = gevent.wait(left, count=1)
        for j in done:
            left.remove(j)
            if j.successful() and any(a.ok for a in j.value):
                return


def _dedupe(targets) -> tuple:
    seen, out = set(), []
    for t in sorted(targets, key=lambda t: t.preference):     # stable: DNS order kept
        if (t.ip, t.port) not in seen:
            seen.add((t.ip, t.port))
            out.append(t)
    return tuple(out)


def _ttl_of(targets, *extra) -> int:
    vals = [t.ttl for t in targets] + [e for e in extra if e is not None]
    return min(vals) if vals else 0


def _a_route(resolver, domain: str, opts: RouteOptions, port: int, source: str = "a",
             keys=frozenset()) -> RouteResult:
    """The domain's own addresses as an implicit MX of preference 0."""
    answers = _host_lookup(resolver, domain, opts.use_ipv6)
    keys = set(keys) | {(a.name, a.rtype) for a in answers}
    if any(a.status in (D.NXDOMAIN, D.BADNAME) for a in answers) and not any(
            a.ok for a in answers):
        return failure(LOOKUP_FAILED, permanent=True, ttl=_neg_ttl(answers), source=source,
                       dns_keys=frozenset(keys))
    acc = _Hosts()
    _add_host(acc, 0, domain, answers, port)
    if not acc.targets:
        return failure(NO_MX_OR_A, dns_failure=True, source=source, dns_keys=frozenset(keys),
                       detail="; ".join(f"{a.rtype} {a.status}" for a in answers))
    targets = _dedupe(acc.targets)
    return RouteResult(targets, ttl=_ttl_of(targets), source=source, dns_keys=frozenset(keys))


def _neg_ttl(answers) -> int:
    ttls = [a.ttl for a in answers if a.negative]
    return min(ttls) if ttls else 0


def _mx_route(resolver, domain: str, opts: RouteOptions, port: int) -> RouteResult:
    if opts.force_a:
        return _a_route(resolver, domain, opts, port)
    mx = resolver.lookup(domain, "MX", delivery=True)
    keys = {(mx.name, "MX")}
    if mx.status in (D.NXDOMAIN, D.BADNAME):
        return failure(LOOKUP_FAILED, permanent=True, ttl=mx.ttl, source="mx",
                       dns_keys=frozenset(keys), detail=f"MX {mx.status}")
    if mx.transient:
        return failure(NO_MX_OR_A, dns_failure=True, mx_failure=True, source="mx",
                       dns_keys=frozenset(keys), detail=f"MX {mx.status}: {mx.detail}")
    if mx.status == D.NODATA:
        return _a_route(resolver, domain, opts, port, keys=keys)   # RFC 5321 §5.1 implicit MX
    if is_null_mx(mx.records):
        return failure(NULL_MX, permanent=True, ttl=mx.ttl, source="mx",
                       dns_keys=frozenset(keys))
    hosts = order_mx(mx.records, opts.only_best_mx)
    mxs = tuple(MXRecord(p, h, mx.ttl) for p, h in hosts)
    if not hosts:
        return failure(NO_VALID_HOSTS, dns_failure=True, source="mx", mxs=mxs,
                       dns_keys=frozenset(keys))
    acc = resolve_hosts(resolver, hosts, opts, port, wait_all=opts.fully_resolve)
    keys |= acc.keys
    targets = _dedupe(acc.targets)
    if not targets:
        if not acc.complete:     # nothing yet, but lookups still running: a transient miss
            return failure(NO_VALID_HOSTS, source="mx", mxs=mxs, dns_keys=frozenset(keys))
        return failure(NO_VALID_HOSTS, dns_failure=True, source="mx", mxs=mxs,
                       dns_keys=frozenset(keys),
                       detail="no MX host has an address: " + ", ".join(acc.failed + acc.transient))
    ttl = 0 if not acc.complete else _ttl_of(targets, mx.ttl)
    return RouteResult(targets, ttl=ttl, source="mx", mxs=mxs, complete=acc.complete,
                       dns_keys=frozenset(keys))


def _default_route(resolver, domain: str, opts: RouteOptions, port: int) -> RouteResult:
    """The domain's own route: an address literal, else MX-then-A."""
    try:
        literal = parse_ip_literal(domain)
    except ValueError as exc:
        return failure(LOOKUP_FAILED, permanent=True, source="literal", detail=str(exc))
    if literal is not None:
        return RouteResult((Target(literal, literal, port, 0, opts.static_ttl),),
                           ttl=opts.static_ttl, source="literal")
    return _mx_route(resolver, D.normalize(domain), opts, port)


def _configured_host(resolver, hp: HostPort, opts: RouteOptions, port: int, pref: int,
                     lookup: str, ttl: int | None) -> RouteResult:
    """A Gateway or Routes host: an IP as is, a name by A lookup or MX-then-A (tiers from
    `pref`). Failures are transient: the host comes from the config, not the recipient."""
    if hp.ip is not None:
        t = ttl if ttl is not None else opts.static_ttl
        return RouteResult((Target(hp.ip, hp.ip, port, pref, t),), ttl=t)
    if lookup == "mx":
        sub = _mx_route(resolver, hp.host, replace(opts, only_best_mx=False), port)
        if sub.ok:
            prefs = sorted({t.preference for t in sub.targets})
            tier = {p: pref + i for i, p in enumerate(prefs)}
            targets = tuple(replace(t, preference=tier[t.preference],
                                    ttl=ttl if ttl is not None else t.ttl) for t in sub.targets)
            return replace(sub, targets=targets, ttl=_ttl_of(targets) if sub.complete else 0)
    else:
        sub = _a_route(resolver, hp.host, opts, port)
        if sub.ok:
            targets = tuple(replace(t, preference=pref, ttl=ttl if ttl is not None else t.ttl)
                            for t in sub.targets)
            return replace(sub, targets=targets, ttl=_ttl_of(targets))
    return replace(sub, error_code=NO_VALID_HOSTS[0], error_text=NO_VALID_HOSTS[1],
                   permanent=False, dns_failure=True,
                   detail=f"{hp.host}: {sub.error_code} {sub.error_text} {sub.detail}".strip())


def _gateway_route(resolver, domain: str, opts: RouteOptions) -> RouteResult:
    try:
        hp = parse_hostport(opts.gateway)
    except ValueError as exc:
        return failure(NO_VALID_HOSTS, source="gateway", detail=f"Gateway: {exc}")
    port = hp.port or opts.port
    res = _configured_host(resolver, hp, opts, port, 0, "mx", None)
    return replace(res, source="gateway")


def _routes_route(resolver, domain: str, opts: RouteOptions) -> RouteResult:
    try:
        items = [parse_route(x) for x in opts.routes]
    except ValueError as exc:
        return failure(NO_VALID_HOSTS, source="routes", detail=f"Routes: {exc}")
    targets, keys, mxs, ttls, errors = [], set(), (), [], []
    floor, complete = -1, True
    for item in items:
        if item.kind == "mx":
            sub = _default_route(resolver, domain, opts, opts.port)
            mxs = sub.mxs
        else:
            pref = item.pref if item.pref is not None else floor + 1
            floor = max(floor, pref)
            hp = HostPort(item.host, item.ip, item.port)
            sub = _configured_host(resolver, hp, opts, item.port or opts.port, pref,
                                   item.lookup, item.ttl)
        keys |= sub.dns_keys
        complete = complete and sub.complete
        if sub.ok:
            targets.extend(sub.targets)
            floor = max([floor] + [t.preference for t in sub.targets])
            ttls.append(sub.ttl)
        else:
            errors.append(sub)
    targets = _dedupe(targets)
    if targets:
        ttl = min(ttls) if complete else 0
        return RouteResult(targets, ttl=ttl, source="routes", mxs=mxs, complete=complete,
                           dns_keys=frozenset(keys))
    if len(items) == 1 and errors:
        return replace(errors[0], source="routes")     # only __mx__ (or one host): its reason
    return failure(NO_VALID_HOSTS, dns_failure=any(e.dns_failure for e in errors),
                   source="routes", dns_keys=frozenset(keys),
                   detail="; ".join(e.detail for e in errors if e.detail))


def _static_route(opts: RouteOptions) -> RouteResult:
    try:
        hp = parse_hostport(opts.static_route)
    except ValueError as exc:
        return failure(NO_VALID_HOSTS, source="static_routes", detail=f"static_routes: {exc}")
    if hp.ip is None:
        return failure(NO_VALID_HOSTS, source="static_routes",
                       detail=f"static_routes target {opts.static_route!r} must be an IP address")
    t = Target(hp.ip, hp.ip, hp.port or opts.port, 0, opts.static_ttl)
    return RouteResult((t,), ttl=opts.static_ttl, source="static_routes")


def apply_host_filters(result: RouteResult, opts: RouteOptions) -> RouteResult:
    """prohibited_hosts and skip_hosts on a successful result (pure)."""
    if not result.ok or not (opts.prohibited or opts.skip):
        return result
    try:
        prohibited = parse_networks(tuple(opts.prohibited))
        skip = parse_networks(tuple(opts.skip))
    except ValueError as exc:       # a config problem: hold the mail, say why
        return failure(NO_VALID_HOSTS, source=result.source, dns_keys=result.dns_keys,
                       detail=f"prohibited_hosts/skip_hosts: {exc}")
    bad = [t for t in result.targets if address_in(t.ip, prohibited)]
    if bad and opts.prohibited_fails_domain:
        return failure(PROHIBITED, permanent=True, source=result.source, mxs=result.mxs,
                       dns_keys=result.dns_keys, detail=f"prohibited host {bad[0].ip}")
    kept = [t for t in result.targets if t not in bad and not address_in(t.ip, skip)]
    if kept:
        return replace(result, targets=tuple(kept))
    if bad:
        return failure(PROHIBITED, permanent=True, source=result.source, mxs=result.mxs,
                       dns_keys=result.dns_keys, detail=f"prohibited host {bad[0].ip}")
    return failure(NO_VALID_HOSTS, source=result.source, mxs=result.mxs,
                   dns_keys=result.dns_keys, detail="every host is in skip_hosts")


def route(resolver, domain: str, opts: RouteOptions = RouteOptions()) -> RouteResult:
    """The delivery targets for `domain` under `opts` (see the module docstring)."""
    if opts.static_route:
        res = _static_route(opts)
    elif opts.gateway:
        res = _gateway_route(resolver, domain, opts)
    elif opts.routes:
        res = _routes_route(resolver, domain, opts)
    else:
        res = _default_route(resolver, domain, opts, opts.port)
    return apply_host_filters(res, opts)


# -- options from a config generation -------------------------------------------------------

def route_options(cfg, ctx=None, *, relay_domain: bool = False, lmtp: bool = False,
                  mx_failures: int = 0) -> RouteOptions:
    """RouteOptions for one (binding, domain) evaluation context of a config generation.

    relay_domain: the domain is in the global relay_domains or bounce_domains (the caller
    matches them). lmtp: delivery_method is LMTP (lmtp_port instead of remote_smtp_port).
    mx_failures: the domain's failed MX lookups so far.
    """
    def val(opt, default=None):
        v = cfg.value(opt, ctx, default=default)
        return default if v is None else v
    fully = bool(val("fully_resolve_before_smtp", True)) or relay_domain
    static = _module_option(cfg, "static_routes", "target")
    mxip_loaded = bool(cfg.scopes("mxip"))
    mxip_ttl = _module_option(cfg, "mxip", "ttl")
    return RouteOptions(
        port=int(val("lmtp_port", 2003) if lmtp else val("remote_smtp_port", 25)),
        gateway=val("gateway") or None,
        routes=tuple(val("routes", ()) or ()),
        static_route=static or None,
        use_ipv6=bool(val("use_ipv6", False)),
        fully_resolve=fully,
        only_best_mx=relay_domain and bool(val("only_use_best_mx_for_relay_domains", True)),
        force_a=fallback_to_a(mx_failures, int(val("mx_failures_fallback_to_a", 3))),
        prohibited=tuple(val("prohibited_hosts", ()) or ()),
        skip=tuple(val("skip_hosts", ()) or ()),
        mxip=mxip_loaded,
        mxip_ttl=int(mxip_ttl) if mxip_ttl else MXIP_TTL,
    )


def _module_option(cfg, module: str, option: str):
    for scope in cfg.scopes(module):
        enabled = scope.options.get("enabled")
        if enabled is not None and str(enabled.value).lower() in ("false", "0", "no", "off"):
            continue
        v = scope.options.get(option)
        if v is not None:
            return v.value
    return None


# -- the route cache ------------------------------------------------------------------------

@dataclass
class _Cached:
    result: RouteResult
    opts: RouteOptions
    expires: float


class Router:
    """The route cache: domain -> RouteResult until its TTL, as `dig`, `domain` and
    `refresh domain` see it. options_for(domain) -> RouteOptions supplies the options when
    a caller (the console) gives none. Complete successes and permanent failures are
    cached; transient failures never are. Cached routes hold their DNS cache entries."""

    def __init__(self, resolver, options_for: Callable[[str], RouteOptions] | None = None):
        self.resolver = resolver
        self.options_for = options_for or (lambda domain: RouteOptions())
        self._routes: dict[tuple[str, RouteOptions], _Cached] = {}
        self._subscribers: list = []
        resolver.purge_hooks.append(self.purge)

    def route(self, domain: str, opts: RouteOptions | None = None) -> RouteResult:
        """Cached route or a fresh one (cooperative)."""
        domain = D.normalize(domain)
        opts = opts if opts is not None else self.options_for(domain)
        hit = self.cached(domain, opts)
        if hit is not None:
            return hit
        res = route(self.resolver, domain, opts)
        if (res.ok and res.complete or res.permanent) and res.ttl > 0:
            self._store((domain, opts), _Cached(res, opts, self.resolver.now() + res.ttl))
        return res

    def cached(self, domain: str, opts: RouteOptions | None = None) -> RouteResult | None:
        domain = D.normalize(domain)
        opts = opts if opts is not None else self.options_for(domain)
        c = self._routes.get((domain, opts))
        if c is None or self.resolver.now() >= c.expires:
            return None
        return c.result

    def entries(self, domain: str) -> list[tuple[RouteOptions, RouteResult, int]]:
        """Every cached route of a domain: (options, result, seconds left)."""
        now = self.resolver.now()
        return [(k[1], c.result, max(0, int(c.expires - now)))
                for k, c in self._routes.items() if k[0] == D.normalize(domain)
                and now < c.expires]

    def domains(self) -> list[str]:
        return sorted({k[0] for k in self._routes})

    def submit(self, domain: str, opts: RouteOptions | None = None) -> gevent.Greenlet:
        """Route in the background (console `dig`)."""
        return gevent.spawn(self.route, domain, opts)

    def refresh(self, domain: str | None = None) -> list[str]:
        """Forget the cached routes and DNS answers of `domain` (None = every domain), tell
        the subscribers, and route each again in the background. Returns the domains."""
        names = self.domains() if domain is None else [D.normalize(domain)]
        for name in names:
            for key in [k for k in self._routes if k[0] == name]:
                self._drop(key, forget_dns=True)
            self.resolver.forget(name)
        for cb in list(self._subscribers):
            cb(None if domain is None else names[0])
        for name in names:
            self.submit(name)
        return names

    def subscribe(self, cb: Callable[[str | None], None]) -> Callable[[], None]:
        """cb(domain) after `refresh domain` (None for all); returns the unsubscribe."""
        self._subscribers.append(cb)
        return lambda: self._subscribers.remove(cb) if cb in self._subscribers else None

    def purge(self) -> int:
        now = self.resolver.now()
        stale = [k for k, c in self._routes.items() if now >= c.expires]
        for k in stale:
            self._drop(k)
        return len(stale)

    def _store(self, key, entry: _Cached) -> None:
        if key in self._routes:
            self._drop(key)
        self._routes[key] = entry
        self.resolver.hold(entry.result.dns_keys)

    def _drop(self, key, forget_dns: bool = False) -> None:
        c = self._routes.pop(key)
        self.resolver.release(c.result.dns_keys)
        if forget_dns:
            for name, rtype in c.result.dns_keys:
                self.resolver.forget(name, rtype)


def mx_summary(domain: str, result: RouteResult, ttl: int) -> list[str]:
    """The DNS lines of the `domain` command: "Domain 'x' has N MXs and a TTL of T seconds"
    then one "  [pref host. TTL:t]" line per MX."""
    lines = [f"Domain '{domain}' has {len(result.mxs)} MXs and a TTL of {ttl} seconds"]
    lines += [f"  [{m.preference} {m.host}. TTL:{m.ttl}]" for m in result.mxs]
    return lines
