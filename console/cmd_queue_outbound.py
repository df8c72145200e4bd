"""Console commands about outbound connections: `show outbound`, `count outbound[/binding]`
and `trace smtp add|remove|list`.

Owns: the layouts of console_commands.show_outbound and the outbound part of
console_commands.count, and the table of SMTP tracers. Talks to: the delivery service's
registry of open connections (`DeliveryService.outbound`: worker -> (OutboundConnection,
binding, group, domain, opened at)), read on the hub without waiting. Fails by raising
ConsoleError: wrong arguments, an unknown binding, `trace smtp add` (see below).

`show outbound`, one line per open connection ordered by file descriptor:

    36: [outbound/connection_handleconnect] exchange.opf.com IPv4 207.77.20.65

The name is the MX (or route) host the connection went to, else its domain.

`count outbound <spec>` and `count outbound/<binding> <spec>` count the open outbound
connections by remote address with the layout of `count SMTP` (cmd_inbound.count_lines).
The registry picks the longest command name, and `outbound/<binding>` is one word, so this
module registers `count` again, after cmd_inbound: outbound types are answered here, every
other type goes to cmd_inbound.count unchanged.

`trace smtp`: `list` prints the registered tracers (`[     1]  binding: *` /
`           domain: x` / `             file: /path @ <bytes>`), `remove N` answers
`Removed smtp tracer #N`. `add` is refused: "trace smtp add: outbound SMTP tracing is not
available in this version". Writing the trace needs a hook in the outbound SMTP driver
(transports/smtp_outbound.py: every line sent and received on a connection, with its
binding and domain), which does not exist yet; registering a tracer that never writes
would pretend.
"""

from __future__ import annotations

import ipaddress
import os

from ecmta.console import cmd_inbound
from ecmta.console.cmd_queue_base import delivery, resolve_binding
from ecmta.console.registry import ConsoleError, command


def _family(ip: str) -> str:
    try:
        return "IPv6" if ipaddress.ip_address(ip).version == 6 else "IPv4"
    except ValueError:
        return "IPv4"


def connection_facts(conn, binding: str, group: str, domain: str, since: float) -> dict:
    """What the console shows of one open connection (read without waiting)."""
    from ecmta.transports.smtp_client import STAGE_NAMES
    sock = getattr(conn, "_sock", None)
    try:
        fd = sock.fileno() if sock is not None else -1
    except OSError:
        fd = -1
    cli = getattr(conn, "_cli", None)
    try:
        stage = cli.stage if cli is not None else 0
        state = STAGE_NAMES[stage]
    except (AttributeError, IndexError, TypeError):
        state = STAGE_NAMES[-1]
    ip = conn.remote[0]
    return {"fd": fd, "ip": ip, "host": conn.mx_hostname or domain, "binding": binding,
            "group": group, "domain": domain, "since": since, "state": state,
            "family": _family(ip)}


def open_connections(svc) -> list[dict]:
    return [connection_facts(*info) for info in list(getattr(svc, "outbound", {}).values())]


def show_outbound_lines(rows: list[dict]) -> list[str]:
    return [f"{r['fd']}: [outbound/connection_handleconnect] {r['host']} {r['family']} {r['ip']}"
            for r in sorted(rows, key=lambda r: r["fd"])]


@command("show outbound", help="show all outbound connections", usage="show outbound")
def show_outbound(ctx, args):
    if args:
        raise ConsoleError("usage: show outbound")
    return "\n".join(show_outbound_lines(open_connections(delivery(ctx))))


# -- count ---------------------------------------------------------------------------------------

@command("count", help="count open connections grouped by IP addresses",
         usage="count <SMTP|outbound|outbound/binding> <IP|CIDR|mask|mask-mask>")
def count(ctx, args):
    if not args or not args[0].lower().startswith("outbound"):
        return cmd_inbound.count(ctx, args)
    if len(args) != 2:
        raise ConsoleError("usage: count <SMTP|outbound|outbound/binding> <IP|CIDR|mask|mask-mask>")
    kind, spec = args
    svc = delivery(ctx)
    word, slash, binding = kind.partition("/")
    if word.lower() != "outbound":
        raise ConsoleError(f"count: unknown connection type '{kind}' (SMTP or outbound)")
    rows = open_connections(svc)
    if slash:
        binding = resolve_binding(ctx, svc, binding)
        rows = [r for r in rows if r["binding"] == binding]
    return "\n".join(cmd_inbound.count_lines([r["ip"] for r in rows], kind, spec))


# -- trace smtp ------------------------------------------------------------------------------------

TRACERS: dict[int, dict] = {}        # id -> {"binding", "domain", "file"}; see the docstring
TRACE_ADD_USAGE = "trace smtp add <binding|*> <domain|*> <filename>"


def trace_list_lines(tracers: dict[int, dict]) -> list[str]:
    lines = []
    for tid in sorted(tracers):
        t = tracers[tid]
        try:
            size = os.path.getsize(t["file"])
        except OSError:
            size = 0
        lines += [f"[{tid:6d}]  binding: {t['binding']}",
                  f"           domain: {t['domain']}",
                  f"             file: {t['file']} @ {size}"]
    return lines


@command("trace smtp add", help="add an outbound SMTP trace (not available in this version)",
         usage=TRACE_ADD_USAGE)
def trace_smtp_add(ctx, args):
    if len(args) != 3:
        raise ConsoleError(f"usage: {TRACE_ADD_USAGE}")
    raise ConsoleError("trace smtp add: outbound SMTP tracing is not available in this version")


@command("trace smtp remove", help="remove an SMTP trace", usage="trace smtp remove <tracer_id>")
def trace_smtp_remove(ctx, args):
    if len(args) != 1 or not args[0].isdigit():
        raise ConsoleError("usage: trace smtp remove <tracer_id>")
    tid = int(args[0])
    if tid not in TRACERS:
        raise ConsoleError(f"No smtp tracer #{tid}")
    del TRACERS[tid]
    return f"Removed smtp tracer #{tid}"


@command("trace smtp list", help="list SMTP traces", usage="trace smtp list")
def trace_smtp_list(ctx, args):
    if args:
        raise ConsoleError("usage: trace smtp list")
    return "\n".join(trace_list_lines(TRACERS))


@command("trace smtp", help="trace outbound SMTP transactions",
         usage="trace smtp add <binding|*> <domain|*> <filename> | trace smtp remove <id> | trace smtp list")
def trace_smtp(ctx, args):
    raise ConsoleError("usage: trace smtp add <binding|*> <domain|*> <filename> | "
                       "trace smtp remove <tracer_id> | trace smtp list")
