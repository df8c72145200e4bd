"""The resolver against real DNS servers (dnsmasq; a tiny UDP server for SERVFAIL, silence
and SOA-carrying NXDOMAIN), each run in a gevent-patched subprocess."""

from ecmta.tests.dns.conftest import AUTH_TTL, BIG_TXT, LOCAL_TTL
from ecmta.tests.dns.util import scenario

QUERIES = [["mx.test", "MX"], ["mxb.mx.test", "A"], ["mxb.mx.test", "AAAA"],
           ["txt.test", "TXT"], ["10.0.1.1", "PTR"], ["alias.test", "A"],
           ["nx.test", "A"], ["aonly.test", "MX"], ["nullmx.test", "MX"], ["bad..name", "A"]]


def test_lookup_shapes(dnsmasq):
    r = scenario("lookups", port=dnsmasq.port, queries=QUERIES)
    mx = r["mx.test MX"]
    assert mx["status"] == "NOERROR" and mx["ttl"] == LOCAL_TTL and not mx["cached"]
    # best first; equal preferences keep the server's order
    assert [p for p, _h in mx["records"]] == [10, 10, 20, 30]
    assert {h for _p, h in mx["records"][:2]} == {"mxa.mx.test", "mxb.mx.test"}
    assert [h for _p, h in mx["records"][2:]] == ["mxc.mx.test", "mxd.mx.test"]
    assert r["mxb.mx.test A"]["records"] == ["10.0.1.2"]
    assert r["mxb.mx.test AAAA"]["records"] == ["2001:db8::12"]
    assert sorted(r["txt.test TXT"]["records"]) == ["first", "second"]
    ptr = r["10.0.1.1 PTR"]
    assert ptr["name"] == "1.1.0.10.in-addr.arpa" and ptr["records"] == ["mxa.mx.test"]
    alias = r["alias.test A"]
    assert alias["records"] == ["10.0.1.1"]
    assert alias["rrs"] == [["alias.test", "CNAME", "mxa.mx.test"],
                            ["mxa.mx.test", "A", "10.0.1.1"]]
    assert r["nx.test A"]["status"] == "NXDOMAIN"
    assert r["aonly.test MX"]["status"] == "NODATA"
    assert r["nullmx.test MX"]["records"] == [[0, "."]]
    assert r["bad..name A"]["status"] == "BADNAME"
    assert r["again"]["cached"] and r["again"]["records"] == mx["records"]
    s = r["stats"]
    assert (s["MX"], s["TXT"], s["PTR"], s["arpa IPv4"]) == (3, 1, 1, 1)
    assert s["A"] == 4                       # A and AAAA queries together, as Momentum counts
    assert s["lookups"] == len(QUERIES) + 1 and s["hit_rate"] > 0


def test_min_dns_ttl_raises_only_the_delivery_view(dnsmasq):
    r = scenario("ttl_clamp", port=dnsmasq.port, min_ttl=300, max_ttl=4294967295, advance=150)
    assert r["first_raw"]["ttl"] == LOCAL_TTL
    assert r["first_delivery"]["ttl"] == 300 and r["first_delivery"]["cached"]
    # 150 s later: the server's 120 s is over (plain lookups ask again), the clamped 300 s
    # is not (delivery lookups still use the cache: min_dns_ttl saves queries)
    assert r["queries"] == [1, 2, 2]
    assert r["raw"]["ttl"] == LOCAL_TTL and not r["raw"]["cached"]
    assert r["delivery"]["cached"]


def test_max_dns_ttl_lowers_only_the_delivery_view(dnsmasq):
    r = scenario("ttl_clamp", port=dnsmasq.port, min_ttl=0, max_ttl=30, advance=31)
    assert (r["first_raw"]["ttl"], r["first_delivery"]["ttl"]) == (LOCAL_TTL, 30)
    # 31 s later the delivery view must ask again; the plain view still has 89 s
    assert r["queries"] == [1, 1, 2]
    assert r["raw"]["cached"] and r["raw"]["ttl"] == LOCAL_TTL - 31
    assert not r["delivery"]["cached"] and r["delivery"]["ttl"] == 30


def test_negative_answers_cached_for_the_soa_minimum(dnsmasq_auth):
    qs = [["nope.auth.test", "A"], ["h.auth.test", "AAAA"], ["h.auth.test", "MX"]]
    r = scenario("negative", port=dnsmasq_auth.port, queries=qs, advance=AUTH_TTL + 1)
    assert r["nope.auth.test A"]["first"]["status"] == "NXDOMAIN"
    assert r["h.auth.test AAAA"]["first"]["status"] == "NODATA"
    for q in ("nope.auth.test A", "h.auth.test AAAA", "h.auth.test MX"):
        assert r[q]["first"]["ttl"] == AUTH_TTL
        assert r[q]["delivery"]["cached"]
    assert r["queries_after_repeat"] == 3               # the repeats came from the cache
    assert r["queries_after_advance"] == 6              # expired after the SOA minimum
    # min(SOA TTL 100, SOA minimum 45)
    assert r["soa"]["status"] == "NXDOMAIN" and r["soa"]["ttl"] == 45


def test_negative_ttl_is_clamped_and_defaults_without_soa(dnsmasq, dnsmasq_auth):
    r = scenario("negative", port=dnsmasq_auth.port, queries=[["nope.auth.test", "A"]],
                 max_ttl=10, advance=11)
    assert r["nope.auth.test A"]["first"]["ttl"] == AUTH_TTL
    assert r["nope.auth.test A"]["delivery"]["ttl"] == 10
    assert r["queries_after_advance"] == 2
    r = scenario("negative", port=dnsmasq.port, queries=[["nx.test", "A"]])
    assert r["nx.test A"]["first"]["ttl"] == 300        # no SOA: dnspython's 300 s


def test_servfail_timeout_and_cooperative_waits(dnsmasq):
    r = scenario("failures", port=dnsmasq.port)
    sf = r["servfail"]
    assert [x["status"] for x in sf] == ["SERVFAIL", "SERVFAIL"]
    assert "SERVFAIL" in sf[0]["detail"]
    assert r["servfail_asked"] == 2                      # never cached
    assert r["stats"]["bad"] == 2
    assert r["timeout"]["status"] == "TIMEOUT"
    assert r["lifetime"] == 0.6
    assert 0.5 < r["timeout_seconds"] < 1.5               # 2 attempts x 0.3 s
    assert r["many_status"] == ["TIMEOUT"] and r["many_seconds"] < 2.0
    assert r["ticks_during_lookup"] == 8                  # the hub ran other greenlets
    assert r["second_server"]["status"] == "NOERROR"      # fell through to the next server


def test_coalescing_one_query_for_100_greenlets(dnsmasq):
    before = dnsmasq.log_count("query[A] coal.test ")
    r = scenario("coalesce", port=dnsmasq.port)
    assert r["done"] == 100 and r["answers"] == [["10.0.5.1"]]
    assert r["queries"] == 1
    assert r["stats"]["lookups"] == 100 and r["stats"]["hit_rate"] == 99.0
    assert dnsmasq.log_count("query[A] coal.test ", expect=before + 1) == before + 1
    # all 100 in flight at once against a server that answers after 1 s
    assert r["slow_done"] == 100 and r["slow_statuses"] == ["NOERROR"]
    assert r["slow_asked"] == 1 and r["pending_during"] == 1 and r["pending_after"] == 0
    assert r["slow_seconds"] < 2.5
    assert r["slow_stats"]["A"] == 1 and r["slow_stats"]["hit_rate"] == 99.0


def test_killed_first_asker_does_not_strand_the_others(dnsmasq):
    r = scenario("killed_leader", port=dnsmasq.port)
    assert r["statuses"] == ["NOERROR"] * 5
    assert r["asked"] == 2 and r["pending"] == 0


def test_truncated_answers_and_tcp_fallback(dnsmasq):
    before = dnsmasq.log_count("query[TXT] big.test ")
    r = scenario("tcp_fallback", port=dnsmasq.port)
    # dns_fallback_to_tcp = false: the records that fit in 512 bytes
    assert r["False"]["status"] == "NOERROR" and 0 < len(r["False"]["records"]) < BIG_TXT
    assert len(r["True"]["records"]) == BIG_TXT            # retried over TCP
    assert len(r["edns"]["records"]) > len(r["False"]["records"])
    # UDP, UDP + TCP, EDNS UDP
    assert dnsmasq.log_count("query[TXT] big.test ", expect=before + 4) == before + 4


def test_purge_drops_stale_unheld_entries(dnsmasq):
    r = scenario("purge", port=dnsmasq.port)
    assert r["before"] == 3
    assert r["early"] == 0                     # stale for delivery, still fresh for plain use
    assert r["removed"] == 2 and r["left"] == ["mxb.mx.test"]    # held by a route
    assert r["refs"] == [[2, "mxb.mx.test", "A", 0]]
    assert r["removed_after_release"] == 1
    assert r["live_kept"] == 1 and r["live_after"] == 0


def test_resolv_conf_with_ports_and_config_options(dnsmasq, tmp_path):
    r = scenario("resolv_conf", port=dnsmasq.port)
    for form in ("hash", "colon"):
        assert r[form] == {"status": "NOERROR", "nameservers": [["127.0.0.1", dnsmasq.port]],
                           "timeout": 2.0, "attempts": 1}
    fc = r["from_config"]
    assert (fc["min"], fc["max"], fc["purge"], fc["tcp"]) == (200, 600, 7.0, True)
    assert fc["ttl"] == 200 and fc["nameservers"] == [["127.0.0.1", dnsmasq.port]]
    assert r["applied"] == {"min": 0, "max": 50, "tcp": False, "purge": 60.0}
    assert r["missing"] == "FileNotFoundError"


def test_summary_counters(dnsmasq):
    r = scenario("summary", port=dnsmasq.port)
    first = r["first"]
    assert (first["a_queries"], first["mx_queries"], first["pending"]) == (2, 1, 0)
    assert first["query_rate"] > 0
    assert r["pending"] == 1
    assert (r["after_reset"]["a_queries"], r["after_reset"]["mx_queries"]) == (0, 0)
