"""Protocol abuse against a real daemon: every case of cases/protocol.py (RFC rules and
published attacks: SMTP smuggling, STARTTLS command injection, early talkers, pipelining
floods, overlong lines, NUL and 8-bit octets, hostile addresses, recipient floods, SIZE and
BDAT edges, AUTH brute force, header injection through Lua) is replayed byte for byte on
its own connection; the replies, the connection's fate, the rejectlog lines of that
connection, the spooled messages and (where asked) the connection context must be those
the case lists. The daemon must survive all of them: its paniclog holds no CRITICAL line
and it still serves a plain transaction at the end.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import time

import pytest

from ecmta.actors.smtp_auth import add_user
from ecmta.tests.harness import free_port
from ecmta.tests.reception.helpers import (REJECT_RE, Shared, Wire, start_mta, wait_for)
from ecmta.tests.reliability.cases.protocol import CASES

EXT = ('"ENHANCEDSTATUSCODES" "PIPELINING" "8BITMIME" "SIZE" "DSN" "CHUNKING" "SMTPUTF8" '
       '"XDUMPCONTEXT"')

LUA_INJECT = r"""
require("msys.core");
require("msys.extended.message");
local mod = {};
local values = {
  [1] = { "X-Lua", "a\r\nBcc: evil@else.test" },
  [2] = { "X-Lua", "a\nBcc: evil@else.test" },
  [3] = { "X-Lua", "a\rBcc: evil@else.test" },
  [4] = { "X-Lua\r\nBcc", "evil@else.test" },
  [5] = { "X-Lua", "a\r\n\r\nforged body" },
  [6] = { "X-Lua", "folded\r\n continued" },
  [7] = { "X-Lua: x", "v" },
  [8] = { "X-Lua", "\195\169t\195\169\r\nBcc: evil@else.test" },
  [9] = { "X-Lua", "a\r\n" },
};
function mod:validate_connect(ac, vctx)
  -- the lua listener's pathway pauses before the banner, so a client that talks first
  -- is caught talking (Momentum's pre-greeting pause is a connect-phase tarpit)
  if vctx:get(msys.core.VCTX_CONN, "pathway") == "slowgreet" then
    vctx:tarpit(0.5);
  end
  return msys.core.VALIDATE_CONT;
end
function mod:validate_data(msg, ac, vctx)
  local got = msg:header("X-Inject");
  local n = tonumber(got[1] or "");
  if n and values[n] then
    msg:header(values[n][1], values[n][2]);
  end
  return msys.core.VALIDATE_CONT;
end
msys.registerModule("inject", mod);
"""


@pytest.fixture(scope="module")
def abuse(certs_module):
    certs = certs_module
    shared = Shared()
    ports = {k: free_port() for k in ("strict", "tls", "auth", "lua")}
    try:
        m = start_mta(
            shared.factory, ports=ports, ext=EXT,
            glob=('Pathway "strict" {\n  RFC2822_Lone_LF_In_Body = pedantic\n'
                  '  RFC2822_Max_Line_Length = pedantic\n  Max_Message_Size = 100000\n'
                  '  Max_Recipients_Per_Message = 100\n'
                  '  RFC2822_Date_Header = pedantic\n}\n'
                  'Pathway "slowgreet" {\n}\n'
                  'scriptlet "scriptlet" {\n  script "inject" {\n    source = "$home/inject"\n  }\n}\n'),
            more_listens=(
                '  Listen "127.0.0.1:$strict" {\n    Pathway = "strict"\n  }\n'
                f'  Listen "127.0.0.1:$tls" {{\n    SMTP_Extensions = ( {EXT} "STARTTLS" )\n'
                f'    TLS_Certificate = "{certs.server_cert}"\n    TLS_Key = "{certs.server_key}"\n  }}\n'
                f'  Listen "127.0.0.1:$auth" {{\n    SMTP_Extensions = ( {EXT} "AUTH PLAIN LOGIN CRAM-MD5" )\n  }}\n'
                '  Listen "127.0.0.1:$lua" {\n    Pathway = "slowgreet"\n  }'),
            files={"inject.lua": LUA_INJECT})
        add_user(m.path("auth.db"), "alice", "right")
        yield m
    finally:
        shared.close()


@pytest.fixture(scope="module")
def certs_module(tmp_path_factory):
    from ecmta.tests.reception.helpers import make_certs
    return make_certs(str(tmp_path_factory.mktemp("abusecerts")))


def _expand(data, tag: bytes) -> bytes:
    if isinstance(data, tuple) and data[0] == "BDAT":
        payload = data[1].replace(b"{tag}", tag)
        return b"BDAT %d%s\r\n" % (len(payload), b" LAST" if data[2] else b"") + payload
    return data.replace(b"{tag}", tag)


def _closed(w: Wire, timeout: float = 5.0) -> bool:
    if w.buf:
        return False
    return w.closed(timeout)


def run_case(m, c: dict, tag: bytes) -> Wire:
    port = m.port if c["listen"] == "smtp" else m.d.ports[c["listen"]]
    w = Wire("127.0.0.1", port, banner=c["banner"], timeout=30)
    if c["banner"]:
        assert w.banner.code == 220, w.banner
    for n, (send, want) in enumerate(c["steps"]):
        where = f"{c['id']} step {n}"
        if send == "TLS":
            ctx = ssl.create_default_context()
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            w.starttls(ctx)
        elif send == "SHUT_WR":
            w.sock.shutdown(socket.SHUT_WR)
        else:
            w.send(_expand(send, tag))
        for k, exp in enumerate(want):
            if exp == "CLOSED":
                assert _closed(w), f"{where}: the connection is still open"
                continue
            if exp == "OPEN":
                assert not _closed(w, 0.3), f"{where}: the connection was closed"
                continue
            r = w.reply()
            if isinstance(exp, int):
                assert r.code == exp, f"{where} reply {k}: {r} (wanted {exp})"
            else:
                assert r.raw.startswith(exp), f"{where} reply {k}: {r} (wanted {exp!r})"
    return w


def _rejections(m, conn: tuple[int, int]) -> list[tuple[int, str]]:
    """This connection's rejectlog lines: its client port alone may have been used before
    towards another listener."""
    port, local = conn
    out = []
    for ln in m._lines("rejectlog.ec"):
        mt = REJECT_RE.match(ln)
        if mt and mt["R"] == f"127.0.0.1:{port}" and mt["L"] == f"127.0.0.1:{local}":
            out.append((int(mt["E"]), mt["P"]))
    return out


def _tagged(m, tag: str) -> int:
    return sum(1 for x in m.spooled() if tag in x.rcptto)


def test_there_are_enough_cases():
    assert len(CASES) >= 60
    assert len({c["id"] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("c", CASES, ids=[c["id"] for c in CASES])
def test_case(abuse, c):
    tag = f"t{abs(hash(c['id'])) % 10**8:08d}{int(time.time() * 1000) % 100000}"
    w = run_case(abuse, c, tag.encode())
    conn = (w.sock.getsockname()[1], w.sock.getpeername()[1])
    if c["ctx"]:
        dump = w.cmd("XDUMPCONTEXT").text
        for k, v in c["ctx"].items():
            assert f"[connection] {k} {v}" in dump, dump
    w.close()
    if c["log"] is not None:
        want = c["log"]
        got = wait_for(lambda: (lambda g: g if len(g) >= len(want) else None)(_rejections(abuse, conn)),
                       what=f"{len(want)} rejectlog lines") if want else []
        if not want:
            time.sleep(0.2)
            got = _rejections(abuse, conn)
        assert got == want, f"{c['id']}: rejectlog {got[:10]} (wanted {want[:10]})"
    if c["stored"] is not None:
        if c["stored"]:
            wait_for(lambda: _tagged(abuse, tag) >= c["stored"], what=f"{c['stored']} spooled")
        else:
            time.sleep(0.2)
        assert _tagged(abuse, tag) == c["stored"], c["id"]


def test_daemon_survived_every_case(abuse):
    """After the table: no CRITICAL paniclog line, and a plain transaction still works."""
    crit = [ln for ln in abuse.paniclog() if "CRITICAL" in ln or "Traceback" in ln]
    assert not crit, crit[:5]
    w = abuse.wire()
    assert w.cmd("EHLO client.test").code == 250
    assert w.cmd("MAIL FROM:<a@client.test>").code == 250
    assert w.cmd("RCPT TO:<after-all@example.com>").code == 250
    assert w.cmd("DATA").code == 354
    assert w.cmd(b"Subject: x\r\n\r\nbody\r\n.").code == 250
    assert abuse.d.proc.poll() is None
