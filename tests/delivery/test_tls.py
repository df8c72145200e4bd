"""Outbound TLS (config.ref.tls, config.tls_verify, config.tls_ca): with tls = required a
verification failure fails closed (nothing is sent in clear, the message stays queued with
a T line), and the right CA delivers over TLS. Certificates are made in the test with
`cryptography` (helpers.make_certs): the sink presents a certificate for mx.tls.test, the
MX host of tls.test.
"""

import pytest

from ecmta.tests.delivery.helpers import domain_port

SENDER = "alice@sender.test"


def tls_domain(port: int, verify: str, ca: str) -> str:
    extra = f'  tls = required\n  tls_verify = {verify}\n  tls_ca = "{ca}"\n'
    return domain_port("tls.test", port, extra)


@pytest.mark.parametrize("verify", ["ca", "host"])
def test_required_tls_with_the_right_ca_delivers_over_tls(mta, sink, certs, verify):
    s = sink(tls={"cert": certs.server_cert, "key": certs.server_key})
    a = mta(tail=tls_domain(s.port, verify, certs.ca))
    a.send(SENDER, ["x@tls.test"], subject="secret")
    [m] = s.wait_messages(1)
    tls = s.events("tls")
    assert [t["conn"] for t in tls] == [m["conn"]]
    # the envelope came after the handshake, on the same connection
    mail = [e for e in s.events("mail") if e["conn"] == m["conn"]]
    assert mail and mail[0]["t"] >= tls[0]["t"]
    [d] = a.wait_records("D", 1)
    assert (d["domain"], d["retries"], d["ip"]) == ("tls.test", "0", "127.0.0.1")


@pytest.mark.parametrize("verify", ["ca", "host"])
def test_required_tls_with_a_wrong_ca_fails_closed(mta, sink, certs, verify):
    s = sink(tls={"cert": certs.server_cert, "key": certs.server_key})
    a = mta(tail=tls_domain(s.port, verify, certs.other_ca))
    a.send(SENDER, ["x@tls.test"])
    t = a.wait_records("T", 1)[0]
    assert (t["domain"], t["stage"], t["retries"], t["ip"], t["text"]) == \
        ("tls.test", "17", "0", "127.0.0.1",
         "4.7.5 [internal] remote node SSL certificate not signed by a valid CA"), t
    assert not s.events("mail") and not s.messages()      # nothing went out in clear
    assert not a.records("D") and not a.records("P")
    assert len(a.spooled()) == 1


def test_required_tls_with_verify_host_refuses_a_certificate_for_another_name(mta, sink, certs):
    """Signed by the trusted CA but issued to wrong.invalid: not the MX host, not the domain."""
    s = sink(tls={"cert": certs.wrong_cert, "key": certs.wrong_key})
    a = mta(tail=tls_domain(s.port, "host", certs.ca))
    a.send(SENDER, ["x@tls.test"])
    t = a.wait_records("T", 1)[0]
    assert (t["stage"], t["text"]) == \
        ("17", "4.7.5 [internal] SSL certificate subject does not match host"), t
    assert not s.events("mail") and not s.messages()
    assert len(a.spooled()) == 1


def test_required_tls_with_verify_ca_accepts_another_name(mta, sink, certs):
    """tls_verify = ca checks the signature only."""
    s = sink(tls={"cert": certs.wrong_cert, "key": certs.wrong_key})
    a = mta(tail=tls_domain(s.port, "ca", certs.ca))
    a.send(SENDER, ["x@tls.test"])
    s.wait_messages(1)
    assert s.events("tls")


def test_required_tls_without_starttls_offered_fails_closed(mta, sink, certs):
    s = sink()
    a = mta(tail=tls_domain(s.port, "ca", certs.ca))
    a.send(SENDER, ["x@tls.test"])
    t = a.wait_records("T", 1)[0]
    assert t["text"] == "451 4.7.6 [internal] STARTTLS required but not advertised", t
    assert not s.events("mail")
    assert len(a.spooled()) == 1
