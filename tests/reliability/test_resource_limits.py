"""Resource limits: floods and slow clients degrade service, they do not break it.

- Idle connections (300 fast, 2 000 slow) do not stop another client from being served;
  every one is cut at Idle_Time with `421 4.4.2 <hostname> timeout exceeded`; the session
  table and the daemon's file descriptors go back to where they were; VmRSS stays bounded.
- Slow senders (silent after the banner, stopped inside a command line, inside DATA,
  inside a BDAT chunk, inside the TLS handshake) are cut at Idle_Time; nothing half
  received is stored. Idle_Time is an inactivity timeout (Momentum's): a client that
  sends at least one octet per Idle_Time is not cut, and costs one session, no memory
  growth (slow test).
- Connection floods from one address: Listener_Sessions caps a Listen (`421 4.4.5 Service
  unavailable, concurrency limit reached` at once); a per-IP cap is Momentum's documented
  way, Lua `ac:inbound_session_count()` in validate_connect (no built-in per-IP limit);
  other addresses are still served; 2 000 connect/close cycles leave nothing behind.
"""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from ecmta.tests.harness import free_port
from ecmta.tests.reception.helpers import (EXTENSIONS, Shared, Wire, make_certs, message, start_mta,
                                           wait_for)
from ecmta.tests.reliability.helpers import rss_kb

PER_IP = r"""
require("msys.core");
local mod = {};
function mod:validate_connect(ac, vctx)
  if ac:inbound_session_count() > 10 then
    vctx:disconnect(421, "4.7.0 too many connections from your address");
    return msys.core.VALIDATE_DONE;
  end
  return msys.core.VALIDATE_CONT;
end
msys.registerModule("perip", mod);
"""

TIMEOUT_REPLY = b"421 4.4.2 mx.ecmta.test timeout exceeded\r\n"


def fds(pid: int) -> int:
    import os
    return len(os.listdir(f"/proc/{pid}/fd"))


def sessions(m) -> int:
    text = m.ok("show inbound")
    return len([ln for ln in text.splitlines() if ln.strip()])


def send_one(m, subject: str, timeout: float = 10.0, source: str | None = None) -> float:
    """One message over smtplib; returns how long it took."""
    import smtplib
    t0 = time.monotonic()
    with smtplib.SMTP("127.0.0.1", m.port, local_hostname="client.test", timeout=timeout,
                      source_address=(source, 0) if source else None) as s:
        assert not s.sendmail("a@client.test", ["rl@example.com"], message(subject))
    return time.monotonic() - t0


def open_idle(port: int, n: int, source: str | None = None, deadline: float = 120.0) -> list:
    """n connections that read the banner and then say nothing."""
    socks = []
    stop = time.monotonic() + deadline
    for _ in range(n):
        assert time.monotonic() < stop, f"only {len(socks)} of {n} connections opened in {deadline}s"
        s = socket.create_connection(("127.0.0.1", port), timeout=30,
                                     source_address=(source, 0) if source else None)
        s.settimeout(30)
        banner = b""
        while not banner.endswith(b"\r\n"):
            chunk = s.recv(512)
            assert chunk, "closed before the banner"
            banner += chunk
        assert banner.startswith(b"220 "), banner
        socks.append(s)
    return socks


def wait_all_cut(socks, timeout: float) -> tuple[int, int]:
    """(cut with the timeout reply, closed otherwise) once every socket has been closed."""
    import selectors
    sel = selectors.DefaultSelector()
    bufs = {}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        bufs[s] = b""
    done, cut = 0, 0
    end = time.monotonic() + timeout
    while done < len(socks) and time.monotonic() < end:
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if data:
                bufs[s] += data
                continue
            sel.unregister(s)
            done += 1
            cut += bufs[s] == TIMEOUT_REPLY
    sel.close()
    for s in socks:
        s.close()
    return cut, done


def idle_scenario(daemon_factory, n: int, idle: int, service_deadline: float, rss_budget_mb: int):
    m = start_mta(daemon_factory, listen=f"    Idle_Time = {idle}")
    pid = m.d.proc.pid
    time.sleep(0.5)
    base_rss, base_fds = rss_kb(pid), fds(pid)
    t0 = time.monotonic()
    socks = open_idle(m.port, n)
    opened = time.monotonic() - t0
    held_rss = rss_kb(pid)
    assert fds(pid) >= base_fds + n
    took = [send_one(m, f"while {n} idle {k}") for k in range(5)]
    assert max(took) < service_deadline, took
    assert sessions(m) >= n
    cut, done = wait_all_cut(socks, idle + 30)
    assert done == n, f"only {done} of {n} idle connections were closed"
    assert cut == n, f"{n - cut} idle connections closed without the 421 timeout reply"
    wait_for(lambda: sessions(m) == 0, what="an empty session table")
    wait_for(lambda: fds(pid) <= base_fds + 5, what="the daemon's descriptors back to normal")
    grown = (held_rss - base_rss) / 1024
    assert grown < rss_budget_mb, f"VmRSS grew {grown:.0f} MB for {n} idle connections"
    print(f"{n} idle connections opened in {opened:.1f}s, held; service {max(took):.2f}s; "
          f"RSS {base_rss // 1024} -> {held_rss // 1024} MB; all cut at Idle_Time {idle}s")
    return m


def test_idle_connections_do_not_block_service(daemon_factory):
    idle_scenario(daemon_factory, n=300, idle=4, service_deadline=3.0, rss_budget_mb=80)


@pytest.mark.slow
def test_two_thousand_idle_connections(daemon_factory):
    import resource
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4200:
        pytest.skip(f"RLIMIT_NOFILE {soft} is too low for 2 000 connections on both sides")
    idle_scenario(daemon_factory, n=2000, idle=20, service_deadline=5.0, rss_budget_mb=400)


# -- slow senders -----------------------------------------------------------------------------

SLOW_STEPS = {
    "silent-after-banner": [],
    "inside-a-command-line": [b"EHLO client.test\r\n", b"MAIL FROM:<a@client"],
    "inside-data": [b"EHLO client.test\r\n", b"MAIL FROM:<a@client.test>\r\n",
                    b"RCPT TO:<slow-data@example.com>\r\n", b"DATA\r\n", b"Subject: half\r\n\r\nhalf a bo"],
    "inside-bdat": [b"EHLO client.test\r\n", b"MAIL FROM:<a@client.test>\r\n",
                    b"RCPT TO:<slow-bdat@example.com>\r\n", b"BDAT 1000 LAST\r\nSubject: x\r\n\r\n"],
    "inside-auth": [b"EHLO client.test\r\n", b"AUTH LOGIN\r\n"],
}


@pytest.fixture(scope="module")
def slow_mta(tmp_path_factory):
    shared = Shared()
    certs = make_certs(str(tmp_path_factory.mktemp("slowcerts")))
    try:
        m = start_mta(shared.factory, ports={"tls": free_port(), "ssl": free_port()},
                      ext=EXTENSIONS + ' "STARTTLS" "AUTH LOGIN"',
                      listener=f'  Idle_Time = 2\n  TLS_Certificate = "{certs.server_cert}"\n'
                               f'  TLS_Key = "{certs.server_key}"',
                      more_listens='  Listen "127.0.0.1:$tls" {\n  }\n'
                                   '  Listen "127.0.0.1:$ssl" {\n    Use_SSL = true\n  }')
        yield m
    finally:
        shared.close()


@pytest.mark.parametrize("name", list(SLOW_STEPS))
def test_slow_sender_is_cut_at_idle_time(slow_mta, name):
    w = slow_mta.wire()
    for chunk in SLOW_STEPS[name]:
        w.send(chunk)
        if chunk.endswith(b"\r\n") and not chunk.startswith(b"BDAT"):
            w.reply()
    t0 = time.monotonic()
    w.sock.settimeout(10)
    got = b""
    while True:
        data = w.sock.recv(4096)
        if not data:
            break
        got += data
    took = time.monotonic() - t0
    assert 1.5 < took < 5.0, took
    assert got.endswith(TIMEOUT_REPLY), got
    time.sleep(0.2)
    assert not [x for x in slow_mta.spooled() if x.rcptto.startswith("slow-")]


@pytest.mark.parametrize("where", ["starttls", "implicit-tls"])
def test_stalled_tls_handshake_is_cut(slow_mta, where):
    if where == "starttls":
        w = slow_mta.wire(slow_mta.d.ports["tls"])
        assert w.cmd("EHLO client.test").code == 250
        assert w.cmd("STARTTLS").code == 220
        s = w.sock
    else:
        s = socket.create_connection(("127.0.0.1", slow_mta.d.ports["ssl"]), timeout=10)
        s.sendall(b"\x16\x03\x01\x00")           # the start of a ClientHello, then nothing
    t0 = time.monotonic()
    s.settimeout(10)
    try:
        while s.recv(4096):
            pass
    except (ConnectionError, socket.timeout, ssl.SSLError):
        pass
    took = time.monotonic() - t0
    assert took < 5.0, f"a stalled TLS handshake held the session {took:.1f}s"
    s.close()


def test_dribbling_sender_is_one_session_and_bounded(slow_mta):
    """One octet per second stays under Idle_Time (2 s): the session lives, as Momentum's
    inactivity timeout says, and the server keeps serving others meanwhile."""
    w = slow_mta.wire()
    line = b"NOOP " + b"x" * 6 + b"\r\n"
    for i in range(len(line)):
        w.send(line[i:i + 1])
        time.sleep(0.5)
        if i == 4:
            assert send_one(slow_mta, "during a dribble") < 3.0
    assert w.reply().code == 250


# -- connection floods ---------------------------------------------------------------------------

def test_listener_sessions_caps_a_listen(daemon_factory):
    m = start_mta(daemon_factory, listen="    Listener_Sessions = 20")
    socks = open_idle(m.port, 20)
    over = Wire("127.0.0.1", m.port, banner=False)
    assert over.reply().raw == b"421 4.4.5 Service unavailable, concurrency limit reached\r\n"
    assert over.closed()
    socks.pop().close()
    wait_for(lambda: sessions(m) < 20, what="a free slot")
    w = Wire("127.0.0.1", m.port)
    assert w.banner.code == 220
    w.close()
    for s in socks:
        s.close()


def test_per_ip_limit_through_lua(daemon_factory):
    m = start_mta(daemon_factory, files={"perip.lua": PER_IP},
                  tail='scriptlet "scriptlet" {\n  script "perip" {\n    source = "$home/perip"\n  }\n}')
    socks = open_idle(m.port, 10, source="127.0.0.2")
    over = Wire("127.0.0.1", m.port, banner=False, source="127.0.0.2")
    r = over.reply()
    assert r.code == 421 and "too many connections from your address" in r.text, r
    assert over.closed()
    # another address is served meanwhile
    assert send_one(m, "other address", source="127.0.0.3") < 3.0
    for s in socks:
        s.close()


def test_connection_flood_leaves_nothing_behind(daemon_factory):
    m = start_mta(daemon_factory)
    pid = m.d.proc.pid
    time.sleep(0.5)
    base_rss, base_fds = rss_kb(pid), fds(pid)
    n, deadline = 2000, time.monotonic() + 120
    t0 = time.monotonic()
    for i in range(n):
        assert time.monotonic() < deadline
        s = socket.create_connection(("127.0.0.1", m.port), timeout=10)
        if i % 3 == 0:
            s.recv(512)                               # some read the banner, some do not
        if i % 5 == 0:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()                                     # ... and some reset
    took = time.monotonic() - t0
    assert send_one(m, "after the flood") < 3.0
    wait_for(lambda: sessions(m) == 0, what="an empty session table")
    wait_for(lambda: fds(pid) <= base_fds + 5, what="the daemon's descriptors back to normal")
    grown = (rss_kb(pid) - base_rss) / 1024
    assert grown < 50, f"VmRSS grew {grown:.0f} MB over {n} connections"
    assert not [ln for ln in m.paniclog() if "CRITICAL" in ln]
    print(f"{n} connect/close in {took:.1f}s; RSS +{grown:.1f} MB")
