"""Console commands about inbound connections: `show inbound` and `count`.

Owns: the output layouts of console_commands.show_inbound and console_commands.count.
Talks to: the ESMTP listener service, `ctx.daemon.esmtp` (`show_inbound()` asks the
reception actor for the live sessions; `count` reads `esmtp.table.sessions`, the registry
the actor keeps, without waiting). Fails by raising ConsoleError: wrong arguments, an
unknown connection type, the ESMTP service not running.

`show inbound`, one line per session ordered by file descriptor:

    23: [inbound/esmtp_message_factory] IPv4 127.0.0.1:47741 awaiting rcptto (for 0.264s)

The state is the session's SMTP state (the rejectlog phase labels: connect, awaiting ehlo,
awaiting mailfrom, awaiting rcptto, awaiting data, data, auth, starttls); ecmta does not
time individual states, so "for" is the age of the connection. Momentum's `[floating]`
marker (a session off the main scheduler) has no equivalent and is never printed.

`count <type> <spec>` counts open connections by peer address. <type> is `SMTP` (the
inbound ESMTP sessions; also accepted: `ESMTP`, `inbound`); `outbound[/binding]` is
console/cmd_queue_outbound.py's (it registers `count` and hands inbound types to `count`
here, using count_lines() for the layout). <spec> is
  - an address or a network (`127.0.0.1`, `10.0.0.0/8`): one line `N sessions`;
  - a mask or a range of masks (`32`, `16-32`): `Displaying 'SMTP' from /16 to /32`, then
    for every /16 network holding sessions its count and network, followed by its /32
    networks; the count is right-aligned in 7 columns and the network starts after
    mask+1 spaces (so /16 and /32 lines nest as in the documented output). IPv4 masks are
    capped at 32; IPv6 addresses use the same numbers as prefix lengths (capped at 128).
"""

from __future__ import annotations

import ipaddress
from collections import Counter

from ecmta.console.registry import ConsoleError, command

INBOUND_TYPES = {"smtp": "SMTP", "esmtp": "SMTP", "inbound": "SMTP"}
COUNT_USAGE = "count <connection_type> <IP|CIDR|mask|mask-mask>"


def _esmtp(ctx):
    svc = getattr(ctx.daemon, "esmtp", None)
    if svc is None or getattr(svc, "actor", None) is None:
        raise ConsoleError("the ESMTP listener service is not running")
    return svc


def _family(peer: str) -> str:
    host = peer.rsplit(":", 1)[0].strip("[]")
    try:
        return "IPv6" if ipaddress.ip_address(host).version == 6 else "IPv4"
    except ValueError:
        return "IPv4"


def _peer_text(peer: str) -> str:
    host, _, port = peer.rpartition(":")
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return peer


def show_inbound_lines(rows: list[dict]) -> list[str]:
    return [f"{r['fd']}: [inbound/esmtp_message_factory] {_family(r['peer'])} "
            f"{_peer_text(r['peer'])} {r['state']} (for {float(r['for']):.3f}s)"
            for r in sorted(rows, key=lambda r: r["fd"])]


@command("show inbound", help="show all inbound connections", usage="show inbound")
def show_inbound(ctx, args):
    if args:
        raise ConsoleError("usage: show inbound")
    try:
        rows = _esmtp(ctx).show_inbound()
    except ConsoleError:
        raise
    except Exception as exc:
        raise ConsoleError(f"show inbound: the reception actor did not answer ({exc})") from None
    return "\n".join(show_inbound_lines(rows))


# -- count ---------------------------------------------------------------------------------

def _parse_spec(spec: str):
    """('net', network) for an address/CIDR, ('masks', lo, hi) for a mask or mask range."""
    text = spec.strip()
    lo, dash, hi = text.partition("-")
    if lo.isdigit() and (not dash or hi.isdigit()):
        a, b = int(lo), int(hi) if dash else int(lo)
        if not (0 <= a <= 128 and 0 <= b <= 128) or a > b:
            raise ConsoleError(f"count: bad mask range '{spec}' (use N or N-M with N <= M)")
        return ("masks", a, b)
    try:
        return ("net", ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise ConsoleError(f"count: '{spec}' is not an IP address, a CIDR, a mask or a mask range") from None


def _network(ip: str, mask: int):
    addr = ipaddress.ip_address(ip)
    bits = 32 if addr.version == 4 else 128
    return ipaddress.ip_network(f"{ip}/{min(mask, bits)}", strict=False)


def count_lines(peers: list[str], kind: str, spec: str) -> list[str]:
    parsed = _parse_spec(spec)
    addrs = []
    for p in peers:
        try:
            addrs.append(ipaddress.ip_address(p))
        except ValueError:
            continue
    if parsed[0] == "net":
        net = parsed[1]
        n = sum(1 for a in addrs if a.version == net.version and a in net)
        return [f"{n} sessions"]
    _, lo, hi = parsed
    lines = [f"Displaying '{kind}' from /{lo} to /{hi}"]
    outer = Counter(_network(str(a), lo) for a in addrs)
    masks = [lo] if lo == hi else [lo, hi]
    for net in sorted(outer, key=lambda n: (n.version, int(n.network_address), n.prefixlen)):
        lines.append(_count_line(outer[net], net, lo))
        if len(masks) == 2:
            inner = Counter(_network(str(a), hi) for a in addrs
                            if a.version == net.version and a in net)
            for sub in sorted(inner, key=lambda n: int(n.network_address)):
                lines.append(_count_line(inner[sub], sub, hi))
    return lines


def _count_line(n: int, net, mask: int) -> str:
    return f"{n:7d}" + " " * (mask + 1) + str(net)


@command("count", help="count open connections grouped by IP addresses", usage=COUNT_USAGE)
def count(ctx, args):
    if len(args) != 2:
        raise ConsoleError(f"usage: {COUNT_USAGE}")
    kind_raw, spec = args
    if kind_raw.lower().startswith("outbound"):
        raise ConsoleError("count: outbound connections are not available in this version")
    kind = INBOUND_TYPES.get(kind_raw.lower())
    if kind is None:
        raise ConsoleError(f"count: unknown connection type '{kind_raw}' (SMTP or outbound)")
    sessions = list(_esmtp(ctx).table.sessions.values())
    return "\n".join(count_lines([s.peer_ip for s in sessions], kind, spec))
