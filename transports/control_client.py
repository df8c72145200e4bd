"""Client side of the control channel, and the one definition of its wire format.

Owns: parsing of console endpoint addresses (`/tmp/2025`, `2025`, `host:port`,
`user@host:port`, `[v6]:port`), the frame codec (`encode_frame`, `read_frame`) that the
server in `transports/control.py` uses too, and `ControlClient`, a blocking client on
plain sockets (ec_console, ec_rotate and tests run it without gevent).

Wire format (docs/design.md §3.5): the client sends one command per line (UTF-8, `\\n`);
every answer is a frame `<ok|err> <nbytes>\\n` followed by exactly `nbytes` bytes of UTF-8.
The server sends one `ok` frame with its greeting banner as soon as a client connects.

How it fails: every problem raises `ControlError` with a message that names the endpoint
("cannot connect to /tmp/2025: No such file or directory"); a malformed address raises
`ControlError` before any connection is tried.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass

DEFAULT_ADDRESS = "/tmp/2025"
# Momentum looks for Unix sockets in /tmp: a bare name such as `2030` means /tmp/2030.
SOCKET_DIR = "/tmp"
MAX_HEADER = 64
MAX_PAYLOAD = 256 * 1024 * 1024
CONNECT_TIMEOUT = 10.0
# Some commands (config reload, big flushes) take a while; the server has no reply deadline.
REPLY_TIMEOUT = 300.0

_VERSION_RE = re.compile(r"version:\s*(\S+)")


class ControlError(OSError):
    """The control channel could not be used; the text says where and why.

    An OSError, so callers that retry on socket errors (waiting for a daemon) retry on it."""


@dataclass(frozen=True)
class Remote:
    """A parsed endpoint: kind is "unix" (path set) or "tcp" (host and port set)."""
    text: str
    kind: str
    path: str | None = None
    host: str | None = None
    port: int | None = None
    user: str | None = None

    @property
    def display(self) -> str:
        """How prompts and errors name the endpoint (Momentum shows `john@127.0.0.1:2025`)."""
        return self.text


def _parse_port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ControlError(f"invalid console address '{whole}': port must be 1-65535")
    return int(text)


def _split_host_port(hostport: str, whole: str) -> tuple[str, int]:
    if hostport.startswith("["):
        host, sep, rest = hostport[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ControlError(f"invalid console address '{whole}': expected [address]:port")
        return host, _parse_port(rest[1:], whole)
    host, _, port = hostport.rpartition(":")
    if ":" in host:
        raise ControlError(f"invalid console address '{whole}': write IPv6 addresses as [address]:port")
    return host, _parse_port(port, whole)


def parse_remote(text: str) -> Remote:
    """Parse an ec_console endpoint; a TCP endpoint may carry a `user@` prefix."""
    text = text.strip()
    if not text:
        raise ControlError("empty console address")
    if text.lower().startswith("ssh://"):
        raise ControlError(f"cannot connect to {text}: ssh tunnels are not supported by this version; "
                           "run ssh -L yourself and connect to the forwarded port")
    if "/" in text:
        return Remote(text, "unix", path=text)
    if ":" not in text:
        return Remote(text, "unix", path=f"{SOCKET_DIR}/{text}")
    user, at, hostport = text.rpartition("@")
    host, port = _split_host_port(hostport, text)
    # `*:2025`, `:2025` and `[*]:2025` name every local address; connect to loopback.
    if host in ("", "*"):
        host = "::1" if hostport.startswith("[") else "127.0.0.1"
    return Remote(text, "tcp", host=host, port=port, user=user if at else None)


def encode_frame(ok: bool, text: str) -> bytes:
    payload = text.encode("utf-8", "replace")
    return f"{'ok' if ok else 'err'} {len(payload)}\n".encode("ascii") + payload


def read_frame(reader, where: str) -> tuple[bool, str]:
    """Read one frame from a binary file object; `where` names the peer in errors."""
    header = reader.readline(MAX_HEADER + 1)
    if not header:
        raise ControlError(f"connection to {where} closed by the server")
    status, _, size = header.decode("ascii", "replace").strip().partition(" ")
    if status not in ("ok", "err") or not size.isdigit() or int(size) > MAX_PAYLOAD:
        raise ControlError(f"protocol error from {where}: bad frame header {header[:MAX_HEADER]!r}")
    payload = reader.read(int(size))
    if len(payload) != int(size):
        raise ControlError(f"connection to {where} closed in the middle of an answer")
    return status == "ok", payload.decode("utf-8", "replace")


def _open_socket(remote: Remote, timeout: float) -> socket.socket:
    if remote.kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(remote.path)
        except BaseException:
            sock.close()
            raise
        return sock
    return socket.create_connection((remote.host, remote.port), timeout=timeout)


def _reason(exc: OSError) -> str:
    if isinstance(exc, TimeoutError) or isinstance(exc, socket.timeout):
        return "timed out"
    return exc.strerror or str(exc)


class ControlClient:
    """One console session. Not thread-safe; one command at a time."""

    def __init__(self, sock: socket.socket, remote: Remote, reply_timeout: float = REPLY_TIMEOUT):
        self.remote = remote
        self.user = remote.user
        self.reply_timeout = reply_timeout
        self._sock = sock
        self._reader = sock.makefile("rb")
        self.greeting = ""

    @classmethod
    def connect(cls, addr: str = DEFAULT_ADDRESS, timeout: float = CONNECT_TIMEOUT,
                reply_timeout: float = REPLY_TIMEOUT) -> "ControlClient":
        """Connect and read the greeting; raises ControlError when nothing answers."""
        remote = parse_remote(addr)
        try:
            sock = _open_socket(remote, timeout)
        except OSError as exc:
            raise ControlError(f"cannot connect to {remote.display}: {_reason(exc)}") from None
        client = cls(sock, remote, reply_timeout)
        try:
            ok, client.greeting = client._read(timeout)
        except ControlError:
            client.close()
            raise
        if not ok:
            client.close()
            raise ControlError(f"{remote.display} refused the session: {client.greeting.strip()}")
        return client

    @property
    def server_version(self) -> str | None:
        match = _VERSION_RE.search(self.greeting)
        return match.group(1) if match else None

    def command(self, line: str) -> tuple[bool, str]:
        """Send one command line; returns (ok, output text)."""
        if "\n" in line or "\r" in line:
            raise ValueError("a console command is a single line")
        if self._sock is None:
            raise ControlError(f"the session with {self.remote.display} is closed")
        try:
            self._sock.settimeout(self.reply_timeout)
            self._sock.sendall(line.encode("utf-8") + b"\n")
        except OSError as exc:
            self.close()
            raise ControlError(f"cannot send to {self.remote.display}: {_reason(exc)}") from None
        return self._read(self.reply_timeout)

    def _read(self, timeout: float) -> tuple[bool, str]:
        try:
            self._sock.settimeout(timeout)
            return read_frame(self._reader, self.remote.display)
        except OSError as exc:
            # A late answer would be taken for the next command's: the session is unusable.
            self.close()
            if isinstance(exc, (TimeoutError, socket.timeout)):
                raise ControlError(f"no answer from {self.remote.display} within {timeout:g} seconds") from None
            raise ControlError(f"connection to {self.remote.display} failed: {_reason(exc)}") from None
        except ControlError:
            self.close()
            raise

    def close(self) -> None:
        if self._sock is None:
            return
        for closable in (self._reader, self._sock):
            try:
                closable.close()
            except OSError:
                pass
        self._sock = None

    @property
    def closed(self) -> bool:
        return self._sock is None

    def __enter__(self) -> "ControlClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
