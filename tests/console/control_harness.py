"""Shared helpers for the control channel tests: run tests/console/control_server.py in a
subprocess (pytest's own process is never monkey-patched) and run the real ec_console.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from ecmta.tests.harness import free_port, short_tmpdir  # noqa: F401  (re-exported)

SERVER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "control_server.py")
READY_TIMEOUT = 30.0


class ServerProcess:
    """A control_server.py child; `addresses` are the bound endpoints once READY."""

    def __init__(self, endpoints: list[dict], **spec) -> None:
        self.spec = dict(spec, endpoints=endpoints)
        self.proc: subprocess.Popen | None = None
        self.addresses: list[str] = []
        self.error: str | None = None

    def start(self) -> "ServerProcess":
        env = dict(os.environ)
        env.pop("PYTEST_CURRENT_TEST", None)
        self.proc = subprocess.Popen([sys.executable, SERVER_SCRIPT, json.dumps(self.spec)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     stdin=subprocess.DEVNULL, env=env)
        line = self._first_line()
        if line.startswith("READY "):
            self.addresses = json.loads(line[6:])
        elif line.startswith("ERROR "):
            self.error = line[6:].strip()
            self.proc.wait(10)
        else:
            self.proc.kill()
            _out, err = self.proc.communicate(timeout=10)
            raise RuntimeError(f"control server did not start: {line!r}\n{err}")
        return self

    def _first_line(self) -> str:
        """The READY or ERROR line (anything else on stdout is skipped), "" on timeout."""
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + READY_TIMEOUT
        while sel.select(max(0.0, deadline - time.monotonic())):
            line = self.proc.stdout.readline()
            if not line or line.startswith(("READY ", "ERROR ")):
                return line
        return ""

    @property
    def address(self) -> str:
        return self.addresses[0]

    def wait_stopped(self, timeout: float = 15) -> str:
        """Wait for the child to exit; returns the rest of its stdout."""
        out, _err = self.proc.communicate(timeout=timeout)
        return out

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=10)

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def ec_console_cmd() -> list[str]:
    exe = shutil.which("ec_console")
    return [exe] if exe else [sys.executable, "-m", "ecmta.cli.ec_console"]


def ec_console(*args: str, input: str | None = None, env: dict | None = None,
               timeout: float = 30) -> subprocess.CompletedProcess:
    """Run the real ec_console executable; stdin is a pipe (batch mode) or /dev/null."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(ec_console_cmd() + list(args), input=input if input is not None else "",
                          capture_output=True, text=True, timeout=timeout, env=full_env)


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def sock_dir() -> str:
    return tempfile.mkdtemp(prefix="ecc", dir="/tmp")
