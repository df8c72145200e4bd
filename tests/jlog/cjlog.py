"""The C libjlog, for cross-tests: found or built, then driven through ctypes in a child.

Where the C library comes from: the PyPI sdist `jlog==1.0.2` vendors libjlog 2.0.x (the
Message Systems/OmniTI C sources, jlogctl.c, jlog_sanity_check.pl, jlog_change_endian.pl).
`build()` looks for a finished build in $ECMTA_CJLOG_DIR or the user cache
(~/.cache/ecmta/cjlog-2.0), else downloads the sdist with pip (PyPI, the registry's own
client), runs its configure and make with the system's gcc, and keeps the result there.
Set ECMTA_CJLOG=0 to never try; every failure returns None and the cross-tests skip with
the reason.

The C calls run in a child process (`python cjlog.py LIB` reading JSON requests on stdin)
so a crash in C can never take the test process down. Requests:
  {"op": "init", "path", "unit_limit", "safety"}   {"op": "add", "path", "name", "whence"}
  {"op": "write", "path", "messages": [[hex, sec, usec], ...]}
  {"op": "read", "path", "name", "checkpoint": bool, "max": n}   -> records [[id, sec, usec, hex]]
  {"op": "interval", "path", "name"}  {"op": "remove", "path", "name"}
"""

from __future__ import annotations

import ctypes
import glob
import json
import os
import shutil
import subprocess
import sys
import tarfile

SDIST = "jlog==1.0.2"
HERE = os.path.dirname(os.path.abspath(__file__))


def cache_dir() -> str:
    if os.environ.get("ECMTA_CJLOG_DIR"):
        return os.environ["ECMTA_CJLOG_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "ecmta", "cjlog-2.0")


class CJlog:
    """Paths of a built C libjlog and its tools."""

    def __init__(self, src: str) -> None:
        self.src = src
        self.lib = os.path.join(src, "libjlog.so")
        self.jlogctl = os.path.join(src, "jlogctl")
        self.sanity_pl = os.path.join(src, "jlog_sanity_check.pl")
        self.endian_pl = os.path.join(src, "jlog_change_endian.pl")

    def ok(self) -> bool:
        return os.path.isfile(self.lib) and os.access(self.jlogctl, os.X_OK)

    def call(self, *requests: dict, timeout: float = 60) -> list:
        """Run requests in one child; the list of their answers."""
        p = subprocess.run([sys.executable, __file__, self.lib],
                           input="\n".join(json.dumps(r) for r in requests) + "\n",
                           capture_output=True, text=True, timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError(f"C jlog child failed ({p.returncode}): {p.stderr[-2000:]}")
        return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


_built: list = []


def build() -> tuple[CJlog | None, str]:
    """(CJlog, "") when the C library is usable, else (None, why not)."""
    if _built:
        return _built[0]
    _built.append(_build())
    return _built[0]


def _build() -> tuple[CJlog | None, str]:
    if os.environ.get("ECMTA_CJLOG", "1") == "0":
        return None, "ECMTA_CJLOG=0"
    root = cache_dir()
    src = os.path.join(root, "src")
    c = CJlog(src)
    if c.ok():
        return c, ""
    if not shutil.which("gcc") or not shutil.which("make"):
        return None, "no gcc/make to build the C libjlog"
    try:
        os.makedirs(root, exist_ok=True)
        tars = glob.glob(os.path.join(root, "jlog-*.tar.gz"))
        if not tars:
            p = subprocess.run([sys.executable, "-m", "pip", "download", SDIST, "--no-deps",
                                "--no-binary", ":all:", "-d", root],
                               capture_output=True, text=True, timeout=180)
            tars = glob.glob(os.path.join(root, "jlog-*.tar.gz"))
            if not tars:
                return None, f"pip download {SDIST} failed: {p.stderr[-500:]}"
        work = os.path.join(root, "unpack")
        shutil.rmtree(work, ignore_errors=True)
        with tarfile.open(tars[0]) as tf:
            tf.extractall(work, filter="data")
        inner = glob.glob(os.path.join(work, "jlog-*", "jlog"))[0]
        shutil.rmtree(src, ignore_errors=True)
        shutil.copytree(inner, src)
        for stale in ("jlogctl", "jlogtail", "jtest", "jthreadtest", "libjlog.dylib",
                      "config.status", "Makefile", "jlog_config.h"):
            try:
                os.unlink(os.path.join(src, stale))
            except OSError:
                pass
        # configure.in also makes perl/Makefile.PL, whose input the sdist lacks
        os.makedirs(os.path.join(src, "perl"), exist_ok=True)
        open(os.path.join(src, "perl", "Makefile.PL.in"), "w").close()
        subprocess.run(["sh", "./configure"], cwd=src, capture_output=True, timeout=180)
        if not all(os.path.exists(os.path.join(src, f)) for f in ("Makefile", "jlog_config.h")):
            return None, "configure of the C libjlog made no Makefile/jlog_config.h"
        p = subprocess.run(["make", "libjlog.so", "jlogctl"], cwd=src, capture_output=True,
                           text=True, timeout=300)
        if not c.ok():
            return None, f"make failed: {p.stderr[-800:]}"
        return c, ""
    except Exception as exc:  # any failure only skips the cross-tests
        return None, f"cannot build the C libjlog: {exc!r}"


# -- the child: ctypes on libjlog --------------------------------------------------------------

class _Header(ctypes.Structure):
    _fields_ = [("reserved", ctypes.c_uint32), ("tv_sec", ctypes.c_uint32),
                ("tv_usec", ctypes.c_uint32), ("mlen", ctypes.c_uint32)]


class _Id(ctypes.Structure):
    _fields_ = [("log", ctypes.c_uint32), ("marker", ctypes.c_uint32)]


class _Message(ctypes.Structure):
    _fields_ = [("header", ctypes.POINTER(_Header)), ("mess_len", ctypes.c_uint32),
                ("mess", ctypes.c_void_p), ("aligned_header", _Header)]


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


def _child(lib_path: str) -> None:
    lib = ctypes.CDLL(lib_path)
    lib.jlog_new.restype = ctypes.c_void_p
    lib.jlog_new.argtypes = [ctypes.c_char_p]
    vp = ctypes.c_void_p
    for name, args in {
        "jlog_ctx_init": [vp], "jlog_ctx_close": [vp], "jlog_ctx_err": [vp],
        "jlog_ctx_alter_journal_size": [vp, ctypes.c_size_t],
        "jlog_ctx_alter_safety": [vp, ctypes.c_int],
        "jlog_ctx_add_subscriber": [vp, ctypes.c_char_p, ctypes.c_int],
        "jlog_ctx_remove_subscriber": [vp, ctypes.c_char_p],
        "jlog_ctx_open_writer": [vp], "jlog_ctx_open_reader": [vp, ctypes.c_char_p],
        "jlog_ctx_write_message": [vp, ctypes.POINTER(_Message), ctypes.POINTER(_Timeval)],
        "jlog_ctx_read_interval": [vp, ctypes.POINTER(_Id), ctypes.POINTER(_Id)],
        "jlog_ctx_read_message": [vp, ctypes.POINTER(_Id), ctypes.POINTER(_Message)],
        "jlog_ctx_read_checkpoint": [vp, ctypes.POINTER(_Id)],
    }.items():
        getattr(lib, name).argtypes = args
        getattr(lib, name).restype = ctypes.c_int
    lib.jlog_ctx_err_string.restype = ctypes.c_char_p
    lib.jlog_ctx_err_string.argtypes = [vp]

    def err(ctx):
        return lib.jlog_ctx_err_string(ctx).decode()

    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        op, path = req["op"], req["path"].encode()
        ctx = lib.jlog_new(path)
        out: dict = {"ok": True}
        try:
            if op == "init":
                lib.jlog_ctx_alter_journal_size(ctx, req.get("unit_limit", 4 * 1024 * 1024))
                lib.jlog_ctx_alter_safety(ctx, req.get("safety", 1))
                if lib.jlog_ctx_init(ctx) != 0:
                    out = {"ok": False, "err": err(ctx)}
            elif op == "add":
                whence = req.get("whence", 0)
                if lib.jlog_ctx_add_subscriber(ctx, req["name"].encode(), whence) != 0:
                    out = {"ok": False, "err": err(ctx)}
            elif op == "remove":
                out = {"ok": True, "rv": lib.jlog_ctx_remove_subscriber(ctx, req["name"].encode())}
            elif op == "write":
                if lib.jlog_ctx_open_writer(ctx) != 0:
                    out = {"ok": False, "err": err(ctx)}
                else:
                    for hexdata, sec, usec in req["messages"]:
                        data = bytes.fromhex(hexdata)
                        buf = ctypes.create_string_buffer(data, len(data))
                        m = _Message()
                        m.mess = ctypes.cast(buf, ctypes.c_void_p)
                        m.mess_len = len(data)
                        tv = _Timeval(sec, usec)
                        if lib.jlog_ctx_write_message(ctx, ctypes.byref(m), ctypes.byref(tv)) != 0:
                            out = {"ok": False, "err": err(ctx)}
                            break
            elif op in ("read", "interval"):
                if lib.jlog_ctx_open_reader(ctx, req["name"].encode()) != 0:
                    out = {"ok": False, "err": err(ctx)}
                else:
                    out = _read(lib, ctx, req, err, op == "interval")
        finally:
            lib.jlog_ctx_close(ctx)
        print(json.dumps(out), flush=True)


def _read(lib, ctx, req, err, interval_only: bool) -> dict:
    start, end = _Id(), _Id()
    if interval_only:
        n = lib.jlog_ctx_read_interval(ctx, ctypes.byref(start), ctypes.byref(end))
        return {"ok": n >= 0, "count": n, "start": [start.log, start.marker],
                "end": [end.log, end.marker], "err": err(ctx)}
    records = []
    limit = req.get("max", 1 << 30)
    while len(records) < limit:
        n = lib.jlog_ctx_read_interval(ctx, ctypes.byref(start), ctypes.byref(end))
        if n < 0:
            return {"ok": False, "err": err(ctx), "records": records}
        if n == 0:
            break
        cur = _Id(start.log, start.marker)
        last = None
        for _ in range(n):
            if len(records) >= limit:
                break
            m = _Message()
            if lib.jlog_ctx_read_message(ctx, ctypes.byref(cur), ctypes.byref(m)) != 0:
                return {"ok": False, "err": err(ctx), "records": records}
            data = ctypes.string_at(m.mess, m.mess_len)
            records.append([[cur.log, cur.marker], m.aligned_header.tv_sec,
                            m.aligned_header.tv_usec, data.hex()])
            last = _Id(cur.log, cur.marker)
            cur.marker += 1
        if req.get("checkpoint", True) and last is not None:
            if lib.jlog_ctx_read_checkpoint(ctx, ctypes.byref(last)) != 0:
                return {"ok": False, "err": err(ctx), "records": records}
        elif last is not None:
            break
    return {"ok": True, "records": records}




# -- the byte-level fixture kept in c_fixture.py --------------------------------------------

FIXTURE_UNIT_LIMIT = 200
FIXTURE_MESSAGES = [(f"record {i:02d} ".encode() + bytes(range(i * 5 % 256, i * 5 % 256 + i * 3)),
                     1_300_000_000 + i * 7, (i * 12_345) % 1_000_000) for i in range(12)]


def make_fixture(c: CJlog, path: str) -> dict:
    """A jlog made by the C library: init (unit_limit 200), subscribers alpha and beta,
    the 12 FIXTURE_MESSAGES, then alpha reads and checkpoints 5 of them."""
    msgs = [[d.hex(), s, u] for d, s, u in FIXTURE_MESSAGES]
    c.call({"op": "init", "path": path, "unit_limit": FIXTURE_UNIT_LIMIT},
           {"op": "add", "path": path, "name": "alpha"},
           {"op": "add", "path": path, "name": "beta"},
           {"op": "write", "path": path, "messages": msgs},
           {"op": "read", "path": path, "name": "alpha", "max": 5})
    return {name: open(os.path.join(path, name), "rb").read().hex()
            for name in sorted(os.listdir(path))}


def write_fixture_module(c: CJlog, tmp: str) -> str:
    files = make_fixture(c, os.path.join(tmp, "fixture.jlog"))
    body = ",\n".join(f"    {k!r}: {v!r}" for k, v in files.items())
    text = ('"""A jlog written by the C libjlog 2.0.x (x86-64, little-endian), made by\n'
            'tests/jlog/cjlog.py make_fixture(): the files, in hex. Regenerate with\n'
            '`python -m ecmta.tests.jlog.cjlog --fixture`."""\n\nFILES = {\n' + body + ",\n}\n")
    out = os.path.join(HERE, "c_fixture.py")
    with open(out, "w") as fh:
        fh.write(text)
    return out


if __name__ == "__main__":
    if sys.argv[1:] == ["--fixture"]:
        import tempfile
        built, why = build()
        if built is None:
            sys.exit(why)
        with tempfile.TemporaryDirectory() as tmp:
            print(write_fixture_module(built, tmp))
    else:
        _child(sys.argv[1])
