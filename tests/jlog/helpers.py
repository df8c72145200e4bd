"""Shared pieces of the jlog tests: making jlogs, reading all of a subscriber, file images."""

from __future__ import annotations

import os
import subprocess
import sys

from ecmta.loggers.jlog import Jlog, JlogId


def make(path, *subs, unit_limit: int = 4 * 1024 * 1024, safety: int = 1, **kw) -> Jlog:
    jl = Jlog(str(path), **kw).init(unit_limit=unit_limit, safety=safety)
    for s in subs:
        jl.add_subscriber(s)
    return jl


def write(jl: Jlog, records) -> None:
    w = jl.open_writer()
    try:
        w.write_many(records)
    finally:
        w.close()


def read_all(jl: Jlog, sub: str, checkpoint: bool = True, limit: int | None = None) -> list:
    """[(id, tv_sec, tv_usec, bytes)] the way a C consumer loops: interval, read, checkpoint."""
    out = []
    r = jl.open_reader(sub)
    try:
        while limit is None or len(out) < limit:
            iv = r.read_interval()
            if iv.count == 0:
                break
            last = None
            for id in iv.ids():
                if limit is not None and len(out) >= limit:
                    break
                m = r.read_message(id)
                out.append((id, m.tv_sec, m.tv_usec, m.data))
                last = id
            if not checkpoint:
                break
            r.checkpoint(last)
    finally:
        r.close()
    return out


def files(path) -> dict:
    """name -> bytes of every file in a jlog directory."""
    return {n: open(os.path.join(path, n), "rb").read() for n in sorted(os.listdir(path))}


def run_cli(module: str, *args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"ecmta.cli.{module}", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=60)


def ids(*pairs) -> list:
    return [JlogId(a, b) for a, b in pairs]
