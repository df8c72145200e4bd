"""The pure parts of DNS and routing: nameserver and resolv.conf syntax, address literals,
Gateway / Routes / static_routes items, CIDR lists, MX ordering, target choice, failure
escalation, host filters and the dig-style answer lines. No DNS, no gevent hub."""

import ipaddress

import pytest

from ecmta.transports import dns as D
from ecmta.transports import routing as R
from ecmta.transports.routing import RouteOptions, RouteResult, Target


# -- nameservers and resolv.conf ---------------------------------------------------------------

@pytest.mark.parametrize("text,expect", [
    ("1.2.3.4", ("1.2.3.4", 53)),
    ("127.0.0.1#5353", ("127.0.0.1", 5353)),
    ("127.0.0.1:5353", ("127.0.0.1", 5353)),
    ("::1", ("::1", 53)),
    ("::1#5353", ("::1", 5353)),
    ("[::1]:5353", ("::1", 5353)),
    ("[2001:db8::1]", ("2001:db8::1", 53)),
])
def test_parse_nameserver_forms(text, expect):
    assert D.parse_nameserver(text) == expect


@pytest.mark.parametrize("text", ["example.com", "1.2.3.4#0", "1.2.3.4:99999", "[::1]x"])
def test_parse_nameserver_rejects(text):
    with pytest.raises(ValueError):
        D.parse_nameserver(text)


def test_parse_resolv_conf_all_forms():
    conf = D.parse_resolv_conf(
        "# comment\n; other comment\nnameserver 10.0.0.1\nnameserver 127.0.0.1#5353\n"
        "nameserver bogus\nnameserver [::1]:54\nsearch a.example b.example\n"
        "options ndots:2 retrans:3 retry:4\nlookup fb\nsortlist 1.2.3.4/255.255.252.0\n")
    assert conf.nameservers == [("10.0.0.1", 53), ("127.0.0.1", 5353), ("::1", 54)]
    assert conf.search == ["a.example", "b.example"]
    assert (conf.timeout, conf.attempts, conf.ndots, conf.lookup) == (3.0, 4, 2, "fb")
    conf = D.parse_resolv_conf("options timeout:7 attempts:1\n")
    assert (conf.timeout, conf.attempts, conf.nameservers) == (7.0, 1, [])


def test_read_resolv_conf_missing_explicit_file_raises(tmp_path):
    with pytest.raises(OSError):
        D.read_resolv_conf(str(tmp_path / "nope.conf"))


def test_empty_resolv_conf_means_localhost(tmp_path):
    path = tmp_path / "r.conf"
    path.write_text("search example.org\n")
    assert D.read_resolv_conf(str(path)).nameservers == [("127.0.0.1", 53)]


def test_resolver_explicit_settings_without_network():
    r = D.Resolver(nameservers=["127.0.0.1#5300", ("::1", 5301)], timeout=2, attempts=3,
                   use_tcp_fallback=True, min_ttl=60, max_ttl=600)
    assert r.nameservers == [("127.0.0.1", 5300), ("::1", 5301)]
    assert r.lifetime == 2 * 2 * 3 * 2
    assert [r.clamp(t) for t in (0, 59, 300, 601, 10**10)] == [60, 60, 300, 600, 600]
    with pytest.raises(ValueError):
        r.lookup("example.com", "SRV")


# -- dig-style lines ----------------------------------------------------------------------------

def test_answer_lines_match_the_dns_cache_page_columns():
    res = D.DnsResult("mail.yahoo.com", "A", D.NOERROR, ("209.73.177.115",), 299,
                      (("mail.yahoo.com", "A", "209.73.177.115"),))
    lines = D.answer_lines(res)
    assert lines == [";; QUESTION SECTION:", ";mail.yahoo.com\t\tIN\tA", "",
                     ";; ANSWER SECTION:", "mail.yahoo.com\t\t299\tIN\tA\t209.73.177.115", ""]
    # rendered with 8-column tabs this is the page's text
    assert lines[1].expandtabs() == ";mail.yahoo.com         IN      A"
    assert lines[4].expandtabs() == "mail.yahoo.com          299     IN      A       209.73.177.115"


def test_answer_lines_long_names_and_negative_entries():
    assert D.rr_line("a-very-long-host-name.example.com", 5, "A", "1.2.3.4") == \
        "a-very-long-host-name.example.com\t5\tIN\tA\t1.2.3.4"
    neg = D.DnsResult("nx.example", "A", D.NXDOMAIN, ttl=30)
    assert D.answer_lines(neg)[-2:] == [";; NXDOMAIN [30s]", ""]


# -- address literals, Gateway, Routes, static_routes -----------------------------------------

@pytest.mark.parametrize("domain,expect", [
    ("example.com", None),
    ("[192.0.2.1]", "192.0.2.1"),
    ("[IPv6:2001:db8::1]", "2001:db8::1"),
    ("[ipv6:2001:DB8:0::1]", "2001:db8::1"),
])
def test_parse_ip_literal(domain, expect):
    assert R.parse_ip_literal(domain) == expect


@pytest.mark.parametrize("domain", ["[bad]", "[192.0.2.1", "[2001:db8::1]", "[IPv6:1.2.3.4]"])
def test_parse_ip_literal_malformed(domain):
    with pytest.raises(ValueError):
        R.parse_ip_literal(domain)


@pytest.mark.parametrize("text,expect", [
    ("10.0.0.1", (None, "10.0.0.1", None)),
    ("10.0.0.1:2525", (None, "10.0.0.1", 2525)),
    ("[fe80::a00]:1", (None, "fe80::a00", 1)),
    ("[fe80::a00]", (None, "fe80::a00", None)),
    ("fe80::a00", (None, "fe80::a00", None)),
    ("my.local.smart.host", ("my.local.smart.host", None, None)),
    ("Smart.Host.:587", ("smart.host", None, 587)),
])
def test_parse_hostport(text, expect):
    hp = R.parse_hostport(text)
    assert (hp.host, hp.ip, hp.port) == expect


@pytest.mark.parametrize("text", ["", "host:0", "host:x", "[fe80::1]x", "[nothost]:25",
                                  "fe80::a00:25:1:2:3:4:5:6"])
def test_parse_hostport_rejects(text):
    with pytest.raises(ValueError):
        R.parse_hostport(text)


def test_parse_route_items():
    assert R.parse_route("__MX__") == R.RouteItem("mx")
    assert R.parse_route("my.host") == R.RouteItem("host", "my.host")
    assert R.parse_route("10.0.0.1") == R.RouteItem("ip", None, "10.0.0.1")
    assert R.parse_route("smtp://1.2.3.4?pref=10&ttl=300&type=mx") == \
        R.RouteItem("ip", None, "1.2.3.4", None, 10, 300, "mx")
    assert R.parse_route("smtp://relay.example?pref=1&port=2525") == \
        R.RouteItem("host", "relay.example", None, 2525, 1, None, "a")
    assert R.parse_route("smtp://[2001:db8::5]:26?type=a") == \
        R.RouteItem("ip", None, "2001:db8::5", 26, None, None, "a")


@pytest.mark.parametrize("text,msg", [
    ("apn://gateway.push.apple.com?port=2195", "only smtp://"),
    ("smtp://1.2.3.4?pref=high", "pref must be a number"),
    ("smtp://1.2.3.4?type=srv", "type must be mx or a"),
    ("smtp://1.2.3.4?port=70000", "bad port"),
    ("smtp://1.2.3.4?port=0", "bad port"),
])
def test_parse_route_rejects(text, msg):
    with pytest.raises(ValueError, match=msg):
        R.parse_route(text)


def test_networks_and_membership():
    nets = R.parse_networks(("127.0.0.0/8", "0.0.0.0", "fe80::a00:1", "[::1]"))
    assert R.address_in("127.0.0.5", nets)
    assert R.address_in("0.0.0.0", nets)
    assert R.address_in("fe80::a00:1", nets) and R.address_in("::1", nets)
    assert R.address_in("::ffff:127.0.0.1", nets)       # IPv4-mapped loopback
    assert not R.address_in("10.0.0.1", nets)
    assert not R.address_in("fe80::a00:2", nets)
    with pytest.raises(ValueError, match="'loopback' is not an IP address"):
        R.parse_networks(("loopback",))


# -- MX ordering and choice --------------------------------------------------------------------

def test_null_mx_detection():
    assert R.is_null_mx([(0, ".")])
    assert R.is_null_mx([(10, ".")])           # RFC 7505 says 0; the root is what matters
    assert not R.is_null_mx([(0, "."), (10, "mx.example")])
    assert not R.is_null_mx([])


def test_order_mx_sorts_stably_and_drops_root_and_repeats():
    recs = [(20, "c.example"), (10, "B.example."), (10, "a.example"), (5, "."),
            (30, "b.example")]
    assert R.order_mx(recs) == [(10, "b.example"), (10, "a.example"), (20, "c.example")]
    assert R.order_mx(recs, only_best=True) == [(10, "b.example"), (10, "a.example")]


def _t(ip, pref, host="h"):
    return Target(host, ip, 25, pref, 60)


def test_groups_are_tiers_of_equal_preference():
    res = RouteResult((_t("1.1.1.1", 10), _t("1.1.1.2", 10), _t("1.1.1.3", 20)))
    assert [[t.ip for t in g] for g in res.groups] == [["1.1.1.1", "1.1.1.2"], ["1.1.1.3"]]


def test_choose_target_fills_equal_tier_evenly_and_never_skips_a_free_better_tier():
    res = RouteResult((_t("a", 10), _t("b", 10), _t("c", 20)))
    conns = {}
    picks = []
    for _ in range(5):
        t = R.choose_target(res.groups, conns, limit=2)
        if t is None:
            break
        picks.append(t.ip)
        conns[t.ip] = conns.get(t.ip, 0) + 1
    # a and b alternate until both hit their limit of 2, only then c
    assert picks == ["a", "b", "a", "b", "c"]
    assert R.choose_target(res.groups, {"a": 2, "b": 2, "c": 2}, limit=2) is None
    # an unreachable better MX is passed over; per-target limits; -1 = unlimited
    assert R.choose_target(res.groups, {}, 2, reachable=lambda t: t.ip != "a").ip == "b"
    assert R.choose_target(res.groups, {"a": 1}, limit=lambda t: 1 if t.ip == "a" else 5).ip == "b"
    assert R.choose_target(res.groups, {"a": 10**6, "b": 10**6}, limit=-1).ip == "a"


def test_fallback_to_a_and_escalation():
    assert not R.fallback_to_a(0, 3) and not R.fallback_to_a(2, 3)
    assert R.fallback_to_a(3, 3) and R.fallback_to_a(1, 0)
    transient = R.failure(R.NO_MX_OR_A, dns_failure=True)
    assert R.escalate(transient, 9, 10) is transient
    final = R.escalate(transient, 10, 10)
    assert (final.error_code, final.error_text, final.permanent) == (
        554, "5.4.4 [internal] Domain Lookup Failed", True)
    not_dns = R.failure(R.NO_VALID_HOSTS)
    assert R.escalate(not_dns, 50, 10) is not_dns
    assert R.escalate(transient, 50, 0) is transient        # 0: never purge


def test_reply_and_routing_domain():
    res = R.failure(R.NULL_MX, permanent=True)
    assert str(res.reply) == "550 5.4.4 [internal] NULL MX domain does not accept mail"
    assert R.RouteResult().reply is None
    assert R.routing_domain("example.com", None) == "example.com"
    assert R.routing_domain("example.com", "Smart.Host:25") == "smart.host"
    assert R.routing_domain("example.com", "[fe80::a00]:1") == "fe80::a00"


# -- prohibited_hosts / skip_hosts --------------------------------------------------------------

def _routed(*ips):
    return RouteResult(tuple(_t(ip, i) for i, ip in enumerate(ips)), ttl=60, source="mx")


def test_prohibited_host_fails_the_domain_by_default():
    res = R.apply_host_filters(_routed("10.0.0.1", "127.0.0.1"),
                               RouteOptions(prohibited=("127.0.0.0/8", "0.0.0.0")))
    assert (res.error_code, res.error_text, res.permanent) == (
        551, "5.4.6 [internal] Private/Loopback Address", True)


def test_prohibited_host_dropped_when_domain_denial_is_off():
    opts = RouteOptions(prohibited=("127.0.0.0/8",), prohibited_fails_domain=False)
    res = R.apply_host_filters(_routed("10.0.0.1", "127.0.0.1"), opts)
    assert [t.ip for t in res.targets] == ["10.0.0.1"]
    res = R.apply_host_filters(_routed("127.0.0.1"), opts)
    assert res.error_code == 551 and res.permanent


def test_skip_hosts_drop_only_those_addresses():
    opts = RouteOptions(skip=("10.0.0.0/24",))
    res = R.apply_host_filters(_routed("10.0.0.1", "10.0.1.1"), opts)
    assert [t.ip for t in res.targets] == ["10.0.1.1"]
    res = R.apply_host_filters(_routed("10.0.0.1"), opts)
    assert (res.error_code, res.permanent) == (451, False)
    assert res.detail == "every host is in skip_hosts"


def test_bad_host_list_holds_mail_instead_of_raising():
    res = R.apply_host_filters(_routed("10.0.0.1"), RouteOptions(skip=("ten.zero",)))
    assert (res.error_code, res.permanent) == (451, False)
    assert "'ten.zero' is not an IP address" in res.detail


def test_filters_leave_failures_alone():
    fail = R.failure(R.NULL_MX, permanent=True)
    assert R.apply_host_filters(fail, RouteOptions(prohibited=("0.0.0.0/0",))) is fail


def test_static_route_needs_an_address():
    res = R.route(None, "example.com", RouteOptions(static_route="[2001:db8::7]:2525"))
    assert [(t.ip, t.port) for t in res.targets] == [("2001:db8::7", 2525)]
    assert res.source == "static_routes" and res.ttl == R.STATIC_TTL
    res = R.route(None, "example.com", RouteOptions(static_route="relay.example:25"))
    assert res.error_code == 451 and "must be an IP address" in res.detail
    # IP literal domains need no DNS either
    res = R.route(None, "[IPv6:2001:db8::9]", RouteOptions(port=2003))
    assert [(t.host, t.ip, t.port) for t in res.targets] == [("2001:db8::9", "2001:db8::9", 2003)]
    res = R.route(None, "[999.1.1.1]", RouteOptions())
    assert (res.error_code, res.permanent) == (554, True)


def test_ipaddress_versions_are_not_mixed():
    nets = R.parse_networks(("::/0",))
    assert not R.address_in("10.0.0.1", nets)
    assert isinstance(nets[0], ipaddress.IPv6Network)
