"""Helpers for the ecelerity.conf tests: writing config trees, loading them, a console."""

from __future__ import annotations

import os
import textwrap

import pytest

from ecmta.config import ConfigError, ConfigManager, load_config
from ecmta.console.registry import CommandContext, Session, dispatch


def write(directory, name: str, text: str) -> str:
    """Write `text` (dedented, leading newline dropped) to directory/name; the absolute path."""
    path = os.path.join(str(directory), name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(textwrap.dedent(text).lstrip("\n"))
    return path


def errors_of(path: str, **kw) -> list:
    """The ConfigIssues that loading `path` raises (fails the test if it loads)."""
    with pytest.raises(ConfigError) as info:
        load_config(path, **kw)
    return info.value.errors


def where(issues) -> list:
    """[(basename, line)] of issues, for exact location asserts."""
    return [(os.path.basename(i.file), i.line) for i in issues]


class FakeDaemon:
    """What console commands see as ctx.daemon: a real ConfigManager, plus reload_config
    that reloads it and reports no service problems."""

    def __init__(self, manager: ConfigManager):
        self.config = manager
        self.reloads = []

    def reload_config(self, path=None):
        self.reloads.append(path)
        result = self.config.reload(path)
        return list(result.problems)


class Console:
    """One console session against a daemon: `run(line)` -> output, raising on failure."""

    def __init__(self, daemon, session_id: int = 1):
        from ecmta.console import cmd_config
        assert cmd_config.config_command      # importing it registers the commands
        self.daemon = daemon
        self.session = Session(id=session_id)

    def call(self, line: str):
        return dispatch(CommandContext(self.daemon, self.session), line)

    def run(self, line: str) -> str:
        ok, out = self.call(line)
        assert ok, f"{line!r} failed: {out}"
        return out

    def fail(self, line: str) -> str:
        ok, out = self.call(line)
        assert not ok, f"{line!r} should have failed, gave: {out}"
        return out
