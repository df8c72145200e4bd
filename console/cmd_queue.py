"""Console commands that show the queues: `mailq`, `showqueue`, `active`, `delayed`,
`binding active`, `binding delayed`, `domain <name>`, `domain all` (`domains`), `summary`,
`summary reset`, `binding summary`.

Owns: the output layouts of those pages (console_commands.*, MOMENTUM_DIGEST §4.8).
Talks to: the delivery service and its domain queue actors (QueueStatsGet, through
cmd_queue_base.ask_queues), the route cache (`ctx.daemon.router`), the DNS resolver's
summary counters, the ESMTP service's session table, the config. Fails by raising
ConsoleError: wrong arguments, unknown binding or domain, no delivery service.

The queue-changing commands live in cmd_queue_admin (message, fail/flush domain, rebind,
reroute queue, spool_in, spool import, unlink stats) and the outbound connection commands
in cmd_queue_outbound (show outbound, count outbound, trace smtp); both are imported at
the end of this module so the loader only needs `ecmta.console.cmd_queue`.

Layouts (values substituted into the pages' examples):
- `mailq`: `Group/Binding` left, `Domain` right-aligned to column 58, AQ and DQ in 8
  columns each, under 74 dashes; one row per queue, default group and binding first,
  then by name; at most --limit rows (20).
- `showqueue`: `[active/<binding>] <id> Created: <unix time>` then
  `  From: <sender> To: <rcpt>`, queue order, `limit,offset` (100,0) over the listing.
- `active N` / `delayed N` / `binding active|delayed B N`: `Domain:` rows of the domains
  whose active (delayed) count exceeds N, by name, then the `Total:` row over every domain
  (of the binding). N may be left out (0).
- `domain all`: `Domain summary:`, one row per domain (queued or configured in a Domain
  stanza), `Totals:`.
- `summary`: the 19 documented fields under `Summary Statistics`, each indented 8 spaces
  with the value widths of the page's example (the page shows left-aligned labels).
- `binding summary [name|slot|group:G]`: the page's blocks. Slots number the bindings as
  listed (default = 0, then the Binding stanzas in order).

Decisions where the pages leave room:
- Active Domains counts the domains known to delivery: those with a queue or a cached route.
- Destaged Queue Size: active messages whose body is not held in memory (destaged by
  max_resident_active_queue or read back from the spool at start). They are also counted
  in Active Queue Size; Total Queue Size is active + delayed.
- Resident Messages / Incore Messages: queued messages whose body is held in memory.
- Delivery Rate counts deliveries and permanent failures, per second since the last reset.
- `domain <name>`: the MX/A list comes from the route cache (the domain's first cached
  route; for a route without MX records, e.g. a Gateway, its hosts are listed the same
  way). `=>` marks the address the next connection would use, `*` an address inside its
  host_failure_retry window after a failed connect ("Ns since failure"); the connect and
  delivery times are per-IP decayed averages kept by delivery. The connection lines
  (`State:`) show the SMTP stage and, as ecmta does not time single stages, the age of
  the connection. A domain unknown to the queues, the route cache and the config is an
  error: `Domain 'x' not found.`
"""

from __future__ import annotations

import ipaddress
import time

from ecmta.console.cmd_queue_base import (
    COUNTERS, DEFAULT, all_bindings, binding_groups, by_domain, config,
    delivery, domain_line, parse_threshold, queue_keys, queue_stats, resolve_binding, sums,
    threshold_report, totals_line)
from ecmta.console.registry import ConsoleError, command

# -- mailq ---------------------------------------------------------------------------------------

MAILQ_USAGE = "mailq [--domain|-d domain ...] [--binding|-b binding ...] [--limit|-l number]"
MAILQ_HEADER = "Group/Binding" + " " * 39 + "Domain" + "      AQ      DQ"
MAILQ_RULE = "-" * 74


def parse_mailq(args: list[str]) -> tuple[list[str], list[str], int]:
    domains: list[str] = []
    bindings: list[str] = []
    limit = 20
    target = None
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("--domain", "-d"):
            target = domains
        elif a in ("--binding", "-b"):
            target = bindings
        elif a in ("--limit", "-l"):
            if i + 1 >= len(args) or not args[i + 1].isdigit():
                raise ConsoleError(f"usage: {MAILQ_USAGE}")
            limit = int(args[i + 1])
            target = None
            i += 1
        elif a.startswith("-") or target is None:
            raise ConsoleError(f"usage: {MAILQ_USAGE}")
        else:
            target.append(a)
        i += 1
    return domains, bindings, limit


def _order(name: str) -> tuple:
    return (name != DEFAULT, name)


def mailq_row(group: str, binding: str, domain: str, aq: int, dq: int) -> str:
    gb = f"{group}/{binding}"
    pad = max(1, 58 - len(gb) - len(domain))
    return f"{gb}{' ' * pad}{domain}{aq:8d}{dq:8d}"


def mailq_lines(stats: list[dict], limit: int) -> list[str]:
    rows = sorted(stats, key=lambda s: (_order(s["group"]), _order(s["binding"]), s["domain"]))
    lines = [MAILQ_HEADER, MAILQ_RULE]
    lines += [mailq_row(s["group"], s["binding"], s["domain"], s["active"], s["delayed"])
              for s in rows[:limit]]
    return lines


@command("mailq", help="show the status of the mail queues", usage=MAILQ_USAGE)
def mailq(ctx, args):
    domains, bindings, limit = parse_mailq(args)
    svc = delivery(ctx)
    keys = [k for k in queue_keys(svc)
            if (not domains or k[2] in {d.lower() for d in domains})
            and (not bindings or k[0] in bindings)]
    return "\n".join(mailq_lines(queue_stats(svc, keys), limit))


# -- showqueue -----------------------------------------------------------------------------------

SHOWQUEUE_USAGE = "showqueue [binding <binding_name>|binding all] <domain_name> [limit,offset]"


def _limit_offset(text: str) -> tuple[int, int]:
    lim, _, off = text.partition(",")
    if not lim.strip().isdigit() or (off and not off.strip().isdigit()):
        raise ConsoleError(f"usage: {SHOWQUEUE_USAGE}  (limit,offset defaults to 100,0)")
    return int(lim), int(off or 0)


def showqueue_lines(rows: list[tuple]) -> list[str]:
    """rows: (state, binding, id, received_at, sender, recipient)."""
    lines = []
    for state, binding, msg_id, created, sender, rcpt in rows:
        lines.append(f"[{state}/{binding}] {msg_id} Created: {int(created)}")
        lines.append(f"  From: <{sender}> To: <{rcpt}>")
    return lines


@command("showqueue", help="show the messages queued for a domain", usage=SHOWQUEUE_USAGE)
def showqueue(ctx, args):
    svc = delivery(ctx)
    binding = DEFAULT
    rest = list(args)
    if rest and rest[0].lower() == "binding":
        if len(rest) < 2:
            raise ConsoleError(f"usage: {SHOWQUEUE_USAGE}")
        binding = None if rest[1].lower() == "all" else resolve_binding(ctx, svc, rest[1])
        rest = rest[2:]
    if not 1 <= len(rest) <= 2:
        raise ConsoleError(f"usage: {SHOWQUEUE_USAGE}")
    domain = rest[0]
    limit, offset = _limit_offset(rest[1]) if len(rest) == 2 else (100, 0)
    keys = queue_keys(svc, binding=binding, domain=domain)
    if not keys:
        where = "" if binding is None else f" on binding '{binding}'"
        raise ConsoleError(f"Domain '{domain}' has no queue{where}.")
    rows = []
    for s in queue_stats(svc, keys, list_messages=limit + offset, offset=0):
        rows += [(state, s["binding"], mid, created, sender, rcpt)
                 for state, mid, created, sender, rcpt in s["messages"]]
    if len(keys) > 1:
        rows.sort(key=lambda r: (r[3], r[2]))
    return "\n".join(showqueue_lines(rows[offset:offset + limit]))


# -- active / delayed ----------------------------------------------------------------------------

@command("active", help="show domains with active queue size bigger than threshold",
         usage="active <threshold>")
def active(ctx, args):
    n = parse_threshold(args, "active <threshold>")
    svc = delivery(ctx)
    return threshold_report(queue_stats(svc, queue_keys(svc)), 1, n)


@command("delayed", help="show domains with delayed queue size bigger than threshold",
         usage="delayed <threshold>")
def delayed(ctx, args):
    n = parse_threshold(args, "delayed <threshold>")
    svc = delivery(ctx)
    return threshold_report(queue_stats(svc, queue_keys(svc)), 2, n)


def _binding_threshold(ctx, args, column: int, usage: str) -> str:
    if not args:
        raise ConsoleError(f"usage: {usage}")
    svc = delivery(ctx)
    binding = resolve_binding(ctx, svc, args[0])
    n = parse_threshold(args[1:], usage)
    return threshold_report(queue_stats(svc, queue_keys(svc, binding=binding)), column, n)


@command("binding active", usage="binding active <binding_name> <threshold>",
         help="show domains with active queue size bigger than threshold on a binding")
def binding_active(ctx, args):
    return _binding_threshold(ctx, args, 1, "binding active <binding_name> <threshold>")


@command("binding delayed", usage="binding delayed <binding_name> <threshold>",
         help="show domains with delayed queue size bigger than threshold on a binding")
def binding_delayed(ctx, args):
    return _binding_threshold(ctx, args, 2, "binding delayed <binding_name> <threshold>")


# -- domain all ----------------------------------------------------------------------------------

def _configured_domains(ctx) -> list[str]:
    try:
        scopes = config(ctx).scopes("Domain")
    except Exception:
        return []
    return [s.name.lower() for s in scopes
            if s.parent is not None and s.parent.parent is None and s.name
            and not any(ch in s.name for ch in "*?[")]


def domain_all_lines(rows: dict[str, list[int]]) -> list[str]:
    lines = ["Domain summary:"]
    lines += [domain_line(d, *rows[d]) for d in sorted(rows)]
    lines.append(totals_line(*sums(rows.values())))
    return lines


def _domain_all(ctx) -> str:
    svc = delivery(ctx)
    rows = by_domain(queue_stats(svc, queue_keys(svc)))
    for d in _configured_domains(ctx):
        rows.setdefault(d, [0, 0, 0, 0])
    return "\n".join(domain_all_lines(rows))


@command("domain all", help="show statistics for all domains", usage="domain all")
def domain_all(ctx, args):
    if args:
        raise ConsoleError("usage: domain all")
    return _domain_all(ctx)


@command("domains", help="show statistics for all domains (domain all)", usage="domains")
def domains(ctx, args):
    if args:
        raise ConsoleError("usage: domains")
    return _domain_all(ctx)


# -- domain <name> -------------------------------------------------------------------------------

def config_block(scope) -> list[str]:
    """`Domain hotmail.com {` / `  max_outbound_connections = 20` / `}`, or nothing."""
    if scope is None or not scope.options:
        return []
    lines = [f"Domain {scope.name} {{"]
    lines += [f"  {key} = {value.raw}" for key, value in scope.options.items()]
    lines.append("}")
    return lines


def _family(ip: str) -> str:
    try:
        return "IPv6" if ipaddress.ip_address(ip).version == 6 else "IPv4"
    except ValueError:
        return "IPv4"


def _route_entry(router, domain: str):
    """(result, seconds left) of the domain's cached route, successful ones first."""
    if router is None:
        return None
    try:
        entries = router.entries(domain)
    except Exception:
        return None
    if not entries:
        return None
    entries.sort(key=lambda e: not e[1].ok)
    _opts, result, left = entries[0]
    return result, left


def _hosts_of(result) -> list[tuple[int, str, int]]:
    if result.mxs:
        return [(m.preference, m.host, m.ttl) for m in result.mxs]
    seen, out = set(), []
    for t in result.targets:
        if t.host not in seen:
            seen.add(t.host)
            out.append((t.preference, t.host, t.ttl))
    return out


def _next_target(ctx, svc, result, now: float):
    from ecmta.config import EvalContext
    from ecmta.transports import routing
    cfg = config(ctx)

    def limit(t):
        v = cfg.value("max_outbound_connections", EvalContext(host=t.host))
        return -1 if v is None else int(v)
    try:
        return routing.choose_target(result.groups, dict(svc.per_host), limit,
                                     lambda t: svc.host_failed_until.get(t.ip, 0) <= now)
    except Exception:
        return None


def _also_used(router, domain: str, ip: str) -> list[str]:
    out = []
    try:
        names = [d for d in router.domains() if d != domain]
    except Exception:
        return out
    for other in names:
        for _opts, res, _left in router.entries(other):
            prefs = sorted({t.preference for t in res.targets if t.ip == ip})
            out += [f"                (also used by {other} pref {p})" for p in prefs]
            if prefs:
                break
    return out


def route_lines(ctx, svc, domain: str, result, left: int, now: float) -> list[str]:
    hosts = _hosts_of(result)
    lines = [f"Domain '{domain}' has {len(result.mxs)} MXs and a TTL of {left} seconds"]
    nxt = _next_target(ctx, svc, result, now) if result.ok else None
    router = getattr(ctx.daemon, "router", None)
    for pref, host, ttl in hosts:
        lines.append(f"  [{pref} {host} TTL:{ttl}]")
        for t in result.targets:
            if t.host != host:
                continue
            failed = svc.host_failed_until.get(t.ip, 0) > now
            marker = " *" if failed else (" =>" if nxt is not None and t == nxt else "")
            con, dlv = svc.host_times.get(t.ip, (0.0, 0.0))
            line = f"{marker:<8}[{t.ip}] {_family(t.ip)} ({con:.2f}ms con {dlv:.2f}ms dlv)"
            if failed and t.ip in svc.host_failed_at:
                line += f" {now - svc.host_failed_at[t.ip]:.2f}s since failure"
            lines.append(line)
            lines += _also_used(router, domain, t.ip)
    if not result.ok and result.error_code:
        lines.append(f"  [{result.error_code} {result.error_text}]")
    return lines


def connection_lines(svc, domain: str, now: float) -> list[str]:
    from ecmta.console.cmd_queue_outbound import connection_facts
    rows = [connection_facts(*info) for info in list(svc.outbound.values())
            if info[3] == domain]
    return [f"[{i:2d}] FD: {r['fd']:6d}  IP: {r['ip']:>15}  State: {r['state']} "
            f"({(now - r['since']) * 1000:.2f}ms)" for i, r in enumerate(rows, 1)]


def queue_part(active: int, delayed: int, deliveries: int, failures: int, conns: int) -> list[str]:
    return ["Queue:",
            f"        Active: {active:10d}",
            f"        Delayed: {delayed:9d}",
            f"Deliveries: {deliveries:9d}",
            f"Failures: {failures:11d}",
            f"Active Connections: {conns}"]


@command("domain", help="show domain statistics", usage="domain <domain_name>|all")
def domain(ctx, args):
    if len(args) != 1:
        raise ConsoleError("usage: domain <domain_name>|all")
    name = args[0].lower()
    svc = delivery(ctx)
    now = time.time()
    cfg = config(ctx)
    try:
        scope = cfg.find((("Domain", name),))
    except Exception:
        scope = None
    keys = queue_keys(svc, domain=name)
    route = _route_entry(getattr(ctx.daemon, "router", None), name)
    if not keys and route is None and scope is None:
        raise ConsoleError(f"Domain '{name}' not found.")
    lines = config_block(scope)
    if route is not None:
        lines += route_lines(ctx, svc, name, route[0], route[1], now)
    else:
        lines.append(f"Domain '{name}' is not in the DNS cache")
    stats = queue_stats(svc, keys)
    failures = max((s["consecutive_failures"] for s in stats), default=0)
    if failures:
        lines.append(f"Domain has had {failures} consecutive connection failures")
    conns = connection_lines(svc, name, now)
    lines += queue_part(sum(s["active"] for s in stats), sum(s["delayed"] for s in stats),
                        sum(s["deliveries"] for s in stats), sum(s["failures"] for s in stats),
                        len(conns))
    return "\n".join(lines + conns)


# -- summary -------------------------------------------------------------------------------------

def summary_lines(v: dict) -> list[str]:
    return [
        "Summary Statistics",
        f"        Outbound Concurrency: {v['outbound']:7d}",
        f"        Inbound Concurrency: {v['inbound']:7d}",
        f"        Active Domains: {v['domains']:7d}",
        f"        Active Queue Size: {v['active']:6d}",
        f"        Delayed Queue Size: {v['delayed']:6d}",
        f"        Destaged Queue Size: {v['destaged']:6d}",
        f"        Total Queue Size: {v['total']:6d}",
        f"        DNS A Queries: {v['a_queries']:6d}",
        f"        DNS MX Queries: {v['mx_queries']:6d}",
        f"        Pending DNS Queries: {v['pending']}",
        f"        Query Rate: {v['query_rate']:6.2f} queries/second",
        f"        Successfully Delivered Messages: {v['delivered']:6d}",
        f"        Failed Messages: {v['failed']:6d}",
        f"        Rejected Messages: {v['rejected']:6d}",
        f"        Received Messages: {v['received']:6d}",
        f"        Delivery Rate: {v['delivery_rate']:6.2f} messages/second",
        f"        Reception Rate: {v['reception_rate']:6.2f} messages/second",
        f"        Statistics Last Reset: {v['since_reset']:6d} seconds",
        f"        Uptime: {v['uptime']:6d} seconds",
    ]


def _rate(n: int, seconds: float) -> float:
    return n / max(1.0, seconds)


def _inbound(ctx) -> int:
    esmtp = getattr(ctx.daemon, "esmtp", None)
    table = getattr(esmtp, "table", None)
    return len(table.sessions) if table is not None else 0


def summary_values(ctx) -> dict:
    svc = delivery(ctx)
    now = time.time()
    stats = queue_stats(svc, queue_keys(svc))
    router = getattr(ctx.daemon, "router", None)
    names = {s["domain"] for s in stats} | {k[2] for k in list(svc.queues)}
    if router is not None:
        names |= set(router.domains())
    dns = getattr(ctx.daemon, "dns", None)
    d = dns.summary_stats() if dns is not None else \
        {"a_queries": 0, "mx_queries": 0, "pending": 0, "query_rate": 0.0}
    st = svc.stats
    since = now - st.reset_at
    return {
        "outbound": svc.connections, "inbound": _inbound(ctx), "domains": len(names),
        "active": sum(s["active"] for s in stats), "delayed": sum(s["delayed"] for s in stats),
        "destaged": sum(s.get("destaged", 0) for s in stats),
        "total": sum(s["active"] + s["delayed"] for s in stats),
        "a_queries": d["a_queries"], "mx_queries": d["mx_queries"], "pending": d["pending"],
        "query_rate": d["query_rate"],
        "delivered": st.delivered, "failed": st.failed, "rejected": st.rejected,
        "received": st.received,
        "delivery_rate": _rate(st.delivered + st.failed, since),
        "reception_rate": _rate(st.received, since),
        "since_reset": int(since), "uptime": int(now - ctx.daemon.started_at),
    }


@command("summary", help="show global metrics", usage="summary")
def summary(ctx, args):
    if args:
        if args[0].lower() == "with-mobile":
            raise ConsoleError("summary with-mobile: SMPP and MM7 queues are not available "
                               "in this version")
        raise ConsoleError("usage: summary | summary reset")
    return "\n".join(summary_lines(summary_values(ctx)))


@command("summary reset", help="reset summary statistics", usage="summary reset")
def summary_reset(ctx, args):
    if args:
        raise ConsoleError("usage: summary reset")
    delivery(ctx).stats.reset()
    dns = getattr(ctx.daemon, "dns", None)
    if dns is not None:
        dns.reset_summary()
    COUNTERS.reset()
    return "statistics cleared."


# -- binding summary -----------------------------------------------------------------------------

BINDING_SUMMARY_USAGE = "binding summary [<binding name>|<binding slot>|group:<binding group>]"


def binding_block(title: str, v: dict, resident_label: str = "Resident Messages") -> list[str]:
    return [
        title,
        f"        Open Connections: {v['connections']:7d}",
        f"        Active Queue Size: {v['active']:6d}",
        f"        Total Queue Size: {v['total']:6d}",
        f"        Successfully Delivered Messages: {v['delivered']:6d}",
        f"        Failed Messages: {v['failed']:6d}",
        f"        Received Messages: {v['received']:6d}",
        f"        {resident_label}: {v['resident']:6d}",
        f"        Delivery Rate: {v['delivery_rate']:6.2f} messages/second",
        f"        Reception Rate: {v['reception_rate']:6.2f} messages/second",
        f"        Uptime: {v['uptime']:6d} seconds",
    ]


def _values(stats, connections, delivered, failed, received, since, uptime) -> dict:
    active = sum(s["active"] for s in stats)
    return {"connections": connections, "active": active,
            "total": active + sum(s["delayed"] for s in stats),
            "delivered": delivered, "failed": failed, "received": received,
            "resident": sum(s.get("resident", 0) for s in stats),
            "delivery_rate": _rate(delivered + failed, since),
            "reception_rate": _rate(received, since), "uptime": uptime}


@command("binding summary", help="show binding statistics", usage=BINDING_SUMMARY_USAGE)
def binding_summary(ctx, args):
    if len(args) > 1:
        raise ConsoleError(f"usage: {BINDING_SUMMARY_USAGE}")
    svc = delivery(ctx)
    now = time.time()
    since = now - svc.stats.reset_at
    uptime = int(now - ctx.daemon.started_at)
    stats = queue_stats(svc, queue_keys(svc))
    names = all_bindings(ctx, svc)
    group = None
    if not args:
        chosen = names
    elif args[0].lower().startswith("group:"):
        group = args[0][6:]
        groups = binding_groups(ctx)
        if group not in groups and group != DEFAULT:
            raise ConsoleError(f"Binding group '{group}' not found.")
        if group == DEFAULT and group not in groups:
            in_groups = {b for members in groups.values() for b in members}
            chosen = [b for b in names if b not in in_groups]
        else:
            chosen = list(groups[group])
    elif args[0].isdigit():
        slot = int(args[0])
        if slot >= len(names):
            raise ConsoleError(f"Binding slot {slot} not found.")
        chosen = [names[slot]]
    else:
        chosen = [resolve_binding(ctx, svc, args[0])]

    def values_for(binding: str) -> dict:
        mine = [s for s in stats if s["binding"] == binding]
        return _values(mine, svc.per_binding.get(binding, 0), COUNTERS.delivered[binding],
                       COUNTERS.failed[binding], COUNTERS.received[binding], since, uptime)
    lines = []
    for b in chosen:
        title = f"Summary Statistics For Binding {b}"
        if group is not None:
            title += f" in Binding Group {group}"
        lines += binding_block(title, values_for(b))
    if group is not None:
        mine = [s for s in stats if s["binding"] in chosen]
        v = _values(mine, sum(svc.per_binding.get(b, 0) for b in chosen),
                    COUNTERS.group_delivered[group], COUNTERS.group_failed[group],
                    COUNTERS.group_received[group], since, uptime)
        lines += ["", "*" * 44]
        lines += binding_block(f"Summary Statistics For Binding Group {group}", v,
                               "Incore Messages")
    return "\n".join(lines)


# The queue-changing and outbound-connection commands register when this module loads.
from ecmta.console import cmd_queue_admin, cmd_queue_outbound  # noqa: E402,F401
