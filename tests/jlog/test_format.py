"""The on-disk format, byte for byte, and the reader/writer rules of libjlog."""

from __future__ import annotations

import os
import stat
import struct

import pytest

from ecmta.loggers import jlog as J
from ecmta.loggers.jlog import BEGIN, END, Jlog, JlogError, JlogId
from ecmta.tests.jlog import c_fixture
from ecmta.tests.jlog.cjlog import FIXTURE_MESSAGES, FIXTURE_UNIT_LIMIT
from ecmta.tests.jlog.helpers import files, make, read_all, write


def test_init_writes_the_metastore_and_nothing_else(tmp_path):
    jl = Jlog(str(tmp_path / "j")).init(unit_limit=1234, safety=J.SAFE)
    assert sorted(os.listdir(jl.path)) == ["metastore"]
    assert files(jl.path)["metastore"] == struct.pack("=IIII", 0, 1234, 2, 0x663A7318)
    # the directory gets x where the file mode has r (jlog_ctx_init): 0640 -> 0750
    assert stat.S_IMODE(os.stat(jl.path).st_mode) & 0o750 == 0o750
    with pytest.raises(JlogError) as e:
        Jlog(jl.path).init()
    assert e.value.name == "JLOG_ERR_CREATE_EXISTS"


def test_record_layout_header_magic_time_length(tmp_path):
    jl = make(tmp_path / "j", "s")
    write(jl, [(b"hello", (1700000000, 123456)), (b"", 1700000001.5), (b"\x00\xff" * 3, None)])
    seg = files(jl.path)["00000000"]
    assert seg[:21] == struct.pack("=IIII", 0x663A7318, 1700000000, 123456, 5) + b"hello"
    assert seg[21:37] == struct.pack("=IIII", 0x663A7318, 1700000001, 500000, 0)
    magic, _sec, _usec, mlen = struct.unpack_from("=IIII", seg, 37)
    assert (magic, mlen, seg[53:]) == (0x663A7318, 6, b"\x00\xff" * 3)
    assert len(seg) == 59


def test_checkpoint_file_is_the_hex_of_the_name(tmp_path):
    jl = make(tmp_path / "j", "master", "Ünï")
    assert "cp.6d6173746572" in os.listdir(jl.path)
    assert "cp." + "Ünï".encode().hex() in os.listdir(jl.path)
    assert sorted(jl.list_subscribers()) == ["master", "Ünï"]
    assert files(jl.path)["cp.6d6173746572"] == struct.pack("=II", 0, 0)


def test_byte_identical_to_the_c_library_fixture(tmp_path):
    """c_fixture.py was written by the C libjlog 2.0.x; the same operations here give the
    same bytes in every file (metastore, segments, index with its closing 0, checkpoints)."""
    jl = Jlog(str(tmp_path / "fixture.jlog"), endian="le").init(unit_limit=FIXTURE_UNIT_LIMIT)
    jl.add_subscriber("alpha")
    jl.add_subscriber("beta")
    write(jl, [(d, (s, u)) for d, s, u in FIXTURE_MESSAGES])
    r = jl.open_reader("alpha")
    iv = r.read_interval()
    got = [r.read(i) for i in list(iv.ids())[:5]]
    r.checkpoint(JlogId(0, 5))
    r.close()
    assert got == [d for d, _s, _u in FIXTURE_MESSAGES[:5]]
    assert {k: v.hex() for k, v in files(jl.path).items()} == c_fixture.FILES


def test_reading_the_c_fixture(tmp_path):
    path = tmp_path / "c.jlog"
    path.mkdir()
    for name, hexdata in c_fixture.FILES.items():
        (path / name).write_bytes(bytes.fromhex(hexdata))
    jl = Jlog(str(path), endian="le")
    assert jl.get_checkpoint("alpha") == JlogId(0, 5)
    assert jl.lag("alpha") == 7 and jl.lag("beta") == 12
    alpha = read_all(jl, "alpha")
    assert [(d, s, u) for _i, s, u, d in alpha] == FIXTURE_MESSAGES[5:]
    assert [i for i, *_ in alpha][:2] == [JlogId(0, 6), JlogId(1, 1)]
    beta = read_all(jl, "beta")
    assert [(d, s, u) for _i, s, u, d in beta] == FIXTURE_MESSAGES
    # both passed segments 0 and 1: gone; the current one stays
    assert sorted(n for n in os.listdir(path) if J.is_datafile(n) is not None) == ["00000002"]


def test_round_trips_of_many_sizes(tmp_path):
    jl = make(tmp_path / "j", "s", unit_limit=64 * 1024)
    payloads = [b"", b"x", bytes(range(256)), os.urandom(70000), b"line\n" * 1000,
                "ünïcødé\n".encode()]
    write(jl, payloads)
    r = jl.open_reader("s")
    got = [m.data for _id, m in r.pending()]
    r.close()
    assert got == payloads


def test_read_message_gives_the_timestamp(tmp_path):
    jl = make(tmp_path / "j", "s")
    write(jl, [(b"a", 1600000000.25), (b"b", (1600000001, 999999))])
    r = jl.open_reader("s")
    start, end = iv = r.read_interval()
    assert (start, end, iv.count) == (JlogId(0, 1), JlogId(0, 2), 2)
    ts, data = r.read_message(start)
    assert (ts, data) == (1600000000.25, b"a")
    m = r.read_message(end)
    assert (m.tv_sec, m.tv_usec, m.data) == (1600000001, 999999, b"b")
    assert r.read(end) == b"b"
    r.close()


def test_read_interval_when_nothing_is_new(tmp_path):
    jl = make(tmp_path / "j", "s")
    r = jl.open_reader("s")
    iv = r.read_interval()
    assert iv.count == 0 and tuple(iv) == (JlogId(0, 0), JlogId(0, 0)) and list(iv.ids()) == []
    write(jl, [b"one"])
    iv = r.read_interval()
    assert (iv.count, iv.start, iv.end) == (1, JlogId(0, 1), JlogId(0, 1))
    r.checkpoint(iv.end)
    iv = r.read_interval()
    assert iv.count == 0 and iv.start == iv.end == JlogId(0, 1)
    r.close()


def test_two_subscribers_at_different_positions(tmp_path):
    jl = make(tmp_path / "j", "fast", "slow", unit_limit=100)
    recs = [b"r%02d" % i for i in range(30)]
    write(jl, recs)
    assert [d for *_x, d in read_all(jl, "fast", limit=20)] == recs[:20]
    assert [d for *_x, d in read_all(jl, "slow", limit=5)] == recs[:5]
    assert jl.lag("fast") == 10 and jl.lag("slow") == 25
    assert [d for *_x, d in read_all(jl, "fast")] == recs[20:]
    assert [d for *_x, d in read_all(jl, "slow")] == recs[5:]
    assert jl.lag("fast") == jl.lag("slow") == 0


def test_checkpoints_survive_reopening(tmp_path):
    path = str(tmp_path / "j")
    make(path, "s")
    write(Jlog(path), [b"a", b"b", b"c"])
    assert [d for *_x, d in read_all(Jlog(path), "s", limit=2)] == [b"a", b"b"]
    write(Jlog(path), [b"d"])
    assert Jlog(path).get_checkpoint("s") == JlogId(0, 2)
    assert [d for *_x, d in read_all(Jlog(path), "s")] == [b"c", b"d"]
    assert read_all(Jlog(path), "s") == []


def test_segment_rollover_rule(tmp_path):
    """A record goes into the segment while its size is below unit_limit; the record that
    reaches the limit ends the segment (so a segment may pass it by one record)."""
    jl = make(tmp_path / "j", "s", unit_limit=100)
    write(jl, [b"a" * 30] * 3 + [b"b" * 200] + [b"c" * 10])
    f = files(jl.path)
    assert len(f["00000000"]) == 3 * 46          # 46, 92 < 100, then 138 >= 100: closed
    assert len(f["00000001"]) == 216             # one record larger than the limit
    assert len(f["00000002"]) == 26
    assert jl.meta().storage_log == 2
    # the same records written one per call (as C) give the same bytes
    jl2 = make(tmp_path / "k", "s", unit_limit=100)
    w = jl2.open_writer()
    for rec in [b"a" * 30] * 3 + [b"b" * 200] + [b"c" * 10]:
        w.write(rec, ts=(0, 0))
    w.close()
    jl3 = make(tmp_path / "l", "s", unit_limit=100)
    write(jl3, [(r, (0, 0)) for r in [b"a" * 30] * 3 + [b"b" * 200] + [b"c" * 10]])
    assert files(jl2.path) == files(jl3.path)


def test_segments_go_once_every_subscriber_passed_them(tmp_path):
    jl = make(tmp_path / "j", "a", "b", unit_limit=50)
    write(jl, [b"x" * 40] * 6)                     # one record per segment: 0..5, 6 current
    segs = lambda: jl.segments()  # noqa: E731
    assert segs() == [0, 1, 2, 3, 4, 5, 6]
    read_all(jl, "a")
    assert segs() == [0, 1, 2, 3, 4, 5, 6]          # b still needs them all
    read_all(jl, "b", limit=3)
    # b's checkpoint moved to segment 2: segments 0 and 1 are passed by both
    assert segs() == [2, 3, 4, 5, 6]
    read_all(jl, "b")
    # both read to the end: their checkpoints moved on to the current segment (6, 0)
    assert jl.get_checkpoint("a") == jl.get_checkpoint("b") == JlogId(6, 0)
    assert segs() == [6]
    write(jl, [b"y" * 40])
    read_all(jl, "a")
    assert segs() == [6, 7]
    read_all(jl, "b")
    assert segs() == [7]


def test_removed_subscriber_no_longer_holds_segments(tmp_path):
    jl = make(tmp_path / "j", "a", "gone", unit_limit=50)
    write(jl, [b"x" * 40] * 4)
    read_all(jl, "a")
    assert jl.segments() == [0, 1, 2, 3, 4]
    assert jl.remove_subscriber("gone") is True
    assert jl.remove_subscriber("gone") is False
    # "a" read to the end: its checkpoint is (4, 0), so jlog_clean drops 0..3
    assert jl.clean() == 4
    assert jl.segments() == [4]


def test_add_subscriber_begin_and_end(tmp_path):
    jl = make(tmp_path / "j", "first", unit_limit=50)
    write(jl, [b"old-%d" % i for i in range(4)])
    assert jl.add_subscriber("late_begin", BEGIN) == JlogId(0, 0)
    end = jl.add_subscriber("late_end", END)   # at the last record written so far
    assert end == JlogId(1, 1) and jl.meta().storage_log == 1
    with pytest.raises(JlogError) as e:
        jl.add_subscriber("first")
    assert e.value.name == "JLOG_ERR_SUBSCRIBER_EXISTS"
    write(jl, [b"new"])
    assert [d for *_x, d in read_all(jl, "late_begin")] == \
        [b"old-0", b"old-1", b"old-2", b"old-3", b"new"]
    assert [d for *_x, d in read_all(jl, "late_end")] == [b"new"]
    with pytest.raises(JlogError) as e:
        jl.open_reader("nobody")
    assert e.value.name == "JLOG_ERR_INVALID_SUBSCRIBER"


def test_lag_counts_complete_records_behind_the_end(tmp_path):
    jl = make(tmp_path / "j", "s", unit_limit=64)
    assert jl.lag("s") == 0
    write(jl, [b"z" * 20] * 9)
    assert jl.lag("s") == 9
    r = jl.open_reader("s")
    assert r.lag() == 9
    iv = r.read_interval()
    r.checkpoint(iv.end)
    assert r.lag() == 9 - iv.count
    r.close()


def test_pending_iterates_across_segments_without_checkpointing(tmp_path):
    jl = make(tmp_path / "j", "s", unit_limit=40)
    recs = [b"rec%d" % i for i in range(10)]
    write(jl, recs)
    r = jl.open_reader("s")
    got = list(r.pending())
    assert [m.data for _i, m in got] == recs
    assert jl.get_checkpoint("s") == JlogId(0, 0)
    assert [m.data for _i, m in r.pending(limit=3)] == recs[:3]
    r.checkpoint(got[6][0])
    assert [m.data for _i, m in r.pending()] == recs[7:]
    r.close()


def test_advance_id_walks_like_the_c_loop(tmp_path):
    jl = make(tmp_path / "j", "s", unit_limit=40)
    write(jl, [b"m%d" % i for i in range(5)])       # 3 records in segment 0, 2 in 1
    r = jl.open_reader("s")
    cur, finish = r.read_interval()
    seen = [r.read(cur)]
    while True:
        nxt, finish = r.advance_id(cur, cur, finish)
        if nxt == cur:
            break                                   # nothing after cur yet
        cur = nxt
        seen.append((str(cur), r.read(cur)))
    assert seen == [b"m0", ("00000000:00000002", b"m1"), ("00000000:00000003", b"m2"),
                    ("00000001:00000001", b"m3"), ("00000001:00000002", b"m4")]
    r.close()


def test_writer_and_reader_in_one_process_share_descriptors(tmp_path):
    jl = make(tmp_path / "j", "s")
    w = jl.open_writer()
    r = jl.open_reader("s")
    for i in range(50):
        w.write(b"%d" % i)
        iv = r.read_interval()
        assert [r.read(x) for x in iv.ids()] == [b"%d" % i]
        r.checkpoint(iv.end)
    w.close()
    r.close()


def test_checkpoint_past_the_end_is_repaired(tmp_path, capfd):
    jl = make(tmp_path / "j", "s")
    write(jl, [b"a", b"b"])
    jl.set_checkpoint("s", JlogId(0, 9))
    r = jl.open_reader("s")
    iv = r.read_interval()
    assert iv.count == 0
    assert jl.get_checkpoint("s") == JlogId(0, 2)
    assert "need to repair checkpoint" in capfd.readouterr().err
    write(jl, [b"c"])
    assert [r.read(x) for x in r.read_interval().ids()] == [b"c"]
    r.close()


def test_close_tag_is_not_a_record(tmp_path):
    jl = make(tmp_path / "j", "s", "hold", unit_limit=20)
    write(jl, [b"x" * 10, b"y" * 10])
    read_all(jl, "s")
    with jl.open_reader("s") as r:
        with pytest.raises(JlogError) as e:
            r.read(JlogId(0, 2))
        assert e.value.name == "JLOG_ERR_CLOSE_LOGID"
        with pytest.raises(JlogError) as e:
            r.read(JlogId(0, 0))
        assert e.value.name == "JLOG_ERR_ILLEGAL_LOGID"


def test_old_metastore_without_magic(tmp_path):
    jl = make(tmp_path / "j", "s")
    meta = os.path.join(jl.path, "metastore")
    with open(meta, "wb") as fh:
        fh.write(struct.pack("=III", 0, 4096, 1))
    w = jl.open_writer()               # the writer extends it with a zero magic, as C does
    w.write(b"legacy", ts=(1, 2))
    w.close()
    assert os.path.getsize(meta) == 16 and jl.meta().hdr_magic == 0
    assert files(jl.path)["00000000"][:4] == b"\0\0\0\0"
    assert [d for *_x, d in read_all(jl, "s")] == [b"legacy"]


def test_compressed_jlogs_are_refused(tmp_path):
    jl = make(tmp_path / "j", "s")
    with open(os.path.join(jl.path, "metastore"), "r+b") as fh:
        fh.write(struct.pack("=IIII", 0, 4096, 1, 0x15106A00 | 1))
    with pytest.raises(JlogError) as e:
        jl.open_writer()
    assert e.value.name == "JLOG_ERR_NOT_SUPPORTED" and "compressed" in str(e.value)


def test_big_endian_jlog_is_read_with_endian_be(tmp_path):
    jl = Jlog(str(tmp_path / "be"), endian="be").init(unit_limit=100)
    jl.add_subscriber("s")
    write(jl, [(b"big %d" % i, (1000 + i, i)) for i in range(8)])
    assert files(jl.path)["metastore"][:8] == struct.pack(">II", jl.meta().storage_log, 100)
    got = read_all(Jlog(jl.path, endian="be"), "s")
    assert [(d, s) for _i, s, _u, d in got] == [(b"big %d" % i, 1000 + i) for i in range(8)]


def test_ensure_creates_jlog_and_subscriber_once(tmp_path):
    path = str(tmp_path / "deep" / "er" / "log.jlog")
    jl = Jlog.ensure(path, "reader")
    assert jl.exists() and jl.list_subscribers() == ["reader"]
    write(jl, [b"kept"])
    jl = Jlog.ensure(path, "reader")          # a second open changes nothing
    assert [d for *_x, d in read_all(jl, "reader")] == [b"kept"]
    Jlog.ensure(path, "other")
    assert sorted(jl.list_subscribers()) == ["other", "reader"]
    (tmp_path / "empty").mkdir()
    assert Jlog.ensure(str(tmp_path / "empty"), "x").exists()
    (tmp_path / "notjlog").mkdir()
    (tmp_path / "notjlog" / "file").write_text("x")
    with pytest.raises(JlogError):
        Jlog.ensure(str(tmp_path / "notjlog"), "x")


def test_alter_journal_size_and_safety(tmp_path):
    jl = make(tmp_path / "j", "s")
    jl.alter_journal_size(77)
    jl.alter_safety(J.SAFE)
    assert jl.meta() == J.Meta(0, 77, J.SAFE, J.DEFAULT_HDR_MAGIC)
    write(jl, [b"x" * 80, b"y"])
    assert jl.segments() == [0, 1]
    assert [d for *_x, d in read_all(jl, "s")] == [b"x" * 80, b"y"]
