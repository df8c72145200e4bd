"""Remote faults during delivery: each ends in the documented transient (T) or permanent (P)
outcome with its mainlog line (texts of MOMENTUM_DIGEST Appendix A), and the daemon goes on
delivering elsewhere.

Remotes (tests/reliability/faults.py) that hang at every stage, reset, close, answer
garbage, binary junk, endless multi-line replies, over-long lines, mixed codes, 421, a
permanent refusal, break TLS in three ways, or never complete the TCP handshake; DNS
(a dnsmasq, conftest.fault_dns) that answers SERVFAIL, REFUSED, NXDOMAIN, a null MX, an
MX without address, MX hosts in prohibited_hosts, or never answers at all.

Timeouts are 2 s (connect, EHLO/banner, MAIL, RCPT, body); resolv.conf asks once with a
1 s timeout; retry_interval is long, so every message is attempted once. The wait for the
354 after DATA has no option (Momentum documents none; ecmta waits 300 s): a remote that
hangs there is the slow test.
"""

from __future__ import annotations

import re
import time

import pytest

from ecmta.tests.delivery.helpers import MAIN_TP
from ecmta.tests.harness import free_port
from ecmta.tests.reliability.faults import FaultServer
from ecmta.tests.reliability.helpers import rel_message, start_mta, wait_for

T, P, D = "T", "P", "D"
INVALID = "451 4.4.2 [internal] invalid"

# domain -> (fault mode or None, extra Domain options, outcome, reply text (prefix), stage)
REMOTE = {
    "hang.test": ("hang-banner", "", T, "451 4.4.2 [internal] no banner", "12"),
    # a reset right at accept may reach the connect() itself: either transient is right
    "reset.test": ("reset", "", T, ("451 4.4.2 [internal] no banner",
                                    "451 4.4.1 [internal] No valid hosts (unable to make any connections)"),
                   ("12", "0")),
    "eof.test": ("close-banner", "", T, "451 4.4.2 [internal] no banner", "12"),
    "garbage.test": ("garbage-banner", "", T, INVALID, "12"),
    "binary.test": ("binary-banner", "", T, INVALID, "12"),
    "multijunk.test": ("multiline-junk", "", T, INVALID, "12"),
    "longline.test": ("longline-banner", "", T, INVALID, "12"),
    "c421.test": ("banner-421", "", T, "421 4.3.2 go away", "12"),
    "mixed.test": ("mixed-ehlo", "", T, INVALID, "10"),
    "hangehlo.test": ("hang-ehlo", "", T, "451 4.4.2 [internal] no HELO/EHLO response", "10"),
    "resetrcpt.test": ("reset-rcpt", "", T, "451 4.4.2 [internal] ", "4"),
    "permmail.test": ("perm-mail", "", P, "550 5.7.1 sender refused", "2"),
    "inject.test": ("inject-mail", "", P, "550 5.7.1 no", "2"),
    "hangbody.test": ("hang-body", "", T, "451 4.4.2 [internal] no BODY response", "9"),
    "tlsgarbage.test": ("tls-garbage", "  tls = required\n", T, "451 4.7.5 [internal] TLS negotiation failed", "17"),
    "tlsrefused.test": ("tls-refused", "  tls = required\n", T, "451 4.7.5 [internal] no tls go-ahead", "15"),
    "notls.test": ("no-starttls", "  tls = required\n", T,
                   "451 4.7.6 [internal] STARTTLS required but not advertised", "11"),
    "tlsfallback.test": ("tls-garbage", "  tls = ifavailable\n", D, "", ""),
    "backlog.test": ("full-backlog", "", T, "450 4.4.1 [internal] Connection Timed Out", "0"),
    "dead.test": ("dead", "", T, "451 4.4.1 [internal] No valid hosts", "0"),
    # DNS
    "servfail.test": (None, "", T, "454 4.4.4 [internal] no MX or A for domain", "0"),
    "timeout.test": (None, "", T, "454 4.4.4 [internal] no MX or A for domain", "0"),
    "refused.zz": (None, "", T, "454 4.4.4 [internal] no MX or A for domain", "0"),
    "nx.test": (None, "", P, "554 5.4.4 [internal] Domain Lookup Failed", "0"),
    "nullmx.test": (None, "", P, "550 5.4.4 [internal] NULL MX domain does not accept mail", "0"),
    "noaddr.test": (None, "", T, "451 4.4.1 [internal] No valid hosts", "0"),
    "private.test": (None, "", P, "551 5.4.6 [internal] Private/Loopback Address", "0"),
    "loop.test": (None, "", P, "551 5.4.6 [internal] Private/Loopback Address", "0"),
    "d" * 64 + ".ok.test": (None, "", P, "554 5.4.4 [internal] Domain Lookup Failed", "0"),
    "purge.servfail.test": (None, "  dns_failures_to_purge = 2\n  retry_interval = 1\n", P,
                            "554 5.4.4 [internal] Domain Lookup Failed", "0"),
}

GLOB = """\
resolv_conf = "$home/resolv.conf"
relay_hosts = ( "127.0.0.0/8" )
retry_interval = 600
max_retry_interval = 600
connect_timeout = 2
ehlo_timeout = 2
mailfrom_timeout = 2
rcptto_timeout = 2
body_timeout = 2
rset_timeout = 2
prohibited_hosts = ( "10.0.0.0/8" "127.0.0.2/32" )
"""


@pytest.fixture(scope="module")
def faulty(fault_dns, tmp_path_factory):
    from ecmta.tests.harness import Daemon
    dns_port, _silent = fault_dns
    servers = {}
    tail = ""
    for domain, (mode, extra, *_rest) in REMOTE.items():
        if mode == "dead":
            port = free_port()
        elif mode:
            servers[domain] = FaultServer(mode)
            port = servers[domain].port
        else:
            port = None
        if port or extra:
            tail += f'Domain "{domain}" {{\n' + (f"  remote_smtp_port = {port}\n" if port else "") + extra + "}\n"
    fine = FaultServer("ok")
    tail += f'Domain "fine.test" {{\n  remote_smtp_port = {fine.port}\n}}\n'
    made = []

    def factory(body, **kw):
        d = Daemon(body, **kw)
        made.append(d)
        return d
    try:
        m = start_mta(factory, relay='"x.test"', glob=GLOB, tail=tail,
                      files={"resolv.conf": f"nameserver 127.0.0.1#{dns_port}\noptions timeout:1 attempts:1\n"})
        yield m, servers, fine
    finally:
        for d in made:
            try:
                d.stop(timeout=15)
            except Exception:
                pass
            d.cleanup()
        for s in list(servers.values()) + [fine]:
            s.stop()


def outcome_lines(m) -> dict:
    """rcpt local part -> [(type, text, stage)] from the mainlog (R lines map ids)."""
    ids = {}
    for ln in m.mainlog():
        parts = ln.split("@")
        if len(parts) > 6 and parts[4] == "R":
            ids[parts[1]] = parts[5]
    out: dict = {}
    for ln in m.mainlog():
        mt = MAIN_TP.match(ln)
        if mt:
            out.setdefault(ids.get(mt["id"], "?"), []).append((mt["type"], mt["text"], mt["stage"], mt["ip"]))
        elif "@D@" in ln:
            parts = ln.split("@")
            out.setdefault(ids.get(parts[1], "?"), []).append(("D", "", "", ""))
    return out


def test_every_remote_fault_ends_in_its_documented_outcome(faulty):
    m, servers, fine = faulty
    t0 = time.monotonic()
    with m.smtp() as s:
        for domain in REMOTE:
            local = re.sub(r"[^a-z0-9]", "", domain.split(".")[0])[:20] or "x"
            rcpt = f"{local}@{domain}"
            assert not s.sendmail("sender@client.test", [rcpt], rel_message(local, rcpt))
        assert not s.sendmail("sender@client.test", ["fine@fine.test"], rel_message("fine", "fine@fine.test"))

    def have_all():
        got = outcome_lines(m)
        missing = [d for d in REMOTE if not got.get(re.sub(r"[^a-z0-9]", "", d.split(".")[0])[:20])]
        return got if not missing and got.get("fine") else None
    got = wait_for(have_all, timeout=60, interval=0.25, what="an outcome for every domain")
    took = time.monotonic() - t0
    wrong = {}
    for domain, (_mode, _extra, kind, text, stage) in REMOTE.items():
        local = re.sub(r"[^a-z0-9]", "", domain.split(".")[0])[:20]
        first = got[local][-1] if kind == P else got[local][0]
        texts = text if isinstance(text, tuple) else (text,)
        stages = stage if isinstance(stage, tuple) else (stage,)
        if first[0] != kind or not first[1].startswith(texts) or (stage and first[2] not in stages):
            wrong[domain] = (first, (kind, text, stage))
    assert not wrong, "\n".join(f"{d}: got {g}, wanted {w}" for d, (g, w) in wrong.items())
    assert got["fine"][0][0] == "D" and fine.messages == 1
    # a remote's reply never forges or breaks a log line
    assert not [ln for ln in m.mainlog() if "forged" in ln and not MAIN_TP.match(ln)]
    inj = [t for t in got["inject"] if t[0] == P][0][1]
    assert not any(c in inj for c in "\r\n\x00\x1b"), repr(inj)
    assert took < 60
    crit = [ln for ln in m.paniclog() if "CRITICAL" in ln or "Traceback" in ln]
    assert not crit, crit[:5]
    # transient ones stay queued, permanent ones are gone
    spooled = {x.rcptto.split("@", 1)[1] for x in m.spooled()}
    for domain, (_mode, _extra, kind, _text, _stage) in REMOTE.items():
        assert (domain in spooled) == (kind == T), domain
    for domain in REMOTE:
        print(domain[:30], got[re.sub(r"[^a-z0-9]", "", domain.split(".")[0])[:20]])
    print(f"{len(REMOTE)} remote/DNS faults: outcomes in {took:.1f}s")


def test_hung_body_is_delivered_again_later_at_least_once(faulty):
    """The remote took the body and never answered: the message stays queued (T line), so
    a retry may deliver it twice (at-least-once), never zero times."""
    m, servers, _fine = faulty
    assert any(x.rcptto.startswith("hangbody@") for x in m.spooled())
    assert servers["hangbody.test"].connections >= 1


def test_silent_resolver_is_a_transient_failure_and_reception_goes_on(daemon_factory, fault_dns):
    _dns_port, silent = fault_dns
    m = start_mta(daemon_factory, relay='"x.test"', glob=GLOB,
                  files={"resolv.conf": f"nameserver 127.0.0.1#{silent}\noptions timeout:1 attempts:2\n"})
    t0 = time.monotonic()
    with m.smtp() as s:
        for i in range(5):
            assert not s.sendmail("sender@client.test", [f"q{i}@ok.test"], rel_message(f"q{i}", f"q{i}@ok.test"))
    assert time.monotonic() - t0 < 5, "reception waited for DNS"
    got = wait_for(lambda: (lambda r: r if len(r) >= 5 else None)(
        [ln for ln in m.mainlog() if MAIN_TP.match(ln)]), timeout=30)
    for ln in got:
        mt = MAIN_TP.match(ln)
        assert (mt["type"], mt["text"]) == ("T", "454 4.4.4 [internal] no MX or A for domain"), ln
    assert len(m.spooled()) == 5


@pytest.mark.slow
@pytest.mark.timeout(420)          # the daemon waits 300 s for the 354
def test_remote_hanging_after_data_is_cut_at_300s(daemon_factory, fault_dns):
    dns_port, _silent = fault_dns
    srv = FaultServer("hang-354", hold=400)   # longer than the 300 s wait for 354
    try:
        m = start_mta(daemon_factory, relay='"x.test"', glob=GLOB,
                      tail=f'Domain "hang354.test" {{\n  remote_smtp_port = {srv.port}\n}}\n',
                      files={"resolv.conf": f"nameserver 127.0.0.1#{dns_port}\noptions timeout:1 attempts:1\n"})
        with m.smtp() as s:
            assert not s.sendmail("sender@client.test", ["h@hang354.test"], rel_message("h", "h@hang354.test"))
        got = wait_for(lambda: [ln for ln in m.mainlog() if MAIN_TP.match(ln)], timeout=330, interval=1)
        mt = MAIN_TP.match(got[0])
        assert (mt["type"], mt["text"], mt["stage"]) == ("T", "451 4.4.2 [internal] no DATA response", "6")
    finally:
        srv.stop()
