"""The audit series store (policy/audit_series.py) without Lua: windows computed from the
clock, keys of each series type, count over windows and CIDR masks, remove_item, define's
checks, replicate, snapshots and the persisted form. The clock is a variable the tests move."""

import json
import os

import pytest

from ecmta.policy import audit_series as A
from ecmta.policy.audit_series import AuditSeriesError, Store

T0 = 1_700_000_400          # a multiple of 60 and of 300: bucket boundaries are easy to see


class Clock:
    def __init__(self, t=T0):
        self.t = float(t)

    def __call__(self):
        return self.t


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(clock):
    return Store(clock=clock)


def nopeer():
    return None


# -- windows ---------------------------------------------------------------------------------
def test_window_zero_is_the_current_interval_and_older_ones_shift(store, clock):
    store.define("s", "string", 60, 3)
    store.add("s", "k", 1)
    clock.t += 59                      # same bucket
    store.add("s", "k", 2)
    assert store.count("s", "k") == 3
    clock.t += 1                       # next bucket: window 0 empty, window 1 holds 3
    assert store.count("s", "k") == 0
    assert store.count("s", "k", 1, 1) == 3
    store.add("s", "k", 10)
    assert (store.count("s", "k", 0, 0), store.count("s", "k", 0, 1)) == (10, 13)
    clock.t += 60
    assert [store.count("s", "k", w, w) for w in range(3)] == [0, 10, 3]
    assert store.count("s", "k", 0, 2) == 13
    clock.t += 60                      # the first bucket left the 3 windows
    assert [store.count("s", "k", w, w) for w in range(3)] == [0, 0, 10]
    clock.t += 60
    assert store.count("s", "k", 0, 2) == 0


def test_window_range_is_clipped_and_may_be_given_backwards(store, clock):
    store.define("s", "string", 10, 2)
    store.add("s", "k", 4)
    clock.t += 10
    store.add("s", "k", 1)
    assert store.count("s", "k", 1, 0) == 5
    assert store.count("s", "k", 0, 99) == 5
    assert store.count("s", "k", 5, 9) == 0
    assert store.count("s", "k", -3, 0) == 1


def test_buckets_follow_the_wall_clock_not_the_definition_time(store, clock):
    clock.t = T0 + 50
    store.define("s", "string", 60, 2)
    store.add("s", "k")
    clock.t = T0 + 61                  # 11 seconds later, but a new minute
    assert (store.count("s", "k"), store.count("s", "k", 1, 1)) == (0, 1)


def test_counts_any_number_and_forget_keys_back_at_zero(store, clock):
    s = store.define("s", "string", 60, 1)
    store.add("s", "k", 2.5)
    store.add("s", "k", -1)
    assert store.count("s", "k") == 1.5
    store.add("s", "k", -1.5)
    assert store.count("s", "k") == 0 and s.totals(clock()) == {}
    store.add("s", "n", -4)
    assert store.count("s", "n") == -4


# -- keys --------------------------------------------------------------------------------------
def test_cidr_keys_masks_and_default_peer(store):
    store.define("ips", "cidr", 60, 1)
    peer = lambda: "192.0.2.7"          # noqa: E731  (the running session's address)
    store.add("ips", None, 1, peer)
    store.add("ips", "accept_construct", 1, peer)
    store.add("ips", "192.0.2.200", 5)
    store.add("ips", "192.0.3.1", 7)
    store.add("ips", "::ffff:192.0.2.7", 1)            # IPv4-mapped: the same address
    assert store.count("ips", None, peer=peer) == 3
    assert store.count("ips", "192.0.2.7") == 3
    assert store.count("ips", "192.0.2.0/24") == 8
    assert store.count("ips", "/24", peer=peer) == 8
    assert store.count("ips", "192.0.0.0/16") == 15
    assert store.count("ips", "0.0.0.0/0") == 15
    assert store.count("ips", "192.0.2.7/32") == 3
    assert store.count("ips", "[192.0.2.200]") == 5


def test_cidr_ipv6_series(store):
    store.define("v6", "cidr_ipv6", 60, 1)
    store.add("v6", "2001:db8::1", 2)
    store.add("v6", "[2001:db8::2]", 3)
    store.add("v6", "2001:db8:1::1", 4)
    assert store.count("v6", "2001:db8::1") == 2
    assert store.count("v6", "2001:db8::/48") == 5
    assert store.count("v6", "2001:db8::/32") == 9
    assert store.count("v6", "/64", peer=lambda: "2001:db8::99") == 5


def test_an_address_of_the_other_family_is_not_counted(store):
    store.define("v4", "cidr", 60, 1)
    store.define("v6", "cidr_ipv6", 60, 1)
    store.add("v4", "2001:db8::1", 3)
    store.add("v6", "192.0.2.1", 3)
    store.add("v4", None, 1, lambda: "2001:db8::5")
    assert store.series()[0].buckets == {} and store.series()[1].buckets == {}
    assert store.count("v4", "2001:db8::1") == 0 and store.count("v6", "192.0.2.1") == 0


def test_key_errors_name_the_function(store):
    store.define("ips", "cidr", 60, 1)
    store.define("words", "string", 60, 1)
    with pytest.raises(AuditSeriesError, match=r"^msys.audit_series.add: a key is required "
                                               r"for string series 'words'$"):
        store.add("words", None)
    with pytest.raises(AuditSeriesError, match="msys.audit_series.count: a key is required"):
        store.count("words", None)
    with pytest.raises(AuditSeriesError, match="remove_item: a key is required"):
        store.remove_item("words", None)
    with pytest.raises(AuditSeriesError, match=r"add: 'nope' is not an IP address \(series "
                                               r"'ips' is of type cidr\)"):
        store.add("ips", "nope")
    with pytest.raises(AuditSeriesError, match="not an IP address"):
        store.add("ips", "192.0.2.0/24")                # add takes an address, not a block
    with pytest.raises(AuditSeriesError, match=r"count: bad mask '/33' \(0 to 32\)"):
        store.count("ips", "192.0.2.1/33")
    with pytest.raises(AuditSeriesError, match="add: no key given and no connected peer"):
        store.add("ips", None, 1, nopeer)
    with pytest.raises(AuditSeriesError, match=r"count: no series named 'x' \(define it"):
        store.count("x", "k")


def test_string_keys_are_exact(store):
    store.define("words", "string", 60, 1)
    store.add("words", "Alice")
    store.add("words", "accept_construct")              # only a cidr series reads it as the peer
    assert store.count("words", "Alice") == 1 and store.count("words", "alice") == 0
    assert store.count("words", "accept_construct") == 1


# -- remove_item -------------------------------------------------------------------------------
def test_remove_item_drops_a_key_from_every_window(store, clock):
    store.define("ips", "cidr", 60, 3)
    store.add("ips", "10.0.0.1", 2)
    store.add("ips", "10.0.0.2", 3)
    clock.t += 60
    store.add("ips", "10.0.0.1", 4)
    store.remove_item("ips", "10.0.0.1")
    assert store.count("ips", "10.0.0.1", 0, 2) == 0
    assert store.count("ips", "10.0.0.0/24", 0, 2) == 3
    store.remove_item("ips", None, lambda: "10.0.0.2")
    assert store.count("ips", "10.0.0.0/8", 0, 2) == 0


def test_remove_item_of_a_block_and_of_a_string(store):
    store.define("ips", "cidr", 60, 1)
    for ip in ("10.1.0.1", "10.1.0.2", "10.2.0.1"):
        store.add("ips", ip)
    store.remove_item("ips", "10.1.0.0/16")
    assert (store.count("ips", "10.0.0.0/8"), store.count("ips", "10.2.0.1")) == (1, 1)
    store.define("w", "string", 60, 1)
    store.add("w", "a")
    store.add("w", "b")
    store.remove_item("w", "a")
    store.remove_item("w", "never-added")
    assert (store.count("w", "a"), store.count("w", "b")) == (0, 1)


# -- define ------------------------------------------------------------------------------------
def test_define_again_keeps_counts_unless_the_shape_changes(store):
    store.define("s", "string", 60, 3)
    store.add("s", "k", 5)
    store.define("s", "string", 60, 3, persist=True)    # another runtime's init(), a reload
    assert store.count("s", "k") == 5 and store.get("s", "x").persist
    store.define("s", "string", 60, 4)
    assert store.count("s", "k") == 0


@pytest.mark.parametrize("args, message", [
    (("s", "ipv4", 60, 1), "unknown type 'ipv4' (cidr, cidr_ipv6 or string)"),
    (("s", "cidr", 0, 1), "interval must be a whole number of at least 1, not 0"),
    (("s", "cidr", 1.5, 1), "interval must be a whole number of at least 1, not 1.5"),
    (("s", "cidr", 60, 0), "num_windows must be a whole number of at least 1, not 0"),
    (("s", "cidr", "x", 1), "interval must be a number"),
    (("", "cidr", 60, 1), "the series name must not be empty"),
])
def test_define_checks(store, args, message):
    with pytest.raises(AuditSeriesError, match="^msys.audit_series.define: " + message.replace("(", r"\(").replace(")", r"\)")):
        store.define(*args)


def test_replicate_cluster_never_increments_manager_stays_local(store):
    store.define("c", "string", 60, 1, replicate="cluster")
    store.define("m", "string", 60, 1, replicate="MANAGER")
    store.add("c", "k", 3)
    store.add("m", "k", 3)
    assert (store.count("c", "k"), store.count("m", "k")) == (0, 3)
    with pytest.raises(AuditSeriesError, match="replicate must be none, cluster or manager, not 'all'"):
        store.define("x", "string", 60, 1, replicate="all")


# -- snapshots ---------------------------------------------------------------------------------
def test_snapshot_with_reset_starts_a_new_period(store, clock):
    store.define("ips", "cidr", 60, 5)
    store.add("ips", "10.0.0.2", 2)
    store.add("ips", "9.0.0.1", 1)
    clock.t += 61
    store.add("ips", "10.0.0.2", 1)
    series, totals, start, end = store.snapshot("ips", reset=True)
    assert (start, end) == (T0, T0 + 61)
    text = A.render_snapshot(series, totals, start, end)
    assert text == ("# audit_series ips type=cidr interval=60 windows=5 "
                    "start=2023-11-14T22:20:00.000Z end=2023-11-14T22:21:01.000Z\n"
                    "9.0.0.1\t1\n10.0.0.2\t3\n")           # numeric order of addresses
    assert store.count("ips", "10.0.0.2", 0, 4) == 0
    clock.t += 1.5
    assert store.snapshot("ips", reset=False)[2:] == (T0 + 61, T0 + 62.5)


def test_snapshot_without_reset_starts_at_the_oldest_window(store, clock):
    store.define("s", "string", 60, 2)
    clock.t += 600
    store.add("s", "a\tb\\c", 0.5)
    series, totals, start, end = store.snapshot("s", reset=False)
    assert start == T0 + 540          # the bucket before the current one
    assert A.render_snapshot(series, totals, start, end).splitlines()[1] == "a\\tb\\\\c\t0.5"
    assert store.count("s", "a\tb\\c") == 0.5


def test_file_stems():
    assert A.file_stem("myseries") == "myseries"
    assert A.file_stem("a/b c") == "a%2Fb%20c"
    assert (A.file_stem("."), A.file_stem("..")) == ("%2E", "%2E%2E")


# -- persistence -------------------------------------------------------------------------------
def test_persisted_state_round_trips_and_lands_in_its_windows(tmp_path, clock):
    old = Store(clock=clock)
    old.define("ips", "cidr", 60, 3, persist=True)
    old.define("v6", "cidr_ipv6", 60, 3, persist=True)
    old.define("skip", "string", 60, 3)
    old.add("ips", "10.0.0.1", 2)
    old.add("v6", "2001:db8::1", 1)
    old.add("skip", "k")
    clock.t += 60
    old.add("ips", "10.0.0.1", 3)
    written = A.save_persisted(str(tmp_path), old.persist_payloads())
    assert sorted(os.path.basename(p) for p in written) == ["ips.json", "v6.json"]
    assert sorted(os.listdir(tmp_path)) == ["ips.json", "v6.json"]      # no temporary file left

    clock.t += 60                      # a restart a minute later
    new = Store(clock=clock)
    payloads, problems = A.load_persisted(str(tmp_path))
    assert problems == [] and sorted(payloads) == ["ips", "v6"]
    new.stage(payloads)
    new.define("ips", "cidr", 60, 3, persist=True)
    assert [new.count("ips", "10.0.0.1", w, w) for w in range(3)] == [0, 3, 2]
    new.define("v6", "cidr_ipv6", 60, 4, persist=True)          # shape changed: dropped
    assert new.count("v6", "2001:db8::1", 0, 3) == 0 and new.dropped == ["v6"]


def test_persisted_state_waits_for_a_define_with_persist(tmp_path, clock):
    s = Store(clock=clock)
    s.stage({"w": {"version": 1, "name": "w", "type": "string", "interval": 60,
                   "num_windows": 1, "since": T0, "buckets": {str(T0 // 60): [["k", 4]]}}})
    s.define("w", "string", 60, 1)                     # not persisted: starts empty
    assert s.count("w", "k") == 0
    s.define("w", "string", 60, 1, persist=True)
    assert s.count("w", "k") == 4


def test_unreadable_persisted_files_are_reported(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "other.json").write_text(json.dumps({"version": 1, "name": "mine"}))
    (tmp_path / "README").write_text("not ours")
    payloads, problems = A.load_persisted(str(tmp_path))
    assert payloads == {}
    assert len(problems) == 2 and problems[0].startswith(f"{tmp_path}/bad.json: ")
    assert problems[1] == f"{tmp_path}/other.json: holds series 'mine', not the one its name says"
    assert A.load_persisted(str(tmp_path / "missing")) == ({}, [])
