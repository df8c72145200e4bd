"""Console commands about DNS: `dig`, `dns_cache stats|refcnts|submit|lookup`,
`refresh domain <domain>|all`.

Owns: the output layouts of console_commands.dig, .dns_cache and .refresh_domain. Talks to:
`ctx.daemon.dns` (a `transports.dns.Resolver`: the DNS cache) and `ctx.daemon.router` (a
`transports.routing.Router`: the route cache) when the daemon has one. Lookups started
here run in their own greenlets; no handler waits for the network. Fails by raising
ConsoleError: wrong arguments, an unknown record type, no resolver.

Layouts (from the pages):
- `dig example.com` -> `submitted` (routes the domain in the background: an MX query, then
  its hosts' addresses, into the route cache; without a router, an MX query into the DNS
  cache).
- `dns_cache submit <record> <type>` -> `Submitted`; `dns_cache lookup <record> <type>` ->
  `Cached result not found, try a submit.` or dig's QUESTION/ANSWER sections with the
  seconds left. Types: A, MX, PTR, X, X_AAAA, TXT, AAAA, CNAME; X and X_AAAA are the
  address lookups made for MX hosts (A/AAAA with min_dns_ttl/max_dns_ttl applied).
- `dns_cache stats`: the three blocks of the page, labels right-aligned to 11 columns.
- `dns_cache refcnts`: `[%3d] name [Ns]` then `      (null)` per cache entry.
Decisions where the pages leave room: `refresh domain` answers `submitted` (like `dig`:
the domain's cached routes and DNS answers are dropped and it is routed again in the
background); a negative cache entry shows `;; NXDOMAIN [Ns]` (or NODATA) as its answer.
"""

from __future__ import annotations

from ecmta.console.registry import ConsoleError, command
from ecmta.transports import dns as D

LABEL_WIDTH = 11
TYPE_LIST = "A, MX, PTR, X, X_AAAA, TXT, AAAA, CNAME"


def _resolver(ctx):
    res = getattr(ctx.daemon, "dns", None)
    if res is None:
        raise ConsoleError("The DNS resolver is not running.")
    return res


def _router(ctx):
    return getattr(ctx.daemon, "router", None)


def _record_type(word: str) -> tuple[str, bool]:
    try:
        return D.CONSOLE_TYPES[word.upper()]
    except KeyError:
        raise ConsoleError(f"Unknown record type '{word}'. Use one of {TYPE_LIST}.") from None


# -- dig -------------------------------------------------------------------------------------

@command("dig", help="Submit a domain for DNS MX query.", usage="dig <domain>")
def dig(ctx, args: list[str]) -> str:
    if len(args) != 1:
        raise ConsoleError("usage: dig <domain>")
    router = _router(ctx)
    if router is not None:
        router.submit(args[0])
    else:
        _resolver(ctx).submit(args[0], "MX", delivery=True)
    return "submitted"


# -- dns_cache ---------------------------------------------------------------------------------

DNS_CACHE_USAGE = "dns_cache stats | dns_cache refcnts | dns_cache submit <record> <type> | " \
                  "dns_cache lookup <record> <type>"


@command("dns_cache", help="Manage the DNS cache.", usage=DNS_CACHE_USAGE)
def dns_cache(ctx, args: list[str]) -> str:
    raise ConsoleError(f"usage: {DNS_CACHE_USAGE}")


def _line(label: str, value) -> str:
    return f"{label:>{LABEL_WIDTH}}: {value}"


@command("dns_cache stats", help="Show summary statistics about the DNS cache.",
         usage="dns_cache stats")
def dns_cache_stats(ctx, args: list[str]) -> str:
    s = _resolver(ctx).stats()
    lines = ["DNS Queries:"]
    lines += [_line(k, s[k]) for k in ("TXT", "PTR", "MX", "A", "arpa IPv4", "arpa IPv6")]
    lines += ["", "DNS responses:", _line("Total", s["responses"]), _line("Bad", s["bad"]),
              "", "DNS cache:", _line("Lookups", s["lookups"]),
              _line("Hit Rate", f"{s['hit_rate']:g}%")]
    return "\n".join(lines)


@command("dns_cache refcnts", help="Show the reference count of each DNS cache entry.",
         usage="dns_cache refcnts")
def dns_cache_refcnts(ctx, args: list[str]) -> str:
    lines = []
    for refs, name, _rtype, left in _resolver(ctx).refcnts():
        lines += [f"[{refs:3d}] {name} [{left}s]", "      (null)"]
    return "\n".join(lines)


def _record_args(args: list[str], verb: str) -> tuple[str, str, bool]:
    if len(args) != 2:
        raise ConsoleError(f"usage: dns_cache {verb} <record> <type>  (type: {TYPE_LIST})")
    rtype, delivery = _record_type(args[1])
    return args[0], rtype, delivery


@command("dns_cache submit", help="Submit a DNS query; the answer is cached.",
         usage="dns_cache submit <record> <type>")
def dns_cache_submit(ctx, args: list[str]) -> str:
    name, rtype, delivery = _record_args(args, "submit")
    _resolver(ctx).submit(name, rtype, delivery=delivery)
    return "Submitted"


@command("dns_cache lookup", help="Look a DNS query up in the cache.",
         usage="dns_cache lookup <record> <type>")
def dns_cache_lookup(ctx, args: list[str]) -> str:
    name, rtype, delivery = _record_args(args, "lookup")
    hit = _resolver(ctx).cached(name, rtype, delivery=delivery)
    if hit is None:
        return "Cached result not found, try a submit."
    return "\n".join(D.answer_lines(hit, rtype))


# -- refresh domain ------------------------------------------------------------------------------

@command("refresh domain", help="Refresh the DNS information for a domain (or all).",
         usage="refresh domain <domain>|all")
def refresh_domain(ctx, args: list[str]) -> str:
    if len(args) != 1:
        raise ConsoleError("usage: refresh domain <domain>|all")
    target = None if args[0].lower() == "all" else args[0]
    router = _router(ctx)
    resolver = _resolver(ctx)
    if router is not None:
        router.refresh(target)
    elif target is None:
        resolver.clear()
    else:
        resolver.forget(target)
        resolver.submit(target, "MX", delivery=True, use_cache=False)
    return "submitted"
