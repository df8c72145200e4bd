"""What the queue console commands share: asking domain queues, naming bindings and
domains, the per-binding counters and the common line layouts.

Owns: `ask_queues()` (tell one message to each chosen queue actor, then collect the
replies until one shared deadline), the per-binding delivered/failed/received counters
behind `binding summary` (fed by the log bus, reset by `summary reset`), and the
`Domain:` / `Total:` / `Totals:` lines of active, delayed, binding active|delayed and
domain all. Talks to: `ctx.daemon.delivery` (DeliveryService: `queues`, `queue()`), the
domain queue actors (messages of actors/messages.py; each carries its own reply), the
config (bindings and binding groups). Fails by raising ConsoleError: no delivery service,
unknown binding, unknown domain.

The counters: mainlog records are published on the hub for every reception (R, bounces
included), delivery (D) and permanent failure (P); each carries its binding and group.
`DeliveryStats` keeps the global counts, these keep them per binding and per group.
"""

from __future__ import annotations

import time
from collections import Counter

import gevent
import pykka

from ecmta.console.registry import ConsoleError
from ecmta.loggers import bus, records

ASK_TIMEOUT = 10.0
DEFAULT = "default"


# -- the delivery service and its queues ---------------------------------------------------

def delivery(ctx):
    svc = getattr(ctx.daemon, "delivery", None)
    if svc is None:
        raise ConsoleError("The delivery service is not running.")
    return svc


def queue_keys(svc, *, binding: str | None = None, domain: str | None = None,
               group: str | None = None) -> list[tuple]:
    """The (binding, group, domain) keys of the existing queues that match."""
    dom = domain.lower() if domain is not None else None
    return [k for k in list(svc.queues)
            if (binding is None or k[0] == binding) and (group is None or k[1] == group)
            and (dom is None or k[2] == dom)]


def ask_queues(svc, keys, make_msg, timeout: float = ASK_TIMEOUT) -> tuple[list, int]:
    """Tell make_msg(key) to each queue, then wait for the replies (one shared deadline).

    Returns ([(key, reply value)], number of queues that did not answer in time)."""
    pending = []
    missing = 0
    for key in keys:
        ref = svc.queue(*key)
        if ref is None:
            continue
        msg = make_msg(key)
        try:
            ref.tell(msg)
        except pykka.ActorDeadError:
            missing += 1
            continue
        pending.append((key, msg.reply))
    out = []
    deadline = time.monotonic() + timeout
    for key, reply in pending:
        try:
            out.append((key, reply.get(timeout=max(0.01, deadline - time.monotonic()))))
        except gevent.Timeout:
            missing += 1
    return out, missing


def missing_note(missing: int) -> list[str]:
    if not missing:
        return []
    return [f"({missing} queue{'s' if missing != 1 else ''} did not answer in time; "
            "their messages are not counted)"]


def queue_stats(svc, keys, **kw) -> list[dict]:
    from ecmta.actors import messages as Q
    replies, _ = ask_queues(svc, keys, lambda _k: Q.QueueStatsGet(**kw))
    return [r for _k, r in replies if r is not None]


# -- names -----------------------------------------------------------------------------------

def config(ctx):
    return ctx.daemon.config.current


def configured_bindings(ctx) -> list[str]:
    """`default`, then every Binding stanza in declaration order."""
    names = [DEFAULT]
    try:
        scopes = config(ctx).scopes("Binding")
    except Exception:
        scopes = []
    for s in scopes:
        if s.name and s.name not in names:
            names.append(s.name)
    return names


def binding_groups(ctx) -> dict[str, list[str]]:
    """group name -> its bindings, in declaration order."""
    groups: dict[str, list[str]] = {}
    try:
        scopes = config(ctx).scopes("Binding_Group")
    except Exception:
        scopes = []
    for g in scopes:
        members = groups.setdefault(g.name, [])
        for child in g.children:
            if child.kind.lower() == "binding" and child.name not in members:
                members.append(child.name)
    return groups


def all_bindings(ctx, svc) -> list[str]:
    names = configured_bindings(ctx)
    names += sorted({k[0] for k in list(svc.queues)} - set(names))
    return names


def resolve_binding(ctx, svc, name: str) -> str:
    """The binding as the queues name it; ConsoleError for an unknown binding."""
    names = all_bindings(ctx, svc)
    if name in names:
        return name
    for n in names:
        if n.lower() == name.lower():
            return n
    raise ConsoleError(f"Binding '{name}' not found.")


def group_of(ctx, binding: str) -> str:
    for group, members in binding_groups(ctx).items():
        if binding in members:
            return group
    return DEFAULT


def known_domain(svc, domain: str, keys=None) -> None:
    if not (keys if keys is not None else queue_keys(svc, domain=domain)):
        raise ConsoleError(f"Domain '{domain}' not found.")


# -- per-binding counters ----------------------------------------------------------------------

class BindingCounters:
    """Delivered / permanently failed / received per binding and per binding group, since
    the start or the last `summary reset`."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.delivered: Counter = Counter()
        self.failed: Counter = Counter()
        self.received: Counter = Counter()
        self.group_delivered: Counter = Counter()
        self.group_failed: Counter = Counter()
        self.group_received: Counter = Counter()

    def on_record(self, rec) -> None:
        binding = rec.binding or DEFAULT
        group = rec.binding_group or DEFAULT
        if isinstance(rec, records.Reception):
            self.received[binding] += 1
            self.group_received[group] += 1
        elif isinstance(rec, records.Delivery):
            self.delivered[binding] += 1
            self.group_delivered[group] += 1
        elif isinstance(rec, records.Failure) and rec.permanent:
            self.failed[binding] += 1
            self.group_failed[group] += 1


COUNTERS = BindingCounters()
bus.subscribe((records.Reception, records.Delivery, records.Failure), COUNTERS.on_record)


# -- layouts ---------------------------------------------------------------------------------

def domain_line(name: str, c: int, a: int, d: int, s: int) -> str:
    """`Domain:                         c4.com  C:  0  A:    104  D:     0  S:    47`"""
    return f"Domain: {name:>30}  C:{c:3d}  A:{a:7d}  D:{d:6d}  S:{s:6d}"


def total_line(c: int, a: int, d: int, s: int) -> str:
    return f"{'Total:':>38}  C:{c:4d}  A:{a:7d}  D:{d:6d}  S:{s:6d}"


def totals_line(c: int, a: int, d: int, s: int) -> str:
    """The last line of `domain all`."""
    return f"Totals: C:{c:4d}  A:{a:7d}  D:{d:6d}  S:{s:6d}"


def by_domain(stats: list[dict]) -> dict[str, list[int]]:
    """domain -> [connections, active, delayed, sent] summed over its bindings."""
    out: dict[str, list[int]] = {}
    for s in stats:
        row = out.setdefault(s["domain"], [0, 0, 0, 0])
        row[0] += s["connections"]
        row[1] += s["active"]
        row[2] += s["delayed"]
        row[3] += s["sent"]
    return out


def sums(rows) -> list[int]:
    total = [0, 0, 0, 0]
    for row in rows:
        for i in range(4):
            total[i] += row[i]
    return total


def threshold_report(stats: list[dict], column: int, threshold: int) -> str:
    """Rows whose active (column 1) or delayed (column 2) size exceeds the threshold,
    then the Total row over every domain."""
    rows = by_domain(stats)
    lines = [domain_line(d, *rows[d]) for d in sorted(rows) if rows[d][column] > threshold]
    lines.append(total_line(*sums(rows.values())))
    return "\n".join(lines)


def parse_threshold(args: list[str], usage: str) -> int:
    if not args:
        return 0
    if len(args) != 1 or not args[0].isdigit():
        raise ConsoleError(f"usage: {usage}  (threshold: a positive integer)")
    return int(args[0])
