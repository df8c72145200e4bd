"""Console commands `dig`, `dns_cache ...` and `refresh domain` through the registry's
dispatch, on a small fake daemon holding a real Resolver (and Router) against dnsmasq."""

from ecmta.tests.dns.conftest import LOCAL_TTL
from ecmta.tests.dns.util import scenario


def run(dnsmasq, lines, **kw):
    r = scenario("console", port=dnsmasq.port, lines=lines, **kw)
    return {line: (ok, text) for line, ok, text in r["out"]}, r


def test_dns_cache_submit_then_lookup(dnsmasq):
    out, _ = run(dnsmasq, [
        "dns_cache lookup console.test A",
        "dns_cache submit console.test A",
        "!sleep 0.3",
        "dns_cache lookup console.test a",
    ])
    assert out["dns_cache lookup console.test A"] == (
        True, "Cached result not found, try a submit.")
    assert out["dns_cache submit console.test A"] == (True, "Submitted")
    ok, text = out["dns_cache lookup console.test a"]
    assert ok
    lines = text.split("\n")
    assert lines[:4] == [";; QUESTION SECTION:", ";console.test\t\tIN\tA", "", ";; ANSWER SECTION:"]
    assert lines[4].startswith("console.test\t\t") and lines[4].endswith("\tIN\tA\t10.0.5.3")
    ttl = int(lines[4].split("\t")[2])
    assert LOCAL_TTL - 2 <= ttl <= LOCAL_TTL
    assert lines[5:] == [""]


def test_dns_cache_x_types_are_the_delivery_view(dnsmasq):
    out, _ = run(dnsmasq, [
        "dns_cache submit mxa.mx.test X",
        "dns_cache submit mx.test MX",
        "dns_cache submit nx.test A",
        "!sleep 0.3",
        "dns_cache lookup mxa.mx.test X",
        "dns_cache lookup mxa.mx.test A",
        "dns_cache lookup mx.test MX",
        "dns_cache lookup nx.test A",
    ], min_ttl=1000)
    ok, x = out["dns_cache lookup mxa.mx.test X"]
    assert ok and "\t1000\tIN\tA\t10.0.1.1" in x           # clamped by min_dns_ttl
    ok, a = out["dns_cache lookup mxa.mx.test A"]
    assert ok and any(f"\t{t}\tIN\tA\t10.0.1.1" in a for t in (LOCAL_TTL, LOCAL_TTL - 1))
    ok, mx = out["dns_cache lookup mx.test MX"]
    assert ";mx.test\t\tIN\tMX" in mx and "\nmx.test\t\t\t120\tIN\tMX\t" in mx
    answers = [line for line in mx.split("\n") if "\tIN\tMX\t" in line]
    assert len(answers) == 4 and not any(line.startswith(";") for line in answers)
    assert "IN\tMX\t10 mxa.mx.test" in mx and "IN\tMX\t30 mxd.mx.test" in mx
    ok, nx = out["dns_cache lookup nx.test A"]
    assert ok and ";; NXDOMAIN [" in nx


def test_dns_cache_stats_layout(dnsmasq):
    out, _ = run(dnsmasq, [
        "dns_cache submit mx.test MX", "dns_cache submit txt.test TXT",
        "dns_cache submit 10.0.1.1 PTR", "dns_cache submit mxa.mx.test A",
        "dns_cache submit mxb.mx.test AAAA", "!sleep 0.3",
        "dns_cache submit mxa.mx.test A", "!sleep 0.1",
        "dns_cache stats",
    ])
    ok, text = out["dns_cache stats"]
    assert ok
    assert text.split("\n") == [
        "DNS Queries:",
        "        TXT: 1",
        "        PTR: 1",
        "         MX: 1",
        "          A: 2",
        "  arpa IPv4: 1",
        "  arpa IPv6: 0",
        "",
        "DNS responses:",
        "      Total: 5",
        "        Bad: 0",
        "",
        "DNS cache:",
        "    Lookups: 6",
        "   Hit Rate: 16.6667%",
    ]


def test_dns_cache_refcnts_layout(dnsmasq):
    _out, r = run(dnsmasq, ["dns_cache refcnts", "dig mx.test", "!sleep 0.3",
                            "dns_cache refcnts", "dns_cache submit coal.test A", "!sleep 0.3",
                            "dns_cache refcnts"], router=True)
    texts = [text for line, _ok, text in r["out"] if line == "dns_cache refcnts"]
    assert texts[0] == ""                        # empty cache
    lines = texts[1].split("\n")
    # the route cache holds what mx.test was built from: 1 (cache) + 1 (route), for the
    # MX answer and the A answers of its four hosts
    assert [line.rsplit(" ", 1)[0] for line in lines[0::2]] == [
        "[  2] mx.test", "[  2] mxa.mx.test", "[  2] mxb.mx.test", "[  2] mxc.mx.test",
        "[  2] mxd.mx.test"]
    assert lines[0].endswith(("[120s]", "[119s]"))
    assert lines[-2].endswith(("[300s]", "[299s]"))     # mxd has no address: negative TTL
    assert all(line == "      (null)" for line in lines[1::2])
    assert "[  1] coal.test [" in texts[2]       # not held by any route


def test_dig_routes_into_the_route_cache(dnsmasq):
    out, r = run(dnsmasq, ["dig mx.test", "!sleep 0.3", "dig", "dig a b"], router=True)
    assert out["dig mx.test"] == (True, "submitted")
    assert r["routes"] == ["mx.test"]
    assert out["dig"] == (False, "usage: dig <domain>")
    assert out["dig a b"][0] is False


def test_dig_without_router_submits_an_mx_query(dnsmasq):
    out, _ = run(dnsmasq, ["dig mx.test", "!sleep 0.3", "dns_cache lookup mx.test MX"])
    assert out["dig mx.test"] == (True, "submitted")
    assert "IN\tMX\t10 mxa.mx.test" in out["dns_cache lookup mx.test MX"][1]


def test_refresh_domain(dnsmasq):
    out, r = run(dnsmasq, [
        "dig mx.test", "dig aonly.test", "!sleep 0.3",
        "refresh domain mx.test", "dns_cache lookup mx.test MX",
        "!sleep 0.3", "dns_cache stats",
        "refresh domain all", "!sleep 0.3",
        "refresh domain",
    ], router=True)
    assert out["refresh domain mx.test"] == (True, "submitted")
    # the DNS answers were dropped at once, then asked for again in the background
    assert out["dns_cache lookup mx.test MX"] == (True, "Cached result not found, try a submit.")
    assert "         MX: 3" in out["dns_cache stats"][1]
    assert out["refresh domain all"] == (True, "submitted")
    assert r["routes"] == ["aonly.test", "mx.test"]
    assert out["refresh domain"] == (False, "usage: refresh domain <domain>|all")


def test_refresh_domain_without_router(dnsmasq):
    out, _ = run(dnsmasq, ["dns_cache submit mx.test MX", "!sleep 0.3",
                           "refresh domain mx.test", "dns_cache lookup mx.test MX", "!sleep 0.3",
                           "dns_cache stats", "refresh domain all", "dns_cache lookup mx.test MX"])
    assert out["refresh domain mx.test"] == (True, "submitted")
    assert "         MX: 2" in out["dns_cache stats"][1]
    assert out["dns_cache lookup mx.test MX"][1] == "Cached result not found, try a submit."


def test_errors(dnsmasq):
    out, r = run(dnsmasq, ["dns_cache", "dns_cache submit x SRV", "dns_cache lookup x",
                           "dns_cache bogus"])
    assert out["dns_cache"][0] is False and out["dns_cache"][1].startswith("usage: dns_cache stats")
    assert out["dns_cache submit x SRV"] == (
        False, "Unknown record type 'SRV'. Use one of A, MX, PTR, X, X_AAAA, TXT, AAAA, CNAME.")
    assert out["dns_cache lookup x"][0] is False
    assert out["dns_cache bogus"][0] is False
    assert r["nodns"] == [False, "The DNS resolver is not running."]
