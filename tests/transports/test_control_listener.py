"""The Control_Listener service over real sockets: a control_server.py child (gevent, fake
daemon) on a temp Unix socket and on 127.0.0.1:<free port>."""

import json
import os
import shlex
import shutil
import socket
import stat
import threading
import time
from dataclasses import dataclass, field

import pytest

from ecmta.tests.console.control_harness import ServerProcess, free_port, sock_dir
from ecmta.transports.control import (ControlListenerError, Endpoint, endpoints_from_config,
                                      parse_listen_address)
from ecmta.transports.control_client import ControlClient, read_frame


@pytest.fixture
def sockdir():
    path = sock_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def servers():
    made = []

    def start(endpoints, **spec):
        srv = ServerProcess(endpoints, **spec).start()
        made.append(srv)
        return srv
    yield start
    for srv in made:
        srv.stop()


def raw_connect(address):
    if address.startswith("/"):
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(address)
    else:
        host, port = address.rsplit(":", 1)
        sock = socket.create_connection((host, int(port)))
    sock.settimeout(10)
    return sock, sock.makefile("rb")


# -- addresses and configuration (pure) --------------------------------------------------

@pytest.mark.parametrize("text,kind,host,port", [
    ("/tmp/2025", "unix", "", 0),
    ("ctl", "unix", "", 0),
    ("127.0.0.1:2025", "tcp", "127.0.0.1", 2025),
    ("*:2025", "tcp", "0.0.0.0", 2025),
    (":2025", "tcp", "0.0.0.0", 2025),
    ("[::1]:2025", "tcp", "::1", 2025),
    ("[*]:2025", "tcp", "::", 2025),
])
def test_parse_listen_address(text, kind, host, port):
    addr = parse_listen_address(text)
    assert addr.kind == kind
    if kind == "tcp":
        assert (addr.host, addr.port) == (host, port)
        assert addr.family == (socket.AF_INET6 if text.startswith("[") else socket.AF_INET)
    else:
        assert addr.path == text


@pytest.mark.parametrize("text,message", [
    ("", "empty"),
    ("host:65536", "port must be 0-65535"),
    ("host:x", "port must be 0-65535"),
    ("::1:25", r"write IPv6 addresses as \[address\]:port"),
    ("[::1]25", r"expected \[address\]:port"),
])
def test_parse_listen_address_errors(text, message):
    with pytest.raises(ControlListenerError, match=message):
        parse_listen_address(text)


@dataclass
class _Value:
    value: object


@dataclass
class _Scope:
    kind: str
    name: str | None
    options: dict = field(default_factory=dict)
    children: list = field(default_factory=list)


class _Cfg:
    def __init__(self, listeners):
        self.listeners = listeners

    def scopes(self, kind):
        return self.listeners if kind == "Control_Listener" else []


def test_endpoints_from_config_uses_listen_then_listener_then_defaults():
    cfg = _Cfg([_Scope("Control_Listener", None, {"timeout": _Value(30), "file_mode": _Value(0o600)}, [
        _Scope("Listen", "/tmp/2025", {"file_mode": _Value(0o666)}),
        _Scope("Listen", "127.0.0.1:2025", {"listen_backlog": _Value(10)}),
        _Scope("Listen", "*:2026", {"enable": _Value(False)}),
        _Scope("Peer", "127.0.0.1"),
    ])])
    assert endpoints_from_config(cfg) == [
        Endpoint("/tmp/2025", file_mode=0o666, timeout=30.0, backlog=500),
        Endpoint("127.0.0.1:2025", file_mode=0o600, timeout=30.0, backlog=10),
    ]
    bare = _Cfg([_Scope("Control_Listener", None, {}, [_Scope("Listen", "/tmp/x")])])
    assert endpoints_from_config(bare) == [Endpoint("/tmp/x", file_mode=0o660, timeout=60.0, backlog=500)]
    assert endpoints_from_config(_Cfg([])) == []


# -- the wire protocol -------------------------------------------------------------------

def test_greeting_and_frames_on_unix_and_tcp(servers, sockdir):
    srv = servers([{"address": f"{sockdir}/ctl"}, {"address": "127.0.0.1:0"}])
    assert srv.addresses[0] == f"{sockdir}/ctl"
    assert srv.addresses[1].startswith("127.0.0.1:")
    for address in srv.addresses:
        sock, reader = raw_connect(address)
        header = reader.readline()
        assert header.startswith(b"ok ")
        greeting = reader.read(int(header.split()[1]))
        assert b"ecmta version: 0.1.0" in greeting
        sock.sendall(b"pid\r\n")
        assert reader.readline() == b"ok %d\n" % len(str(srv.proc.pid))
        assert reader.read(len(str(srv.proc.pid))) == str(srv.proc.pid).encode()
        sock.sendall(b"bogus\n")
        assert read_frame(reader, address) == (False, "Unknown command 'bogus'. Type 'help' for a list of commands.")
        sock.sendall(b"\n")   # an empty line is answered with an empty ok frame
        assert reader.readline() == b"ok 0\n"
        sock.sendall(b"quit\n")
        assert reader.readline() == b"ok 0\n"
        assert reader.read() == b""
        sock.close()


def test_exit_ends_the_session(servers, sockdir):
    srv = servers([{"address": f"{sockdir}/ctl"}])
    sock, reader = raw_connect(srv.address)
    read_frame(reader, "x")
    sock.sendall(b"EXIT\n")
    assert read_frame(reader, "x") == (True, "")
    assert reader.read() == b""


def test_bad_input_is_answered_and_session_goes_on(servers, sockdir):
    srv = servers([{"address": f"{sockdir}/ctl"}])
    sock, reader = raw_connect(srv.address)
    read_frame(reader, "x")
    sock.sendall(b"\xff\xfe\n")
    assert read_frame(reader, "x") == (False, "Invalid input: console commands must be UTF-8 text.")
    sock.sendall(b"test echo 'unclosed\n")
    ok, text = read_frame(reader, "x")
    assert not ok and text.startswith("Syntax error")
    sock.sendall(b"test crash\n")
    assert read_frame(reader, "x") == (False, "Command 'test crash' failed: boom")
    sock.sendall(b"test echo still here\n")
    assert read_frame(reader, "x") == (True, "still here")


def test_overlong_line_closes_the_session(servers, sockdir):
    srv = servers([{"address": f"{sockdir}/ctl"}])
    sock, reader = raw_connect(srv.address)
    read_frame(reader, "x")
    sock.sendall(b"x" * 70000 + b"\n")
    ok, text = read_frame(reader, "x")
    assert not ok and "too long" in text
    assert reader.read() == b""


def test_idle_timeout_closes_the_session(servers, sockdir):
    srv = servers([{"address": f"{sockdir}/ctl", "timeout": 0.5}])
    sock, reader = raw_connect(srv.address)
    read_frame(reader, "x")
    start = time.monotonic()
    assert read_frame(reader, "x") == (False, "Idle for 0.5 seconds; closing the session.")
    assert reader.read() == b""
    assert 0.4 < time.monotonic() - start < 5
    # A busy command is not idleness: the timeout only counts the wait for input.
    client = ControlClient.connect(srv.address)
    assert client.command("test sleep 1") == (True, "slept")
    assert client.command("pid")[0]


# -- Unix socket files -------------------------------------------------------------------

def test_file_mode_and_unlink_on_stop(servers, sockdir):
    srv = servers([{"address": f"{sockdir}/a", "file_mode": 0o600},
                   {"address": f"{sockdir}/b", "file_mode": 0o666}])
    assert stat.S_IMODE(os.stat(f"{sockdir}/a").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(f"{sockdir}/b").st_mode) == 0o666
    assert stat.S_ISSOCK(os.stat(f"{sockdir}/a").st_mode)
    srv.stop()
    assert srv.proc.returncode == 0
    assert not os.path.exists(f"{sockdir}/a") and not os.path.exists(f"{sockdir}/b")


def test_default_file_mode_is_0660(servers, sockdir):
    servers([{"address": f"{sockdir}/ctl"}])
    assert stat.S_IMODE(os.stat(f"{sockdir}/ctl").st_mode) == 0o660


def test_stale_socket_is_removed_at_start(servers, sockdir):
    path = f"{sockdir}/ctl"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(path)
    dead.close()   # the file stays, nobody listens: what a crashed daemon leaves
    assert os.path.exists(path)
    srv = servers([{"address": path}])
    with ControlClient.connect(path) as client:
        assert client.command("pid") == (True, str(srv.proc.pid))


def test_live_socket_is_reported_in_use(servers, sockdir):
    path = f"{sockdir}/ctl"
    first = servers([{"address": path}])
    second = servers([{"address": path}])
    assert second.error == f"control socket {path} is in use (another ecelerity is running?)"
    assert second.proc.returncode == 3
    with ControlClient.connect(path) as client:   # the first one is untouched
        assert client.command("pid") == (True, str(first.proc.pid))


def test_non_socket_file_is_not_removed(servers, sockdir):
    path = f"{sockdir}/ctl"
    with open(path, "w") as fh:
        fh.write("precious")
    srv = servers([{"address": path}])
    assert srv.error == f"cannot listen on {path}: the file exists and is not a socket"
    with open(path) as fh:
        assert fh.read() == "precious"


def test_missing_directory_is_a_clear_error(servers, sockdir):
    srv = servers([{"address": f"{sockdir}/no/such/ctl"}])
    assert srv.error == f"cannot listen on {sockdir}/no/such/ctl: No such file or directory"


def test_replaced_socket_file_is_not_unlinked_at_stop(servers, sockdir):
    path = f"{sockdir}/ctl"
    srv = servers([{"address": path}])
    os.unlink(path)
    other = socket.socket(socket.AF_UNIX)
    other.bind(path)   # another daemon's socket now lives at the path
    srv.stop()
    assert os.path.exists(path)
    other.close()


def test_tcp_port_in_use_is_a_clear_error(servers):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    srv = servers([{"address": f"127.0.0.1:{port}"}])
    assert srv.error == f"cannot listen on 127.0.0.1:{port}: Address already in use"
    busy.close()


def test_start_failure_closes_what_was_opened(servers, sockdir):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    srv = servers([{"address": f"{sockdir}/ctl"}, {"address": f"127.0.0.1:{busy.getsockname()[1]}"}])
    assert srv.error and "Address already in use" in srv.error
    assert not os.path.exists(f"{sockdir}/ctl")
    busy.close()


# -- concurrency, shutdown, reload -------------------------------------------------------

def test_a_waiting_command_does_not_block_other_sessions(servers, sockdir):
    srv = servers([{"address": f"{sockdir}/ctl"}])
    slow = ControlClient.connect(srv.address)
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", slow.command("test sleep 1.5")))
    t.start()
    time.sleep(0.2)
    start = time.monotonic()
    with ControlClient.connect(srv.address) as fast:
        assert fast.command("pid")[0]
    assert time.monotonic() - start < 1.0
    t.join(10)
    assert result["r"] == (True, "slept")


def test_many_concurrent_sessions(servers, sockdir):
    srv = servers([{"address": f"{sockdir}/ctl"}, {"address": "127.0.0.1:0"}])
    errors = []

    def worker(n):
        try:
            with ControlClient.connect(srv.addresses[n % 2]) as client:
                for i in range(20):
                    if client.command(f"test echo {n} {i}") != (True, f"{n} {i}"):
                        errors.append((n, i))
        except Exception as exc:   # collected so the test shows every failure
            errors.append((n, repr(exc)))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []


def test_shutdown_answers_first_then_stops(servers, sockdir):
    srv = servers([{"address": f"{sockdir}/ctl"}])
    with ControlClient.connect(srv.address) as client:
        assert client.command("shutdown") == (True, "Shutting down")
    assert "STOPPED" in srv.wait_stopped()
    assert srv.proc.returncode == 0
    assert not os.path.exists(f"{sockdir}/ctl")


def test_apply_config_adds_updates_and_removes_endpoints(servers, sockdir):
    srv = servers([{"address": f"{sockdir}/a"}, {"address": f"{sockdir}/b"}])
    port = free_port()
    spec = {"listeners": [{"options": {"file_mode": 0o600},
                           "listens": [[f"{sockdir}/a", {}], [f"127.0.0.1:{port}", {}]]}]}
    with ControlClient.connect(f"{sockdir}/a") as client:
        ok, text = client.command("test reconfigure " + shlex.quote(json.dumps(spec)))
        assert ok, text
        assert json.loads(text) == [f"{sockdir}/a", f"127.0.0.1:{port}"]
        assert client.command("pid")[0]   # the session on the kept endpoint lives on
    assert stat.S_IMODE(os.stat(f"{sockdir}/a").st_mode) == 0o600
    assert not os.path.exists(f"{sockdir}/b")
    with ControlClient.connect(f"127.0.0.1:{port}") as client:
        assert client.command("pid") == (True, str(srv.proc.pid))


def test_apply_config_reports_endpoints_it_cannot_open(servers, sockdir):
    srv = servers([{"address": f"{sockdir}/a"}])
    spec = {"listeners": [{"listens": [[f"{sockdir}/a", {}], [f"{sockdir}/missing/b", {}]]}]}
    with ControlClient.connect(srv.address) as client:
        ok, text = client.command("test reconfigure " + shlex.quote(json.dumps(spec)))
        assert not ok
        assert f"cannot listen on {sockdir}/missing/b: No such file or directory" in text
        assert client.command("pid")[0]


def test_removing_the_endpoint_of_the_asking_session_still_answers(servers, sockdir):
    srv = servers([{"address": f"{sockdir}/a"}, {"address": f"{sockdir}/b"}])
    other = ControlClient.connect(f"{sockdir}/b")
    spec = {"listeners": [{"listens": [[f"{sockdir}/a", {}]]}]}
    with ControlClient.connect(f"{sockdir}/b") as client:
        ok, text = client.command("test reconfigure " + shlex.quote(json.dumps(spec)))
        assert (ok, json.loads(text)) == (True, [f"{sockdir}/a"])
        assert client.command("test echo alive") == (True, "alive")
    assert not os.path.exists(f"{sockdir}/b")
    with pytest.raises(OSError):   # the other session on the removed endpoint was ended
        other.command("pid")
    with ControlClient.connect(f"{sockdir}/a") as client:
        assert client.command("pid") == (True, str(srv.proc.pid))


def test_endpoints_from_a_real_config_file(tmp_path):
    config = pytest.importorskip("ecmta.config")
    if not hasattr(config, "load_config"):
        pytest.skip("ecmta.config.load_config is not there yet")
    conf = tmp_path / "ecelerity.conf"
    conf.write_text('Control_Listener {\n  Timeout = 30\n'
                    '  Listen "/tmp/2025" { File_Mode = 0666 }\n'
                    '  Listen "127.0.0.1:2025" { Listen_Backlog = 10 }\n'
                    '  Listen "*:2026" { Enable = false }\n}\n')
    assert endpoints_from_config(config.load_config(str(conf))) == [
        Endpoint("/tmp/2025", file_mode=0o666, timeout=30.0, backlog=500),
        Endpoint("127.0.0.1:2025", file_mode=0o660, timeout=30.0, backlog=10),
    ]


def _has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_ipv6_listen_address(servers):
    srv = servers([{"address": "[::1]:0"}])
    assert srv.address.startswith("[::1]:")
    with ControlClient.connect(srv.address) as client:
        assert client.command("pid") == (True, str(srv.proc.pid))


def test_timeout_zero_means_no_idle_timeout(servers, sockdir):
    srv = servers([{"address": f"{sockdir}/ctl", "timeout": 0}])
    sock, reader = raw_connect(srv.address)
    read_frame(reader, "x")
    sock.settimeout(1.0)
    with pytest.raises(socket.timeout):
        reader.read(1)   # nothing arrives: the server keeps waiting


def test_a_client_that_stops_reading_does_not_stall_others(servers, sockdir):
    srv = servers([{"address": f"{sockdir}/ctl"}])
    greedy, reader = raw_connect(srv.address)
    read_frame(reader, "x")
    greedy.sendall(b"test big 200000\n" * 20)   # megabytes of answers nobody reads
    start = time.monotonic()
    with ControlClient.connect(srv.address) as client:
        assert client.command("pid") == (True, str(srv.proc.pid))
    assert time.monotonic() - start < 2.0
    greedy.close()
