"""The real ec_console executable against a control_server.py child: batch mode (command
line and piped stdin), exit codes, errors, and interactive mode through a pty (banner,
prompt, tab completion, \\pager, history)."""

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time

import pytest

from ecmta.tests.console.control_harness import ec_console, ec_console_cmd, free_port

PROMPT = re.compile(rb"\d\d:\d\d:\d\d (\S+)> ")


@pytest.fixture
def server(server_factory, sockdir):
    return server_factory([{"address": f"{sockdir}/ctl"}, {"address": "127.0.0.1:0"}])


# -- batch mode --------------------------------------------------------------------------

def test_man_page():
    res = ec_console("--man")
    assert res.returncode == 0
    assert "ec_console [ remoteaddr [ command ... ] ] [ --man ]" in res.stdout
    assert "\\pager" in res.stdout
    assert ec_console("/tmp/2025", "--man").stdout == res.stdout


def test_command_on_the_command_line(server):
    res = ec_console(server.address, "pid")
    assert (res.returncode, res.stdout, res.stderr) == (0, f"{server.proc.pid}\n", "")


def test_multi_word_command_and_no_banner_in_batch_mode(server):
    res = ec_console(server.address, "module", "list")
    assert res.returncode == 0
    assert res.stdout.startswith("Module: ec_logger:ec_logger\n  Scope_Name: ec_logger\n")
    assert "version:" not in res.stdout
    assert ec_console(server.address, "reopen logs").stdout == "Logs reopened\n"


def test_unknown_command_exits_1(server):
    res = ec_console(server.address, "frobnicate")
    assert res.returncode == 1
    assert res.stdout == "Unknown command 'frobnicate'. Type 'help' for a list of commands.\n"


def test_every_core_command_answers(server):
    for line in ("help", "version", "sysinfo", "memory", "pid", "paniclog", "module list",
                 "module hooks", "help memory"):
        res = ec_console(server.address, *line.split())
        assert res.returncode == 0, (line, res.stdout, res.stderr)
    assert ec_console(server.address, "version").stdout == "ecmta version: 0.1.0\nproduct name: ecmta\n"
    assert "RSS:" in ec_console(server.address, "memory").stdout


def test_tcp_and_user_prefixed_addresses(server):
    tcp = server.addresses[1]
    assert ec_console(tcp, "pid").stdout == f"{server.proc.pid}\n"
    assert ec_console(f"admin@{tcp}", "pid").stdout == f"{server.proc.pid}\n"


def test_piped_stdin_runs_each_line(server):
    res = ec_console(server.address, input="pid\n\nversion\n")
    assert res.returncode == 0
    assert res.stdout == f"{server.proc.pid}\necmta version: 0.1.0\nproduct name: ecmta\n"


def test_piped_stdin_with_a_failure_exits_1_but_runs_everything(server):
    res = ec_console(server.address, input="pid\nbogus\ntest echo after\n")
    assert res.returncode == 1
    assert res.stdout.splitlines() == [str(server.proc.pid),
                                       "Unknown command 'bogus'. Type 'help' for a list of commands.",
                                       "after"]


def test_quit_in_piped_stdin_stops_reading(server):
    res = ec_console(server.address, input="test echo one\nquit\ntest echo two\n")
    assert (res.returncode, res.stdout) == (0, "one\n")


def test_cannot_connect_is_exit_2_with_a_clear_message(sockdir):
    res = ec_console(f"{sockdir}/nothing", "pid")
    assert res.returncode == 2
    assert res.stderr == f"ec_console: cannot connect to {sockdir}/nothing: No such file or directory\n"
    port = free_port()
    res = ec_console(f"127.0.0.1:{port}", "pid")
    assert res.returncode == 2
    assert f"cannot connect to 127.0.0.1:{port}: Connection refused" in res.stderr


def test_bad_address_is_exit_2(server):
    res = ec_console("host:notaport", "pid")
    assert res.returncode == 2
    assert "invalid console address 'host:notaport': port must be 1-65535" in res.stderr


def test_shutdown_from_the_command_line(server):
    res = ec_console(server.address, "shutdown")
    assert (res.returncode, res.stdout) == (0, "Shutting down\n")
    assert "STOPPED" in server.wait_stopped()


# -- interactive mode --------------------------------------------------------------------

class Tty:
    """ec_console on a pty of `rows` lines; `expect` waits for bytes on the terminal."""

    def __init__(self, address, home, rows=10, env=None):
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, 80, 0, 0))
        full_env = dict(os.environ, HOME=home, TERM="dumb", **(env or {}))
        full_env.pop("LINES", None)
        full_env.pop("COLUMNS", None)
        self.proc = subprocess.Popen(ec_console_cmd() + [address], stdin=slave, stdout=slave,
                                     stderr=slave, env=full_env, close_fds=True)
        os.close(slave)
        self.master = master
        self.buf = b""

    def expect(self, pattern, timeout=10.0):
        regex = pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern.encode()))
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.buf)
            if match:
                before, self.buf = self.buf[:match.start()], self.buf[match.end():]
                return before.decode(errors="replace"), match
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {pattern!r}; got {self.buf!r}")
            if select.select([self.master], [], [], left)[0]:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"terminal closed waiting for {pattern!r}; got {self.buf!r}")
                self.buf += chunk

    def send(self, text):
        os.write(self.master, text.encode())

    def command(self, line):
        """Type a line; returns what was printed before the next prompt."""
        self.send(line + "\n")
        out, _ = self.expect(PROMPT)
        return out.replace("\r\n", "\n")

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        os.close(self.master)


@pytest.fixture
def tty(server, tmp_path):
    made = []

    def start(address=None, **kw):
        t = Tty(address or server.address, str(tmp_path), **kw)
        made.append(t)
        return t
    yield start
    for t in made:
        t.close()


def test_interactive_banner_prompt_and_commands(server, tty):
    t = tty()
    banner, match = t.expect(PROMPT)
    assert "# ecmta version: 0.1.0" in banner
    assert banner.lstrip().startswith("#" * 46)
    assert match.group(1).decode() == server.address
    assert t.command("pid").endswith(f"{server.proc.pid}\n")
    assert "Unknown command 'bogus'" in t.command("bogus")
    t.send("quit\n")
    assert t.proc.wait(10) == 0


def test_interactive_prompt_names_a_tcp_user_endpoint(server, tty):
    address = "john@" + server.addresses[1]
    t = tty(address)
    _, match = t.expect(PROMPT)
    assert match.group(1).decode() == address


def test_interactive_eof_and_exit_leave_with_0(tty):
    t = tty()
    t.expect(PROMPT)
    t.send("\x04")   # Ctrl-D at an empty prompt
    assert t.proc.wait(10) == 0
    t2 = tty()
    t2.expect(PROMPT)
    t2.send("exit\n")
    assert t2.proc.wait(10) == 0


def test_pager_toggles_paging_of_long_output(tty, tmp_path):
    pager = tmp_path / "pager.sh"
    pager.write_text("#!/bin/sh\necho '--paged--'\ncat\n")
    pager.chmod(0o755)
    t = tty(rows=10, env={"PAGER": str(pager)})
    t.expect(PROMPT)
    assert "--paged--" not in t.command("test big 30")
    assert f"Pager is on ({pager})" in t.command("\\pager")
    paged = t.command("test big 30")
    assert "--paged--" in paged and "line 29" in paged
    assert "--paged--" not in t.command("test big 3")   # shorter than the terminal
    assert "Pager is off" in t.command("\\pager")
    assert "--paged--" not in t.command("test big 30")


def test_pager_cat(tty):
    t = tty(rows=5, env={"PAGER": "cat"})
    t.expect(PROMPT)
    t.command("\\pager")
    out = t.command("test big 12")
    assert [f"line {i}" for i in range(12)] == [line for line in out.splitlines() if line.startswith("line")]


def test_history_is_kept_between_sessions(tty, tmp_path):
    t = tty()
    t.expect(PROMPT)
    t.command("test echo remembered")
    t.send("quit\n")
    assert t.proc.wait(10) == 0
    history = (tmp_path / ".ec_console_history").read_text()
    assert "test echo remembered" in history
    t2 = tty()
    t2.expect(PROMPT)
    # Two up-arrows: past `quit` to the command typed in the previous session.
    t2.send("\x1b[A\x1b[A\n")
    out, _ = t2.expect(PROMPT)
    assert out.replace("\r\n", "\n").endswith("remembered\n")


def test_tab_completes_command_names(tty):
    t = tty()
    t.expect(PROMPT)
    t.send("reopen l\t\n")
    out, _ = t.expect(PROMPT)
    assert "Logs reopened" in out


def test_lost_connection_in_interactive_mode_exits_2(server, tty):
    t = tty()
    t.expect(PROMPT)
    t.send("shutdown\n")
    t.expect("Shutting down")
    server.wait_stopped()
    t.send("pid\n")
    t.expect("ec_console: ")
    assert t.proc.wait(10) == 2
