"""Open relay: the classic relay-test address forms (cases/relay.py) against three configs,
each seen "from outside":

  default   the embedded default config's relay rules (relay_hosts = 127.0.0.0/8 and ::1,
            no relay_domains): the client connects from 127.0.0.1 (trusted) and turns
            itself into 192.0.2.10 with XCLIENT / XREMOTEIP (offered on this listener for
            the test), so the relay decision is made for an outside address
  local     relay_domains = ( "local.test" ), relay_hosts = ( "127.0.0.1/32" ): the client
            connects from 127.0.0.2
  auth      as local, plus AUTH PLAIN LOGIN: unauthenticated and failed-AUTH sessions from
            127.0.0.2 (a successful AUTH relays: that is its purpose, checked once)

No foreign form may be answered 2xx in any of them; every local form accepted must be
spooled with routing domain local.test; every refusal of a well-formed address is
`550 5.7.1 relaying denied` with its rejectlog line.
"""

from __future__ import annotations

import re

import pytest

from ecmta.actors.smtp_auth import add_user
from ecmta.tests.harness import free_port
from ecmta.tests.reception.helpers import REJECT_RE, Shared, auth_plain, start_mta, wait_for
from ecmta.tests.reliability.cases.relay import FOREIGN, LOCAL, MAIL_FROM_TRICKS

EXT = ('"ENHANCEDSTATUSCODES" "PIPELINING" "8BITMIME" "SIZE" "DSN" "CHUNKING" "SMTPUTF8" '
       '"XCLIENT" "XREMOTEIP" "AUTH PLAIN LOGIN"')
DENIED = b"550 5.7.1 relaying denied\r\n"
OUTSIDE = "192.0.2.10"
BODY = b"From: a@client.test\r\nSubject: relay test\r\n\r\nbody\r\n.\r\n"


def embedded_relay_rules() -> str:
    """The relay_hosts / relay_domains / open_relay lines of the embedded default config."""
    from importlib.resources import files
    text = files("ecmta.config").joinpath("ecelerity.conf").read_text()
    lines = [ln for ln in text.splitlines()
             if re.match(r"\s*(relay_hosts|relay_domains|open_relay|relay_for_sending_domains)\b", ln, re.I)]
    assert any("relay_hosts" in ln for ln in lines), text
    return "\n".join(lines)


@pytest.fixture(scope="module")
def daemons():
    shared = Shared()
    try:
        default = start_mta(shared.factory, ext=EXT,
                            glob='relay_domains = ( )\n' + embedded_relay_rules() + '\nhostname = "mx.relay.test"')
        local = start_mta(shared.factory, ext=EXT, glob='relay_domains = ( "local.test" )\nrelay_hosts = ( "127.0.0.1/32" )\nhostname = "mx.relay.test"')
        add_user(local.path("auth.db"), "alice", "right")
        yield {"default": default, "local": local}
    finally:
        shared.close()


def outside(mta, how: str, sender: str = "MAIL FROM:<a@client.test>"):
    """A session that looks like it comes from outside, with MAIL FROM given."""
    if how == "127.0.0.2":
        w = mta.wire(source="127.0.0.2")
        assert w.cmd("EHLO client.test").code == 250
    elif how == "xclient":
        w = mta.wire()
        assert w.cmd("EHLO client.test").code == 250
        assert w.cmd(f"XCLIENT ADDR={OUTSIDE} NAME=outside.test").code == 220
        assert w.cmd("EHLO client.test").code == 250
    elif how == "xremoteip":
        w = mta.wire()
        assert w.cmd("EHLO client.test").code == 250
        assert w.cmd(f"XREMOTEIP {OUTSIDE}").code == 250
    elif how == "failed-auth":
        w = mta.wire(source="127.0.0.2")
        assert w.cmd("EHLO client.test").code == 250
        assert w.cmd("AUTH PLAIN " + auth_plain("alice", "wrong")).code == 535
    else:
        raise ValueError(how)
    r = w.cmd(sender + (" SMTPUTF8" if "SMTPUTF8" not in sender and "AUTH=" not in sender else ""))
    assert r.code == 250, r
    return w


def rcpt(w, addr: str) -> bytes:
    return w.cmd(b"RCPT TO:<" + addr.encode("utf-8", "surrogateescape") + b">").raw


def _denied_lines(mta, port) -> int:
    n = 0
    for ln in mta._lines("rejectlog.ec"):
        m = REJECT_RE.match(ln)
        if m and m["R"].endswith(f":{port}") and m["E"] == "550" and m["text"] == "5.7.1 relaying denied":
            n += 1
    return n


SCENARIOS = [("default", "xclient"), ("default", "xremoteip"), ("local", "127.0.0.2"),
             ("local", "xremoteip"), ("local", "failed-auth")]


@pytest.mark.parametrize("config,how", SCENARIOS)
def test_no_foreign_form_is_accepted(daemons, config, how):
    mta = daemons[config]
    w = outside(mta, how)
    port = w.sock.getsockname()[1]
    got = {addr: rcpt(w, addr) for addr, _ in FOREIGN}
    accepted = {a: r for a, r in got.items() if r[:1] in b"23"}
    assert not accepted, f"{config}/{how}: foreign forms accepted: {accepted}"
    wrong = {a: (got[a], want) for a, want in FOREIGN if int(got[a][:3]) != want}
    assert not wrong, f"{config}/{how}: {wrong}"
    assert all(r == DENIED for a, r in got.items() if r.startswith(b"550"))
    denied = sum(1 for r in got.values() if r == DENIED)
    wait_for(lambda: _denied_lines(mta, port) >= denied, what=f"{denied} relaying denied lines")
    assert w.cmd("DATA").raw.startswith(b"503 ")            # nothing to send
    print(f"{config}/{how}: {len(FOREIGN)} foreign forms, {denied} relaying denied, "
          f"{len(FOREIGN) - denied} refused as syntax")


@pytest.mark.parametrize("config,how", SCENARIOS)
def test_mail_from_tricks_do_not_open_the_relay(daemons, config, how):
    mta = daemons[config]
    for sender in MAIL_FROM_TRICKS:
        w = outside(mta, how, sender)
        assert rcpt(w, "u@else.test") == DENIED, sender
        w.close()


@pytest.mark.parametrize("how", ["127.0.0.2", "xremoteip", "failed-auth"])
def test_local_forms_are_routed_to_the_local_domain(daemons, how):
    mta = daemons["local"]
    w = outside(mta, how)
    got = {addr: rcpt(w, addr) for addr in LOCAL}
    assert all(r.startswith(b"250 ") for r in got.values()), got
    assert w.cmd("DATA").code == 354
    r = w.cmd(BODY[:-2])
    assert r.code == 250, r
    batch = r.text.rsplit(" ", 1)[-1]
    spooled = wait_for(lambda: (lambda s: s if len(s) >= len(LOCAL) else None)(
        [m for m in mta.spooled() if m.batch_id == batch]))
    assert len(spooled) == len(LOCAL)
    assert {m.routing_domain.rstrip(".") for m in spooled} == {"local.test"}, \
        [(m.rcptto, m.routing_domain) for m in spooled]


def test_default_config_relays_nothing_for_outsiders(daemons):
    """Not even the local forms: the default config has no relay_domains at all."""
    w = outside(daemons["default"], "xclient")
    got = {a: rcpt(w, a) for a in LOCAL}
    assert all(r == DENIED for r in got.values()), got


def test_trust_is_dropped_when_the_client_becomes_an_outsider(daemons):
    """127.0.0.1 may relay under the default rules; after XCLIENT/XREMOTEIP to an outside
    address in the same connection it may not (and RSET does not bring trust back)."""
    mta = daemons["default"]
    w = mta.wire()
    w.cmd("EHLO client.test")
    w.cmd("MAIL FROM:<a@client.test>")
    assert rcpt(w, "u@else.test").startswith(b"250 ")
    w.cmd("RSET")
    assert w.cmd(f"XREMOTEIP {OUTSIDE}").code == 250
    w.cmd("MAIL FROM:<a@client.test>")
    assert rcpt(w, "u@else.test") == DENIED
    w.cmd("RSET")
    w.cmd("MAIL FROM:<a@client.test>")
    assert rcpt(w, "u@else.test") == DENIED


def test_successful_auth_relays_and_only_it(daemons):
    mta = daemons["local"]
    w = mta.wire(source="127.0.0.2")
    w.cmd("EHLO client.test")
    assert w.cmd("AUTH PLAIN " + auth_plain("alice", "wrong")).code == 535
    w.cmd("MAIL FROM:<a@client.test>")
    assert rcpt(w, "u@else.test") == DENIED
    w.cmd("RSET")
    assert w.cmd("AUTH PLAIN " + auth_plain("alice", "right")).code == 235
    w.cmd("MAIL FROM:<a@client.test>")
    assert rcpt(w, "u@else.test").startswith(b"250 ")
