"""Core console commands through the registry's dispatch, in this process, with a fake
daemon carrying the design.md §3.4 attributes: every layout the pages document."""

import os
import re
import sys
import time

import pytest

from ecmta import version
from ecmta.console import cmd_core, loader
from ecmta.console.registry import COMMANDS, CommandContext, Session, dispatch
from ecmta.loggers import panic

loader.load_all()


class FakeDaemon:
    def __init__(self, modules=(), hooks=None):
        self.pid = 4242
        self.started_at = time.time()
        self.config = self.pools = self.supervisor = None
        self.shutdowns = 0
        self.reopens = 0
        self._modules = list(modules)
        if hooks is not None:
            self.hooks = lambda: hooks

    def shutdown(self):
        self.shutdowns += 1

    def reopen_logs(self):
        self.reopens += 1

    def modules(self):
        return self._modules


def run(line, daemon=None, session=None):
    ctx = CommandContext(daemon or FakeDaemon(), session or Session(vars={"after_reply": []}))
    return dispatch(ctx, line)


def ok(line, daemon=None, session=None):
    good, text = run(line, daemon, session)
    assert good, text
    return text


# -- help --------------------------------------------------------------------------------

def test_help_lists_every_command_with_its_one_line_help():
    lines = ok("help").splitlines()
    assert lines[0] == "Available commands:"
    assert lines[-1] == "Type 'help <command>' for the usage of one command."
    names = [re.split(r"\s{2,}", line)[0] for line in lines[1:-1]]
    assert names == sorted((c.name for c in COMMANDS.values()), key=str.lower)
    for want in ("help", "version", "sysinfo", "memory", "pid", "paniclog", "shutdown",
                 "reopen logs", "module list", "module hooks", "quit", "exit"):
        assert want in names
    assert any(re.fullmatch(r"pid {2,}Show the process id of the running instance\.", line)
               for line in lines)


def test_help_for_one_command_shows_usage_and_help():
    assert ok("help memory") == ("Usage: memory [memory_type]\n"
                                 "Report detailed memory usage (Python object types, RSS).")
    assert ok("HELP Reopen Logs").startswith("Usage: reopen logs\n")


def test_help_for_a_command_group_lists_its_commands():
    assert ok("help module") == (
        "module hooks  Display all dynamic hooks in the system with their prototypes.\n"
        "module list   Display all loaded modules.")


def test_help_for_unknown_command_fails_clearly():
    assert run("help frobnicate") == (
        False, "No help for 'frobnicate': unknown command. Type 'help' for a list of commands.")


# -- version, sysinfo, pid ---------------------------------------------------------------

def test_version():
    assert ok("version") == f"ecmta version: {version.VERSION}\nproduct name: ecmta"


def test_sysinfo_layout():
    lines = ok("sysinfo").splitlines()
    assert re.fullmatch(r"ecmta Version: \S+ \(64-bit\)", lines[0])
    assert re.fullmatch(r"build date: [A-Z][a-z]{2} [ \d]\d \d{4} \(RELEASE\)", lines[1])
    assert lines[2] == "product name: ecmta"
    u = os.uname()
    assert lines[-1] == f"{u.sysname} {u.nodename} {u.release} {u.version} {u.machine}"
    release = cmd_core.os_release()
    if release:
        assert lines[3] == release and len(lines) == 5


def test_os_release_reads_pretty_name(tmp_path):
    path = tmp_path / "os-release"
    path.write_text('NAME="Debian"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
    assert cmd_core.os_release(str(path)) == "Debian GNU/Linux 12 (bookworm)"
    assert cmd_core.os_release(str(tmp_path / "missing")) == ""


def test_pid():
    assert ok("pid") == "4242"


# -- memory ------------------------------------------------------------------------------

ROW = re.compile(r"^[ \S]{30} [ \d]{6} [ \d]{7} [ \d]{7} [ \d]{7} [ \d]{9}$")
RSS = re.compile(r"^(RSS:|System RSS:) +\d+ +[\d,]+ +\d+\.\d\d%$")


def test_memory_layout():
    lines = ok("memory").splitlines()
    assert lines[:3] == cmd_core.MEMORY_HEADER.splitlines()
    rule = lines.index(cmd_core.MEMORY_RULE, 3)
    rows = lines[3:rule]
    assert 0 < len(rows) <= cmd_core.MEMORY_ROWS
    assert all(ROW.match(r) for r in rows), rows
    counts = [int(r.split()[-4]) for r in rows]
    assert counts == sorted(counts, reverse=True)
    assert lines[rule + 1] == f"{sum(int(r.split()[-1]) for r in rows):>71}"
    assert lines[rule + 2] == ""
    rss = lines[rule + 3:]
    assert [line.split(":")[0] for line in rss] == ["RSS", "System RSS"]
    assert all(RSS.match(line) for line in rss), rss
    # The columns line up with the page's sample: the first number ends at column 23.
    assert all(len(line.split("  ")[0]) <= 23 and line[22] != " " for line in rss)


def test_memory_one_type_and_peak():
    lists = [[i] for i in range(5000)]   # lists are always gc-tracked
    first = ok("memory list").splitlines()
    assert len(first) == 3 + 1 + 2 + 1 + 2
    name, size, active, peak, allocd, nbytes = first[3].split()
    assert name == "list" and int(size) == list.__basicsize__
    assert int(active) >= 5000 and int(peak) >= int(active) and allocd == active
    del lists
    second = ok("memory LIST").splitlines()[3].split()
    assert int(second[2]) < int(active) and int(second[3]) == int(peak)   # peak is kept


def test_memory_unknown_type_fails():
    assert run("memory no_such_type") == (
        False, "Unknown memory type 'no_such_type'. Run 'memory' for the list of memory types.")
    assert run("memory a b") == (False, "Usage: memory [memory_type]")


def test_memory_long_type_names_fit_the_column():
    assert cmd_core._display("a" * 31) == "a" * 30
    assert cmd_core._display("some.very.long.module.path.Name") == "Name"


# -- paniclog ----------------------------------------------------------------------------

def test_paniclog_layout_and_level_words(capsys):
    panic.reset_tail()
    ts = time.mktime((2003, 11, 30, 10, 31, 37, 0, 0, -1))
    entries = [(ts, "ERROR", "Valid license."), (ts + 1, "CRITICAL", "disk full"),
               (ts + 2, "WARNING", "two\nlines"), (ts + 3, "NOTICE", "n"), (ts + 4, "INFO", "i"),
               (ts + 5, "DEBUG", "d")]
    for when, level, text in entries:
        panic._tail[level].append((when, 0, text))
    assert ok("paniclog").splitlines() == [
        "[Sun 30 Nov 2003 10:31:37] [serious] Valid license.",
        "[Sun 30 Nov 2003 10:31:38] [critical] disk full",
        "[Sun 30 Nov 2003 10:31:39] [warning] two\\nlines",
        "[Sun 30 Nov 2003 10:31:40] [notice] n",
        "[Sun 30 Nov 2003 10:31:41] [info] i",
        "[Sun 30 Nov 2003 10:31:42] [debug] d",
    ]
    panic.reset_tail()
    assert ok("paniclog") == ""


def test_paniclog_shows_what_panic_recorded(capsys):
    panic.reset_tail()
    panic.panic("ndbm_cache initialized", subsystem="mod", level="ERROR")
    assert re.fullmatch(r"\[\w{3} \d\d \w{3} \d{4} \d\d:\d\d:\d\d\] \[serious\] mod: ndbm_cache initialized",
                        ok("paniclog"))
    panic.reset_tail()


# -- shutdown, reopen logs ---------------------------------------------------------------

def test_shutdown_runs_after_the_reply():
    daemon = FakeDaemon()
    session = Session(vars={"after_reply": []})
    assert ok("shutdown", daemon, session) == "Shutting down"
    assert daemon.shutdowns == 0
    assert session.vars["after_reply"] == [daemon.shutdown]


def test_reopen_logs():
    daemon = FakeDaemon()
    assert ok("reopen logs", daemon) == "Logs reopened"
    assert daemon.reopens == 1


# -- module list, module hooks -----------------------------------------------------------

MODULES = [
    {"module": "ec_logger", "scope_name": "ec_logger", "instance_name": "ec_logger",
     "enabled": True, "api": "Logger", "name": "ec_logger.c",
     "description": "Momentum minimalistic logging module"},
    {"module": "ds_core", "scope_name": "ds_core", "instance_name": None, "enabled": True,
     "api": "Singleton", "name": "ds_core.c", "description": "generic datasource module"},
    {"module": "scriptlet", "scope_name": "scriptlet", "instance_name": "scriptlet",
     "enabled": False, "api": "Validation", "name": "scriptlet", "description": "Lua"},
]


def test_module_list_layout():
    assert ok("module list", FakeDaemon(MODULES)) == """\
Module: ec_logger:ec_logger
  Scope_Name: ec_logger
  Instance_Name: ec_logger
  Enabled: enabled
  API: Logger
  Name: ec_logger.c
  Description: Momentum minimalistic logging module
Module: ds_core
  Scope_Name: ds_core
  Enabled: enabled
  API: Singleton
  Name: ds_core.c
  Description: generic datasource module
Module: scriptlet:scriptlet
  Scope_Name: scriptlet
  Instance_Name: scriptlet
  Enabled: disabled
  API: Validation
  Name: scriptlet
  Description: Lua"""
    assert ok("module list", FakeDaemon([])) == ""


@pytest.mark.parametrize("hooks", [
    {"core_config_get_data": "int(generic_module_infrastructure*,int*,void**)", "b_hook": ""},
    [("core_config_get_data", "int(generic_module_infrastructure*,int*,void**)"), "b_hook"],
])
def test_module_hooks_layout(hooks):
    text = ok("module hooks", FakeDaemon(hooks=hooks))
    lines = sorted(text.split("\n"))
    assert "core_config_get_data\n\tint(generic_module_infrastructure*,int*,void**)" in text
    assert "b_hook" in lines


def test_module_hooks_without_hook_support():
    assert ok("module hooks") == "This instance exposes no dynamic hooks."
    assert ok("module hooks", FakeDaemon(hooks=[])) == "No dynamic hooks are registered."


def test_module_without_subcommand_is_unknown():
    good, text = run("module")
    assert not good and "Unknown command 'module'" in text


# -- loader ------------------------------------------------------------------------------

def test_loader_skips_modules_that_do_not_exist_yet():
    assert loader.load_all(("ecmta.console.cmd_core", "ecmta.console.cmd_not_written_yet")) == [
        "ecmta.console.cmd_core"]


def test_loader_raises_on_a_broken_command_module(tmp_path, monkeypatch):
    (tmp_path / "ecc_broken_cmds.py").write_text("import ecc_dependency_that_is_missing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="ecc_dependency_that_is_missing"):
        loader.load_all(("ecc_broken_cmds",))
    (tmp_path / "ecc_syntax_cmds.py").write_text("def (:\n")
    with pytest.raises(SyntaxError):
        loader.load_all(("ecc_syntax_cmds",))
    sys.modules.pop("ecc_broken_cmds", None)


def test_loader_lists_the_known_command_modules():
    assert loader.COMMAND_MODULES[0] == "ecmta.console.cmd_core"
    assert {"ecmta.console.cmd_threads", "ecmta.console.cmd_config"} <= set(loader.COMMAND_MODULES)
