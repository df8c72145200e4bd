"""ec_console: connect to a running ecelerity to perform introspection and administration.

Owns: the command line (`ec_console [remoteaddr [command...]] [--man]`), batch mode (a
command on the command line, or stdin that is not a terminal), and interactive mode
(version banner, `HH:MM:SS <remote>> ` prompt, readline editing with tab completion and
history in ~/.ec_console_history, `\\pager` paging through $PAGER, quit/exit/EOF).

Talks to: the control listener through `ecmta.transports.control_client.ControlClient`
(plain sockets, no gevent).

Exit status: 0 when every command succeeded, 1 when a command answered with an error,
2 when the console could not connect or lost the connection.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

from ecmta.transports.control_client import DEFAULT_ADDRESS, ControlClient, ControlError

PAGER_COMMAND = "\\pager"
QUIT_WORDS = ("quit", "exit")
HISTORY_FILE = ".ec_console_history"
HISTORY_LENGTH = 1000
EXIT_OK, EXIT_COMMAND_FAILED, EXIT_CONNECTION = 0, 1, 2

MAN = """\
NAME
    ec_console - connect to ecelerity to perform introspection and administration

SYNOPSIS
    ec_console [ remoteaddr [ command ... ] ] [ --man ]

DESCRIPTION
    Runtime administration of ecelerity is performed through the system console. Through
    the console you can view the state of the running instance and change the value of
    configuration options.

    remoteaddr [command]
        The endpoint of the Control_Listener: a Unix socket path (default /tmp/2025; a bare
        name such as 2030 means /tmp/2030), or a TCP address host:port, [ipv6]:port, or
        user@host:port. When a command is given, it is run in batch mode and the console
        exits.

    --man
        Show this manual page.

    The console runs in batch mode when a command is given on the command line or when
    its standard input is not a terminal (then each input line is one command). Batch
    mode prints only the commands' output. Otherwise an interactive session starts: the
    server's version banner is shown, lines can be edited (readline, ~/.inputrc, tab
    completion of command names) and are kept in ~/.ec_console_history.

    Interactive commands of the console itself:
        \\pager     turn paging of long output through $PAGER (default less) on or off
        quit, exit  leave the console (end of input does too)

EXIT STATUS
    0 every command succeeded; 1 a command failed; 2 no connection to the listener.

SEE ALSO
    help (console command), Control_Listener
"""


# -- command line ------------------------------------------------------------------------

def parse_args(argv: list[str]) -> tuple[str, str | None, bool]:
    """(remote address, batch command or None, --man requested)."""
    if "--man" in argv or (argv and argv[0] in ("-h", "--help")):
        return DEFAULT_ADDRESS, None, True
    remote = argv[0] if argv else DEFAULT_ADDRESS
    # Words are joined as typed, like Momentum: `ec_console /tmp/2025 reopen logs`.
    command = " ".join(argv[1:]).strip() if len(argv) > 1 else None
    return remote, command or None, False


def write_output(text: str, stream=None) -> None:
    stream = stream or sys.stdout
    if text:
        stream.write(text if text.endswith("\n") else text + "\n")
    stream.flush()


def fail(message: str) -> int:
    print(f"ec_console: {message}", file=sys.stderr, flush=True)
    return EXIT_CONNECTION


# -- batch mode --------------------------------------------------------------------------

def run_one(client: ControlClient, line: str) -> int:
    ok, text = client.command(line)
    write_output(text)
    return EXIT_OK if ok else EXIT_COMMAND_FAILED


def run_stdin(client: ControlClient, stream) -> int:
    status = EXIT_OK
    for raw in stream:
        line = raw.strip()
        if not line or line == PAGER_COMMAND:
            continue   # a pager makes no sense when nobody reads a terminal
        if line.lower() in QUIT_WORDS:
            break
        if run_one(client, line) != EXIT_OK:
            status = EXIT_COMMAND_FAILED
    return status


# -- interactive mode --------------------------------------------------------------------

class Pager:
    """`\\pager`: output taller than the terminal goes through $PAGER when on."""

    def __init__(self) -> None:
        self.enabled = False

    @staticmethod
    def command() -> str:
        return os.environ.get("PAGER") or "less"

    def toggle(self) -> str:
        self.enabled = not self.enabled
        return f"Pager is on ({self.command()})" if self.enabled else "Pager is off"

    def show(self, text: str) -> None:
        if text and not text.endswith("\n"):
            text += "\n"
        if self.enabled and text.count("\n") > shutil.get_terminal_size().lines:
            if self._page(text):
                return
        write_output(text)

    def _page(self, text: str) -> bool:
        sys.stdout.flush()
        try:
            subprocess.run(self.command(), shell=True, input=text.encode("utf-8"), check=False)
            return True
        except OSError as exc:
            print(f"ec_console: cannot run pager '{self.command()}': {exc}", file=sys.stderr)
            return False


def command_names(client: ControlClient) -> list[str]:
    """Command names from the server's `help` listing, for tab completion."""
    ok, text = client.command("help")
    if not ok:
        return []
    names = []
    for line in text.splitlines()[1:]:
        name = line.split("  ", 1)[0].strip()
        if name and not line.startswith("Type "):
            names.append(name)
    return names + [PAGER_COMMAND]


class Completer:
    """Completes the word under the cursor against the multi-word command names."""

    def __init__(self, readline, names: list[str]) -> None:
        self.readline = readline
        self.names = names
        self.matches: list[str] = []

    def __call__(self, text: str, state: int):
        if state == 0:
            self.matches = self.candidates(self.readline.get_line_buffer()[:self.readline.get_endidx()], text)
        return self.matches[state] if state < len(self.matches) else None

    def candidates(self, buffer: str, text: str) -> list[str]:
        typed = buffer.lstrip().lower()
        index = len(typed[: len(typed) - len(text)].split())
        found = set()
        for name in self.names:
            words = name.split()
            if name.lower().startswith(typed) and index < len(words):
                found.add(words[index])
        return sorted(found)


def setup_readline(names: list[str]):
    """Line editing, completion and persistent history; None when readline is missing."""
    try:
        import readline
    except ImportError:
        return None
    path = os.path.join(os.path.expanduser("~"), HISTORY_FILE)
    try:
        readline.read_history_file(path)
    except (FileNotFoundError, PermissionError, OSError):
        pass
    readline.set_history_length(HISTORY_LENGTH)
    readline.set_completer(Completer(readline, names))
    readline.set_completer_delims(" \t\n")
    readline.parse_and_bind("tab: complete")
    return lambda: _save_history(readline, path)


def _save_history(readline, path: str) -> None:
    try:
        readline.write_history_file(path)
    except OSError as exc:
        print(f"ec_console: cannot save history to {path}: {exc.strerror or exc}", file=sys.stderr)


def prompt(client: ControlClient) -> str:
    return f"{time.strftime('%H:%M:%S')} {client.remote.display}> "


def read_line(client: ControlClient) -> str | None:
    """The next typed line; None at end of input. Ctrl-C abandons the line."""
    while True:
        try:
            return input(prompt(client))
        except EOFError:
            print()
            return None
        except KeyboardInterrupt:
            print()


def interact(client: ControlClient) -> int:
    write_output(client.greeting)
    save = setup_readline(command_names(client))
    pager = Pager()
    try:
        while (line := read_line(client)) is not None:
            line = line.strip()
            if line.lower() in QUIT_WORDS:
                break
            if line == PAGER_COMMAND:
                print(pager.toggle(), flush=True)
            elif line:
                _ok, text = client.command(line)
                pager.show(text)
    finally:
        if save is not None:
            save()
    return EXIT_OK


# -- entry point -------------------------------------------------------------------------

def run(remote: str, command: str | None) -> int:
    with ControlClient.connect(remote) as client:
        if command is not None:
            return run_one(client, command)
        if not sys.stdin.isatty():
            return run_stdin(client, sys.stdin)
        return interact(client)


def main(argv: list[str] | None = None) -> int:
    remote, command, man = parse_args(list(sys.argv[1:] if argv is None else argv))
    if man:
        write_output(MAN)
        return EXIT_OK
    try:
        return run(remote, command)
    except ControlError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`ec_console help | head -1`): stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_COMMAND_FAILED


if __name__ == "__main__":
    sys.exit(main())
