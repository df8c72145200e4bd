"""A consumer process for the tests: follows a stream and appends one line per event
(`<jlog id> <type> <msg_id>`) to a file, synced, before asking for the next event.

    python -m ecmta.tests.log_consumers.consumer_proc HOME STREAM SUBSCRIBER OUT
           [--sleep S [--slow-from N]] [--idle S] [--types D,P] [--start begin|end|checkpoint]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from ecmta.loggers.consumers import follow


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("home")
    p.add_argument("stream")
    p.add_argument("subscriber")
    p.add_argument("out")
    p.add_argument("--sleep", type=float, default=0.0, help="seconds to spend on each event")
    p.add_argument("--slow-from", type=int, default=0, help="...from the n-th event on (0-based)")
    p.add_argument("--idle", type=float, default=None)
    p.add_argument("--types", default=None)
    p.add_argument("--start", default="checkpoint")
    a = p.parse_args()
    fd = os.open(a.out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    n = 0
    for ev in follow(a.home, a.stream, subscriber=a.subscriber, types=a.types, start=a.start,
                     idle_timeout=a.idle, poll=0.05, wait=30):
        os.write(fd, f"{ev.id} {ev.type} {ev.fields.get('msg_id', '')}\n".encode())
        os.fsync(fd)
        if a.sleep and n >= a.slow_from:
            time.sleep(a.sleep)
        n += 1
    os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
