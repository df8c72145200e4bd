"""The Control_Listener service: the console's end of the control channel.

Owns: the listening sockets named by `Control_Listener { Listen "..." {} }` (Unix paths and
TCP `host:port`, `*:port`, `:port`, `[v6]:port`, `[*]:port`), one session greenlet per
connection, the idle timeout (`Timeout`, default 60 s), the socket file's mode
(`File_Mode`, default 0660) and the Unix socket file's life: a stale file is removed at
start only when nothing answers on it, and our own file is unlinked at stop.

Talks to: `ecmta.console.registry.dispatch()` for every command line, with a
`CommandContext(daemon, session)`; the frame codec lives in `transports/control_client.py`.
A handler runs in its session's greenlet and may wait cooperatively (ask actors); it must
not block the hub. A handler that wants something done after its answer has reached the
client (`shutdown`) appends a callable to `session.vars["after_reply"]`.

How it fails: `start()` raises `ControlListenerError` ("control socket /tmp/2025 is in use",
"cannot listen on 127.0.0.1:2025: Address already in use"); a session's socket errors end
that session only; a crashing session is written to the paniclog.
"""

from __future__ import annotations

import itertools
import os
import socket
import stat
import struct
from dataclasses import dataclass

import gevent
import structlog
from gevent.pool import Pool
from gevent.server import StreamServer

from ecmta import version
from ecmta.console.registry import CommandContext, Session, dispatch
from ecmta.loggers.panic import panic
from ecmta.transports.control_client import encode_frame

log = structlog.get_logger("ecmta.control")

DEFAULT_TIMEOUT = 60.0
DEFAULT_FILE_MODE = 0o660
DEFAULT_BACKLOG = 500
MAX_LINE = 64 * 1024
# Sessions per listening socket; past this the accept loop waits (back-pressure).
MAX_SESSIONS = 1000
STOP_GRACE = 2.0
AFTER_REPLY = "after_reply"
QUIT_WORDS = ("quit", "exit")

_session_ids = itertools.count(1)


class ControlListenerError(Exception):
    """A control endpoint could not be opened; the text names it and the reason."""


@dataclass(frozen=True)
class Endpoint:
    """One `Listen` stanza of the Control_Listener; timeout 0 means no idle timeout."""
    address: str
    file_mode: int = DEFAULT_FILE_MODE
    timeout: float = DEFAULT_TIMEOUT
    backlog: int = DEFAULT_BACKLOG


@dataclass(frozen=True)
class ListenAddress:
    """A parsed Listen address: kind "unix" (path) or "tcp" (family, host, port)."""
    kind: str
    path: str | None = None
    family: int = socket.AF_UNIX
    host: str = ""
    port: int = 0


def banner() -> str:
    """The greeting frame's text; ec_console prints it at the start of interactive sessions."""
    rule = "#" * 46
    return "\n".join([rule, f"# {version.PRODUCT} version: {version.VERSION}",
                      "# A Momentum 4 (ecelerity) compatible MTA.",
                      "# Licensed under the Apache License 2.0.", rule]) + "\n"


# -- addresses ---------------------------------------------------------------------------

def _port(text: str, address: str) -> int:
    # Port 0 (kernel-chosen) is accepted so tests can listen without guessing a free port.
    if not text.isdigit() or int(text) > 65535:
        raise ControlListenerError(f"invalid Listen address '{address}': port must be 0-65535")
    return int(text)


def _tcp_address(address: str) -> ListenAddress:
    if address.startswith("["):
        host, sep, rest = address[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ControlListenerError(f"invalid Listen address '{address}': expected [address]:port")
        host = "::" if host in ("", "*") else host
        return ListenAddress("tcp", family=socket.AF_INET6, host=host, port=_port(rest[1:], address))
    host, _, port = address.rpartition(":")
    if ":" in host:
        raise ControlListenerError(f"invalid Listen address '{address}': write IPv6 addresses as [address]:port")
    host = "0.0.0.0" if host in ("", "*") else host
    return ListenAddress("tcp", family=socket.AF_INET, host=host, port=_port(port, address))


def parse_listen_address(address: str) -> ListenAddress:
    """A path (anything with a `/`, or without a `:`) is a Unix socket; the rest is TCP."""
    address = address.strip()
    if not address:
        raise ControlListenerError("invalid Listen address '': empty")
    if "/" in address or ":" not in address:
        return ListenAddress("unix", path=address)
    return _tcp_address(address)


# -- configuration -----------------------------------------------------------------------

def _option(scopes, name: str):
    """First value of `name` found in the scopes, innermost first (Listen, then listener)."""
    for scope in scopes:
        value = scope.options.get(name)
        if value is not None:
            return value.value
    return None


def _endpoint_from_scopes(address: str, scopes) -> Endpoint:
    mode = _option(scopes, "file_mode")
    timeout = _option(scopes, "timeout")
    backlog = _option(scopes, "listen_backlog")
    return Endpoint(address,
                    file_mode=int(mode) if mode is not None else DEFAULT_FILE_MODE,
                    timeout=float(timeout) if timeout is not None else DEFAULT_TIMEOUT,
                    backlog=int(backlog) if backlog is not None else DEFAULT_BACKLOG)


def _enabled(scopes) -> bool:
    value = _option(scopes, "enable")
    return value is None or bool(value)


def endpoints_from_config(cfg) -> list[Endpoint]:
    """Every enabled `Listen` of every `Control_Listener` stanza (docs/design.md §3.2)."""
    endpoints = []
    for listener in cfg.scopes("Control_Listener"):
        for child in listener.children:
            if child.kind.lower() != "listen":
                continue
            scopes = (child, listener)
            if _enabled(scopes):
                endpoints.append(_endpoint_from_scopes(child.name, scopes))
    return endpoints


# -- Unix socket files -------------------------------------------------------------------

def _someone_answers(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
        return True
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError as exc:
        # Timeout or EAGAIN: a live listener whose backlog is full still counts as in use.
        raise ControlListenerError(f"control socket {path} is in use or unusable: {exc.strerror or exc}") from None
    finally:
        probe.close()


def clear_stale_socket(path: str) -> None:
    """Remove a socket file nobody listens on; refuse to touch a live one or a non-socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ControlListenerError(f"cannot listen on {path}: the file exists and is not a socket")
    if _someone_answers(path):
        raise ControlListenerError(f"control socket {path} is in use (another ecelerity is running?)")
    os.unlink(path)
    log.info("removed stale control socket", path=path)


def _bind_unix(path: str, mode: int) -> socket.socket:
    clear_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # The umask keeps the file from being wider than File_Mode even for an instant.
    old = os.umask(0o777 & ~mode)
    try:
        sock.bind(path)
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old)
    os.chmod(path, mode)
    return sock


def _bind_tcp(addr: ListenAddress) -> socket.socket:
    sock = socket.socket(addr.family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if addr.family == socket.AF_INET6 and addr.host == "::":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((addr.host, addr.port))
    except OSError:
        sock.close()
        raise
    return sock


def open_listen_socket(endpoint: Endpoint) -> socket.socket:
    addr = parse_listen_address(endpoint.address)
    try:
        sock = _bind_unix(addr.path, endpoint.file_mode) if addr.kind == "unix" else _bind_tcp(addr)
        sock.listen(endpoint.backlog)
    except OSError as exc:
        raise ControlListenerError(f"cannot listen on {endpoint.address}: {exc.strerror or exc}") from None
    return sock


# -- one listening endpoint --------------------------------------------------------------

class _Listener:
    """A bound endpoint, its StreamServer and its sessions."""

    def __init__(self, service: "ControlService", endpoint: Endpoint):
        self.service = service
        self.endpoint = endpoint
        self.addr = parse_listen_address(endpoint.address)
        self.sock = open_listen_socket(endpoint)
        self.inode = os.stat(self.addr.path).st_ino if self.addr.kind == "unix" else None
        self.pool = Pool(MAX_SESSIONS)
        self.server = StreamServer(self.sock, self._handle, spawn=self.pool)
        try:
            self.server.start()
        except Exception:
            self.sock.close()
            self._unlink_own_socket()
            raise

    @property
    def bound(self) -> str:
        """The address clients connect to (with the real port when Listen said port 0)."""
        if self.addr.kind == "unix":
            return self.addr.path
        host, port = self.sock.getsockname()[:2]
        return f"[{host}]:{port}" if self.addr.family == socket.AF_INET6 else f"{host}:{port}"

    def update(self, endpoint: Endpoint) -> None:
        """Apply changed options in place; new sessions get the new timeout."""
        if self.addr.kind == "unix" and endpoint.file_mode != self.endpoint.file_mode:
            os.chmod(self.addr.path, endpoint.file_mode)
        if endpoint.backlog != self.endpoint.backlog:
            self.sock.listen(endpoint.backlog)   # Linux updates the backlog of a listening socket
        self.endpoint = endpoint

    def stop(self) -> None:
        # close(), not StreamServer.stop(): that would join and kill the calling session too.
        self.server.close()
        me = gevent.getcurrent()
        others = [g for g in list(self.pool) if g is not me]
        gevent.killall(others, block=True, timeout=STOP_GRACE)
        self._unlink_own_socket()

    def _unlink_own_socket(self) -> None:
        # Only our own file: a new daemon may already have replaced it.
        if self.addr.kind != "unix":
            return
        try:
            if os.stat(self.addr.path).st_ino == self.inode:
                os.unlink(self.addr.path)
        except FileNotFoundError:
            pass

    def _handle(self, sock, peer) -> None:
        session = _new_session(sock, peer, self.endpoint.address)
        try:
            ControlSession(self.service.daemon, sock, session, self.endpoint.timeout).run()
        except Exception as exc:
            panic(f"control session {session.id} from {session.peer or 'local'} failed: {exc!r}",
                  subsystem="control")
        finally:
            sock.close()


def _new_session(sock, peer, listener: str) -> Session:
    session = Session(id=next(_session_ids), listener=listener)
    if sock.family == socket.AF_UNIX:
        session.peer = "local"
        session.vars.update(_peer_credentials(sock))
    else:
        host, port = peer[:2]
        session.peer = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    session.vars[AFTER_REPLY] = []
    return session


def _peer_credentials(sock) -> dict:
    """pid/uid/gid of a Unix-socket peer (used later for operating-system authentication)."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, gid = struct.unpack("3i", raw)
        return {"peer_pid": pid, "peer_uid": uid, "peer_gid": gid}
    except (OSError, AttributeError):
        return {}


# -- one session -------------------------------------------------------------------------

class ControlSession:
    """Greeting, then one frame per command line until quit, EOF or the idle timeout."""

    def __init__(self, daemon, sock, session: Session, timeout: float):
        self.daemon = daemon
        self.sock = sock
        self.session = session
        self.timeout = timeout or None   # None: wait for input forever (Timeout = 0)
        self.reader = sock.makefile("rb")

    def run(self) -> None:
        try:
            self.send(True, banner())
            while self.serve_one():
                pass
        except (ConnectionError, BrokenPipeError):
            pass   # the client went away; nothing to tell anyone
        finally:
            self.reader.close()

    def serve_one(self) -> bool:
        """Read and answer one line; False ends the session."""
        raw = self.read_line()
        if raw is None:
            return False
        if len(raw) > MAX_LINE:
            self.send(False, f"Command line too long (limit {MAX_LINE} bytes); closing the session.")
            return False
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            self.send(False, "Invalid input: console commands must be UTF-8 text.")
            return True
        if line.lower() in QUIT_WORDS:
            self.send(True, "")
            return False
        ok, text = dispatch(CommandContext(self.daemon, self.session), line)
        self.send(ok, text)
        self.run_after_reply()
        return True

    def read_line(self) -> bytes | None:
        self.sock.settimeout(self.timeout)
        try:
            raw = self.reader.readline(MAX_LINE + 1)
        except (TimeoutError, socket.timeout):
            self.send(False, f"Idle for {self.timeout:g} seconds; closing the session.")
            return None
        if not raw:
            return None
        return raw if len(raw) > MAX_LINE else raw.rstrip(b"\r\n")

    def send(self, ok: bool, text: str) -> None:
        # A client that stops reading is dropped even when idle sessions may live forever.
        self.sock.settimeout(self.timeout or DEFAULT_TIMEOUT)
        try:
            self.sock.sendall(encode_frame(ok, text))
        except (TimeoutError, socket.timeout):
            raise ConnectionError("client stopped reading") from None

    def run_after_reply(self) -> None:
        pending = self.session.vars.get(AFTER_REPLY) or []
        while pending:
            # Its own greenlet: `shutdown` stops this very listener and its sessions.
            gevent.spawn(pending.pop(0))


# -- the service -------------------------------------------------------------------------

class ControlService:
    """Supervisor service (docs/design.md §3.4): start/stop/apply_config."""

    name = "control"

    def __init__(self, daemon, endpoints: list[Endpoint] | None = None):
        self.daemon = daemon
        self._configured = list(endpoints) if endpoints is not None else None
        self.listeners: dict[str, _Listener] = {}

    def _wanted(self, cfg=None) -> list[Endpoint]:
        if cfg is not None:
            return endpoints_from_config(cfg)
        if self._configured is not None:
            return self._configured
        manager = getattr(self.daemon, "config", None)
        current = getattr(manager, "current", None)
        return endpoints_from_config(current) if current is not None else []

    def start(self) -> None:
        try:
            for endpoint in self._wanted():
                self._open(endpoint)
        except Exception:
            self.stop()
            raise

    def _open(self, endpoint: Endpoint) -> None:
        key = endpoint.address.strip()
        if key in self.listeners:
            raise ControlListenerError(f"Listen '{endpoint.address}' appears twice in Control_Listener")
        self.listeners[key] = _Listener(self, endpoint)
        log.info("control listener started", address=self.listeners[key].bound)

    def stop(self) -> None:
        while self.listeners:
            _key, listener = self.listeners.popitem()
            listener.stop()

    def apply_config(self, cfg) -> None:
        """Open new endpoints, close removed ones, update changed options in place."""
        wanted = {ep.address.strip(): ep for ep in self._wanted(cfg)}
        for key in [k for k in self.listeners if k not in wanted]:
            self.listeners.pop(key).stop()
        problems = []
        for key, endpoint in wanted.items():
            try:
                if key in self.listeners:
                    self.listeners[key].update(endpoint)
                else:
                    self._open(endpoint)
            except (ControlListenerError, OSError) as exc:
                problems.append(str(exc))
        if problems:
            raise ControlListenerError("; ".join(problems))

    @property
    def addresses(self) -> list[str]:
        """Bound addresses, in start order (TCP ones with their real port)."""
        return [listener.bound for listener in self.listeners.values()]
