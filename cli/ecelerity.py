"""`ecelerity [-c configfile] [-d] [-h] [-n service]`: the daemon (executable.ecelerity).

-d runs in the foreground with stdout/stderr open; without it the process detaches
(double fork, new session, stdio to /dev/null) once the configuration has been checked,
so a broken config is reported to the caller's terminal and the exit status is 1.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

import structlog  # noqa: E402

SERVICES = ("esmtp", "ecstream", "queue")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ecelerity", description="ecmta mail transfer agent (Momentum-compatible ecelerity)")
    p.add_argument("-c", dest="config", metavar="configfile", help="use an alternate config file")
    p.add_argument("-d", dest="foreground", action="store_true", help="run in the foreground, leave stdout, stderr open")
    p.add_argument("-n", dest="skip", action="append", default=[], metavar="service",
                   help="skip service offering: esmtp, ecstream or queue (repeatable)")
    return p


def _configure_logging(foreground: bool) -> None:
    level = logging.DEBUG if os.environ.get("ECMTA_DEBUG") else logging.WARNING
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso"),
                    structlog.dev.ConsoleRenderer(colors=False)],
    )


def _detach() -> None:
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    bad = [s for s in args.skip if s not in SERVICES]
    if bad:
        print(f"ecelerity: unknown service '{bad[0]}' for -n (expected one of {', '.join(SERVICES)})",
              file=sys.stderr)
        return 2
    _configure_logging(args.foreground)
    from ecmta.config import ConfigError
    from ecmta.daemon import Daemon

    try:
        daemon = Daemon(args.config, skip=frozenset(args.skip))
    except ConfigError as exc:
        print(f"ecelerity: configuration error:\n{exc}", file=sys.stderr)
        return 1
    except (OSError, RuntimeError) as exc:
        print(f"ecelerity: {exc}", file=sys.stderr)
        return 1
    if not args.foreground:
        _detach()
        daemon.pid = os.getpid()
    try:
        daemon.start()
    except Exception as exc:
        print(f"ecelerity: cannot start: {exc}", file=sys.stderr)
        return 1
    daemon.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
