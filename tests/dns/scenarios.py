"""DNS and routing scenarios run under gevent, one per process.

    python -m ecmta.tests.dns.scenarios <scenario>  < params.json

tests/dns/util.py runs each scenario here (pytest's own process stays unpatched): the
parameters come as JSON on stdin, the result goes out as one `RESULT <json>` line.
Every wait is bounded (gevent.Timeout or joinall timeouts).
"""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from dataclasses import asdict  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import gevent  # noqa: E402

from ecmta.transports import routing as R  # noqa: E402
from ecmta.transports.dns import Resolver  # noqa: E402
from ecmta.tests.dns.stub import StubServer  # noqa: E402


class Clock:
    """A clock the test moves by hand (TTL expiry without sleeping)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def resolver(port: int, **kw) -> Resolver:
    kw.setdefault("timeout", 1.0)
    return Resolver(nameservers=[f"127.0.0.1#{port}"], **kw)


def dres(r) -> dict:
    d = asdict(r)
    d["records"] = [list(x) if isinstance(x, tuple) else x for x in r.records]
    d["rrs"] = [list(x) for x in r.rrs]
    return d


def rres(r) -> dict:
    return {"targets": [[t.host, t.ip, t.port, t.preference, t.ttl] for t in r.targets],
            "groups": [[t.ip for t in g] for g in r.groups],
            "error_code": r.error_code, "error_text": r.error_text, "permanent": r.permanent,
            "ttl": r.ttl, "source": r.source, "complete": r.complete,
            "dns_failure": r.dns_failure, "mx_failure": r.mx_failure, "detail": r.detail,
            "mxs": [[m.preference, m.host, m.ttl] for m in r.mxs],
            "reply": str(r.reply) if r.reply else None, "ok": r.ok}


def options(d: dict) -> R.RouteOptions:
    return R.RouteOptions(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


# -- resolver --------------------------------------------------------------------------------

def s_lookups(p):
    r = resolver(p["port"])
    out = {}
    for name, rtype in p["queries"]:
        out[f"{name} {rtype}"] = dres(r.lookup(name, rtype))
    out["again"] = dres(r.lookup("mx.test", "MX"))
    out["stats"] = r.stats()
    return out


def s_ttl_clamp(p):
    clock = Clock()
    r = resolver(p["port"], min_ttl=p["min_ttl"], max_ttl=p["max_ttl"], clock=clock)
    first_raw = r.lookup("clamp.test", "A")
    first_delivery = r.lookup("clamp.test", "A", delivery=True)
    queries = [r.counters["A"]]
    clock.t += p["advance"]
    raw = r.lookup("clamp.test", "A")
    queries.append(r.counters["A"])
    delivery = r.lookup("clamp.test", "A", delivery=True)
    queries.append(r.counters["A"])
    return {"first_raw": dres(first_raw), "first_delivery": dres(first_delivery),
            "raw": dres(raw), "delivery": dres(delivery), "queries": queries}


def s_negative(p):
    clock = Clock()
    r = resolver(p["port"], max_ttl=p.get("max_ttl", 4294967295), clock=clock)
    out = {}
    for name, rtype in p["queries"]:
        a = r.lookup(name, rtype)
        b = r.lookup(name, rtype, delivery=True)
        out[f"{name} {rtype}"] = {"first": dres(a), "delivery": dres(b)}
    out["queries_after_repeat"] = sum(r.counters[t] for t in ("A", "AAAA", "MX"))
    clock.t += p.get("advance", 0)
    for name, rtype in p["queries"]:
        r.lookup(name, rtype, delivery=True)
    out["queries_after_advance"] = sum(r.counters[t] for t in ("A", "AAAA", "MX"))
    stub = StubServer()
    try:
        rs = resolver(stub.port, clock=clock)
        out["soa"] = dres(rs.lookup("soa-nx.stub", "A"))
    finally:
        stub.close()
    return out


def s_failures(p):
    stub = StubServer()
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        r = resolver(stub.port, timeout=0.3, attempts=1)
        sf1 = r.lookup("servfail.stub", "A")
        sf2 = r.lookup("servfail.stub", "A")
        asked = stub.queries.count(("servfail.stub", "A"))
        dead = resolver(silent.getsockname()[1], timeout=0.3, attempts=2)
        t0 = time.monotonic()
        to = dead.lookup("anything.test", "MX")
        one = time.monotonic() - t0
        # 50 different names at once on the silent server: cooperative, so the total is
        # about one lifetime, not 50 of them.
        t0 = time.monotonic()
        jobs = [gevent.spawn(dead.lookup, f"n{i}.test", "A") for i in range(50)]
        gevent.joinall(jobs, timeout=10)
        many = time.monotonic() - t0
        ticks = []

        def ticker():
            for _ in range(8):
                gevent.sleep(0.05)
                ticks.append(time.monotonic())
        tick = gevent.spawn(ticker)
        dead.lookup("ticking.test", "A")      # 0.6 s: the ticker must run meanwhile
        tick.join(timeout=2)
        # two servers: the first is silent, the second answers
        both = Resolver(nameservers=[f"127.0.0.1#{silent.getsockname()[1]}",
                                     f"127.0.0.1#{p['port']}"], timeout=0.3, attempts=1)
        second = both.lookup("aonly.test", "A")
    finally:
        stub.close()
        silent.close()
    return {"servfail": [dres(sf1), dres(sf2)], "servfail_asked": asked,
            "timeout": dres(to), "timeout_seconds": one, "lifetime": dead.lifetime,
            "many_seconds": many, "many_status": sorted({j.value.status for j in jobs}),
            "ticks_during_lookup": len(ticks), "second_server": dres(second),
            "stats": r.stats()}


def s_coalesce(p):
    r = resolver(p["port"])
    jobs = [gevent.spawn(r.lookup, "coal.test", "A") for _ in range(100)]
    gevent.joinall(jobs, timeout=10)
    out = {"answers": sorted({tuple(j.value.records) for j in jobs if j.value}),
           "done": sum(1 for j in jobs if j.successful()),
           "queries": r.counters["A"], "stats": r.stats()}
    # A slow server makes all 100 overlap: they must share the one query in flight.
    stub = StubServer()
    try:
        slow = resolver(stub.port, timeout=3)
        t0 = time.monotonic()
        jobs = [gevent.spawn(slow.lookup, "slow.coal.stub", "A") for _ in range(100)]
        pending_during = 0
        with gevent.Timeout(10):
            while not all(j.ready() for j in jobs):
                pending_during = max(pending_during, slow.pending())
                gevent.sleep(0.01)
        out.update(slow_seconds=time.monotonic() - t0, pending_during=pending_during,
                   pending_after=slow.pending(), slow_done=sum(j.successful() for j in jobs),
                   slow_statuses=sorted({j.value.status for j in jobs}),
                   slow_asked=stub.queries.count(("slow.coal.stub", "A")),
                   slow_stats=slow.stats())
    finally:
        stub.close()
    return out


def s_killed_leader(p):
    """The greenlet that asked first is killed mid-query: the others still get an answer."""
    stub = StubServer()
    try:
        r = resolver(stub.port, timeout=3)
        leader = gevent.spawn(r.lookup, "slow.leader.stub", "A")
        gevent.sleep(0.05)
        followers = [gevent.spawn(r.lookup, "slow.leader.stub", "A") for _ in range(5)]
        gevent.sleep(0.05)
        leader.kill()
        gevent.joinall(followers, timeout=10)
        return {"statuses": [f.value.status for f in followers],
                "asked": stub.queries.count(("slow.leader.stub", "A")),
                "pending": r.pending()}
    finally:
        stub.close()


def s_tcp_fallback(p):
    out = {}
    for fb in (False, True):
        r = resolver(p["port"], use_tcp_fallback=fb, edns_payload=0)
        out[str(fb)] = dres(r.lookup("big.test", "TXT"))
    out["edns"] = dres(resolver(p["port"]).lookup("big.test", "TXT"))
    return out


def s_purge(p):
    clock = Clock()
    r = resolver(p["port"], clock=clock, max_ttl=10)
    r.lookup("mxa.mx.test", "A", delivery=True)
    r.lookup("mxb.mx.test", "A", delivery=True)
    r.lookup("nx.test", "A")
    r.hold([("mxb.mx.test", "A")])
    before = len(r._cache)
    clock.t += 11          # past the clamped TTLs, not the raw 120
    early = r.purge()
    clock.t += 400         # past everything
    removed = r.purge()
    left = sorted(k[0] for k in r._cache)
    refs = r.refcnts()
    r.release([("mxb.mx.test", "A")])
    removed_after_release = r.purge()
    # the purge greenlet runs on its own with a short interval
    live = resolver(p["port"], purge_interval=0.1, max_ttl=0)
    live.lookup("mxc.mx.test", "A")     # raw TTL 120: kept
    live.start()
    gevent.sleep(0.35)
    kept = len(live._cache)
    live.min_ttl = live.max_ttl = 0
    live._cache[("mxc.mx.test", "A")].raw_expires = 0    # make it stale in both views
    gevent.sleep(0.35)
    live.stop()
    return {"before": before, "early": early, "removed": removed, "left": left,
            "refs": refs, "removed_after_release": removed_after_release,
            "live_kept": kept, "live_after": len(live._cache)}


def s_resolv_conf(p):
    d = tempfile.mkdtemp(prefix="ecresolv")
    out = {}
    for label, line in (("hash", f"nameserver 127.0.0.1#{p['port']}"),
                        ("colon", f"nameserver 127.0.0.1:{p['port']}")):
        path = os.path.join(d, f"{label}.conf")
        with open(path, "w") as fh:
            fh.write(f"# test resolver\n; comment\nsearch example.org\n{line}\n"
                     "options timeout:2 attempts:1 ndots:1\n")
        r = Resolver(resolv_conf=path)
        out[label] = {"status": r.lookup("aonly.test", "A").status,
                      "nameservers": r.nameservers, "timeout": r.timeout,
                      "attempts": r.attempts}
    from ecmta.config import load_config_text
    cfg = load_config_text(f'resolv_conf = "{path}"\nmin_dns_ttl = 200\nmax_dns_ttl = 600\n'
                           "dns_cache_purge_interval = 7\ndns_fallback_to_tcp = true\n",
                           allow_unbuilt=True)
    r = Resolver.from_config(cfg)
    res = r.lookup("aonly.test", "A", delivery=True)
    out["from_config"] = {"ttl": res.ttl, "min": r.min_ttl, "max": r.max_ttl,
                          "purge": r.purge_interval, "tcp": r.use_tcp_fallback,
                          "nameservers": r.nameservers}
    cfg2 = load_config_text(f'resolv_conf = "{path}"\nmax_dns_ttl = 50\n', allow_unbuilt=True)
    r.apply_config(cfg2)
    out["applied"] = {"min": r.min_ttl, "max": r.max_ttl, "tcp": r.use_tcp_fallback,
                      "purge": r.purge_interval}
    try:
        Resolver(resolv_conf=os.path.join(d, "missing.conf"))
        out["missing"] = None
    except OSError as exc:
        out["missing"] = exc.__class__.__name__
    return out


def s_summary(p):
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    r = Resolver(nameservers=[f"127.0.0.1#{p['port']}"], timeout=1)
    r.lookup("mx.test", "MX")
    r.lookup("mxa.mx.test", "A")
    r.lookup("mxb.mx.test", "AAAA")
    r.lookup("mxa.mx.test", "A")         # cached: not a query
    first = r.summary_stats()
    r.nameservers = [("127.0.0.1", silent.getsockname()[1])]
    job = gevent.spawn(r.lookup, "pending.test", "A")
    gevent.sleep(0.05)
    pending = r.summary_stats()["pending"]
    job.kill()
    r.reset_summary()
    after_reset = r.summary_stats()
    silent.close()
    return {"first": first, "pending": pending, "after_reset": after_reset}


# -- routing ---------------------------------------------------------------------------------

def s_routes(p):
    r = resolver(p["port"], min_ttl=p.get("min_ttl", 0))
    out = {}
    for label, domain, opts in p["cases"]:
        out[label] = rres(R.route(r, domain, options(opts)))
    return out


def s_stub_routes(p):
    stub = StubServer()
    try:
        r = resolver(stub.port, timeout=1.5, attempts=1)
        out = {}
        for label, domain, opts in p["cases"]:
            t0 = time.monotonic()
            res = R.route(r, domain, options(opts))
            out[label] = rres(res)
            out[label]["seconds"] = time.monotonic() - t0
        # after a partial route the slow lookup finishes in the background
        gevent.sleep(1.5)
        again = R.route(r, "partial.stub", options({"fully_resolve": False}))
        out["after_background"] = rres(again)
        out["queries"] = stub.queries
        return out
    finally:
        stub.close()


def s_router(p):
    clock = Clock()
    r = resolver(p["port"], clock=clock, min_ttl=0)
    refreshed = []
    router = R.Router(r, options_for=lambda d: R.RouteOptions(use_ipv6=d == "mx.test"))
    router.subscribe(refreshed.append)
    first = router.route("mx.test")
    mx_queries = r.counters["MX"]
    second = router.route("MX.test.")
    cached_same = first is second
    queries_after_second = r.counters["MX"]
    refs = r.refcnts()
    transient = router.route("empty.test")            # 454: not cached
    permanent = router.route("nx.test")               # 554: cached for the negative TTL
    domains = router.domains()
    mx_before_refresh = r.counters["MX"]
    names = router.refresh("mx.test")
    gevent.sleep(0.3)                                  # the background re-route
    mx_after_refresh = r.counters["MX"]
    refreshed_cached = router.cached("mx.test") is not None
    clock.t += 200                                     # past the 120 s TTLs
    expired = router.cached("mx.test")
    purged = router.purge()
    all_names = router.refresh(None)
    gevent.sleep(0.3)
    entries = router.entries("nx.test")
    return {"first": rres(first), "cached_same": cached_same, "mx_queries": mx_queries,
            "queries_after_second": queries_after_second, "refs": refs,
            "transient": rres(transient), "permanent": rres(permanent), "domains": domains,
            "refreshed_names": names, "subscribers": refreshed,
            "mx_refresh_queries": mx_after_refresh - mx_before_refresh,
            "refreshed_cached": refreshed_cached, "expired": expired is None,
            "purged": purged, "all_names": all_names,
            "entries": [[rres(res)["ok"], left] for _o, res, left in entries],
            "summary": R.mx_summary("mx.test", first, first.ttl)}


def s_config_options(p):
    from ecmta.config import EvalContext, load_config_text
    cfg = load_config_text(p["config"], allow_unbuilt=True)
    out = {}
    for label, domain, kw in p["cases"]:
        opts = R.route_options(cfg, EvalContext(domain=domain), **kw)
        out[label] = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(opts).items()}
    return out


# -- console ---------------------------------------------------------------------------------

def s_console(p):
    from ecmta.console import registry
    from ecmta.console.registry import CommandContext, Session
    import ecmta.console.cmd_dns  # noqa: F401  (registers the commands)

    r = resolver(p["port"], min_ttl=p.get("min_ttl", 0))
    daemon = SimpleNamespace(dns=r)
    if p.get("router"):
        daemon.router = R.Router(r)
    ctx = CommandContext(daemon, Session())
    out = []
    for line in p["lines"]:
        if line.startswith("!sleep "):
            gevent.sleep(float(line.split()[1]))
            continue
        ok, text = registry.dispatch(ctx, line)
        out.append([line, ok, text])
    nodns = registry.dispatch(CommandContext(SimpleNamespace(), Session()), "dns_cache stats")
    return {"out": out, "nodns": list(nodns),
            "routes": daemon.router.domains() if p.get("router") else None}


SCENARIOS = {name[2:]: fn for name, fn in globals().items() if name.startswith("s_")}


def main() -> int:
    name = sys.argv[1]
    params = json.load(sys.stdin)
    try:
        with gevent.Timeout(params.pop("deadline", 45)):
            result = SCENARIOS[name](params)
    except BaseException:
        traceback.print_exc()
        return 1
    sys.stdout.write("RESULT " + json.dumps(result, default=repr) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
