"""`ec_ctl [-c configfile] start|stop|restart|status` (executable.ec_ctl).

Manages a background ecelerity through the `pidfile` option of its configuration
(CONFFILE in the environment, or -c, or the embedded default). `start` launches
`ecelerity` (which detaches) and waits for the pidfile and a live process, like Momentum's
script: TRY rounds (default 10) of TRY, TRY-1, ... 1 half-second steps. `stop` sends SIGTERM
(graceful: stop accepting, finish in-flight work, flush logs) and waits for the exit.
Exit status: 0 on success, 1 on failure, 3 for `status` of a stopped daemon (LSB).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time

from ecmta import paths

STOP_WAIT = 60.0


def _pidfile(config: str | None) -> str:
    from ecmta.config import load_config, load_default_config

    cfg = load_config(config) if config else load_default_config()
    raw = cfg.value("pidfile", default="ecelerity.pid")
    return paths.resolve(raw)


def _running_pid(pidfile: str) -> int | None:
    from ecmta.daemon import pid_alive, read_pid

    pid = read_pid(pidfile)
    return pid if pid and pid_alive(pid) else None


def _ecelerity_cmd(config: str | None) -> list[str]:
    exe = shutil.which("ecelerity")
    cmd = [exe] if exe else [sys.executable, "-m", "ecmta"]
    return cmd + (["-c", config] if config else [])


def start(config: str | None) -> int:
    pidfile = _pidfile(config)
    pid = _running_pid(pidfile)
    if pid:
        print(f"ecelerity is already running (pid {pid})")
        return 0
    proc = subprocess.run(_ecelerity_cmd(config), stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        print("Starting ecelerity: failed", file=sys.stderr)
        return 1
    tries = int(os.environ.get("TRY", "10"))
    for round_ in range(tries, 0, -1):
        for _ in range(round_):
            pid = _running_pid(pidfile)
            if pid:
                print(f"Starting ecelerity: done (pid {pid})")
                return 0
            time.sleep(0.5)
    print(f"Starting ecelerity: no live process behind {pidfile}; see the paniclog", file=sys.stderr)
    return 1


def stop(config: str | None) -> int:
    pidfile = _pidfile(config)
    pid = _running_pid(pidfile)
    if not pid:
        print("ecelerity is not running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT
    while time.monotonic() < deadline:
        if not _running_pid(pidfile) and not _alive(pid):
            print("Stopping ecelerity: done")
            return 0
        time.sleep(0.2)
    print(f"Stopping ecelerity: pid {pid} still running after {STOP_WAIT:.0f}s", file=sys.stderr)
    return 1


def _alive(pid: int) -> bool:
    from ecmta.daemon import pid_alive

    return pid_alive(pid)


def status(config: str | None) -> int:
    pid = _running_pid(_pidfile(config))
    if pid:
        print(f"ecelerity is running (pid {pid})")
        return 0
    print("ecelerity is not running")
    return 3


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="ec_ctl", description="start, stop, or restart ecelerity")
    p.add_argument("-c", dest="config", default=os.environ.get("CONFFILE"), metavar="configfile")
    p.add_argument("action", choices=["start", "stop", "restart", "status"])
    args = p.parse_args(argv)
    from ecmta.config import ConfigError

    try:
        if args.action == "start":
            return start(args.config)
        if args.action == "stop":
            return stop(args.config)
        if args.action == "status":
            return status(args.config)
        rc = stop(args.config)
        return rc or start(args.config)
    except ConfigError as exc:
        print(f"ec_ctl: configuration error:\n{exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
