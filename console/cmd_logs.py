"""Console commands about log streams (ecmta addition): `log streams [name ...]`.

Owns: the layout of `log streams`. Talks to: `ctx.daemon.log_streams` (loggers/streams.py
StreamService: the streams, their sources and writer counters, no I/O) and the IO pool
for what is on disk (subscribers, their checkpoints and lag, segments, bytes: jlog files
are read in a pool thread, never on the hub). Fails by raising ConsoleError: no stream
service, an unknown stream name.

Layout, one block per stream in configuration order, then a count:

    Stream: mainlog
      Source: ec_logger/mainlog
      Jlog: /var/state/ecmta/streams/mainlog.jlog (2 segments, 4718592 bytes)
      Events: 12000 written, 3 waiting to be written
      Subscribers: 2
        billing: lag 0 (checkpoint 00000001:00000cd2)
        audit: lag 11500 (checkpoint 00000000:000001f4)
    1 stream

`lag` is the number of records written to the jlog after the subscriber's checkpoint: a
consumer that stopped reading shows a growing lag (its records wait on disk; delivery
does not wait for it). A stream without subscribers says so: it keeps only its newest
segment.
"""

from __future__ import annotations

import gevent

from ecmta import pools
from ecmta.console.registry import ConsoleError, command

DISK_TIMEOUT = 5.0


def _service(ctx):
    svc = getattr(ctx.daemon, "log_streams", None)
    if svc is None:
        raise ConsoleError("Log streams are not available in this process.")
    return svc


def describe_source(source) -> str:
    if source == "events":
        return "every log event (the log bus)"
    (cls, instance), target = source
    return f"{instance}/{target}"


def _disk(path: str) -> dict:
    from ecmta.loggers.streams import disk_status
    try:
        with gevent.Timeout(DISK_TIMEOUT):
            return pools.run("IO", disk_status, path)
    except gevent.Timeout:
        return {"error": f"the IO pool did not answer in {DISK_TIMEOUT:g} s", "subscribers": [],
                "segments": 0, "bytes": 0, "exists": False}


def format_stream(st: dict, disk: dict) -> list[str]:
    lines = [f"Stream: {st['name']}"]
    sources = ", ".join(describe_source(s) for s in st["sources"]) or "-"
    lines.append(f"  Source: {sources}" + ("  [attached at run time]" if st.get("dynamic") else ""))
    if disk.get("error"):
        lines.append(f"  Jlog: {st['path']} ({disk['error']})")
    elif not disk.get("exists", True):
        lines.append(f"  Jlog: {st['path']} (not created yet)")
    else:
        seg = disk.get("segments", 0)
        lines.append(f"  Jlog: {st['path']} ({seg} segment{'s' if seg != 1 else ''}, "
                     f"{disk.get('bytes', 0)} bytes)")
    lines.append(f"  Events: {st['written']} written, {st['pending']} waiting to be written"
                 + (f", {st['dropped']} not encodable" if st.get("dropped") else ""))
    subs = disk.get("subscribers") or []
    if not subs:
        lines.append("  Subscribers: 0 (only the newest segment is kept)")
    else:
        lines.append(f"  Subscribers: {len(subs)}")
        for s in subs:
            if s.get("lag") is None:
                lines.append(f"    {s['subscriber']}: lag unknown ({s.get('error', '')})")
            else:
                lines.append(f"    {s['subscriber']}: lag {s['lag']} (checkpoint {s['checkpoint']})")
    return lines


@command("log streams", help="Show the log streams (ecmta): their jlogs, subscribers and how "
         "far behind each subscriber is.", usage="log streams [stream ...]")
def log_streams(ctx, args):
    svc = _service(ctx)
    streams = svc.status()
    if args:
        known = {st["name"]: st for st in streams}
        missing = [a for a in args if a not in known]
        if missing:
            raise ConsoleError(f"No such log stream '{missing[0]}'. Streams: "
                               + (", ".join(known) or "none"))
        streams = [known[a] for a in args]
    if not streams:
        return "No log streams (configure them in a log_streams stanza)."
    lines = []
    for st in streams:
        lines += format_stream(st, _disk(st["path"]))
    lines.append(f"{len(streams)} stream{'s' if len(streams) != 1 else ''}")
    return "\n".join(lines)


@command("log", help="Log commands (ecmta): log streams.", usage="log streams [stream ...]")
def log_usage(ctx, args):
    raise ConsoleError("Usage: log streams [stream ...]")
