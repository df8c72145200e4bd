"""ec_log_follow (ecmta addition): print a log stream live.

    ec_log_follow [-s subscriber] [-t types] [--from begin|end|checkpoint] [--json]
                  [--home DIR] [--basedir DIR] [--idle SECONDS] [--count N] stream

Owns: the command line. Reads through `ecmta.loggers.consumers` (no gevent, no daemon
connection): `stream` is a stream name (mainlog, bouncelog, events, ec_logger/mainlog,
... as configured in the daemon's `log_streams` stanza) whose jlog is under the state
directory (--home, default $ECMTA_HOME or ~/.local/state/ecmta) and --basedir (default
`streams`), or the path of a stream's jlog.

Prints one line per event: the line as its log module wrote it, or the whole JSON record
with --json; -t keeps only some event types (`-t D,P`; letters R D X T P B, words
rejection, auth, or record names). Output is flushed after every event.

Subscribers: with -s the follower is a durable consumer: it resumes at its checkpoint
(default --from checkpoint) and checkpoints after printing each batch, so a follower
restarted later prints what was written meanwhile. Without -s a temporary subscriber
(`ec_log_follow.<pid>`) starts at the end (default --from end) and is removed when the
follower exits (Ctrl-C, SIGTERM, --count, --idle), so it never keeps records on disk.

Exit status: 0 (interrupted, --count reached or --idle elapsed), 1 when the stream's jlog
does not exist (after waiting --wait seconds), 2 for usage errors.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from ecmta.loggers import consumers


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ec_log_follow",
                                description="Print a log stream of ecelerity live (ecmta).")
    p.add_argument("-s", "--subscriber", help="durable subscriber name (default: a temporary one)")
    p.add_argument("-t", "--types", action="append",
                   help="event types to print, e.g. D,P (R D X T P B rejection auth)")
    p.add_argument("--from", dest="start", choices=consumers.STARTS,
                   help="where to start: begin, end or checkpoint (default: checkpoint with -s, "
                        "else end)")
    p.add_argument("--json", action="store_true", help="print the JSON records")
    p.add_argument("--home", help="the daemon's state directory (default $ECMTA_HOME)")
    p.add_argument("--basedir", default=consumers.DEFAULT_BASEDIR,
                   help="log_streams basedir (default %(default)s)")
    p.add_argument("--idle", type=float, default=None,
                   help="exit after this many seconds without a new event")
    p.add_argument("--count", type=int, default=None, help="exit after printing this many events")
    p.add_argument("--wait", type=float, default=10.0,
                   help="seconds to wait for the stream's jlog to appear (default %(default)s)")
    p.add_argument("--poll", type=float, default=consumers.DEFAULT_POLL, help=argparse.SUPPRESS)
    p.add_argument("stream", help="stream name (mainlog, events, ...) or the path of its jlog")
    return p


class _Stop(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    temporary = not args.subscriber
    subscriber = args.subscriber or f"ec_log_follow.{os.getpid()}"
    start = args.start or ("end" if temporary else "checkpoint")
    types = consumers.parse_types(",".join(args.types)) if args.types else None
    source, stream = args.home, args.stream
    if os.sep in stream and consumers.is_jlog(stream):
        source, stream = stream, None

    def on_signal(signum, frame):
        raise _Stop()
    signal.signal(signal.SIGTERM, on_signal)
    try:
        consumer = consumers.Consumer(source, stream, subscriber=subscriber, start=start,
                                      types=types, basedir=args.basedir, wait=args.wait,
                                      poll=args.poll)
    except consumers.StreamNotFound as exc:
        print(f"ec_log_follow: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:            # a damaged jlog, a bad name, no permission
        print(f"ec_log_follow: {exc}", file=sys.stderr)
        return 1
    printed, last = 0, None
    out = sys.stdout
    events = consumer.follow(idle_timeout=args.idle)
    try:
        for ev in events:
            text = json.dumps(ev.data, ensure_ascii=False) if args.json and ev.data else ev.line
            out.write(text + "\n")
            out.flush()
            printed, last = printed + 1, ev.id
            if args.count is not None and printed >= args.count:
                break
    except (KeyboardInterrupt, _Stop, BrokenPipeError):
        pass
    finally:
        # every event printed was handled: checkpoint it (the generator would keep the last)
        try:
            events.close()
            if last is not None and not temporary:
                consumer.commit(last)
        except Exception:
            pass
        if temporary:
            try:
                consumer.unsubscribe()
            except Exception:
                pass
        else:
            consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
