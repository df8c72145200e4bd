"""jlogctl, jlog_sanity_check and jlog_change_endian: options and output of their pages (the
exact texts are the C tools' ones, checked against them in test_cross_c.py)."""

from __future__ import annotations

import os
import shutil
import struct
import sys

import pytest

from ecmta.loggers.jlog import Jlog, JlogId
from ecmta.tests.jlog.helpers import files, make, read_all, run_cli, write

ENDIAN = sys.byteorder[0] + "e"          # "le" here
OTHER = "be" if ENDIAN == "le" else "le"


@pytest.fixture
def jdir(tmp_path):
    """tmp/j: subscribers reader (3 records read) and other, 5 records in two segments."""
    jl = make(tmp_path / "j", "reader", "other", unit_limit=100)
    write(jl, [(b"x" * 30, (1, 0))] * 5)
    read_all(jl, "reader", limit=3)
    return tmp_path


def ctl(cwd, *args):
    p = run_cli("jlogctl", *args, cwd=cwd)
    return p.returncode, p.stdout, p.stderr


def test_jlogctl_l_lists_segments_sizes_and_readers(jdir):
    rc, out, err = ctl(jdir, "-l", "j")
    lines = out.splitlines()
    assert (rc, err, lines[0]) == (0, "", "j")
    assert sorted(lines[1:]) == ["\t00000000 [      138 bytes] 2 pending readers",
                                 "\t00000001 [       92 bytes] 2 pending readers"]


def test_jlogctl_i_adds_index_details(jdir):
    rc, out, _err = ctl(jdir, "-i", "j")
    text = out.replace("\n\t\t idx", " | idx")
    assert sorted(text.splitlines()[1:]) == [
        "\t00000000 [      138 bytes] 2 pending readers | idx: 3 messages (00000003), closed",
        "\t00000001 [       92 bytes] 2 pending readers | idx: none"]


def test_jlogctl_s_shows_subscribers(jdir):
    rc, out, _err = ctl(jdir, "-s", "j")
    assert sorted(out.splitlines()[1:]) == [
        "\t                           other @ 00000000:00000000",
        "\t                          reader @ 00000000:00000003"]


def test_jlogctl_p_shows_a_subscribers_perspective(jdir):
    rc, out, err = ctl(jdir, "-p", "reader", "j")
    assert (rc, err) == (0, "")
    assert out == ("j\n--------------------\n"
                   "  Perspective of the 'reader' subscriber\n"
                   "    current checkpoint: 00000000:00000003\n"
                   "Last write: 00000001:00000002\n"
                   "\t     next interval: [00000001:00000001, 00000001:00000002]\n"
                   "--------------------\n\n")
    # as jlog_ctx_read_interval does, looking moved the checkpoint to the next segment
    assert Jlog(str(jdir / "j")).get_checkpoint("reader") == JlogId(1, 0)
    rc, _out, err = ctl(jdir, "-p", "nobody", "j")
    assert err == "error opening 'j': JLOG_ERR_INVALID_SUBSCRIBER\n"


def test_jlogctl_a_and_e(jdir):
    assert ctl(jdir, "-a", "new", "j") == (0, "j\nAdded subscriber 'new'\n", "")
    assert Jlog(str(jdir / "j")).get_checkpoint("new") == JlogId(0, 0)
    assert ctl(jdir, "-a", "new", "j") == (
        0, "j\n", "Could not add subscriber 'new': JLOG_ERR_SUBSCRIBER_EXISTS\n")
    assert ctl(jdir, "-e", "new", "j") == (0, "j\nErased subscriber 'new'\n", "")
    assert ctl(jdir, "-e", "new", "j") == (
        0, "j\n", "Could not erase subscriber 'new': JLOG_ERR_INVALID_SUBSCRIBER\n")


def test_jlogctl_c_cleans_silently(jdir):
    jl = Jlog(str(jdir / "j"))
    assert ctl(jdir, "-c", "j") == (0, "", "")
    assert jl.segments() == [0, 1]                        # both still needed
    read_all(jl, "reader"), read_all(jl, "other")
    jl.remove_subscriber("other")
    jl.remove_subscriber("reader")
    assert ctl(jdir, "-c", "j") == (0, "", "")           # no reader at all: everything goes
    assert jl.segments() == []


def test_jlogctl_errors_and_usage(jdir):
    rc, out, err = ctl(jdir, "-l", "missing")
    assert (rc, out, err) == (0, "missing\n", "error opening 'missing': JLOG_ERR_OPEN\n")
    for args, msg in ((["-x", "j"], "unknown option: x"), (["-a"], "option a requires an argument"),
                      (["-ls", "j"], "option l does not take an argument"), ([], None)):
        rc, out, err = ctl(jdir, *args)
        assert rc == 255 and out.startswith("Usage:\n") and "-r option can't be used" in out
        assert err == (msg + "\n" if msg else "")


def test_jlogctl_d_and_r_find_and_repair_damage(tmp_path):
    jl = make(tmp_path / "j", "r", unit_limit=100)
    write(jl, [(b"y" * 30, (1, 0))] * 5)
    seg = tmp_path / "j" / "00000000"
    data = bytearray(seg.read_bytes())
    data[46:50] = b"\0\0\0\0"                            # second record's magic
    seg.write_bytes(bytes(data))
    rc, out, err = ctl(tmp_path, "-d", "j")
    assert "Message 2 at [46] has invalid reserved value 0\nOne or more errors were found.\n" in err
    assert seg.read_bytes() == bytes(data)               # -d only looks
    rc, out, err = ctl(tmp_path, "-r", "j")
    assert "Log file reconstructed, deleting the corresponding idx file." in err
    assert ctl(tmp_path, "-d", "j")[2] == ""
    assert [d for *_x, d in read_all(jl, "r")] == [b"y" * 30] * 3   # as C: 2 of 5 cut out


def test_sanity_check_is_silent_on_a_good_jlog(jdir):
    p = run_cli("jlog_sanity_check", ENDIAN, jdir / "j")
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
    p = run_cli("jlog_sanity_check", jdir / "j", ENDIAN)        # the Perl script's order
    assert (p.returncode, p.stdout) == (0, "")
    p = run_cli("jlog_sanity_check", "-v", ENDIAN, jdir / "j")
    assert p.stdout.splitlines() == ["segment 00000000 has 3 records",
                                     "segment 00000001 has 2 records"]


def test_sanity_check_reports_problems(jdir):
    j = jdir / "j"
    (j / "00000000.idx").write_bytes((j / "00000000.idx").read_bytes()[:-8])
    (j / "cp.6f74686572").write_bytes(struct.pack("=II", 7, 0))
    (j / "stray").write_text("?")
    p = run_cli("jlog_sanity_check", ENDIAN, j)
    assert p.returncode == 1
    assert p.stdout.splitlines() == [
        "unexpected file found: stray (skipping)",
        "checkpoint other points to segment newer than current segment",
        "index 00000000.idx not current or closed"]
    p = run_cli("jlog_sanity_check", OTHER, j)            # read in the wrong byte order
    assert p.returncode == 1 and "offset 0: not enough room for message body" in p.stdout
    os.unlink(j / "metastore")
    p = run_cli("jlog_sanity_check", ENDIAN, j)
    assert (p.returncode, p.stderr) == (2, "no metastore found\n")
    assert run_cli("jlog_sanity_check").returncode == 1


def test_sanity_check_tells_an_interrupted_write_from_damage(tmp_path):
    jl = make(tmp_path / "j", "s", unit_limit=100)
    write(jl, [b"z" * 40] * 3)
    cur = tmp_path / "j" / "00000001"
    cur.write_bytes(cur.read_bytes() + b"\x18\x73")       # half a header being written
    p = run_cli("jlog_sanity_check", ENDIAN, tmp_path / "j")
    assert (p.returncode, p.stdout) == (0, "")
    p = run_cli("jlog_sanity_check", "-v", ENDIAN, tmp_path / "j")
    assert "segment 00000001 offset 56: incomplete record at the end" in p.stdout
    closed = tmp_path / "j" / "00000000"
    closed.write_bytes(closed.read_bytes()[:-2])
    p = run_cli("jlog_sanity_check", ENDIAN, tmp_path / "j")
    assert p.returncode == 1
    assert "segment 00000000 offset 56: not enough room for message body" in p.stdout


def test_change_endian_round_trip(jdir):
    src = jdir / "j"
    to_other = "tobe" if ENDIAN == "le" else "tole"
    back = "tole" if ENDIAN == "le" else "tobe"
    p = run_cli("jlog_change_endian", src, to_other, jdir / "swapped")
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
    swapped = files(jdir / "swapped")
    assert swapped["metastore"] == struct.pack(">IIII" if to_other == "tobe" else "<IIII",
                                               *struct.unpack("=IIII", files(src)["metastore"]))
    assert run_cli("jlog_sanity_check", OTHER, jdir / "swapped").stdout == ""
    # the swapped copy reads the same records with the other byte order
    assert [d for *_x, d in read_all(Jlog(str(jdir / "swapped"), endian=OTHER), "other")] == \
        [b"x" * 30] * 5
    p = run_cli("jlog_change_endian", jdir / "swapped", back, jdir / "again")
    assert p.returncode == 0
    # "swapped" was read above (its checkpoints moved): convert a fresh copy to compare
    shutil.rmtree(jdir / "swapped")
    shutil.rmtree(jdir / "again")
    run_cli("jlog_change_endian", src, to_other, jdir / "swapped")
    run_cli("jlog_change_endian", jdir / "swapped", back, jdir / "again")
    assert files(jdir / "again") == files(src)


def test_change_endian_refuses_damage_and_existing_destination(jdir):
    src = jdir / "j"
    to_other = "tobe" if ENDIAN == "le" else "tole"
    p = run_cli("jlog_change_endian", src, to_other, src)
    assert p.returncode == 1 and "File exists" in p.stderr
    seg = src / "00000000"
    data = bytearray(seg.read_bytes())
    data[0:4] = b"\1\1\1\1"
    seg.write_bytes(bytes(data))
    p = run_cli("jlog_change_endian", src, to_other, jdir / "out")
    assert p.returncode == 1
    assert "segment 00000000 offset 0: reserved field" in p.stderr
    assert not (jdir / "out").exists()
    p = run_cli("jlog_change_endian", src, "sideways", jdir / "out")
    assert p.returncode == 1 and p.stdout.startswith("Usage: jlog_change_endian")
