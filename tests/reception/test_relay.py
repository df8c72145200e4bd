"""Relay control over the wire: relay_domains (exact and left-glob), relay_hosts, Peer
Open_Relay (listener and Listen Peer scopes, by source address), relay_for_sending_domains,
AUTH making a session relayable, Blackhole = inline, and the exact `550 5.7.1 relaying denied`
reply with its rejectlog line.

The module's daemon (relay_domains = example.com *.sub.test *glob.test bh.test bh2.test):
  $smtp     no relay host; listener Peer "127.0.0.2" { Open_Relay = true }
  $hosts    Relay_Hosts = ( "127.0.0.0/8" )
  $peer     Peer "127.0.0.3" { Open_Relay = true } inside the Listen
  $rfsd     Relay_For_Sending_Domains = ( "allowed.test" "*.corp.test" )
  $rfsdall  Relay_For_Sending_Domains = ( )   (no parameters: anyone from here)
Domain "bh.test" { Blackhole = inline }, Domain "bh2.test" { Blackhole = true }.
"""

from __future__ import annotations

import re

import pytest

from ecmta.actors.smtp_auth import add_user
from ecmta.tests.harness import free_port
from ecmta.tests.reception.helpers import (EXTENSIONS, Shared, auth_plain, ctx_pairs, local_port,
                                           message, queue_id, start_mta, wait_for)

DENIED = b"550 5.7.1 relaying denied\r\n"
OK = b"250 2.1.5 RCPT TO accepted.\r\n"


@pytest.fixture(scope="module")
def rl():
    shared = Shared()
    try:
        m = start_mta(
            shared.factory, ports={k: free_port() for k in ("hosts", "peer", "rfsd", "rfsdall")},
            ext=EXTENSIONS + ' "AUTH PLAIN"',
            glob='relay_domains = ( "example.com" "*.sub.test" "*glob.test" "bh.test" "bh2.test" )\n'
                 'Domain "bh.test" {\n  Blackhole = inline\n}\nDomain "bh2.test" {\n  Blackhole = true\n}',
            listener='  Peer "127.0.0.2" {\n    Open_Relay = true\n  }',
            listen='',
            more_listens=(
                '  Listen "127.0.0.1:$hosts" {\n    Relay_Hosts = ( "127.0.0.0/8" )\n  }\n'
                '  Listen "127.0.0.1:$peer" {\n    Peer "127.0.0.3" {\n      Open_Relay = true\n    }\n  }\n'
                '  Listen "127.0.0.1:$rfsd" {\n'
                '    Relay_For_Sending_Domains = ( "allowed.test" "*.corp.test" )\n  }\n'
                '  Listen "127.0.0.1:$rfsdall" {\n    Relay_For_Sending_Domains = ( )\n  }'))
        add_user(m.path("auth.db"), "relayer", "pw")
        yield m
    finally:
        shared.close()


def session(rl, port_name="smtp", source=None, sender="a@sender.test"):
    port = rl.port if port_name == "smtp" else rl.d.ports[port_name]
    w = rl.wire(port, source=source)
    w.cmd("EHLO client.test")
    assert w.cmd(f"MAIL FROM:<{sender}>").code == 250
    return w


def rcpt(w, addr) -> bytes:
    return w.cmd(f"RCPT TO:<{addr}>").raw


def test_relay_domains_exact_and_left_glob(rl):
    w = session(rl)
    cases = {
        "u@example.com": OK, "u@EXAMPLE.Com": OK, "u@mail.example.com": DENIED,
        "u@a.sub.test": OK, "u@deep.a.sub.test": OK, "u@sub.test": DENIED,       # "*." needs the dot
        "u@glob.test": OK, "u@badglob.test": OK, "u@glob.test.evil": DENIED,
        "u@else.test": DENIED, "u@[192.0.2.1]": DENIED,
    }
    got = {addr: rcpt(w, addr) for addr in cases}
    assert got == cases


def test_relaying_denied_reply_and_rejectlog_line(rl):
    w = session(rl, sender="info@postalengine.test")
    assert rcpt(w, "bob@else.test") == DENIED
    port = local_port(w)
    (rej,) = wait_for(lambda: [r for r in rl.rejections() if r["R"] == f"127.0.0.1:{port}"])
    assert re.fullmatch(
        rf'\d+: R="127\.0\.0\.1:{port}" L="127\.0\.0\.1:{rl.port}" C="[0-9A-F/-]+" PATH="default" '
        r'PATH_GRP="default" P="awaiting rcptto" E=550 M=core '
        r'CTXCONN=\[pathway=default,connection_message_count=0,connection_rcpt_count=0,'
        r'ehlo_domain=client\.test,ehlo_string="EHLO client\.test"\] '
        r'CTXMESS=\[mailfrom_string="MAIL FROM:<info@postalengine\.test>",mailfrom_localpart=info,'
        r'mailfrom_domain=postalengine\.test,rcptto_string="RCPT TO:<bob@else\.test>",'
        r'rcptto_localpart=bob,rcptto_domain=else\.test\] 5\.7\.1 relaying denied', rej["line"]), rej["line"]


def test_relay_hosts_may_send_anywhere(rl):
    w = session(rl, "hosts")
    assert rcpt(w, "u@else.test") == OK
    assert rcpt(w, "u@example.com") == OK
    w.cmd("DATA")
    r = w.cmd(message("relayed") + b".")
    (m,) = [x for x in rl.spooled() if x.batch_id == queue_id(r) and x.rcptto == "u@else.test"]
    assert m.ctx_conn["can_relay"] == "true"


def test_listener_peer_open_relay_matches_the_source_address(rl):
    assert rcpt(session(rl, source="127.0.0.1"), "u@else.test") == DENIED
    assert rcpt(session(rl, source="127.0.0.2"), "u@else.test") == OK


def test_listen_peer_open_relay(rl):
    assert rcpt(session(rl, "peer", source="127.0.0.1"), "u@else.test") == DENIED
    assert rcpt(session(rl, "peer", source="127.0.0.3"), "u@else.test") == OK
    # the listener-level Peer also applies under this Listen
    assert rcpt(session(rl, "peer", source="127.0.0.2"), "u@else.test") == OK


def test_relay_for_sending_domains(rl):
    assert rcpt(session(rl, "rfsd", sender="x@allowed.test"), "u@else.test") == OK
    assert rcpt(session(rl, "rfsd", sender="x@a.corp.test"), "u@else.test") == OK
    assert rcpt(session(rl, "rfsd", sender="x@corp.test"), "u@else.test") == DENIED
    assert rcpt(session(rl, "rfsd", sender="x@other.test"), "u@else.test") == DENIED
    assert rcpt(session(rl, "rfsdall", sender="x@whoever.test"), "u@else.test") == OK
    # relay_domains still work for everyone
    assert rcpt(session(rl, "rfsd", sender="x@other.test"), "u@example.com") == OK


def test_auth_makes_the_session_relayable(rl):
    w = rl.wire()
    w.cmd("EHLO client.test")
    w.cmd("MAIL FROM:<a@sender.test>")
    assert rcpt(w, "u@else.test") == DENIED
    w.cmd("RSET")
    assert w.cmd("AUTH PLAIN " + auth_plain("relayer", "pw")).code == 235
    w.cmd("MAIL FROM:<a@sender.test>")
    assert rcpt(w, "u@else.test") == OK


@pytest.mark.parametrize("domain", ["bh.test", "bh2.test"])
def test_blackhole_inline_fails_at_rcpt(rl, domain):
    w = session(rl, "hosts")
    assert rcpt(w, f"gone@{domain}") == b"551 5.7.1 recipient blackholed\r\n"
    assert rcpt(w, "kept@example.com") == OK
    w.cmd("DATA")
    r = w.cmd(message("blackhole") + b".")
    assert r.code == 250
    got = [m.rcptto for m in rl.spooled() if m.batch_id == queue_id(r)]
    assert got == ["kept@example.com"]
    port = local_port(w)
    (rej,) = wait_for(lambda: [x for x in rl.rejections() if x["R"] == f"127.0.0.1:{port}"])
    assert (rej["E"], rej["P"], rej["text"]) == ("551", "awaiting rcptto", "5.7.1 recipient blackholed")
    assert ctx_pairs(rej["CTXMESS"])["rcptto_domain"] == domain
