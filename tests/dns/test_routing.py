"""Routing against real DNS (dnsmasq, and the stub server for SERVFAIL / slow / silent
answers): MX order and tiers, A fallback, null MX, NXDOMAIN, transient failures,
prohibited/skip hosts, mxip, IPv6, IP literals, Gateway, Routes, static_routes, partial
resolution, the route cache and route_options() from a config."""

import pytest

from ecmta.tests.dns.conftest import LOCAL_TTL
from ecmta.tests.dns.util import scenario

CASES = [
    ("mx", "mx.test", {}),
    ("mx_v6", "mx.test", {"use_ipv6": True}),
    ("mx_best", "mx.test", {"only_best_mx": True}),
    ("mx_port", "MX.Test.", {"port": 2003}),
    ("a_fallback", "aonly.test", {}),
    ("a_fallback_v6", "aonly.test", {"use_ipv6": True}),
    ("force_a", "aonly.test", {"force_a": True}),
    ("force_a_none", "mx.test", {"force_a": True}),
    ("empty", "empty.test", {}),
    ("nullmx", "nullmx.test", {}),
    ("nx", "nx.test", {}),
    ("mxip_on", "mxip.test", {"mxip": True, "mxip_ttl": 900}),
    ("mxip_off", "mxip.test", {}),
    ("dangling", "dangling.test", {}),
    ("loop_prohibited", "loop.test", {"prohibited": ["127.0.0.0/8", "0.0.0.0"]}),
    ("mixed_prohibited", "mixed.test", {"prohibited": ["127.0.0.0/8"]}),
    ("mixed_prohibited_drop", "mixed.test", {"prohibited": ["127.0.0.0/8"],
                                             "prohibited_fails_domain": False}),
    ("mixed_skip", "mixed.test", {"skip": ["127.0.0.1"]}),
    ("loop_skip", "loop.test", {"skip": ["127.0.0.0/8"]}),
    ("literal", "[10.0.0.5]", {"port": 2525}),
    ("literal_v6", "[IPv6:2001:db8::5]", {}),
    ("literal_bad", "[10.0.0.500]", {}),
    ("literal_prohibited", "[127.0.0.1]", {"prohibited": ["127.0.0.0/8"]}),
    ("gw_v6", "mx.test", {"gateway": "[fe80::a00]:1"}),
    ("gw_ip", "mx.test", {"gateway": "10.0.4.9"}),
    ("gw_mx", "anything.example", {"gateway": "smarthost.test"}),
    ("gw_a_port", "mx.test", {"gateway": "plainhost.test:2525"}),
    ("gw_nx", "mx.test", {"gateway": "nx.test"}),
    ("gw_bad", "mx.test", {"gateway": "fe80::1:25:x"}),
    ("routes_in_order", "mx.test", {"routes": ["plainhost.test", "backup.test"]}),
    ("routes_balanced", "mx.test", {"routes": ["smtp://10.0.11.7?pref=10",
                                               "smtp://10.0.11.8?pref=10"]}),
    ("routes_first_then_mx", "mx.test", {"routes": ["smtp://plainhost.test?pref=1", "__mx__"]}),
    ("routes_mx_then_backup", "mx.test", {"routes": ["__mx__", "backup.test"]}),
    ("routes_type_mx", "mx.test",
     {"routes": ["smtp://smarthost.test?type=mx&pref=5&port=2526&ttl=77"]}),
    ("routes_nullmx_only", "nullmx.test", {"routes": ["__mx__"]}),
    ("routes_nullmx_backup", "nullmx.test", {"routes": ["__mx__", "backup.test"]}),
    ("routes_nx", "mx.test", {"routes": ["nx.test"]}),
    ("routes_bad", "mx.test", {"routes": ["apn://gateway.push.apple.com?port=2195"]}),
    ("routes_literal_mx", "[10.0.0.6]", {"routes": ["__mx__"]}),
    ("static_wins", "mx.test", {"static_route": "10.0.0.99:2525", "gateway": "10.0.4.9",
                                "routes": ["backup.test"]}),
    ("gateway_beats_routes", "mx.test", {"gateway": "10.0.4.9", "routes": ["backup.test"]}),
]


@pytest.fixture(scope="module")
def routes(dnsmasq):
    return scenario("routes", port=dnsmasq.port, cases=CASES)


def ips(res):
    return [t[1] for t in res["targets"]]


def test_mx_order_tiers_and_ttl(routes):
    r = routes["mx"]
    assert r["ok"] and r["source"] == "mx" and r["complete"]
    # equal preferences form one tier (DNS order kept inside it); mxd has no address
    assert sorted(r["groups"][0]) == ["10.0.1.1", "10.0.1.2"] and r["groups"][1:] == [["10.0.1.3"]]
    assert [t[3] for t in r["targets"]] == [10, 10, 20]
    assert {t[0] for t in r["targets"]} == {"mxa.mx.test", "mxb.mx.test", "mxc.mx.test"}
    assert [m[0] for m in r["mxs"]] == [10, 10, 20, 30]
    assert r["ttl"] == LOCAL_TTL and all(t[2] == 25 and t[4] == LOCAL_TTL for t in r["targets"])


def test_ipv6_only_when_enabled(routes):
    assert not any(":" in ip for ip in ips(routes["mx"]))
    v6 = routes["mx_v6"]
    mxb = [t[1] for t in v6["targets"] if t[0] == "mxb.mx.test"]
    assert mxb == ["10.0.1.2", "2001:db8::12"]               # IPv4 first, then IPv6
    assert ips(routes["a_fallback_v6"]) == ["10.0.2.1", "2001:db8::21"]
    assert ips(routes["literal_v6"]) == ["2001:db8::5"]      # explicit IPv6 always allowed


def test_only_best_mx_and_port(routes):
    assert sorted(ips(routes["mx_best"])) == ["10.0.1.1", "10.0.1.2"]
    assert {t[2] for t in routes["mx_port"]["targets"]} == {2003}


def test_a_fallback_without_mx(routes):
    r = routes["a_fallback"]
    assert r["source"] == "a" and r["targets"] == [["aonly.test", "10.0.2.1", 25, 0, LOCAL_TTL]]
    assert routes["force_a"]["targets"] == r["targets"]
    f = routes["force_a_none"]                               # mx.test has MX but no A
    assert (f["error_code"], f["permanent"], f["dns_failure"]) == (454, False, True)


def test_failures_and_their_replies(routes):
    assert routes["empty"]["reply"] == "454 4.4.4 [internal] no MX or A for domain"
    assert not routes["empty"]["permanent"] and routes["empty"]["dns_failure"]
    assert routes["nullmx"]["reply"] == "550 5.4.4 [internal] NULL MX domain does not accept mail"
    assert routes["nullmx"]["permanent"] and routes["nullmx"]["ttl"] == LOCAL_TTL
    nx = routes["nx"]
    assert nx["reply"] == "554 5.4.4 [internal] Domain Lookup Failed" and nx["permanent"]
    assert nx["ttl"] == 300                                   # the negative TTL
    d = routes["dangling"]
    assert d["reply"] == "451 4.4.1 [internal] No valid hosts" and not d["permanent"]
    assert d["dns_failure"] and "gone.dangling.test" in d["detail"]


def test_mxip(routes):
    on = routes["mxip_on"]
    assert on["targets"] == [["10.0.3.1", "10.0.3.1", 25, 10, 900]]
    off = routes["mxip_off"]                                  # a name "10.0.3.1" does not resolve
    assert off["error_code"] == 451 and not off["permanent"]


def test_prohibited_and_skip_hosts(routes):
    for label in ("loop_prohibited", "mixed_prohibited", "literal_prohibited"):
        r = routes[label]
        assert r["reply"] == "551 5.4.6 [internal] Private/Loopback Address", label
        assert r["permanent"], label
    assert ips(routes["mixed_prohibited_drop"]) == ["10.0.1.1"]
    assert ips(routes["mixed_skip"]) == ["10.0.1.1"]
    skip = routes["loop_skip"]
    assert (skip["error_code"], skip["permanent"]) == (451, False)


def test_ip_literals(routes):
    assert routes["literal"]["targets"] == [["10.0.0.5", "10.0.0.5", 2525, 0, 3600]]
    assert routes["literal"]["source"] == "literal"
    bad = routes["literal_bad"]
    assert (bad["error_code"], bad["permanent"]) == (554, True)
    assert ips(routes["routes_literal_mx"]) == ["10.0.0.6"]


def test_gateway(routes):
    assert routes["gw_v6"]["targets"] == [["fe80::a00", "fe80::a00", 1, 0, 3600]]
    assert routes["gw_v6"]["source"] == "gateway"
    assert ips(routes["gw_ip"]) == ["10.0.4.9"]
    mx = routes["gw_mx"]                                      # the gateway's own MX
    assert mx["targets"] == [["relay.smarthost.test", "10.0.4.1", 25, 0, LOCAL_TTL]]
    a = routes["gw_a_port"]                                   # no MX: its A, on its port
    assert a["targets"] == [["plainhost.test", "10.0.4.2", 2525, 0, LOCAL_TTL]]
    nx = routes["gw_nx"]                                      # a config problem: transient
    assert (nx["error_code"], nx["permanent"]) == (451, False) and "nx.test" in nx["detail"]
    bad = routes["gw_bad"]
    assert (bad["error_code"], bad["permanent"]) == (451, False)
    assert bad["detail"].startswith("Gateway:")


def test_routes_lists(routes):
    r = routes["routes_in_order"]                             # strictly in order
    assert [(t[1], t[3]) for t in r["targets"]] == [("10.0.4.2", 0), ("10.0.4.3", 1)]
    assert routes["routes_balanced"]["groups"] == [["10.0.11.7", "10.0.11.8"]]
    first = routes["routes_first_then_mx"]
    assert first["targets"][0][:4] == ["plainhost.test", "10.0.4.2", 25, 1]
    assert [t[3] for t in first["targets"]] == [1, 10, 10, 20]
    backup = routes["routes_mx_then_backup"]
    assert [t[3] for t in backup["targets"]] == [10, 10, 20, 21]
    assert backup["targets"][-1][1] == "10.0.4.3"
    tm = routes["routes_type_mx"]
    assert tm["targets"] == [["relay.smarthost.test", "10.0.4.1", 2526, 5, 77]] and tm["ttl"] == 77
    assert routes["routes_nullmx_only"]["error_code"] == 550
    assert routes["routes_nullmx_only"]["permanent"]
    assert ips(routes["routes_nullmx_backup"]) == ["10.0.4.3"]
    assert (routes["routes_nx"]["error_code"], routes["routes_nx"]["permanent"]) == (451, False)
    assert "only smtp://" in routes["routes_bad"]["detail"]


def test_precedence(routes):
    assert routes["static_wins"]["targets"] == [["10.0.0.99", "10.0.0.99", 2525, 0, 3600]]
    assert routes["static_wins"]["source"] == "static_routes"
    assert ips(routes["gateway_beats_routes"]) == ["10.0.4.9"]


def test_min_dns_ttl_applies_to_routes(dnsmasq):
    r = scenario("routes", port=dnsmasq.port, min_ttl=500,
                 cases=[("mx", "mx.test", {}), ("mxip", "mxip.test", {"mxip": True})])
    assert r["mx"]["ttl"] == 500 and {t[4] for t in r["mx"]["targets"]} == {500}
    assert r["mxip"]["targets"][0][4] == 600                  # mxip's TTL also clamped up


def test_transient_failures_and_partial_resolution():
    r = scenario("stub_routes", cases=[
        ("mxfail", "mxfail.stub", {}),
        ("mxfail_a", "mxfail.stub", {"force_a": True}),
        ("silent", "silent.stub", {}),
        ("partial", "partial.stub", {"fully_resolve": False}),
        ("full", "partial.stub", {}),
    ])
    m = r["mxfail"]
    assert m["reply"] == "454 4.4.4 [internal] no MX or A for domain"
    assert m["mx_failure"] and m["dns_failure"] and not m["permanent"]
    assert r["mxfail_a"]["targets"] == [["mxfail.stub", "10.0.9.9", 25, 0, 60]]
    s = r["silent"]
    assert s["error_code"] == 454 and s["mx_failure"] and "TIMEOUT" in s["detail"]
    p = r["partial"]                 # the pref-20 host answered at once, pref 10 is slow
    assert p["ok"] and not p["complete"] and p["ttl"] == 0
    assert [t[0] for t in p["targets"]] == ["fast.partial.stub"] and p["seconds"] < 0.8
    full = r["full"]
    assert full["complete"] and [t[0] for t in full["targets"]] == ["slow.partial.stub",
                                                                     "fast.partial.stub"]
    assert 0.2 < full["seconds"] < 1.5
    after = r["after_background"]
    assert after["complete"] and len(after["targets"]) == 2
    # the lookup left running by the partial route was shared by the full one
    assert r["queries"].count(["slow.partial.stub", "A"]) == 1


def test_route_cache(dnsmasq):
    r = scenario("router", port=dnsmasq.port)
    assert r["first"]["ok"] and r["cached_same"]
    assert r["queries_after_second"] == r["mx_queries"] == 1
    held = {(name, rtype): refs for refs, name, rtype, _left in r["refs"]}
    assert held[("mx.test", "MX")] == 2 and held[("mxa.mx.test", "A")] == 2
    assert held[("mxb.mx.test", "AAAA")] == 2                 # use_ipv6 for mx.test
    assert r["transient"]["error_code"] == 454
    assert r["permanent"]["error_code"] == 554
    assert r["domains"] == ["mx.test", "nx.test"]             # transient failures not cached
    assert r["refreshed_names"] == ["mx.test"] and r["subscribers"] == ["mx.test", None]
    assert r["mx_refresh_queries"] == 1 and r["refreshed_cached"]   # forgotten, routed again
    assert r["expired"] and r["purged"] >= 1
    assert r["all_names"] == ["nx.test"]      # mx.test had expired and was purged
    # `refresh domain all` routed nx.test again: its permanent failure is cached anew
    assert r["entries"] == [[False, 300]]
    assert r["summary"][0] == "Domain 'mx.test' has 4 MXs and a TTL of 120 seconds"
    assert r["summary"][1] in ("  [10 mxa.mx.test. TTL:120]", "  [10 mxb.mx.test. TTL:120]")


CONFIG = """
remote_smtp_port = 2525
lmtp_port = 2004
use_ipv6 = true
prohibited_hosts = ( "127.0.0.0/8" "0.0.0.0" )
skip_hosts = ( "10.9.0.0/16" )
routes = ( "smtp://10.0.0.1?pref=10" "__mx__" )
fully_resolve_before_smtp = false
only_use_best_mx_for_relay_domains = true
mx_failures_fallback_to_a = 2
domain "gw.example" { gateway = "[fe80::a00]:1" fully_resolve_before_smtp = true }
mxip { ttl = 300 }
static_routes { target = "10.1.1.1:25" enabled = false }
"""


def test_route_options_from_config():
    r = scenario("config_options", config=CONFIG, cases=[
        ("plain", "x.example", {}),
        ("relay", "x.example", {"relay_domain": True, "mx_failures": 2}),
        ("lmtp", "gw.example", {"lmtp": True, "mx_failures": 1}),
    ])
    plain = r["plain"]
    assert plain["port"] == 2525 and plain["gateway"] is None
    assert plain["routes"] == ["smtp://10.0.0.1?pref=10", "__mx__"]
    assert plain["use_ipv6"] and not plain["fully_resolve"] and not plain["only_best_mx"]
    assert plain["prohibited"] == ["127.0.0.0/8", "0.0.0.0"] and plain["skip"] == ["10.9.0.0/16"]
    assert plain["mxip"] and plain["mxip_ttl"] == 300
    assert plain["static_route"] is None                      # the module is disabled
    assert not plain["force_a"]
    relay = r["relay"]
    assert relay["fully_resolve"] and relay["only_best_mx"] and relay["force_a"]
    lmtp = r["lmtp"]
    assert lmtp["port"] == 2004 and lmtp["gateway"] == "[fe80::a00]:1"
    assert lmtp["fully_resolve"] and not lmtp["force_a"]
