"""Core console commands: help, version, sysinfo, memory, pid, paniclog, shutdown,
reopen logs, module list, module hooks, quit/exit.

Owns: the output layouts of these commands, taken from the console_commands.*.md pages.
Talks to: `ctx.daemon` (docs/design.md §3.4: pid, shutdown(), reopen_logs(), modules(),
optionally hooks()), `ecmta.loggers.panic.tail()`, /proc and /etc/os-release (small local
reads that never wait on a disk). Fails by raising `ConsoleError` with a text for the
operator (unknown command for `help`, unknown memory type).

Decisions where the pages leave room:
- `paniclog` shows each line as `[Sun 30 Nov 2003 10:31:37] [level] text` in local time.
  Level words follow Momentum's page: ERROR is shown as "serious" (the page's sample lines
  are start-up messages, which reach the default paniclog only at ERROR); the other levels
  are their lowercased names (debug, info, notice, warning, critical). Newlines in a text
  are shown as `\\n`, as in the paniclog file.
- `memory` is honest about being Python: the first table lists the gc-tracked object types
  with the most instances (buf size = the type's basic size, active = live instances,
  peak = the most seen by any `memory` call of this process, allocd = active since Python
  has no preallocated slabs, current bytes = sum of sys.getsizeof). Momentum's second
  table (variable-size allocations) has no Python counterpart and is left out. `RSS` is the
  process's VmRSS (/proc/self/status) and `System RSS` the memory in use on the machine
  (MemTotal - MemAvailable from /proc/meminfo), both as a percentage of MemTotal.
- `version` prints `<product> version: <version>` then `product name: <product>`.
- `shutdown` answers "Shutting down" before the daemon starts stopping; `reopen logs`
  answers "Logs reopened".
"""

from __future__ import annotations

import gc
import os
import struct
import sys
import time
from collections import Counter

import gevent

from ecmta import version
from ecmta.console.registry import COMMANDS, ConsoleError, command
from ecmta.loggers import panic

LEVEL_WORDS = {"ERROR": "serious"}
MEMORY_ROWS = 40
_memory_peaks: dict[str, int] = {}


# -- help --------------------------------------------------------------------------------

def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _listing(commands) -> str:
    names = sorted(commands, key=lambda c: c.name.lower())
    width = max(len(c.name) for c in names)
    return "\n".join(f"{c.name:<{width}}  {_first_line(c.help)}".rstrip() for c in names)


def _one_command(cmd) -> str:
    return f"Usage: {cmd.usage}\n{cmd.help.strip()}"


def _commands_under(prefix: list[str]) -> list:
    n = len(prefix)
    return [c for key, c in COMMANDS.items() if list(key[:n]) == prefix]


@command("help", help="Show help information for console commands.", usage="help [command]")
def cmd_help(ctx, args):
    if not args:
        return "Available commands:\n" + _listing(COMMANDS.values()) + \
            "\nType 'help <command>' for the usage of one command."
    words = [a.lower() for a in args]
    exact = COMMANDS.get(tuple(words))
    if exact is not None:
        return _one_command(exact)
    group = _commands_under(words)
    if group:
        return _listing(group)
    raise ConsoleError(f"No help for '{' '.join(args)}': unknown command. "
                       "Type 'help' for a list of commands.")


# -- version, sysinfo, pid ---------------------------------------------------------------

@command("version", help="Show version information of the running instance.", usage="version")
def cmd_version(ctx, args):
    return f"{version.PRODUCT} version: {version.VERSION}\nproduct name: {version.PRODUCT}"


def _build_date() -> str:
    # An installed package has no compile step; the version module's mtime is its build.
    stamp = time.localtime(os.path.getmtime(version.__file__))
    return f"{time.strftime('%b', stamp)} {stamp.tm_mday:2d} {stamp.tm_year}"


def os_release(path: str = "/etc/os-release") -> str:
    """PRETTY_NAME of the OS, or an empty string when the file says nothing."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.strip().partition("=")
                if key == "PRETTY_NAME":
                    return value.strip().strip('"\'')
    except OSError:
        pass
    return ""


def _uname_line() -> str:
    u = os.uname()
    return f"{u.sysname} {u.nodename} {u.release} {u.version} {u.machine}"


@command("sysinfo", help="Show system information.", usage="sysinfo")
def cmd_sysinfo(ctx, args):
    bits = struct.calcsize("P") * 8
    lines = [f"{version.PRODUCT} Version: {version.VERSION} ({bits}-bit)",
             f"build date: {_build_date()} (RELEASE)",
             f"product name: {version.PRODUCT}"]
    release = os_release()
    if release:
        lines.append(release)
    lines.append(_uname_line())
    return "\n".join(lines)


@command("pid", help="Show the process id of the running instance.", usage="pid")
def cmd_pid(ctx, args):
    return str(ctx.daemon.pid)


# -- memory ------------------------------------------------------------------------------

MEMORY_HEADER = (
    "                        memory   buf  active  peak    allocd    current\n"
    "                        type     size objects objects objects   bytes\n"
    "------------------------------ ------ ------- ------- ------- ---------")
MEMORY_RULE = "------------------------------ ------ ------- ------- ------- ---------"


def _type_name(t: type) -> str:
    if t.__module__ == "builtins":
        return t.__qualname__
    return f"{t.__module__}.{t.__qualname__}"


def _sizeof(obj) -> int:
    try:
        return sys.getsizeof(obj)
    except Exception:   # a broken __sizeof__ must not break the report
        return 0


def object_census() -> dict[str, tuple[int, int, int]]:
    """type name -> (basic size, instances, bytes) over gc-tracked objects."""
    counts: Counter = Counter()
    sizes: Counter = Counter()
    for obj in gc.get_objects():
        t = type(obj)
        counts[t] += 1
        sizes[t] += _sizeof(obj)
    return {_type_name(t): (t.__basicsize__, n, sizes[t]) for t, n in counts.items()}


def _memory_row(name: str, basic: int, active: int, nbytes: int) -> str:
    peak = _memory_peaks[name] = max(_memory_peaks.get(name, 0), active)
    return f"{_display(name):>30} {basic:>6} {active:>7} {peak:>7} {active:>7} {nbytes:>9}"


def _display(name: str) -> str:
    """The 30-column memory type: long dotted names lose their module part."""
    return name if len(name) <= 30 else name.rsplit(".", 1)[-1][:30]


def _select_types(census: dict, wanted: str | None) -> list[str]:
    if wanted is None:
        return sorted(census, key=lambda n: (-census[n][1], n))[:MEMORY_ROWS]
    low = wanted.lower()
    names = [n for n in census
             if low in (n.lower(), n.rsplit(".", 1)[-1].lower(), _display(n).lower())]
    if not names:
        raise ConsoleError(f"Unknown memory type '{wanted}'. "
                           "Run 'memory' for the list of memory types.")
    return sorted(names)


def _proc_kib(path: str, key: str) -> int | None:
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _rss_line(label: str, nbytes: int, total: int | None) -> str:
    pct = 100.0 * nbytes / total if total else 0.0
    return f"{label}{nbytes:>{23 - len(label)}}{nbytes:>21,}{pct:>7.2f}%"


def rss_lines() -> list[str]:
    total = _proc_kib("/proc/meminfo", "MemTotal")
    avail = _proc_kib("/proc/meminfo", "MemAvailable")
    rss = _proc_kib("/proc/self/status", "VmRSS")
    lines = []
    if rss is not None:
        lines.append(_rss_line("RSS:", rss, total))
    if total is not None and avail is not None:
        lines.append(_rss_line("System RSS:", total - avail, total))
    return lines


@command("memory", help="Report detailed memory usage (Python object types, RSS).",
         usage="memory [memory_type]")
def cmd_memory(ctx, args):
    if len(args) > 1:
        raise ConsoleError("Usage: memory [memory_type]")
    census = object_census()
    names = _select_types(census, args[0] if args else None)
    rows = [_memory_row(n, *census[n]) for n in names]
    total = sum(census[n][2] for n in names)
    return "\n".join([MEMORY_HEADER, *rows, MEMORY_RULE, f"{total:>71}", "", *rss_lines()])


# -- paniclog ----------------------------------------------------------------------------

def level_word(level: str) -> str:
    return LEVEL_WORDS.get(level.upper(), level.lower())


def paniclog_line(ts: float, level: str, text: str) -> str:
    stamp = time.strftime("%a %d %b %Y %H:%M:%S", time.localtime(ts))
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    return f"[{stamp}] [{level_word(level)}] {text}"


@command("paniclog", help="Show the last several entries written to the paniclog.",
         usage="paniclog")
def cmd_paniclog(ctx, args):
    return "\n".join(paniclog_line(ts, lvl, text) for ts, lvl, text in panic.tail())


# -- shutdown, reopen logs ---------------------------------------------------------------

def after_reply(ctx, fn) -> None:
    """Run fn once the answer has been sent (control sessions), else soon after."""
    pending = ctx.session.vars.get("after_reply") if ctx.session is not None else None
    if isinstance(pending, list):
        pending.append(fn)
    else:
        gevent.spawn(fn)


@command("shutdown", help="Shut down the running instance.", usage="shutdown")
def cmd_shutdown(ctx, args):
    after_reply(ctx, ctx.daemon.shutdown)
    return "Shutting down"


@command("reopen logs", help="Close and reopen all log files (log rotation).",
         usage="reopen logs")
def cmd_reopen_logs(ctx, args):
    ctx.daemon.reopen_logs()
    return "Logs reopened"


# -- module list, module hooks -----------------------------------------------------------

def _module_block(mod: dict) -> list[str]:
    name, instance = mod.get("module", "?"), mod.get("instance_name")
    enabled = mod.get("enabled", True)
    if not isinstance(enabled, str):
        enabled = "enabled" if enabled else "disabled"
    lines = [f"Module: {name}:{instance}" if instance else f"Module: {name}",
             f"  Scope_Name: {mod.get('scope_name') or name}"]
    if instance:
        lines.append(f"  Instance_Name: {instance}")
    lines += [f"  Enabled: {enabled}", f"  API: {mod.get('api', '')}",
              f"  Name: {mod.get('name', '')}", f"  Description: {mod.get('description', '')}"]
    return lines


@command("module list", help="Display all loaded modules.", usage="module list")
def cmd_module_list(ctx, args):
    return "\n".join(line for mod in ctx.daemon.modules() for line in _module_block(mod))


def _hook_entries(hooks) -> list[tuple[str, str]]:
    if isinstance(hooks, dict):
        return sorted((str(k), str(v or "")) for k, v in hooks.items())
    entries = []
    for hook in hooks:
        if isinstance(hook, (tuple, list)):
            entries.append((str(hook[0]), str(hook[1]) if len(hook) > 1 and hook[1] else ""))
        else:
            entries.append((str(hook), ""))
    return entries


@command("module hooks", help="Display all dynamic hooks in the system with their prototypes.",
         usage="module hooks")
def cmd_module_hooks(ctx, args):
    hooks = getattr(ctx.daemon, "hooks", None)
    if hooks is None:
        return "This instance exposes no dynamic hooks."
    lines = []
    for name, proto in _hook_entries(hooks()):
        lines.append(name)
        if proto:
            lines.append(f"\t{proto}")
    return "\n".join(lines) if lines else "No dynamic hooks are registered."


# -- quit, exit (answered by the control session; listed here for help) ------------------

@command("quit", help="End the console session.", usage="quit")
def cmd_quit(ctx, args):
    return ""


@command("exit", help="End the console session.", usage="exit")
def cmd_exit(ctx, args):
    return ""
