"""Cross-tests against the C libjlog 2.0.x (built from its PyPI sdist by cjlog.py): C writes
and Python reads, Python writes and C reads, the same operations give the same bytes,
jlogctl prints what the C jlogctl prints, our sanity check finds what the Perl one finds,
and C and Python writers append to one jlog at once. Skipped, with the reason, when the
C library cannot be built here."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys

import pytest

from ecmta.cli import jlogctl as jlogctl_module
from ecmta.loggers.jlog import Jlog, JlogId
from ecmta.tests.jlog import cjlog
from ecmta.tests.jlog.helpers import files, make, read_all, run_cli, write

C, WHY = cjlog.build()
pytestmark = pytest.mark.skipif(C is None, reason=f"C libjlog unavailable: {WHY}")

MSGS = [(b"msg %03d " % i + bytes((i * 7 + k) % 256 for k in range(i * 11 % 300)),
         1_600_000_000 + i, (i * 31_337) % 1_000_000) for i in range(120)]


def _c_msgs(msgs):
    return [[d.hex(), s, u] for d, s, u in msgs]


def _c_records(answer):
    assert answer["ok"], answer
    return [(JlogId(*i), s, u, bytes.fromhex(h)) for i, s, u, h in answer["records"]]


def test_c_writes_python_reads(tmp_path):
    path = str(tmp_path / "c.jlog")
    C.call({"op": "init", "path": path, "unit_limit": 1000},
           {"op": "add", "path": path, "name": "py"},
           {"op": "add", "path": path, "name": "c"},
           {"op": "write", "path": path, "messages": _c_msgs(MSGS)})
    got = read_all(Jlog(path), "py")
    assert [(d, s, u) for _i, s, u, d in got] == MSGS
    # the C reader of the other subscriber sees the same ids and bytes
    assert _c_records(C.call({"op": "read", "path": path, "name": "c"})[0]) == got
    assert run_cli("jlog_sanity_check", "le", path).stdout == ""


def test_python_writes_c_reads(tmp_path):
    path = str(tmp_path / "p.jlog")
    jl = make(path, "c", "py", unit_limit=1000)
    write(jl, [(d, (s, u)) for d, s, u in MSGS[:70]])
    write(jl, [(d, (s, u)) for d, s, u in MSGS[70:]])
    c_got = _c_records(C.call({"op": "read", "path": path, "name": "c"})[0])
    assert [(d, s, u) for _i, s, u, d in c_got] == MSGS
    assert read_all(jl, "py") == c_got
    if shutil.which("perl"):
        assert _perl_findings(path) == []        # the Perl jlog_sanity_check agrees


def test_same_operations_same_bytes(tmp_path):
    """C does it all in one jlog, Python in another: every file is the same, after writes,
    partial reads with checkpoints by two subscribers (index files, closing zeros, deleted
    segments) and more writes."""
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    half = len(MSGS) // 2
    C.call({"op": "init", "path": a, "unit_limit": 700},
           {"op": "add", "path": a, "name": "one"},
           {"op": "add", "path": a, "name": "two"},
           {"op": "write", "path": a, "messages": _c_msgs(MSGS[:half])},
           {"op": "read", "path": a, "name": "one", "max": 40},
           {"op": "read", "path": a, "name": "two", "max": 15},
           {"op": "write", "path": a, "messages": _c_msgs(MSGS[half:])},
           {"op": "read", "path": a, "name": "two", "max": 70})
    jl = make(b, "one", "two", unit_limit=700)
    write(jl, [(d, (s, u)) for d, s, u in MSGS[:half]])
    _read_like_c(jl, "one", 40)
    _read_like_c(jl, "two", 15)
    write(jl, [(d, (s, u)) for d, s, u in MSGS[half:]])
    _read_like_c(jl, "two", 70)
    assert files(a) == files(b)


def _read_like_c(jl, sub, limit):
    """cjlog's read loop: interval, read up to `limit`, checkpoint the last one read."""
    n = 0
    with jl.open_reader(sub) as r:
        while n < limit:
            iv = r.read_interval()
            if iv.count == 0:
                return
            last = None
            for i in iv.ids():
                if n >= limit:
                    break
                r.read(i)
                last, n = i, n + 1
            r.checkpoint(last)


def test_subscriber_added_by_c_and_python_alike(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    C.call({"op": "init", "path": a, "unit_limit": 500},
           {"op": "write", "path": a, "messages": _c_msgs(MSGS[:30])},
           {"op": "add", "path": a, "name": "begin", "whence": 0},
           {"op": "add", "path": a, "name": "end", "whence": 1})
    jl = Jlog(b).init(unit_limit=500)
    write(jl, [(d, (s, u)) for d, s, u in MSGS[:30]])
    jl.add_subscriber("begin", 0)
    jl.add_subscriber("end", 1)
    assert files(a) == files(b)


def _twin(tmp_path, build_ops):
    """The same jlog at C/j and P/j (so tools print the same relative path)."""
    for side in ("C", "P"):
        os.makedirs(tmp_path / side, exist_ok=True)
        C.call(*build_ops(str(tmp_path / side / "j")))
    return tmp_path / "C", tmp_path / "P"


def _ops(path):
    return [{"op": "init", "path": path, "unit_limit": 600},
            {"op": "add", "path": path, "name": "reader"},
            {"op": "add", "path": path, "name": "a-much-longer-subscriber-name"},
            {"op": "write", "path": path, "messages": _c_msgs(MSGS[:60])},
            {"op": "read", "path": path, "name": "reader", "max": 25}]


@pytest.mark.parametrize("args", [
    ["-l", "j"], ["-i", "j"], ["-s", "j"], ["-p", "reader", "j"],
    ["-p", "a-much-longer-subscriber-name", "j"], ["-i", "-s", "j"], ["-a", "new", "j"],
    ["-a", "reader", "j"], ["-e", "reader", "j"], ["-e", "nobody", "j"], ["-d", "j"],
    ["-d", "-v", "j"], ["-p", "nobody", "j"], ["-l", "missing"], ["-c", "j"], ["-l", "j", "j"],
    [], ["-x", "j"], ["-a"], ["-ls", "j"],
])
def test_jlogctl_prints_what_c_prints(tmp_path, args):
    c_dir, p_dir = _twin(tmp_path, _ops)
    c = subprocess.run([C.jlogctl, *args], cwd=c_dir, capture_output=True, text=True,
                       env=dict(os.environ, TZ="UTC"))
    p = subprocess.run([sys.executable, "-m", "ecmta.cli.jlogctl", *args], cwd=p_dir,
                       capture_output=True, text=True, env=dict(os.environ, TZ="UTC"))
    # the usage names the program as invoked (argv[0])
    c_out = c.stdout.replace(C.jlogctl, "PROG")
    p_out = p.stdout.replace(jlogctl_module.__file__[:-3], "PROG")
    assert (p.returncode, p_out, p.stderr) == (c.returncode, c_out, c.stderr)
    # and the jlogs are left the same
    assert files(c_dir / "j") == files(p_dir / "j") if (c_dir / "j").exists() else True


def _damage_ops(path):
    return [{"op": "init", "path": path, "unit_limit": 400},
            {"op": "add", "path": path, "name": "r"},
            {"op": "write", "path": path, "messages": _c_msgs(MSGS[:40])}]


@pytest.mark.parametrize("damage", ["magic", "junk", "truncated_closed"])
def test_jlogctl_repair_like_c(tmp_path, damage):
    c_dir, p_dir = _twin(tmp_path, _damage_ops)
    for d in (c_dir, p_dir):
        seg = d / "j" / "00000001"
        data = bytearray(seg.read_bytes())
        second = 16 + struct.unpack_from("<I", data, 12)[0]
        if damage == "magic":
            data[second:second + 4] = b"\0\1\2\3"
        elif damage == "junk":
            data[second + 20:second + 20] = b"JUNK" * 9
        else:
            del data[-5:]
        seg.write_bytes(bytes(data))
    c = subprocess.run([C.jlogctl, "-r", "j"], cwd=c_dir, capture_output=True, text=True)
    p = run_cli("jlogctl", "-r", "j", cwd=p_dir)
    assert (p.returncode, p.stdout, p.stderr) == (c.returncode, c.stdout, c.stderr)
    assert "One or more errors were found." in p.stderr
    assert files(c_dir / "j") == files(p_dir / "j")
    # what is left reads the same in C and here
    c_got = _c_records(C.call({"op": "read", "path": str(c_dir / "j"), "name": "r"})[0])
    assert read_all(Jlog(str(p_dir / "j")), "r") == c_got


def _perl_findings(path, endian="le"):
    p = subprocess.run(["perl", C.sanity_pl, str(path), endian], capture_output=True, text=True)
    return [ln for ln in p.stdout.splitlines() if not ln.endswith(" records")]


@pytest.mark.skipif(shutil.which("perl") is None, reason="no perl for jlog_sanity_check.pl")
@pytest.mark.parametrize("damage", ["none", "magic", "missing_segment", "bad_checkpoint",
                                    "idx_wrong", "idx_too_long", "idx_not_closed", "stray_file",
                                    "old_segment", "checkpoint_past_end", "time_backwards",
                                    "short_closed"])
def test_sanity_check_finds_what_the_perl_script_finds(tmp_path, damage):
    path = tmp_path / "j"
    C.call({"op": "init", "path": str(path), "unit_limit": 400},
           {"op": "add", "path": str(path), "name": "r"},
           {"op": "add", "path": str(path), "name": "s"},
           {"op": "write", "path": str(path), "messages": _c_msgs(MSGS[:50])},
           {"op": "read", "path": str(path), "name": "s", "max": 3})
    seg1 = path / "00000001"
    if damage == "magic":
        data = bytearray(seg1.read_bytes())
        data[0:4] = b"\0\0\0\1"
        seg1.write_bytes(bytes(data))
    elif damage == "missing_segment":
        os.unlink(path / "00000002")
    elif damage == "bad_checkpoint":
        (path / "cp.72").write_bytes(b"\1\2\3")
    elif damage == "idx_wrong":
        idx = bytearray((path / "00000000.idx").read_bytes())
        idx[8:16] = struct.pack("<Q", 5)
        (path / "00000000.idx").write_bytes(bytes(idx))
    elif damage == "idx_too_long":
        (path / "00000000.idx").write_bytes((path / "00000000.idx").read_bytes() + b"\0" * 16)
    elif damage == "idx_not_closed":
        (path / "00000000.idx").write_bytes((path / "00000000.idx").read_bytes()[:-8])
    elif damage == "stray_file":
        (path / "core").write_text("x")
    elif damage == "old_segment":
        shutil.copy(path / "00000001", path / "0000000a")
    elif damage == "checkpoint_past_end":
        (path / "cp.72").write_bytes(struct.pack("<II", 0, 99))
    elif damage == "time_backwards":
        data = bytearray(seg1.read_bytes())
        data[4:8] = struct.pack("<I", 5)
        seg1.write_bytes(bytes(data))
    elif damage == "short_closed":
        seg1.write_bytes(seg1.read_bytes()[:-3])
    ours = run_cli("jlog_sanity_check", "le", path)
    theirs = _perl_findings(path)
    if damage == "short_closed":
        # the Perl script checks `data_off + mlen > data_len` (16 bytes short) and then dies
        # on the read; the finding it meant is the one printed here
        assert theirs == [] and ours.stdout.splitlines() == [
            "segment 00000001 offset %d: not enough room for message body" % _last_offset(seg1)]
        return
    assert ours.stdout.splitlines() == theirs
    assert ours.returncode == (1 if theirs and not all("not an error" in t for t in theirs) else 0)


def _last_offset(seg) -> int:
    data, off, last = seg.read_bytes(), 0, 0
    while off + 16 <= len(data):
        last = off
        off += 16 + struct.unpack_from("<I", data, off + 12)[0]
    return last


def test_c_and_python_writers_at_once(tmp_path):
    """The locks are the C library's: a C writer and a Python writer appending to one jlog
    at the same time lose nothing and interleave only whole records."""
    path = str(tmp_path / "shared")
    make(path, "r", unit_limit=2000)
    c_msgs = [(b"C%04d" % i, 1, i) for i in range(400)]
    py = subprocess.Popen([sys.executable, "-c", (
        "import sys\n"
        "from ecmta.loggers.jlog import Jlog\n"
        "w = Jlog(sys.argv[1]).open_writer()\n"
        "for i in range(400):\n"
        "    w.write(b'P%04d' % i, ts=(2, i))\n"
        "w.close()\n"), path])
    C.call({"op": "write", "path": path, "messages": _c_msgs(c_msgs)})
    assert py.wait(60) == 0
    got = [d for *_x, d in read_all(Jlog(path), "r")]
    assert [d for d in got if d.startswith(b"C")] == [b"C%04d" % i for i in range(400)]
    assert [d for d in got if d.startswith(b"P")] == [b"P%04d" % i for i in range(400)]
    assert run_cli("jlog_sanity_check", "le", path).stdout == ""


@pytest.mark.skipif(shutil.which("perl") is None, reason="no perl for jlog_sanity_check.pl")
def test_perl_sanity_check_reads_our_big_endian_copy(tmp_path):
    """A jlog written by C, converted by our jlog_change_endian, is a valid big-endian jlog
    for the Perl script (the stale jlog_change_endian.pl itself only knows 12-byte
    metastores and zero magics, so it cannot be the reference)."""
    path = str(tmp_path / "c.jlog")
    C.call({"op": "init", "path": path, "unit_limit": 700},
           {"op": "add", "path": path, "name": "r"},
           {"op": "write", "path": path, "messages": _c_msgs(MSGS[:50])},
           {"op": "read", "path": path, "name": "r", "max": 20})
    p = run_cli("jlog_change_endian", path, "tobe", tmp_path / "be.jlog")
    assert p.returncode == 0, p.stderr
    perl = subprocess.run(["perl", C.sanity_pl, str(tmp_path / "be.jlog"), "be"],
                          capture_output=True, text=True)
    assert perl.returncode == 0 and perl.stderr == ""
    counts = [ln for ln in perl.stdout.splitlines()]
    assert counts and all(ln.endswith(" records") for ln in counts)
    assert _perl_findings(tmp_path / "be.jlog", "be") == []
