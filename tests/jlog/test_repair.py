"""Index rebuild, segment repair, interrupted writes and a C writer's pre-commit buffer."""

from __future__ import annotations

import os
import struct

import pytest

from ecmta.loggers import jlog as J
from ecmta.loggers.jlog import Jlog, JlogError, JlogId
from ecmta.tests.jlog.helpers import files, make, read_all, write

RECS = [b"record-%02d" % i + b"." * i for i in range(12)]


def _offsets(seg: bytes) -> list[int]:
    out, off = [], 0
    while off + 16 <= len(seg):
        out.append(off)
        off += 16 + struct.unpack_from("=IIII", seg, off)[3]
    return out


def _jlog_with_index(tmp_path, unit_limit=4096):
    jl = make(tmp_path / "j", "s", "other", unit_limit=unit_limit)
    write(jl, RECS)
    read_all(jl, "other")          # builds the index files
    return jl


def _expected_index(jl, log=0, closed=False) -> bytes:
    seg = files(jl.path)[J.segment_name(log)]
    return b"".join(struct.pack("=Q", o) for o in _offsets(seg)) + (b"\0" * 8 if closed else b"")


def test_index_holds_one_offset_per_record(tmp_path):
    jl = _jlog_with_index(tmp_path)
    assert files(jl.path)["00000000.idx"] == _expected_index(jl)
    assert jl.idx_details(0) == (12, False)


@pytest.mark.parametrize("damage", ["missing", "short", "odd", "garbage_tail", "too_far"])
def test_index_is_rebuilt(tmp_path, damage):
    jl = _jlog_with_index(tmp_path)
    idx = os.path.join(jl.path, "00000000.idx")
    good = open(idx, "rb").read()
    if damage == "missing":
        os.unlink(idx)
    elif damage == "short":
        open(idx, "wb").write(good[:40])                # five offsets of twelve
    elif damage == "odd":
        open(idx, "wb").write(good[:43])                # torn in the middle of an offset
    elif damage == "garbage_tail":
        open(idx, "wb").write(good[:40] + struct.pack("=Q", 3))   # points inside a record
    elif damage == "too_far":
        open(idx, "wb").write(good[:40] + struct.pack("=Q", 1 << 40))
    got = read_all(jl, "s")
    assert [d for *_x, d in got] == RECS
    assert open(idx, "rb").read() == good


def test_read_message_rebuilds_a_wrong_index(tmp_path):
    jl = _jlog_with_index(tmp_path)
    idx = os.path.join(jl.path, "00000000.idx")
    good = open(idx, "rb").read()
    # an offset of 0 in the middle is corruption: the reader truncates and rebuilds it
    open(idx, "wb").write(good[:16] + b"\0" * 8 + good[24:])
    with jl.open_reader("s") as r:
        assert r.read(JlogId(0, 3)) == RECS[2]
    assert open(idx, "rb").read() == good


def test_closed_segment_index_gets_its_closing_zero(tmp_path):
    jl = make(tmp_path / "j", "s", "other", unit_limit=100)
    write(jl, RECS)
    os.unlink(os.path.join(jl.path, "00000000.idx")) if os.path.exists(
        os.path.join(jl.path, "00000000.idx")) else None
    last, closed = jl.resync_index(0)
    assert closed and last.log == 0
    assert files(jl.path)["00000000.idx"] == _expected_index(jl, 0, closed=True)
    assert jl.idx_details(0) == (last.marker, True)
    last1, closed1 = jl.resync_index(jl.meta().storage_log)
    assert not closed1


def test_damaged_closed_segment_is_repaired_on_read(tmp_path, capfd):
    jl = make(tmp_path / "j", "s", unit_limit=200)
    write(jl, RECS)
    seg = os.path.join(jl.path, "00000000")
    data = bytearray(open(seg, "rb").read())
    offs = _offsets(bytes(data))
    data[offs[2]:offs[2] + 4] = b"\xde\xad\xbe\xef"      # third record's magic destroyed
    open(seg, "wb").write(bytes(data))
    got = [d for *_x, d in read_all(jl, "s")]
    # jlog_repair_datafile cut the damaged record out, with the record before it (whose
    # length led to a bad header, so it is not trusted either); the rest is all there
    assert got == RECS[:1] + RECS[3:]


def test_find_invalid_regions_matches_repair_rules():
    magic = J.DEFAULT_HDR_MAGIC
    rec = lambda body: struct.pack("=IIII", magic, 1, 2, len(body)) + body  # noqa: E731
    good = rec(b"aaaa") + rec(b"bb") + rec(b"c")
    assert J.find_invalid_regions(good, magic) == []
    junk = b"\x01" * 7
    # a record counts only if the header after it is valid too (or it ends the segment):
    # junk after a record takes that record with it, as in C (checked against the C
    # library's jlogctl -r in test_cross_c.py)
    assert J.find_invalid_regions(junk + good, magic) == [(0, 7)]
    assert J.find_invalid_regions(good + junk, magic) == [(38, len(good) + 7)]
    mid = rec(b"aaaa") + junk + rec(b"bb") + rec(b"c")
    assert J.find_invalid_regions(mid, magic) == [(0, 27)]


def test_writer_removes_an_interrupted_write(tmp_path, capfd):
    jl = make(tmp_path / "j", "s")
    write(jl, [b"complete-1", b"complete-2"])
    seg = os.path.join(jl.path, "00000000")
    whole = J.pack_record(b"never finished", (5, 6))
    for cut in (3, 16, len(whole) - 1):                 # torn header, torn body
        size = os.path.getsize(seg)
        with open(seg, "ab") as fh:
            fh.write(whole[:cut])
        # readers see only complete records meanwhile
        with jl.open_reader("s") as r:
            iv = r.read_interval()
            assert iv.count == 2
        w = jl.open_writer()
        assert os.path.getsize(seg) == size
        w.close()
    assert "interrupted write" in capfd.readouterr().err
    write(jl, [b"after"])
    assert [d for *_x, d in read_all(jl, "s")] == [b"complete-1", b"complete-2", b"after"]


def test_writer_leaves_real_damage_to_the_repair_tools(tmp_path):
    jl = make(tmp_path / "j", "s")
    write(jl, [b"one"])
    seg = os.path.join(jl.path, "00000000")
    with open(seg, "ab") as fh:
        fh.write(b"\xff" * 40)                          # not a header: not touched
    jl.open_writer().close()
    assert os.path.getsize(seg) == 19 + 40


def test_pre_commit_buffer_of_a_c_writer_is_flushed(tmp_path):
    jl = make(tmp_path / "j", "s")
    write(jl, [(b"first", (1, 1))])
    buffered = J.pack_record(b"in pre_commit", (2, 2)) + J.pack_record(b"also", (3, 3))
    with open(os.path.join(jl.path, "pre_commit"), "wb") as fh:
        fh.write(struct.pack("=I", len(buffered)) + buffered + b"\0" * 100)
    with jl.open_reader("s") as r:
        assert r.read_interval().count == 1            # readers do not look in the buffer
    w = jl.open_writer()
    w.write(b"last", ts=(4, 4))
    w.close()
    assert [d for *_x, d in read_all(jl, "s")] == [b"first", b"in pre_commit", b"also", b"last"]
    assert open(os.path.join(jl.path, "pre_commit"), "rb").read(4) == b"\0\0\0\0"


def test_missing_segment_is_skipped(tmp_path, capfd):
    jl = make(tmp_path / "j", "s", unit_limit=30)
    write(jl, RECS[:6])
    os.unlink(os.path.join(jl.path, "00000001"))
    got = [d for *_x, d in read_all(jl, "s")]
    assert got == RECS[0:2] + RECS[4:6]                # segment 1 held records 2 and 3


def test_repair_datafile_removes_junk_and_index(tmp_path):
    jl = make(tmp_path / "j", "s", "t", unit_limit=4096)
    write(jl, RECS[:4])
    seg = os.path.join(jl.path, "00000000")
    data = open(seg, "rb").read()
    open(seg, "wb").write(data[:30] + b"JUNKJUNK" + data[30:])
    assert jl.inspect_datafile(0, out=open(os.devnull, "w")) == 1
    assert jl.repair_datafile(0) == 1
    offs = _offsets(data)
    assert offs[1] < 30 < offs[2]
    # the record holding the junk goes; the others stay, in order
    assert open(seg, "rb").read() == data[:offs[1]] + data[offs[2]:]
    assert jl.inspect_datafile(0, out=open(os.devnull, "w")) == 0


def test_errors_name_the_jlog_error(tmp_path):
    with pytest.raises(JlogError) as e:
        Jlog(str(tmp_path / "nope")).open_writer()
    assert e.value.name == "JLOG_ERR_OPEN"
    (tmp_path / "plain").write_text("x")
    with pytest.raises(JlogError) as e:
        Jlog(str(tmp_path / "plain")).open_reader("s")
    assert e.value.name == "JLOG_ERR_NOTDIR"
    (tmp_path / "dir").mkdir()
    with pytest.raises(JlogError) as e:
        Jlog(str(tmp_path / "dir")).open_writer()
    assert e.value.name == "JLOG_ERR_META_OPEN"
