"""Console command registry and dispatch.

Owns: the table of console commands (name -> handler, help, usage) and the rule that maps
an input line to a handler: the longest registered command name that prefixes the line's
words wins (case-insensitive), the remaining words are the arguments. Quoting follows the
shell-like rules of the config language (double or single quotes group words).

Talks to: nothing by itself; command modules register with `@command`, the control
listener calls `dispatch()`. How it fails: unknown commands and handler errors come back as
`(False, text)`; a handler that crashes is reported to the paniclog and to the client, and
the session goes on.
"""

from __future__ import annotations

import shlex
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from ecmta.loggers.panic import panic


class ConsoleError(Exception):
    """A command failed in a way the operator should read; the text is shown as is."""


@dataclass
class Session:
    """One console connection."""
    id: int = 0
    user: str | None = None
    peer: str = ""
    listener: str = ""
    transaction: Any = None          # open `config begin` transaction, owned by config/
    vars: dict = field(default_factory=dict)


@dataclass
class CommandContext:
    daemon: Any
    session: Session
    line: str = ""


@dataclass(frozen=True)
class Command:
    name: str
    handler: Callable[[CommandContext, list[str]], str]
    help: str
    usage: str


COMMANDS: dict[tuple[str, ...], Command] = {}


def command(name: str, *, help: str, usage: str = ""):
    """Register a handler for a command name of one or more words."""
    key = tuple(name.lower().split())

    def deco(fn):
        COMMANDS[key] = Command(name, fn, help, usage or name)
        return fn
    return deco


def split_line(line: str) -> list[str]:
    lex = shlex.shlex(line, posix=True)
    lex.whitespace_split = True
    lex.commenters = ""
    return list(lex)


def resolve(words: list[str]) -> tuple[Command | None, list[str]]:
    lowered = [w.lower() for w in words]
    for n in range(len(words), 0, -1):
        cmd = COMMANDS.get(tuple(lowered[:n]))
        if cmd is not None:
            return cmd, words[n:]
    if words and ":" in words[0]:
        # Module commands are typed `<module>:<instance> <command>` (module_specific_console_
        # commands.using); they register as "<module>: <command>" and get the instance first.
        module, _, instance = words[0].partition(":")
        cmd, rest = resolve([module + ":"] + words[1:])
        if cmd is not None:
            return cmd, [instance] + rest
    return None, words


def dispatch(ctx: CommandContext, line: str) -> tuple[bool, str]:
    """Run one console line; returns (ok, output text)."""
    ctx.line = line
    try:
        words = split_line(line)
    except ValueError as exc:
        return False, f"Syntax error: {exc}"
    if not words:
        return True, ""
    cmd, args = resolve(words)
    if cmd is None:
        return False, f"Unknown command '{words[0]}'. Type 'help' for a list of commands."
    try:
        out = cmd.handler(ctx, args)
    except ConsoleError as exc:
        return False, str(exc)
    except Exception as exc:
        panic(f"console command '{line}' failed: {exc!r}\n{traceback.format_exc()}",
              subsystem="console")
        return False, f"Command '{cmd.name}' failed: {exc}"
    return True, out if out is not None else ""
