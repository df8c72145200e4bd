"""Real daemons for tests: write a config, run `ecelerity -d`, talk to its console, stop it.

Every daemon gets its own state directory (ECMTA_HOME), its own short Unix control socket
under /tmp and free loopback ports, so tests never share state. Stopping is SIGTERM with a
bounded wait, then SIGKILL; stderr is kept for failure messages.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time

import pytest

READY_TIMEOUT = 30.0



def wait_for(pred, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    """Poll `pred` until it returns something truthy; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)

def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def short_tmpdir(prefix: str = "ec") -> str:
    # Unix socket paths must stay under ~100 bytes: pytest's tmp_path is often longer.
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


class Daemon:
    """An `ecelerity -d` child process with its own home, control socket and ports."""

    def __init__(self, config_body: str = "", *, home: str | None = None, ports: dict | None = None,
                 extra_env: dict | None = None, skip: tuple = ()) -> None:
        self.home = home or short_tmpdir("ech")
        self.sock = os.path.join(self.home, "ctl")
        self.ports = dict(ports or {})
        self.ports.setdefault("control", free_port())
        self.conf = os.path.join(self.home, "ecelerity.conf")
        self.config_body = config_body
        self.extra_env = extra_env or {}
        self.skip = skip
        self.proc: subprocess.Popen | None = None
        self.stderr_path = os.path.join(self.home, "stderr.log")

    def fmt(self, text: str) -> str:
        """Fill $home, $sock and $<port name> placeholders (braces belong to the config)."""
        return string.Template(text).safe_substitute(home=self.home, sock=self.sock, **self.ports)

    def write_config(self) -> None:
        control = (f'Control_Listener {{\n  Listen "{self.sock}" {{ File_Mode = 0600 }}\n'
                   f'  Listen "127.0.0.1:{self.ports["control"]}" {{ }}\n}}\n')
        with open(self.conf, "w") as fh:
            fh.write(f'pidfile = "{self.home}/ecelerity.pid"\n')
            fh.write(control)
            fh.write(self.fmt(self.config_body))

    @property
    def env(self) -> dict:
        env = dict(os.environ, ECMTA_HOME=self.home, **self.extra_env)
        env.pop("PYTEST_CURRENT_TEST", None)
        return env

    def start(self, wait: bool = True) -> "Daemon":
        self.write_config()
        cmd = [sys.executable, "-m", "ecmta", "-d", "-c", self.conf]
        for svc in self.skip:
            cmd += ["-n", svc]
        self._err = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(cmd, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=self._err, stderr=self._err, cwd=self.home)
        if wait:
            self.wait_ready()
        return self

    def stderr(self) -> str:
        try:
            with open(self.stderr_path, errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ecelerity exited with {self.proc.returncode}:\n{self.stderr()}")
            try:
                ok, _ = self.console("pid", timeout=2)
                if ok:
                    return
            except OSError as exc:
                last = exc
            time.sleep(0.05)
        raise TimeoutError(f"ecelerity not ready after {timeout}s ({last}):\n{self.stderr()}")

    def console(self, line: str, timeout: float = 30) -> tuple[bool, str]:
        from ecmta.transports.control_client import ControlClient

        client = ControlClient.connect(self.sock, timeout=timeout)
        try:
            return client.command(line)
        finally:
            client.close()

    def ok(self, line: str) -> str:
        ok, text = self.console(line)
        assert ok, f"console {line!r} failed: {text}"
        return text

    def ec_console(self, *args: str, input: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
        exe = shutil.which("ec_console")
        cmd = ([exe] if exe else [sys.executable, "-m", "ecmta.cli.ec_console"]) + [self.sock, *args]
        return subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, env=self.env)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"ecelerity did not stop within {timeout}s:\n{self.stderr()}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def paniclog(self) -> str:
        try:
            with open(os.path.join(self.home, "log", "paniclog.ec"), errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""

    def cleanup(self) -> None:
        self.kill()
        if getattr(self, "_err", None):
            self._err.close()
        shutil.rmtree(self.home, ignore_errors=True)


class SmtpSink:
    """`smtp-sink [options] 127.0.0.1:<port> 100`, stopped by `stop()`."""

    def __init__(self, port: int, *options: str) -> None:
        exe = shutil.which("smtp-sink", path=os.environ.get("PATH", "") + ":/usr/sbin")
        if exe is None:
            pytest.skip("smtp-sink is not installed (./run-tests installs postfix)")
        args = [exe]
        if os.geteuid() == 0:
            args += ["-u", pwd.getpwnam("nobody").pw_name]
        args += [*options, f"127.0.0.1:{port}", "100"]
        self.port = port
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)

        def listening():
            if self.proc.poll() is not None:
                return True
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_for(listening, 10, what="smtp-sink to listen")
        assert self.proc.poll() is None, self.proc.stderr.read().decode()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
