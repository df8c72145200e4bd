"""Outbound STARTTLS over loopback against the scripted SMTPServer peer: tls =
required / ifavailable, tls_verify = no / ca / host / optional, the plaintext fallback
both ways, client certificates and the tls_macros facts."""
import pytest

from ecmta.tests.transports.test_smtp_outbound_helpers import (  # noqa: F401 (fixtures)
    deliver, peer_factory, pki)
from ecmta.transports import smtp_client as C

TLS_EXT = ["PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "STARTTLS"]


def tls_peer(peer_factory, pki, which="server", **spec):
    cert, key = getattr(pki, which)
    return peer_factory(extensions=TLS_EXT, cert=cert, key=key, **spec)


def run(tmp_path, peer, *, mx="localhost", domain="", **opts):
    client = {"tls": opts.pop("tls", "required")}
    return deliver(tmp_path, peer.port, opts={"client": client, **opts}, mx_hostname=mx,
                   domain=domain)


def outcome(facts) -> dict:
    return facts["outcomes"][0][0]


def test_required_verify_host_success(peer_factory, pki, tmp_path):
    peer = tls_peer(peer_factory, pki)
    facts = run(tmp_path, peer, tls_verify="host", tls_ca=pki.ca_pem)
    assert outcome(facts)["status"] == "delivered"
    info = facts["tls_info"]
    assert info["outbound_tls"] == "TLS" and info["outbound_tls_type"] == "required"
    assert info["protocol"].startswith("TLSv1") and info["cipher"] and info["bits"] >= 128
    assert info["outbound_tls_verified"] == "verified"
    assert info["outbound_tls_subject"] == "localhost"
    assert info["outbound_tls_issuer"] == "ecmta test CA"
    tls = peer.events("tls")
    assert tls and tls[0]["version"] == info["protocol"]
    # EHLO twice: before and after STARTTLS; the envelope only after.
    assert [e["event"] for e in peer.events() if e["event"] in ("helo", "tls", "mail")] == \
        ["helo", "tls", "helo", "mail"]


def test_verify_host_matches_the_domain_too(peer_factory, pki, tmp_path):
    peer = tls_peer(peer_factory, pki, which="wildcard")
    facts = run(tmp_path, peer, mx="127.0.0.1", domain="mx1.example.test",
                tls_verify="host", tls_ca=pki.ca_pem)
    assert outcome(facts)["status"] == "delivered"


def test_wrong_name_fails_closed(peer_factory, pki, tmp_path):
    peer = tls_peer(peer_factory, pki, which="wrong")
    facts = run(tmp_path, peer, tls_verify="host", tls_ca=pki.ca_pem, tls="ifavailable")
    o = outcome(facts)
    assert (o["text"], o["code"], o["status"], o["stage"]) == \
        (C.TLS_SUBJECT_MISMATCH, 451, "transient", C.ST_TLS)
    assert not peer.events("mail") and not facts["tls_fallback"]   # never in clear


def test_unknown_ca_fails_closed(peer_factory, pki, tmp_path):
    peer = tls_peer(peer_factory, pki, which="untrusted")
    o = outcome(run(tmp_path, peer, tls_verify="ca", tls_ca=pki.ca_pem))
    assert (o["text"], o["stage"]) == (C.TLS_NOT_CA_SIGNED, C.ST_TLS)
    assert not peer.events("mail")


def test_verify_no_accepts_anything(peer_factory, pki, tmp_path):
    peer = tls_peer(peer_factory, pki, which="untrusted")
    facts = run(tmp_path, peer, tls_verify="no")
    assert outcome(facts)["status"] == "delivered"
    assert facts["tls_info"]["outbound_tls_verified"] == "unverified"
    assert facts["tls_info"]["outbound_tls_issuer"] == "another CA"


def test_optional_wrong_name_delivers_unverified(peer_factory, pki, tmp_path):
    peer = tls_peer(peer_factory, pki, which="wrong")
    facts = run(tmp_path, peer, tls_verify="optional", tls_ca=pki.ca_pem)
    assert outcome(facts)["status"] == "delivered"
    assert facts["tls_info"]["outbound_tls_verified"] == "unverified"


def test_optional_unknown_ca_reconnects_unverified(peer_factory, pki, tmp_path):
    peer = tls_peer(peer_factory, pki, which="untrusted")
    facts = run(tmp_path, peer, tls_verify="optional", tls_ca=pki.ca_pem)
    assert outcome(facts)["status"] == "delivered"
    assert facts["tls_info"]["outbound_tls_verified"] == "unverified"
    assert len(peer.events("connect")) == 2 and len(peer.events("tls")) == 1


@pytest.mark.parametrize("fallback", [True, False])
def test_ifavailable_negotiation_failure(peer_factory, pki, tmp_path, fallback):
    peer = tls_peer(peer_factory, pki, tls_break=True)
    facts = run(tmp_path, peer, tls="ifavailable", tls_ifavailable_fallback=fallback)
    o = outcome(facts)
    if fallback:
        # Reconnected in clear (no STARTTLS the second time) and delivered.
        assert o["status"] == "delivered" and facts["tls_fallback"]
        assert facts["tls_info"] is None and len(peer.events("connect")) == 2
        assert peer.events("mail")
    else:
        assert (o["text"], o["status"], o["stage"]) == (C.TLS_FAILED, "transient", C.ST_TLS)
        assert len(peer.events("connect")) == 1 and not peer.events("mail")


def test_required_negotiation_failure_never_falls_back(peer_factory, pki, tmp_path):
    peer = tls_peer(peer_factory, pki, tls_break=True)
    facts = run(tmp_path, peer, tls="required", tls_ifavailable_fallback=True)
    assert outcome(facts)["text"] == C.TLS_FAILED and not peer.events("mail")


def test_ifavailable_without_starttls_goes_clear(peer_factory, tmp_path):
    peer = peer_factory()
    facts = run(tmp_path, peer, tls="ifavailable")
    assert outcome(facts)["status"] == "delivered" and facts["tls_info"] is None
    assert not facts["tls_fallback"]


def test_client_certificate_is_sent(peer_factory, pki, tmp_path):
    peer = tls_peer(peer_factory, pki, client_ca=pki.ca_pem)
    cert, key = pki.client
    facts = run(tmp_path, peer, tls_verify="host", tls_ca=pki.ca_pem,
                tls_certificate=cert, tls_key=key)
    assert outcome(facts)["status"] == "delivered"
    assert peer.events("tls")[0]["client_cn"] == "ecmta-client"


def test_client_certificate_none(peer_factory, pki, tmp_path):
    peer = tls_peer(peer_factory, pki, client_ca=pki.ca_pem)
    facts = run(tmp_path, peer, tls_certificate="none", tls_key="")
    assert outcome(facts)["status"] == "delivered"
    assert peer.events("tls")[0]["client_cn"] == ""


def test_tls_protocols_option(peer_factory, pki, tmp_path):
    peer = tls_peer(peer_factory, pki)
    facts = run(tmp_path, peer, tls_protocols="+ALL:-SSLv3:-TLSv1.3")
    assert facts["tls_info"]["protocol"] == "TLSv1.2"


def test_bad_tls_options_fail_the_negotiation(peer_factory, pki, tmp_path):
    peer = tls_peer(peer_factory, pki)
    facts = run(tmp_path, peer, tls_ca=str(tmp_path / "missing.pem"), tls_verify="ca")
    assert outcome(facts)["text"] == C.TLS_FAILED
    assert "TLS_CA" in facts["last_error"]
