"""ControlClient, address parsing and the frame codec, against real sockets in this process
(plain threads; no gevent): what a client does with good, bad and missing servers."""

import io
import os
import socket
import threading

import pytest

from ecmta.tests.console.control_harness import free_port, sock_dir
from ecmta.transports.control_client import (ControlClient, ControlError, encode_frame,
                                             parse_remote, read_frame)


@pytest.mark.parametrize("text,kind,path,host,port,user", [
    ("/tmp/2025", "unix", "/tmp/2025", None, None, None),
    ("./ctl", "unix", "./ctl", None, None, None),
    ("2030", "unix", "/tmp/2030", None, None, None),
    ("127.0.0.1:2025", "tcp", None, "127.0.0.1", 2025, None),
    ("localhost:2025", "tcp", None, "localhost", 2025, None),
    ("admin@localhost:2025", "tcp", None, "localhost", 2025, "admin"),
    ("[::1]:2424", "tcp", None, "::1", 2424, None),
    ("john@[fd82::1]:2424", "tcp", None, "fd82::1", 2424, "john"),
    ("*:2025", "tcp", None, "127.0.0.1", 2025, None),
    (":2025", "tcp", None, "127.0.0.1", 2025, None),
    ("[*]:2025", "tcp", None, "::1", 2025, None),
])
def test_parse_remote(text, kind, path, host, port, user):
    r = parse_remote(text)
    assert (r.kind, r.path, r.host, r.port, r.user) == (kind, path, host, port, user)
    assert r.display == text


@pytest.mark.parametrize("text,message", [
    ("", "empty console address"),
    ("host:0", "port must be 1-65535"),
    ("host:99999", "port must be 1-65535"),
    ("host:abc", "port must be 1-65535"),
    ("fe80::1:25", "write IPv6 addresses as [address]:port"),
    ("[::1]2025", "expected [address]:port"),
    ("ssh://u@h/ec@h:2025", "ssh tunnels are not supported"),
])
def test_parse_remote_rejects_bad_addresses(text, message):
    with pytest.raises(ControlError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_remote(text)


def test_frame_round_trip_counts_bytes_not_characters():
    frame = encode_frame(True, "héllo\nwörld")
    assert frame.startswith(b"ok 13\n")
    assert read_frame(io.BytesIO(frame), "x") == (True, "héllo\nwörld")
    assert encode_frame(False, "") == b"err 0\n"
    assert read_frame(io.BytesIO(b"err 0\n"), "x") == (False, "")


@pytest.mark.parametrize("raw,message", [
    (b"", "closed by the server"),
    (b"maybe 3\nabc", "bad frame header"),
    (b"ok x\n", "bad frame header"),
    (b"ok 10\nabc", "closed in the middle of an answer"),
    (b"ok 999999999999\n", "bad frame header"),
])
def test_read_frame_rejects_broken_frames(raw, message):
    with pytest.raises(ControlError, match=message):
        read_frame(io.BytesIO(raw), "/tmp/x")


def test_connect_to_missing_unix_socket_says_so():
    d = sock_dir()
    path = os.path.join(d, "nothing")
    with pytest.raises(ControlError, match=f"cannot connect to {path}: No such file or directory"):
        ControlClient.connect(path)
    os.rmdir(d)


def test_connect_to_closed_tcp_port_says_so():
    port = free_port()
    with pytest.raises(ControlError, match=f"cannot connect to 127.0.0.1:{port}: Connection refused"):
        ControlClient.connect(f"127.0.0.1:{port}")


def test_control_error_is_an_oserror():
    # Callers waiting for a daemon retry on OSError (tests/harness.py does).
    assert issubclass(ControlError, OSError)


class _FakeServer:
    """A one-connection TCP server that sends scripted bytes."""

    def __init__(self, script):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.received = b""
        self.thread = threading.Thread(target=self._run, args=(script,), daemon=True)
        self.thread.start()

    def _run(self, script):
        conn, _ = self.sock.accept()
        with conn:
            for step in script:
                if step == "recv":
                    self.received += conn.recv(4096)
                elif step == "hang":
                    conn.recv(4096)
                    threading.Event().wait(3)
                else:
                    conn.sendall(step)
        self.sock.close()


def test_client_reads_greeting_and_answers():
    srv = _FakeServer([encode_frame(True, "# ecmta version: 9.9\n"), "recv",
                       encode_frame(False, "nope")])
    with ControlClient.connect(srv.address) as client:
        assert client.server_version == "9.9"
        assert client.command("bogus") == (False, "nope")
    srv.thread.join(5)
    assert srv.received == b"bogus\n"


def test_refused_session_is_an_error():
    srv = _FakeServer([encode_frame(False, "Not Authorized")])
    with pytest.raises(ControlError, match="refused the session: Not Authorized"):
        ControlClient.connect(srv.address)


def test_server_closing_mid_session_is_a_clear_error():
    srv = _FakeServer([encode_frame(True, "hi"), "recv"])
    client = ControlClient.connect(srv.address)
    with pytest.raises(ControlError, match="closed by the server"):
        client.command("pid")
    assert client.closed
    with pytest.raises(ControlError, match="is closed"):
        client.command("pid")


def test_reply_timeout_closes_the_session():
    srv = _FakeServer([encode_frame(True, "hi"), "hang"])
    client = ControlClient.connect(srv.address, reply_timeout=0.3)
    with pytest.raises(ControlError, match="no answer from .* within 0.3 seconds"):
        client.command("pid")
    assert client.closed


def test_multi_line_command_is_refused():
    srv = _FakeServer([encode_frame(True, "hi")])
    with ControlClient.connect(srv.address) as client:
        with pytest.raises(ValueError, match="single line"):
            client.command("pid\nshutdown")
