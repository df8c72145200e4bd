"""Module-specific console commands (`<module>:<instance> <command>`).

delay_dsn:<name> show pending events — every message with a delay DSN still to come: its
id, recipient, when the next notice is due and how many were sent (modules.delay_dsn).
"""

from __future__ import annotations

import time

from ecmta.actors.messages import QueueStatsGet
from ecmta.console.registry import ConsoleError, command


@command("delay_dsn: show pending events", help="List the pending delay DSN events.",
         usage="delay_dsn:<instance> show pending events")
def delay_dsn_pending(ctx, args):
    instance = args[0] if args else ""
    names = {s.name or "delay_dsn" for s in ctx.daemon.config.current.scopes("delay_dsn")}
    if instance not in names:
        raise ConsoleError(f"No delay_dsn instance named '{instance}'.")
    rows = []
    for stats in ctx.daemon.delivery.ask_all(lambda: QueueStatsGet(delay_dsns=True)):
        for due, msg_id, rcpt, sent in stats.get("delay_dsns", ()):
            rows.append((due, msg_id, rcpt, sent))
    rows.sort()
    out = [f"{len(rows)} pending events"]
    for due, msg_id, rcpt, sent in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(due))
        out.append(f"{msg_id} {rcpt} next: {when} sent: {sent}")
    return "\n".join(out)
