"""Test helper, run as a script: a ControlService on a fake daemon under gevent.

Usage: python control_server.py '<json spec>'. The spec has `endpoints` (Endpoint fields)
and optionally `modules` and `hooks` (what the fake daemon reports). Prints
`READY <json list of bound addresses>` once listening, or `ERROR <text>` and exits 3 when
the listener cannot start. `shutdown` (console) or SIGTERM stops it; it prints `STOPPED`.

Test-only console commands (registered here, never in product code):
  test sleep S          wait S seconds cooperatively
  test echo WORDS...    answer the words
  test big N            answer N numbered lines
  test panic LEVEL TEXT add a paniclog line
  test reopened         how many times reopen_logs() ran
  test crash            raise an unexpected exception
  test reconfigure JSON apply_config() with a fake config: {"listeners": [{options, listens}]}
"""

import gevent.monkey

gevent.monkey.patch_all()

import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import gevent  # noqa: E402
import structlog  # noqa: E402
from gevent.event import Event  # noqa: E402

from ecmta.console.loader import load_all  # noqa: E402
from ecmta.console.registry import command  # noqa: E402
from ecmta.loggers import panic  # noqa: E402
from ecmta.transports.control import ControlListenerError, ControlService, Endpoint  # noqa: E402

DEFAULT_MODULES = [
    {"module": "ec_logger", "scope_name": "ec_logger", "instance_name": "ec_logger",
     "enabled": True, "api": "Logger", "name": "ec_logger.py",
     "description": "Momentum-style logging module"},
    {"module": "ds_core", "scope_name": "ds_core", "instance_name": None, "enabled": True,
     "api": "Singleton", "name": "ds_core.py", "description": "generic datasource module"},
]


class FakeDaemon:
    """The design.md §3.4 attributes the core commands use."""

    def __init__(self, spec):
        self.config = None
        self.pools = None
        self.supervisor = None
        self.started_at = time.time()
        self.pid = os.getpid()
        self.stopping = Event()
        self.reopened = 0
        self._modules = spec.get("modules", DEFAULT_MODULES)
        if "hooks" in spec:
            self.hooks = lambda: spec["hooks"]

    def shutdown(self):
        self.stopping.set()

    def reopen_logs(self):
        self.reopened += 1

    def modules(self):
        return self._modules


# -- a config object shaped like design.md §3.2, for apply_config ------------------------

@dataclass
class Value:
    value: object


@dataclass
class Scope:
    kind: str
    name: str | None
    options: dict = field(default_factory=dict)
    children: list = field(default_factory=list)


class FakeConfig:
    def __init__(self, spec):
        self.listeners = []
        for lst in spec["listeners"]:
            children = [Scope("Listen", addr, _values(opts)) for addr, opts in lst.get("listens", [])]
            self.listeners.append(Scope("Control_Listener", None, _values(lst.get("options", {})), children))

    def scopes(self, kind):
        return self.listeners if kind.lower() == "control_listener" else []


def _values(opts):
    return {k.lower(): Value(v) for k, v in opts.items()}


def register_test_commands(daemon, service):
    @command("test sleep", help="test: sleep")
    def _sleep(ctx, args):
        gevent.sleep(float(args[0]))
        return "slept"

    @command("test echo", help="test: echo")
    def _echo(ctx, args):
        return " ".join(args)

    @command("test big", help="test: many lines")
    def _big(ctx, args):
        return "\n".join(f"line {i}" for i in range(int(args[0])))

    @command("test panic", help="test: add a paniclog line")
    def _panic(ctx, args):
        panic.panic(" ".join(args[1:]), level=args[0])
        return ""

    @command("test reopened", help="test: reopen count")
    def _reopened(ctx, args):
        return str(daemon.reopened)

    @command("test crash", help="test: crash")
    def _crash(ctx, args):
        raise RuntimeError("boom")

    @command("test reconfigure", help="test: apply_config")
    def _reconfigure(ctx, args):
        service.apply_config(FakeConfig(json.loads(" ".join(args))))
        return json.dumps(service.addresses)


def main():
    # stdout carries READY/ERROR/STOPPED only.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    spec = json.loads(sys.argv[1])
    load_all()
    daemon = FakeDaemon(spec)
    service = ControlService(daemon, [Endpoint(**ep) for ep in spec["endpoints"]])
    register_test_commands(daemon, service)
    try:
        service.start()
    except ControlListenerError as exc:
        print(f"ERROR {exc}", flush=True)
        return 3
    gevent.signal_handler(signal.SIGTERM, daemon.shutdown)
    print("READY " + json.dumps(service.addresses), flush=True)
    daemon.stopping.wait()
    service.stop()
    print("STOPPED", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
