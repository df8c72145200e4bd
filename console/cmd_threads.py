"""Console commands about threads: `threads stats`, `threads io queue`, `threads cpu queue`,
`threads <pool> queue` and `threads actors`.

Owns: the output layouts (console_commands.threads; MOMENTUM_DIGEST §4.8) and the actor
table. Talks to: `ctx.daemon.pools` (a PoolRegistry, which asks each pool actor) and every
live pykka actor (`ref.proxy().ec_stats()`, all asked at once, answers collected until one
shared deadline). Fails by raising ConsoleError: unknown pool, wrong arguments, no pools.

Layout of `threads stats`, per pool in creation order: the header
`<NAME> thread pool: concurrency <n>` (name upper-cased), and for a pool that has run at
least one job the labelled lines below, labels right-aligned to 32 columns:

    IO thread pool: concurrency 5
                   Total invocations: 46010
        Observed average concurrency: 1.00
              Thread pool saturation:  0.01%
       Average wallclock time per op: 0.11ms
                Current thread count: 0          <- threads running a job
      [inactive threads]
                Current thread count: 5          <- idle threads

ecmta addition: a concurrency-0 pool (Close) runs its jobs in the IO pool; once it has run
a job its block ends with `  [jobs run in the IO pool]`.
"""

from __future__ import annotations

import time

import pykka

from ecmta.console.registry import ConsoleError, command

LABEL_WIDTH = 32
ACTOR_TIMEOUT = 0.5


# -- threads stats -------------------------------------------------------------------------

def _line(label: str, value: str) -> str:
    return f"{label:>{LABEL_WIDTH}}: {value}"


def pool_block(s: dict) -> list[str]:
    lines = [f"{s['display']} thread pool: concurrency {s['concurrency']}"]
    if s.get("busy"):
        return lines + ["  [statistics unavailable: the pool actor did not answer]"]
    if not s["invocations"]:
        return lines   # never run: header only, as Momentum prints it
    lines += [
        _line("Total invocations", str(s["invocations"])),
        _line("Observed average concurrency", f"{s['avg_concurrency']:.2f}"),
        _line("Thread pool saturation", f"{s['saturation']:5.2f}%"),
        _line("Average wallclock time per op", f"{s['avg_wallclock_time_per_op']:.2f}ms"),
        _line("Current thread count", str(s["num_active_threads"])),
        "  [inactive threads]",
        _line("Current thread count", str(s["num_inactive_threads"])),
    ]
    if s.get("delegate"):
        lines.append(f"  [jobs run in the {s['delegate'].upper()} pool]")
    return lines


def format_stats(stats: list[dict]) -> str:
    return "\n".join(line for s in stats for line in pool_block(s))


# -- threads <pool> queue ------------------------------------------------------------------

def format_queue(display: str, jobs: list[dict]) -> str:
    lines = [f"Jobs in the {display} pool"]
    lines += [f"  {job['function']} (queued {job['age']:.3f}s)" for job in jobs]
    lines.append(f"{len(jobs)} jobs")   # Momentum's wording, also for 1
    return "\n".join(lines)


def _pools(ctx):
    pools = getattr(ctx.daemon, "pools", None)
    if pools is None:
        raise ConsoleError("Thread pools are not available in this process.")
    return pools


def show_queue(ctx, name: str) -> str:
    pools = _pools(ctx)
    try:
        pool = pools.get(name)
    except KeyError:
        raise ConsoleError(f"No such thread pool '{name}'. Pools: "
                           + ", ".join(pools.names())) from None
    try:
        jobs = pool.queue()
    except pykka.Timeout:
        raise ConsoleError(f"The {pool.display} pool did not answer in time.") from None
    return format_queue(pool.display, jobs)


# -- threads actors -------------------------------------------------------------------------

def _ask_stats(ref):
    try:
        return ref.proxy().ec_stats()
    except (AttributeError, pykka.ActorDeadError):
        return None   # not an EcActor, or gone: shown from its ref alone


def _row_from_ref(ref, depth: int, note: str) -> dict:
    # Without an answer only the ref is known: its class's kind and its urn stand in.
    cls = ref.actor_class
    return {"kind": getattr(cls, "kind", cls.__name__), "name": f"({ref.actor_urn[9:17]})",
            "mailbox": depth, "handled": note, "restarts": "-"}


def actor_rows(timeout: float = ACTOR_TIMEOUT) -> list[dict]:
    """One row per live actor; an actor that does not answer in time is shown as busy."""
    refs = [ref for ref in pykka.ActorRegistry.get_all() if ref.is_alive()]
    # Depth before our own ask joins the mailbox; every ask is out before we wait.
    asked = [(ref, ref.actor_inbox.qsize(), _ask_stats(ref)) for ref in refs]
    deadline = time.monotonic() + timeout
    rows = [_collect(ref, depth, fut, deadline) for ref, depth, fut in asked]
    rows = [r for r in rows if r is not None]
    rows.sort(key=lambda r: (r["kind"].lower(), r["name"].lower()))
    return rows


def _collect(ref, depth: int, fut, deadline: float) -> dict | None:
    if fut is None:
        return _row_from_ref(ref, depth, "-") if ref.is_alive() else None
    try:
        st = fut.get(timeout=max(0.0, deadline - time.monotonic()))
    except pykka.Timeout:
        return _row_from_ref(ref, depth, "busy")
    except pykka.ActorDeadError:
        return None
    return {"kind": st["kind"], "name": st["name"], "mailbox": st["mailbox"],
            "handled": st["handled"], "restarts": st["restarts"]}


ACTOR_COLUMNS = (("KIND", "kind", "<"), ("NAME", "name", "<"), ("MAILBOX", "mailbox", ">"),
                 ("HANDLED", "handled", ">"), ("RESTARTS", "restarts", ">"))


def format_actors(rows: list[dict]) -> str:
    widths = [max([len(title)] + [len(str(r[key])) for r in rows])
              for title, key, _ in ACTOR_COLUMNS]

    def fmt(values):
        cells = [f"{v!s:{align}{w}}" for v, w, (_, _, align) in zip(values, widths, ACTOR_COLUMNS)]
        return "  ".join(cells).rstrip()
    lines = [fmt([title for title, _, _ in ACTOR_COLUMNS])]
    lines += [fmt([r[key] for _, key, _ in ACTOR_COLUMNS]) for r in rows]
    lines.append(f"{len(rows)} actors")
    return "\n".join(lines)


# -- commands ---------------------------------------------------------------------------------

@command("threads stats", help="Show summary statistics of every thread pool.",
         usage="threads stats")
def threads_stats(ctx, args):
    if args:
        raise ConsoleError("Usage: threads stats")
    return format_stats(_pools(ctx).stats())


@command("threads io queue", help="Show the jobs queued in the IO thread pool.",
         usage="threads io queue")
def threads_io_queue(ctx, args):
    return show_queue(ctx, "IO")


@command("threads cpu queue", help="Show the jobs queued in the CPU thread pool.",
         usage="threads cpu queue")
def threads_cpu_queue(ctx, args):
    return show_queue(ctx, "CPU")


@command("threads actors", help="List every live actor: kind, name, mailbox depth, "
         "messages handled, restarts (ecmta).", usage="threads actors")
def threads_actors(ctx, args):
    return format_actors(actor_rows())


@command("threads", help="Thread pool and actor commands: threads stats, "
         "threads <pool> queue, threads actors.",
         usage="threads stats | threads <pool> queue | threads actors")
def threads(ctx, args):
    if len(args) == 2 and args[1].lower() == "queue":
        return show_queue(ctx, args[0])
    raise ConsoleError("Usage: threads stats | threads <pool> queue | threads actors")
