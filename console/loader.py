"""Loads every console command module so its `@command`s register.

Owns: the list of command modules. Talks to: nothing else; the daemon calls `load_all()`
once before the control listener starts. How it fails: a listed module that does not
exist yet (its engineer has not landed it) is skipped; any other import error, including
a missing module *inside* a command module, is raised so a broken module is never hidden.
"""

from __future__ import annotations

import importlib

COMMAND_MODULES = (
    "ecmta.console.cmd_core",
    "ecmta.console.cmd_threads",
    "ecmta.console.cmd_config",
    "ecmta.console.cmd_dns",
    "ecmta.console.cmd_inbound",
    "ecmta.console.cmd_queue",
    "ecmta.console.cmd_modules",
    "ecmta.console.cmd_logs",
)


def load_all(modules=COMMAND_MODULES) -> list[str]:
    """Import the command modules; returns the names actually loaded."""
    loaded = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        loaded.append(name)
    return loaded
