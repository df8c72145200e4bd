"""jlog: Momentum's durable, segmented, multi-subscriber log (libjlog), byte for byte.

Owns: the on-disk format and every rule of the C library that touches it: creating a
jlog, appending records (segment rollover), subscribers and their checkpoints, reading
(index resync, the read interval), deleting segments every subscriber has passed, and
the repair of damaged segments and indexes. Pure Python, blocking file I/O: callers on
the gevent hub run it in a named pool (`ecmta.pools.run/submit`); command-line tools and
consumers in their own process call it directly. A `JlogReader` or `JlogWriter` is used by
one thread at a time (as a C `jlog_ctx`); several readers and writers, in this process or
in others, C or Python, may work on one jlog at once: they coordinate as the C library does.

Sources followed (the layout and every struct are the C library's; nothing is invented):
  * github.com/omniti-labs/jlog, files jlog.c, jlog.h, jlog_private.h, jlog_io.c, jlogctl.c
    at commit 048756c7e83dc769a719f59d142b761458f4b247 (libjlog 2.x, the newest stored);
  * libjlog 2.0.x as vendored in the PyPI sdist `jlog-1.0.2` (directory jlog/: jlog.c,
    jlog.h, jlog_private.h, jlog_io.c, jlogctl.c, jlog_sanity_check.pl,
    jlog_change_endian.pl), which was built here with gcc and used to cross-test
    (tests/jlog/cjlog.py): its files and ours are compared byte for byte.

On-disk layout (a jlog is a directory):
  metastore       struct _jlog_meta_info { u_int32_t storage_log; u_int32_t unit_limit;
                  u_int32_t safety; u_int32_t hdr_magic; }     16 bytes, native byte order.
                  storage_log is the segment being written; unit_limit the segment size
                  (DEFAULT_UNIT_LIMIT 4 MiB); safety JLOG_UNSAFE 0 / JLOG_ALMOST_SAFE 1
                  (default) / JLOG_SAFE 2; hdr_magic DEFAULT_HDR_MAGIC 0x663A7318. A
                  12-byte metastore is the pre-magic format (magic 0; a writer extends it
                  with four zero bytes, as __jlog_restore_metastore does).
  %08x            segment files, lower-case hex of the log number (STRLOGID), records
                  appended back to back: typedef struct _jlog_message_header {
                  u_int32_t reserved /* = hdr_magic */; u_int32_t tv_sec; u_int32_t tv_usec;
                  u_int32_t mlen; } 16 bytes, then mlen bytes of message.
  %08x.idx        index of a segment: one u_int64_t (native) data offset per record;
                  written only by readers (___jlog_resync_index), never by the writer.
                  Once the segment is older than storage_log and fully indexed, a 0 offset
                  is appended: the index is "closed". An idx that is missing, short or
                  wrong is rebuilt from the segment.
  cp.<hex>        one per subscriber, the name's bytes in lower-case hex:
                  typedef struct _jlog_id { u_int32_t log; u_int32_t marker; } 8 bytes: the
                  last record read and checkpointed (marker counts from 1; 0 = none yet).
  pre_commit      (libjlog >= 2.2.1 writers only) u_int32_t fill pointer + buffer of records
                  not yet in a segment; a writer opening the jlog flushes a non-empty one
                  (as jlog_ctx_close does). ecmta writers never create it (size 0 default).
  Records written with compression (hdr_magic 0x15106A00|provider, 20-byte headers) are
  refused with JLOG_ERR_NOT_SUPPORTED: Momentum does not write them.

Rules kept from jlog.c: a record goes into the current segment while its size before the
write is below unit_limit, so a segment ends with the first record that reaches the limit;
then the writer closes it and the metastore's storage_log is incremented under the
metastore lock (__jlog_metastore_atomic_increment). Every file is locked with a whole-file
fcntl write lock (F_SETLKW, jlog_file_lock) around the same operations as in C: the data
file while appending or repairing, the index while resyncing, the metastore while
reading/incrementing, a checkpoint while reading/writing it. Within a process one
descriptor per file is shared (keyed by device and inode, like jlog_io.c), so closing
one user's descriptor never drops another's lock. A checkpoint that moves past segments
deletes each one (and its idx) that no subscriber's checkpoint still points at or before
(__jlog_set_checkpoint + jlog_pending_readers).

Safety (the metastore's `safety`), as in C plus what a batching writer owes its callers:
  UNSAFE       nothing is synced.
  ALMOST_SAFE  the data file is fdatasync'ed when a segment is closed and at close() (as
               libjlog 2.x's __jlog_close_writer); metastore and checkpoints are not.
  SAFE         also the metastore and every checkpoint on each update (msync(MS_SYNC) /
               fdatasync in C), and the data file after each write()/write_many() call,
               which is when a record counts as committed. A new segment's directory
               entry is synced too.
Crash safety: a record whose write() returned is never lost by killing the process (the
bytes are in the file); a write killed half way leaves an incomplete record at the end of
the current segment, which readers never index (as in C) and which the next writer to open
the jlog removes before appending (the C writer would append after it).

Departures from C, none visible in the files of a healthy jlog: an index whose size is not
a multiple of 8, or whose last offset does not lead to a record boundary, is rebuilt from
the segment even for the current segment (C returns JLOG_ERR_IDX_CORRUPT until the segment
is closed); a rollover saves the metastore before creating the next segment (C creates the
file first, so a writer killed in between leaves a segment newer than storage_log, which
jlog_sanity_check reports); a writer removes an interrupted write before appending.

API (ids are JlogId(log, marker); see each docstring):
    jl = Jlog(path)                       jl.init(unit_limit=, safety=) / Jlog.ensure(path, sub)
    w = jl.open_writer(); w.write(b"..", ts=None); w.write_many([...]); w.close()
    r = jl.open_reader("sub"); start, end = iv = r.read_interval()   # iv.count records
    for id in iv.ids(): ts, data = r.read_message(id)                # or r.read(id)
    r.checkpoint(end)                     # r.advance(end) is the same
    for id, (ts, data) in r.pending(): ...  # every complete record after the checkpoint,
                                          # across segments, without checkpointing
    r.advance_id(cur, start, finish)      # jlog_ctx_advance_id; r.last_log_id(); r.lag()
    jl.add_subscriber(name, whence=BEGIN|END); jl.remove_subscriber(name)
    jl.list_subscribers(); jl.get_checkpoint(name); jl.lag(name)
"""

from __future__ import annotations

import errno as _errno
import fcntl
import os
import stat as _stat
import struct
import sys
import time
from typing import Iterable, Iterator, NamedTuple

try:  # a native lock: pool threads are real OS threads even under gevent's patching
    from gevent.monkey import get_original as _get_original
    _allocate_lock = _get_original("_thread", "allocate_lock")
except Exception:  # pragma: no cover - gevent is a dependency
    import _thread
    _allocate_lock = _thread.allocate_lock

# -- constants (jlog.h, jlog_private.h) ---------------------------------------------------

BEGIN, END = 0, 1                                  # jlog_position
UNSAFE, ALMOST_SAFE, SAFE = 0, 1, 2                # jlog_safety
SAFETY_NAMES = {UNSAFE: "JLOG_UNSAFE", ALMOST_SAFE: "JLOG_ALMOST_SAFE", SAFE: "JLOG_SAFE"}
DEFAULT_FILE_MODE = 0o640
DEFAULT_UNIT_LIMIT = 4 * 1024 * 1024
DEFAULT_HDR_MAGIC = 0x663A7318
HDR_MAGIC_COMPRESSION = 0x15106A00
DEFAULT_SAFETY = ALMOST_SAFE
INDEX_EXT = ".idx"
METASTORE = "metastore"
PRE_COMMIT = "pre_commit"
HEADER_SIZE = 16
BUFFERED_INDICES = 1024
MAX_MESSAGE = 0xFFFFFFFF

ERRORS = (
    "JLOG_ERR_SUCCESS", "JLOG_ERR_ILLEGAL_INIT", "JLOG_ERR_ILLEGAL_OPEN", "JLOG_ERR_OPEN",
    "JLOG_ERR_NOTDIR", "JLOG_ERR_CREATE_PATHLEN", "JLOG_ERR_CREATE_EXISTS",
    "JLOG_ERR_CREATE_MKDIR", "JLOG_ERR_CREATE_META", "JLOG_ERR_LOCK", "JLOG_ERR_IDX_OPEN",
    "JLOG_ERR_IDX_SEEK", "JLOG_ERR_IDX_CORRUPT", "JLOG_ERR_IDX_WRITE", "JLOG_ERR_IDX_READ",
    "JLOG_ERR_FILE_OPEN", "JLOG_ERR_FILE_SEEK", "JLOG_ERR_FILE_CORRUPT", "JLOG_ERR_FILE_READ",
    "JLOG_ERR_FILE_WRITE", "JLOG_ERR_META_OPEN", "JLOG_ERR_ILLEGAL_WRITE",
    "JLOG_ERR_ILLEGAL_CHECKPOINT", "JLOG_ERR_INVALID_SUBSCRIBER", "JLOG_ERR_ILLEGAL_LOGID",
    "JLOG_ERR_SUBSCRIBER_EXISTS", "JLOG_ERR_CHECKPOINT", "JLOG_ERR_NOT_SUPPORTED",
    "JLOG_ERR_CLOSE_LOGID",
)
# the jlog_err values, named as in jlog.h without the JLOG_ prefix
ERR_SUCCESS = 0
ERR_ILLEGAL_INIT = 1
ERR_ILLEGAL_OPEN = 2
ERR_OPEN = 3
ERR_NOTDIR = 4
ERR_CREATE_PATHLEN = 5
ERR_CREATE_EXISTS = 6
ERR_CREATE_MKDIR = 7
ERR_CREATE_META = 8
ERR_LOCK = 9
ERR_IDX_OPEN = 10
ERR_IDX_SEEK = 11
ERR_IDX_CORRUPT = 12
ERR_IDX_WRITE = 13
ERR_IDX_READ = 14
ERR_FILE_OPEN = 15
ERR_FILE_SEEK = 16
ERR_FILE_CORRUPT = 17
ERR_FILE_READ = 18
ERR_FILE_WRITE = 19
ERR_META_OPEN = 20
ERR_ILLEGAL_WRITE = 21
ERR_ILLEGAL_CHECKPOINT = 22
ERR_INVALID_SUBSCRIBER = 23
ERR_ILLEGAL_LOGID = 24
ERR_SUBSCRIBER_EXISTS = 25
ERR_CHECKPOINT = 26
ERR_NOT_SUPPORTED = 27
ERR_CLOSE_LOGID = 28


class JlogError(Exception):
    """A jlog operation failed: `code` is the jlog_err value, `name` its JLOG_ERR_* name."""

    def __init__(self, code: int, detail: str = "", errno: int = 0) -> None:
        self.code = code
        self.name = ERRORS[code] if 0 <= code < len(ERRORS) else "Unknown"
        self.errno = errno
        self.detail = detail
        text = self.name + (f": {detail}" if detail else "")
        if errno:
            text += f" ({os.strerror(errno)})"
        super().__init__(text)


class JlogId(NamedTuple):
    """jlog_id: segment number and record number within it (1-based; 0 = before the first)."""
    log: int
    marker: int

    def __str__(self) -> str:          # jlog_snprint_logid
        return f"{self.log:08x}:{self.marker:08x}"


class Meta(NamedTuple):
    storage_log: int
    unit_limit: int
    safety: int
    hdr_magic: int


class Message(tuple):
    """One record, unpacking as (timestamp, data): the time in seconds (float) and the
    bytes; `tv_sec`/`tv_usec` are the header's exact fields."""

    def __new__(cls, timestamp: float, data: bytes, tv_sec: int = 0, tv_usec: int = 0):
        self = super().__new__(cls, (timestamp, data))
        self.tv_sec, self.tv_usec = tv_sec, tv_usec
        return self

    @property
    def timestamp(self) -> float:
        return self[0]

    @property
    def data(self) -> bytes:
        return self[1]

    def __repr__(self) -> str:
        return f"Message(timestamp={self[0]!r}, data={self[1]!r})"


class Interval(tuple):
    """(start, end) of jlog_ctx_read_interval, with `count` records (0: nothing new).

    When count > 0 the records are start .. end (inclusive, same segment); when 0, start ==
    end is the subscriber's position. Unpacks as a pair: `start, end = reader.read_interval()`.
    """

    def __new__(cls, start: JlogId, end: JlogId, count: int):
        self = super().__new__(cls, (start, end))
        self.count = count
        return self

    @property
    def start(self) -> JlogId:
        return self[0]

    @property
    def end(self) -> JlogId:
        return self[1]

    def ids(self) -> Iterator[JlogId]:
        start = self[0]
        for i in range(self.count):
            yield JlogId(start.log, start.marker + i)

    def __repr__(self) -> str:
        return f"Interval(start={self[0]}, end={self[1]}, count={self.count})"


# -- byte order ------------------------------------------------------------------------------

class Codec:
    """The structs in one byte order ('<' little, '>' big, '=' native)."""

    def __init__(self, order: str = "=") -> None:
        self.order = order
        self.meta = struct.Struct(order + "IIII")
        self.header = struct.Struct(order + "IIII")
        self.offset = struct.Struct(order + "Q")
        self.id = struct.Struct(order + "II")
        self.u32 = struct.Struct(order + "I")


NATIVE = Codec("=")


def codec_for(endian: str | None) -> Codec:
    """'le'/'little', 'be'/'big', or None for the machine's own order."""
    if endian is None:
        return NATIVE
    e = endian.lower()
    if e in ("le", "little", "<"):
        return Codec("<")
    if e in ("be", "big", ">"):
        return Codec(">")
    raise ValueError(f"unknown byte order {endian!r} (use le or be)")


# -- files: one descriptor per (device, inode) in the process, as jlog_io.c ------------------

class _File:
    __slots__ = ("key", "fd", "refcnt", "mutex", "path")

    def __init__(self, key, fd: int, path: str) -> None:
        self.key, self.fd, self.refcnt, self.path = key, fd, 1, path
        self.mutex = _allocate_lock()

    def lock(self) -> None:
        """jlog_file_lock: the in-process mutex, then a whole-file fcntl write lock."""
        self.mutex.acquire()
        try:
            while True:
                try:
                    fcntl.lockf(self.fd, fcntl.LOCK_EX)
                    return
                except InterruptedError:
                    continue
        except BaseException:
            self.mutex.release()
            raise

    def unlock(self) -> None:
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)
        finally:
            self.mutex.release()

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def pread(self, n: int, offset: int) -> bytes:
        """Exactly n bytes at offset, or fewer only at end of file."""
        out = b""
        while len(out) < n:
            chunk = os.pread(self.fd, n - len(out), offset + len(out))
            if not chunk:
                break
            out += chunk
        return out

    def pwrite(self, data, offset: int) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(self.fd, view, offset)
            view, offset = view[n:], offset + n

    def truncate(self, length: int) -> None:
        os.ftruncate(self.fd, length)

    def sync(self) -> None:
        os.fdatasync(self.fd)


_table_lock = _allocate_lock()
_table: dict = {}


def _file_open(path: str, create: bool = False, excl: bool = False,
               mode: int = DEFAULT_FILE_MODE) -> _File:
    """jlog_file_open: O_RDWR (+O_CREAT/O_EXCL); a file already open here is shared."""
    with _table_lock:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        if st is not None:
            if not _stat.S_ISREG(st.st_mode):
                raise IsADirectoryError(_errno.EISDIR, "not a regular file", path)
            shared = _table.get((st.st_dev, st.st_ino))
            if shared is not None:
                if excl:
                    raise FileExistsError(_errno.EEXIST, os.strerror(_errno.EEXIST), path)
                shared.refcnt += 1
                return shared
        flags = os.O_RDWR | (os.O_CREAT if create else 0) | (os.O_EXCL if excl else 0)
        fd = os.open(path, flags, mode)
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        shared = _table.get(key)
        if shared is not None:       # created meanwhile by this process under another name
            os.close(fd)
            shared.refcnt += 1
            return shared
        f = _File(key, fd, path)
        _table[key] = f
        return f


def _file_close(f: _File | None) -> None:
    if f is None:
        return
    with _table_lock:
        f.refcnt -= 1
        if f.refcnt == 0:
            _table.pop(f.key, None)
            os.close(f.fd)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def segment_name(log: int) -> str:
    return f"{log & 0xFFFFFFFF:08x}"


def is_datafile(name: str) -> int | None:
    """The log number of a segment file name (8 lower-case hex digits), else None."""
    if len(name) != 8 or any(c not in "0123456789abcdef" for c in name):
        return None
    return int(name, 16)


def checkpoint_filename(subscriber: str) -> str:
    """cp.<hex of the name's bytes> (compute_checkpoint_filename)."""
    return "cp." + _name_bytes(subscriber).hex()


def subscriber_from_filename(name: str) -> str:
    """The inverse of checkpoint_filename, decoding like jlog_ctx_list_subscribers."""
    hexpart = name[3:]
    digits = "0123456789abcdef"
    out = bytearray()
    for i in range(0, len(hexpart), 2):
        pair = hexpart[i:i + 2]
        hi = digits.find(pair[0])
        lo = digits.find(pair[1]) if len(pair) > 1 else 0
        out.append(((hi if hi >= 0 else 0) << 4) | (lo if lo >= 0 else 0))
    return out.decode("utf-8", "surrogateescape")


def _name_bytes(name) -> bytes:
    if isinstance(name, bytes):
        return name
    return name.encode("utf-8", "surrogateescape")


def pack_record(data: bytes, ts=None, *, magic: int = DEFAULT_HDR_MAGIC,
                codec: Codec = NATIVE) -> bytes:
    """One record as written to a segment: 16-byte header + message.

    ts: None (now), a float of seconds, or a (tv_sec, tv_usec) pair.
    """
    if ts is None:
        ts = time.time()
    if isinstance(ts, tuple):
        sec, usec = ts
    else:
        sec = int(ts)
        usec = int(round((ts - sec) * 1_000_000))
        if usec >= 1_000_000:
            sec, usec = sec + 1, usec - 1_000_000
    if len(data) > MAX_MESSAGE:
        raise ValueError("a jlog record holds at most 4 GiB - 1")
    return codec.header.pack(magic, sec & 0xFFFFFFFF, usec & 0xFFFFFFFF, len(data)) + bytes(data)


# -- the context: what jlog_ctx does for readers, writers and tools ---------------------------

class _Context:
    """Open files and the C algorithms on them; subclassed by JlogReader and JlogWriter."""

    def __init__(self, jlog: "Jlog") -> None:
        self.jlog = jlog
        self.path = jlog.path
        self.codec = jlog.codec
        self.file_mode = jlog.file_mode
        self.meta = Meta(0, DEFAULT_UNIT_LIMIT, DEFAULT_SAFETY, DEFAULT_HDR_MAGIC)
        self.metastore: _File | None = None
        self.current_log = 0
        self.data: _File | None = None
        self.index: _File | None = None
        self.warn = jlog.warn
        self.closed = False

    # paths
    def _file(self, log: int) -> str:
        return os.path.join(self.path, segment_name(log))

    def _idx(self, log: int) -> str:
        return self._file(log) + INDEX_EXT

    # metastore
    def _open_metastore(self, create: bool = False) -> None:
        if self.metastore is not None:
            return
        try:
            self.metastore = _file_open(os.path.join(self.path, METASTORE), create=create,
                                        mode=self.file_mode)
        except OSError as exc:
            raise JlogError(ERR_META_OPEN, f"{self.path}: no metastore", exc.errno) from None

    def _restore_metastore(self, locked: bool = False, writer: bool = False,
                           lock: bool = True) -> Meta:
        """Read the metastore (C maps it: every caller sees the live values). lock=False
        reads without the metastore lock, as C's mapped reads do."""
        if self.metastore is None:
            self._open_metastore()
        if lock and not locked:
            self.metastore.lock()
        try:
            raw = self.metastore.pread(16, 0)
            if len(raw) == 12:
                if writer:   # old format: extend with a zero magic
                    self.metastore.pwrite(b"\0\0\0\0", 12)
                raw += b"\0\0\0\0"
            if len(raw) != 16:
                raise JlogError(ERR_META_OPEN,
                                f"{self.path}/metastore has {len(raw)} bytes, not 16")
        finally:
            if lock and not locked:
                self.metastore.unlock()
        meta = Meta(*self.codec.meta.unpack(raw))
        if (meta.hdr_magic & HDR_MAGIC_COMPRESSION) == HDR_MAGIC_COMPRESSION:
            raise JlogError(ERR_NOT_SUPPORTED, f"{self.path} holds compressed records "
                            f"(header magic {meta.hdr_magic:#010x})")
        self.meta = meta
        return meta

    def _save_metastore(self, locked: bool = False) -> None:
        if not locked:
            self.metastore.lock()
        try:
            self.metastore.pwrite(self.codec.meta.pack(*self.meta), 0)
            if self.meta.safety == SAFE:
                self.metastore.sync()
        finally:
            if not locked:
                self.metastore.unlock()

    # data and index files of one segment (the C ctx keeps one of each open)
    def _open_reader_file(self, log: int) -> _File:
        if self.current_log != log:
            self._close_data()
            self._close_index()
        if self.data is None:
            try:
                self.data = _file_open(self._file(log), mode=self.file_mode)
            except OSError as exc:
                raise JlogError(ERR_FILE_OPEN, self._file(log), exc.errno) from None
            self.current_log = log
        return self.data

    def _open_indexer(self, log: int) -> _File:
        if self.current_log != log:
            self._close_data()
            self._close_index()
        if self.index is None:
            try:
                self.index = _file_open(self._idx(log), create=True, mode=self.file_mode)
            except OSError as exc:
                raise JlogError(ERR_IDX_OPEN, self._idx(log), exc.errno) from None
            self.current_log = log
        return self.index

    def _close_data(self) -> None:
        _file_close(self.data)
        self.data = None

    def _close_index(self) -> None:
        _file_close(self.index)
        self.index = None

    def _unlink_datafile(self, log: int) -> None:
        if self.current_log == log:
            self._close_data()
            self._close_index()
        for name in (self._file(log), self._idx(log)):
            try:
                os.unlink(name)
            except FileNotFoundError:
                pass

    def _header(self, f: _File, offset: int):
        raw = f.pread(HEADER_SIZE, offset)
        if len(raw) != HEADER_SIZE:
            raise JlogError(ERR_FILE_READ, f"{f.path}: short header at {offset}")
        return self.codec.header.unpack(raw)

    # index resync (___jlog_resync_index / __jlog_resync_index)
    def resync_index(self, log: int) -> tuple[JlogId, bool]:
        """Bring log's .idx up to date; (last id in the segment, index closed?).

        Retries up to 4 times; a segment older than storage_log whose records do not
        chain is repaired (jlog_repair_datafile) and reindexed in between, as C does.
        """
        err = None
        for _attempt in range(4):
            try:
                return self._resync_once(log)
            except JlogError as exc:
                err = exc
                if exc.code in (ERR_FILE_OPEN, ERR_IDX_OPEN):
                    raise
                if log >= self.meta.storage_log:
                    raise
                self.repair_datafile(log)
                idx = self._open_indexer(log)
                idx.lock()
                try:
                    idx.truncate(0)
                finally:
                    idx.unlock()
        raise err

    def _resync_once(self, log: int) -> tuple[JlogId, bool]:
        data = self._open_reader_file(log)
        for rebuild in range(3):
            index = self._open_indexer(log)
            index.lock()
            try:
                result = self._resync_locked(log, data, index)
                if result is _EMPTY_OLD:
                    break
                if result is not None:
                    return result
                # RESTART: an index that does not fit the segment is cut back, then rebuilt.
                if rebuild == 2:
                    raise JlogError(ERR_IDX_CORRUPT, self._idx(log))
                size = index.size()
                index.truncate(size - size % 8 if rebuild == 0 else 0)
            finally:
                index.unlock()
        # an empty segment older than storage_log is removed (libjlog 2.x)
        self._unlink_datafile(log)
        raise JlogError(ERR_FILE_OPEN, self._file(log), _errno.ENOENT)

    def _resync_locked(self, log: int, data: _File, index: _File):
        """One pass; None means RESTART (the index does not fit the segment)."""
        off = self.codec.offset
        data_len = data.size()
        if data_len == 0 and log < self.meta.storage_log:
            return _EMPTY_OLD
        index_off = index.size()
        if index_off % 8:
            return None
        data_off = 0
        if index_off > 8:
            (last,) = off.unpack(index.pread(8, index_off - 8))
            if last == 0:
                return JlogId(log, index_off // 8 - 1), True
            if last > data_len:
                return None
            data_off = last
        if index_off > 0:      # adding onto a partial index: step over its last record
            if data_off + HEADER_SIZE > data_len:
                return None
            magic, _s, _u, mlen = self._header(data, data_off)
            if magic != self.meta.hdr_magic:
                return None
            data_off += HEADER_SIZE + mlen
            if data_off > data_len:
                return None
        indices = []
        while data_off + HEADER_SIZE <= data_len:
            magic, _s, _u, mlen = self._header(data, data_off)
            if magic != self.meta.hdr_magic:
                if index_off > 0:
                    return None          # maybe a wrong index, not a bad segment: rebuild
                raise JlogError(ERR_FILE_CORRUPT, f"{self._file(log)} offset {data_off}: "
                                f"reserved {magic:#010x} != {self.meta.hdr_magic:#010x}")
            next_off = data_off + HEADER_SIZE + mlen
            if next_off > data_len:
                break
            indices.append(data_off)
            if len(indices) >= BUFFERED_INDICES:
                index.pwrite(b"".join(off.pack(o) for o in indices), index_off)
                index_off += 8 * len(indices)
                indices = []
            data_off = next_off
        if indices:
            index.pwrite(b"".join(off.pack(o) for o in indices), index_off)
            index_off += 8 * len(indices)
        last_id = JlogId(log, index_off // 8)
        closed = False
        if log < self.meta.storage_log:
            if data.size() != data_len:     # a late write by the writer: index again
                return None
            if data_off != data_len:
                raise JlogError(ERR_FILE_CORRUPT, f"{self._file(log)}: {data_len - data_off} "
                                "bytes after the last record of a closed segment")
            if index_off:   # no closing 0 for an empty segment: it would read as offset 0
                index.pwrite(off.pack(0), index_off)
            closed = True
        return last_id, closed

    # segment repair (jlog_repair_datafile, jlog_inspect_datafile)
    def repair_datafile(self, log: int) -> int:
        """Cut out the bytes of a segment that are not a chain of records; the number of
        damaged regions removed (0: nothing to do)."""
        data = self._open_reader_file(log)
        data.lock()
        try:
            buf = data.pread(data.size(), 0)
            invalid = find_invalid_regions(buf, self.meta.hdr_magic, self.codec)
            if invalid:
                kept = bytearray()
                pos = 0
                for start, end in invalid:
                    kept += buf[pos:start]
                    pos = end
                kept += buf[pos:]
                first = invalid[0][0]
                data.pwrite(bytes(kept[first:]), first)
                data.truncate(len(kept))
            return len(invalid)
        finally:
            data.unlock()

    def inspect_datafile(self, log: int, verbose: bool = False, out=None) -> int:
        """jlog_inspect_datafile: 0 OK, 1 damaged (what is wrong goes to `out`, stderr)."""
        out = out if out is not None else sys.stderr
        data = self._open_reader_file(log)
        buf = data.pread(data.size(), 0)
        size = len(buf)
        this = 0
        i = 0
        while this + HEADER_SIZE <= size:
            magic, tv_sec, _u, mlen = self.codec.header.unpack_from(buf, this)
            i += 1
            if magic != self.meta.hdr_magic:
                out.write(f"Message {i} at [{this}] has invalid reserved value {magic}\n")
                return 1
            head = f"Message {i} at [{this}] of ({HEADER_SIZE}+{mlen})"
            if verbose:
                out.write(head)
            nxt = this + HEADER_SIZE + mlen
            if nxt > size:
                out.write(("" if verbose else head) + " OFF THE END!\n")
                return 1
            if verbose:
                when = time.strftime("%c", time.localtime(tv_sec))
                out.write(f"\n\ttime: {when}\n\tmlen: {mlen}\n")
            this = nxt
        if this < size:
            out.write(f"{size - this} bytes of junk at the end\n")
            return 1
        return 0

    def idx_details(self, log: int) -> tuple[int, bool]:
        """jlog_idx_details: (records in the index, closed?)."""
        index = self._open_indexer(log)
        n = index.size()
        if n % 8:
            raise JlogError(ERR_IDX_CORRUPT, self._idx(log))
        if n > 8:
            (last,) = self.codec.offset.unpack(index.pread(8, n - 8))
            return (n // 8, False) if last else (n // 8 - 1, True)
        return n // 8, False

    # checkpoints
    def _cp_path(self, name: str) -> str:
        return os.path.join(self.path, checkpoint_filename(name))

    def get_checkpoint(self, name: str) -> JlogId:
        """The subscriber's checkpoint; JLOG_ERR_INVALID_SUBSCRIBER if there is none."""
        try:
            f = _file_open(self._cp_path(name), mode=self.file_mode)
        except OSError as exc:
            raise JlogError(ERR_INVALID_SUBSCRIBER, repr(name), exc.errno) from None
        try:
            f.lock()
            try:
                raw = f.pread(8, 0)
            finally:
                f.unlock()
        finally:
            _file_close(f)
        if len(raw) != 8:
            raise JlogError(ERR_INVALID_SUBSCRIBER, f"{name!r}: checkpoint has {len(raw)} bytes")
        return JlogId(*self.codec.id.unpack(raw))

    def _set_checkpoint(self, name: str, new: JlogId) -> None:
        """__jlog_set_checkpoint: write it, then drop segments nobody needs any more."""
        try:
            f = _file_open(self._cp_path(name), mode=self.file_mode)
        except OSError as exc:
            raise JlogError(ERR_CHECKPOINT, repr(name), exc.errno) from None
        try:
            f.lock()
            try:
                if f.size() == 0:
                    old_log = new.log       # first time: no segment was pending on it
                else:
                    raw = f.pread(8, 0)
                    old_log = self.codec.id.unpack(raw)[0] if len(raw) == 8 else new.log
                f.pwrite(self.codec.id.pack(new.log, new.marker), 0)
                if self.meta.safety == SAFE:
                    f.sync()
            finally:
                f.unlock()
        finally:
            _file_close(f)
        for log in range(old_log, new.log):
            if self.pending_readers(log)[0] == 0:
                self._unlink_datafile(log)

    def pending_readers(self, log: int) -> tuple[int, int]:
        """jlog_pending_readers: (subscribers at or before log, earliest checkpoint log)."""
        readers, earliest, seen = 0, 0, False
        try:
            names = os.listdir(self.path)
        except OSError:
            return -1, 0
        for name in names:
            if not name.startswith("cp."):
                continue
            try:
                f = _file_open(os.path.join(self.path, name), mode=self.file_mode)
            except OSError:
                continue
            try:
                f.lock()
                try:
                    raw = f.pread(8, 0)
                finally:
                    f.unlock()
            finally:
                _file_close(f)
            cp_log = self.codec.id.unpack(raw)[0] if len(raw) == 8 else 0
            if not seen or cp_log < earliest:
                earliest, seen = cp_log, True
            if cp_log <= log:
                readers += 1
        return readers, earliest

    # reading (__jlog_find_first_log_after, jlog_ctx_read_message)
    def _find_first_log_after(self, chkpt: JlogId) -> tuple[JlogId, JlogId]:
        start = chkpt
        while True:
            try:
                last, closed = self.resync_index(start.log)
            except JlogError as exc:
                if exc.code == ERR_FILE_OPEN and exc.errno == _errno.ENOENT:
                    if start.log >= self.meta.storage_log:
                        return start, start          # never past where people write
                    start = JlogId(start.log + 1, 0)
                    continue
                raise
            if last.log == start.log and last.marker < start.marker:
                start = last                          # checkpointed off the end
            if start == last and closed:
                if start.log >= self.meta.storage_log:
                    return start, start
                start = JlogId(start.log + 1, 0)
                continue
            return start, last

    def _read_message(self, id: JlogId) -> Message:
        if id.marker < 1:
            raise JlogError(ERR_ILLEGAL_LOGID, str(id))
        try:
            return self._read_once(id, locked=False)
        except JlogError as exc:
            if exc.code == ERR_CLOSE_LOGID:
                raise
            if exc.code == ERR_IDX_CORRUPT and self.index is not None:
                self.index.lock()
                try:
                    self.index.truncate(0)
                finally:
                    self.index.unlock()
            if exc.code in (ERR_FILE_OPEN, ERR_IDX_OPEN):
                raise
        try:
            self._resync_once(id.log)
        except JlogError:
            pass
        return self._read_once(id, locked=True)

    def _read_once(self, id: JlogId, locked: bool) -> Message:
        data = self._open_reader_file(id.log)
        index = self._open_indexer(id.log)
        if locked:
            index.lock()
        try:
            index_len = index.size()
            if index_len % 8:
                raise JlogError(ERR_IDX_CORRUPT, self._idx(id.log))
            if id.marker * 8 > index_len:
                raise JlogError(ERR_ILLEGAL_LOGID, str(id))
            (data_off,) = self.codec.offset.unpack(index.pread(8, (id.marker - 1) * 8))
            if data_off == 0 and id.marker != 1:
                if id.marker * 8 == index_len:
                    raise JlogError(ERR_CLOSE_LOGID, str(id))   # the close tag
                raise JlogError(ERR_IDX_CORRUPT, f"{self._idx(id.log)}: 0 inside the index")
            size = data.size()
            if data_off + HEADER_SIZE > size:
                raise JlogError(ERR_IDX_CORRUPT, f"{self._idx(id.log)}: offset past the end")
            _magic, sec, usec, mlen = self._header(data, data_off)
            if data_off + HEADER_SIZE + mlen > size:
                raise JlogError(ERR_IDX_CORRUPT, f"{self._idx(id.log)}: record past the end")
            body = data.pread(mlen, data_off + HEADER_SIZE)
            return Message(sec + usec / 1_000_000, body, sec, usec)
        finally:
            if locked:
                index.unlock()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._close_data()
        self._close_index()
        _file_close(self.metastore)
        self.metastore = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_EMPTY_OLD = object()


def find_invalid_regions(buf: bytes, magic: int, codec: Codec = NATIVE) -> list[tuple[int, int]]:
    """The byte ranges jlog_repair_datafile cuts out of a segment (pointer walk in offsets):
    everything that is not a chain of headers with the right magic, each record's successor
    also valid (or the record ending exactly at the end of the segment)."""
    size = len(buf)
    hs = HEADER_SIZE

    def hdr(at):
        return codec.header.unpack_from(buf, at)

    invalid = []
    this = -hs
    h_mlen = 0
    afternext = 0
    while this + hs <= size:
        nxt = this + hs + h_mlen
        ok = False
        if nxt > 0:
            if nxt == size:
                this = nxt
                break
            if nxt + hs <= size:
                m, _s, _u, ml = hdr(nxt)
                h_mlen = ml
                if m == magic:
                    this = nxt
                    ok = True
        if ok:
            continue
        # error: search for a header whose successor is valid too
        nxt = this + hs
        while nxt + hs <= size:
            m, _s, _u, ml = hdr(nxt)
            h_mlen = ml
            if m == magic:
                afternext = nxt + hs + ml
                if afternext <= 0:
                    nxt += 1
                    continue
                if afternext == size:
                    break
                if afternext + hs > size:
                    nxt += 1
                    continue
                m2, _s2, _u2, ml2 = hdr(afternext)
                h_mlen = ml2
                if m2 == magic:
                    break
            nxt += 1
        if this < 0:
            this = 0
        if nxt + hs > size:
            break
        if nxt > this:
            invalid.append((this, nxt))
        this = afternext
    if this != size:
        invalid.append((max(this, 0), size))
    return invalid


# -- readers ----------------------------------------------------------------------------------

class JlogReader(_Context):
    """A subscriber reading a jlog (jlog_ctx_open_reader). Not for two threads at once."""

    def __init__(self, jlog: "Jlog", subscriber: str) -> None:
        super().__init__(jlog)
        self.subscriber = subscriber
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise JlogError(ERR_OPEN, self.path, exc.errno) from None
        if not _stat.S_ISDIR(st.st_mode):
            raise JlogError(ERR_NOTDIR, self.path)
        self._open_metastore()
        try:
            self.get_checkpoint(subscriber)
            self._restore_metastore()
        except BaseException:
            self.close()
            raise

    def read_interval(self) -> Interval:
        """jlog_ctx_read_interval: the records this subscriber has not checkpointed yet,
        within one segment; moving to a later segment may update the checkpoint file."""
        self._restore_metastore()
        chkpt = self.get_checkpoint(self.subscriber)
        start, finish = self._find_first_log_after(chkpt)
        if start.log != chkpt.log:
            start = JlogId(start.log, 0)
            self._set_checkpoint(self.subscriber, start)
        else:
            start = JlogId(start.log, chkpt.marker)
        count = finish.marker - start.marker
        if finish.marker > start.marker:
            start = JlogId(start.log, start.marker + 1)
        if count < 0:
            self.warn(f"need to repair checkpoint for {self.path} - start ({start}) > "
                      f"finish ({finish})")
            self._set_checkpoint(self.subscriber, finish)
            now = self.get_checkpoint(self.subscriber)
            self.warn(f"repaired checkpoint for {self.path}: {now}")
            count = 0
        return Interval(start, finish, count)

    def read_message(self, id: JlogId) -> Message:
        """jlog_ctx_read_message: (timestamp, bytes) of one record (a Message)."""
        return self._read_message(JlogId(*id))

    def read(self, id: JlogId) -> bytes:
        return self.read_message(id).data

    def checkpoint(self, id: JlogId) -> None:
        """jlog_ctx_read_checkpoint: everything up to and including id has been consumed."""
        try:
            self._set_checkpoint(self.subscriber, JlogId(*id))
        except JlogError as exc:
            raise JlogError(ERR_CHECKPOINT, str(exc)) from None

    advance = checkpoint

    def advance_id(self, cur: JlogId, start: JlogId, finish: JlogId) -> tuple[JlogId, JlogId]:
        """jlog_ctx_advance_id: the id after cur, looking past the segment end if needed;
        returns (next start, next finish)."""
        if cur != finish:
            return JlogId(start.log, start.marker + 1), finish
        start, finish = self._find_first_log_after(cur)
        start = JlogId(start.log, 1 if cur.log != start.log else cur.marker)
        return start, finish

    def last_log_id(self) -> JlogId:
        """jlog_ctx_last_log_id: the last record of the segment being written."""
        meta = self._restore_metastore()
        return self._resync_once(meta.storage_log)[0]

    def pending(self, limit: int | None = None) -> Iterator[tuple[JlogId, Message]]:
        """Every complete record after the checkpoint, across segments, without
        checkpointing: yields (id, Message); checkpoint(id) the last one handled."""
        iv = self.read_interval()
        if iv.count == 0:
            return
        id, last = iv.start, iv.end.marker
        n = 0
        while limit is None or n < limit:
            yield id, self.read_message(id)
            n += 1
            if id.marker < last:
                id = JlogId(id.log, id.marker + 1)
                continue
            found = self._after(id)
            if found is None:
                return
            id, last = found

    def _after(self, id: JlogId) -> tuple[JlogId, int] | None:
        """(id of the record after `id`, last marker of its segment) if one is complete."""
        self._restore_metastore(lock=False)
        start, finish = self._find_first_log_after(id)
        if start.log == id.log:
            return (JlogId(id.log, id.marker + 1), finish.marker) \
                if finish.marker > id.marker else None
        return (JlogId(finish.log, 1), finish.marker) if finish.marker >= 1 else None

    def lag(self) -> int:
        return self.jlog.lag(self.subscriber)


class JlogAdmin(_Context):
    """The jlog opened for inspection and maintenance (what jlogctl gets from
    jlog_ctx_open_writer): metastore read, nothing appended, nothing repaired on open."""

    def __init__(self, jlog: "Jlog") -> None:
        super().__init__(jlog)
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise JlogError(ERR_OPEN, self.path, exc.errno) from None
        if not _stat.S_ISDIR(st.st_mode):
            raise JlogError(ERR_NOTDIR, self.path)
        try:
            self._open_metastore()
            self._restore_metastore()
        except BaseException:
            self.close()
            raise


# -- writers ----------------------------------------------------------------------------------

class JlogWriter(_Context):
    """Appends records (jlog_ctx_open_writer + jlog_ctx_write_message). One thread at once."""

    def __init__(self, jlog: "Jlog") -> None:
        super().__init__(jlog)
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise JlogError(ERR_OPEN, self.path, exc.errno) from None
        if not _stat.S_ISDIR(st.st_mode):
            raise JlogError(ERR_NOTDIR, self.path)
        try:
            self._open_metastore()
            self._restore_metastore(writer=True)
            self._recover()
        except BaseException:
            self.close()
            raise
        self.written = 0
        self.batch_written = 0

    # opening: flush a C writer's pre-commit buffer, cut an interrupted write
    def _recover(self) -> None:
        meta = self.meta
        target = self._file(meta.storage_log)
        if not os.path.exists(target) and not self._pre_commit_bytes():
            return
        data = self._open_writer_file()
        data.lock()
        try:
            size = data.size()
            end = self._complete_end(data, size)
            if end < size:
                data.truncate(end)
                self.warn(f"jlog {self.path}: removed {size - end} bytes of an interrupted "
                          f"write at the end of segment {segment_name(self.current_log)}")
            pending = self._pre_commit_bytes()
            if pending:
                data.pwrite(pending, end)
                self._sync_data(data)
                self._clear_pre_commit()
        finally:
            data.unlock()

    def _complete_end(self, data: _File, size: int) -> int:
        """Offset after the last complete record of the open segment (walk the headers,
        from the index's last offset when it has one that fits)."""
        off = 0
        try:
            idx = _file_open(self._idx(self.current_log), mode=self.file_mode)
        except OSError:
            idx = None
        if idx is not None:
            try:
                n = idx.size()
                if n >= 8 and n % 8 == 0:
                    (last,) = self.codec.offset.unpack(idx.pread(8, n - 8))
                    if 0 < last < size:
                        off = last
            finally:
                _file_close(idx)
        while off + HEADER_SIZE <= size:
            magic, _s, _u, mlen = self._header(data, off)
            if magic != self.meta.hdr_magic:
                return size           # not an interrupted write: leave it to the repair tools
            if off + HEADER_SIZE + mlen > size:
                return off
            off += HEADER_SIZE + mlen
        return off

    def _pre_commit_bytes(self) -> bytes:
        try:
            with open(os.path.join(self.path, PRE_COMMIT), "rb") as fh:
                raw = fh.read()
        except OSError:
            return b""
        if len(raw) < 4:
            return b""
        (pos,) = self.codec.u32.unpack_from(raw, 0)
        return raw[4:4 + pos] if 0 < pos <= len(raw) - 4 else b""

    def _clear_pre_commit(self) -> None:
        fd = os.open(os.path.join(self.path, PRE_COMMIT), os.O_WRONLY)
        try:
            os.pwrite(fd, b"\0\0\0\0", 0)
            if self.meta.safety == SAFE:
                os.fdatasync(fd)
        finally:
            os.close(fd)

    # the segment being written
    def _open_writer_file(self) -> _File:
        """__jlog_open_writer: the storage_log segment, created if missing."""
        if self.data is not None:
            return self.data
        self.metastore.lock()
        try:
            meta = self._restore_metastore(locked=True)
            self.current_log = meta.storage_log
            try:
                self.data = _file_open(self._file(self.current_log), create=True,
                                       mode=self.file_mode)
            except OSError as exc:
                raise JlogError(ERR_FILE_OPEN, self._file(self.current_log), exc.errno) from None
        finally:
            self.metastore.unlock()
        return self.data

    def _close_writer(self) -> None:
        if self.data is not None:
            self._sync_data(self.data, closing=True)
        self._close_data()

    def _sync_data(self, data: _File, closing: bool = False) -> None:
        safety = self.meta.safety
        if safety == SAFE or (closing and safety == ALMOST_SAFE):
            data.sync()

    def _atomic_increment(self) -> None:
        """__jlog_metastore_atomic_increment: move storage_log on, once, whoever wins."""
        self.metastore.lock()
        try:
            meta = self._restore_metastore(locked=True)
            if meta.storage_log == self.current_log:
                # The metastore first, then the file (C creates the file first): killed in
                # between, the jlog is then valid as it is (a writer creates the missing
                # current segment), rather than holding a segment newer than storage_log.
                new = self.current_log + 1
                self.meta = meta._replace(storage_log=new)
                self._save_metastore(locked=True)
                try:
                    self.data = _file_open(self._file(new), create=True, mode=self.file_mode)
                except OSError as exc:
                    raise JlogError(ERR_FILE_OPEN, self._file(new), exc.errno) from None
                if meta.safety == SAFE:
                    _fsync_dir(self.path)
            self.current_log = self.meta.storage_log
        finally:
            self.metastore.unlock()

    def write(self, data: bytes, ts=None) -> None:
        """jlog_ctx_write_message: one record; ts None (now), float seconds or (sec, usec)."""
        self.write_many([(data, ts)])

    def write_many(self, records: Iterable) -> int:
        """Append records (bytes, or (bytes, ts) pairs) in order, as consecutive C writes
        would: one pwrite per segment they fill, rolling over at unit_limit. Returns the
        number written; under JLOG_SAFE they are synced before this returns. If it
        raises, `batch_written` says how many of them were written before the failure."""
        self.batch_written = 0
        if self.closed:
            raise JlogError(ERR_ILLEGAL_WRITE, "writer is closed")
        now = time.time()
        items = []
        for rec in records:
            data, ts = (rec if isinstance(rec, tuple) else (rec, None))
            items.append((bytes(data), now if ts is None else ts))
        pos = 0
        while pos < len(items):
            data = self._open_writer_file()
            data.lock()
            try:
                meta = self._restore_metastore(lock=False)
                offset = data.size()
                if meta.unit_limit <= offset:
                    full = True
                else:
                    chunk = bytearray()
                    while pos < len(items) and offset + len(chunk) < meta.unit_limit:
                        body, ts = items[pos]
                        chunk += pack_record(body, ts, magic=meta.hdr_magic, codec=self.codec)
                        pos += 1
                    try:
                        data.pwrite(chunk, offset)
                    except OSError as exc:
                        raise JlogError(ERR_FILE_WRITE, self._file(self.current_log),
                                        exc.errno) from None
                    if meta.safety == SAFE:
                        data.sync()
                    self.batch_written = pos
                    full = meta.unit_limit <= offset + len(chunk)
            finally:
                data.unlock()
            if full:
                self._close_writer()
                self._atomic_increment()
        self.written += len(items)
        return len(items)

    def flush(self) -> None:
        """Sync what was written (whatever the safety)."""
        if self.data is not None:
            self.data.sync()

    def close(self) -> None:
        if not self.closed and self.data is not None:
            try:
                self._sync_data(self.data, closing=True)
            except OSError:
                pass
        super().close()


# -- the jlog ---------------------------------------------------------------------------------

class Jlog:
    """A jlog directory. Cheap to make; every method opens what it needs and closes it."""

    def __init__(self, path: str, *, endian: str | None = None,
                 file_mode: int = DEFAULT_FILE_MODE, warn=None) -> None:
        self.path = os.fspath(path)
        self.codec = codec_for(endian)
        self.file_mode = file_mode
        self.warn = warn or _stderr_warn

    def __repr__(self) -> str:
        return f"Jlog({self.path!r})"

    # creation
    def exists(self) -> bool:
        return os.path.isfile(os.path.join(self.path, METASTORE))

    def init(self, unit_limit: int = DEFAULT_UNIT_LIMIT, safety: int = DEFAULT_SAFETY,
             hdr_magic: int = DEFAULT_HDR_MAGIC) -> "Jlog":
        """jlog_ctx_init: make the directory and its metastore (JLOG_ERR_CREATE_EXISTS if
        the path exists)."""
        if os.path.lexists(self.path):
            raise JlogError(ERR_CREATE_EXISTS, self.path, _errno.EEXIST)
        mode = self.file_mode
        dirmode = mode | (0o100 if mode & 0o400 else 0) | (0o10 if mode & 0o40 else 0) \
            | (0o1 if mode & 0o4 else 0)
        try:
            os.mkdir(self.path, dirmode)
        except FileExistsError:
            raise JlogError(ERR_CREATE_EXISTS, self.path, _errno.EEXIST) from None
        except OSError as exc:
            raise JlogError(ERR_CREATE_MKDIR, self.path, exc.errno) from None
        os.chmod(self.path, dirmode)
        self._write_new_metastore(unit_limit, safety, hdr_magic)
        return self

    def _write_new_metastore(self, unit_limit: int, safety: int, hdr_magic: int) -> None:
        try:
            fd = os.open(os.path.join(self.path, METASTORE), os.O_RDWR | os.O_CREAT | os.O_EXCL,
                         self.file_mode)
        except OSError as exc:
            raise JlogError(ERR_CREATE_META, self.path, exc.errno) from None
        try:
            os.pwrite(fd, self.codec.meta.pack(0, unit_limit, safety, hdr_magic), 0)
            if safety == SAFE:
                os.fdatasync(fd)
        finally:
            os.close(fd)

    @classmethod
    def ensure(cls, path: str, subscriber: str | None = None, *, unit_limit: int | None = None,
               safety: int | None = None, file_mode: int = DEFAULT_FILE_MODE, **kw) -> "Jlog":
        """Open-or-create, as a `jlog:///path=>subscriber` destination does: the jlog (and
        missing parent directories) is created if needed, and the subscriber is added
        (at the beginning) if it does not exist yet."""
        jl = cls(path, file_mode=file_mode, **kw)
        if not jl.exists():
            parent = os.path.dirname(os.path.abspath(jl.path))
            os.makedirs(parent, exist_ok=True)
            if os.path.isdir(jl.path) and not os.listdir(jl.path):
                try:
                    jl._write_new_metastore(unit_limit or DEFAULT_UNIT_LIMIT,
                                            DEFAULT_SAFETY if safety is None else safety,
                                            DEFAULT_HDR_MAGIC)
                except JlogError as exc:
                    if not jl.exists():
                        raise exc
            else:
                try:
                    jl.init(unit_limit or DEFAULT_UNIT_LIMIT,
                            DEFAULT_SAFETY if safety is None else safety)
                except JlogError as exc:
                    if exc.code != ERR_CREATE_EXISTS or not jl.exists():
                        raise JlogError(exc.code, f"{jl.path} exists and is not a jlog"
                                        if exc.code == ERR_CREATE_EXISTS else exc.detail,
                                        exc.errno) from None
        if subscriber:
            try:
                jl.add_subscriber(subscriber, BEGIN)
            except JlogError as exc:
                if exc.code != ERR_SUBSCRIBER_EXISTS:
                    raise
        return jl

    # contexts
    def open_writer(self) -> JlogWriter:
        return JlogWriter(self)

    def open_reader(self, subscriber: str) -> JlogReader:
        return JlogReader(self, subscriber)

    def open_admin(self) -> JlogAdmin:
        return JlogAdmin(self)

    def _ctx(self) -> _Context:
        ctx = _Context(self)
        try:
            ctx._restore_metastore()
        except JlogError:
            pass
        return ctx

    # metastore
    def meta(self) -> Meta:
        ctx = _Context(self)
        try:
            return ctx._restore_metastore()
        finally:
            ctx.close()

    def _alter(self, **changes) -> None:
        ctx = _Context(self)
        try:
            ctx._open_metastore()
            ctx.metastore.lock()
            try:
                ctx.meta = ctx._restore_metastore(locked=True)._replace(**changes)
                ctx._save_metastore(locked=True)
            finally:
                ctx.metastore.unlock()
        finally:
            ctx.close()

    def alter_journal_size(self, size: int) -> None:
        """jlog_ctx_alter_journal_size: the segment size limit (unit_limit)."""
        self._alter(unit_limit=int(size))

    def alter_safety(self, safety: int) -> None:
        if safety not in SAFETY_NAMES:
            raise ValueError(f"safety must be one of {sorted(SAFETY_NAMES)}")
        self._alter(safety=safety)

    # subscribers
    def add_subscriber(self, name: str, whence: int = BEGIN) -> JlogId:
        """jlog_ctx_add_subscriber: BEGIN reads from the oldest segment still on disk, END
        only what is written from now on. JLOG_ERR_SUBSCRIBER_EXISTS if it exists."""
        if not name:
            raise ValueError("a subscriber needs a name")
        ctx = self._ctx()
        try:
            cp = ctx._cp_path(name)
            try:
                _file_close(_file_open(cp, create=True, excl=True, mode=self.file_mode))
            except FileExistsError:
                raise JlogError(ERR_SUBSCRIBER_EXISTS, repr(name), _errno.EEXIST) from None
            except OSError as exc:
                raise JlogError(ERR_OPEN, cp, exc.errno) from None
            if whence == BEGIN:
                first = self.first_log_id()
                ctx._set_checkpoint(name, first)
                return first
            if whence == END:
                ctx._restore_metastore()
                ctx._set_checkpoint(name, JlogId(ctx.meta.storage_log, 0))
                with JlogReader(self, name) as reader:
                    _start, finish = reader.read_interval()
                ctx._set_checkpoint(name, finish)
                return finish
            raise JlogError(ERR_NOT_SUPPORTED, f"whence {whence}")
        finally:
            ctx.close()

    def remove_subscriber(self, name: str) -> bool:
        """jlog_ctx_remove_subscriber: True if it existed."""
        try:
            os.unlink(os.path.join(self.path, checkpoint_filename(name)))
            return True
        except FileNotFoundError:
            return False

    def list_subscribers(self) -> list[str]:
        """jlog_ctx_list_subscribers (directory order)."""
        return [subscriber_from_filename(n) for n in os.listdir(self.path) if n.startswith("cp.")]

    def get_checkpoint(self, name: str) -> JlogId:
        ctx = _Context(self)
        try:
            return ctx.get_checkpoint(name)
        finally:
            ctx.close()

    def set_checkpoint(self, name: str, id: JlogId) -> None:
        """jlog_ctx_set_subscriber_checkpoint: add the subscriber if needed, then set it."""
        try:
            self.add_subscriber(name, BEGIN)
        except JlogError as exc:
            if exc.code != ERR_SUBSCRIBER_EXISTS:
                raise
        ctx = self._ctx()
        try:
            ctx._set_checkpoint(name, JlogId(*id))
        finally:
            ctx.close()

    def lag(self, subscriber: str) -> int:
        """How many records the subscriber has not checkpointed yet (complete ones)."""
        ctx = self._ctx()
        try:
            cp = ctx.get_checkpoint(subscriber)
            meta = ctx._restore_metastore()
            total = 0
            for log in range(cp.log, meta.storage_log + 1):
                try:
                    last, _closed = ctx.resync_index(log)
                except JlogError as exc:
                    if exc.code == ERR_FILE_OPEN:
                        continue
                    raise
                n = last.marker
                if log == cp.log:
                    n -= min(cp.marker, n)
                total += n
            return total
        finally:
            ctx.close()

    # segments
    def segments(self) -> list[int]:
        return sorted(n for n in (is_datafile(x) for x in os.listdir(self.path)) if n is not None)

    def first_log_id(self) -> JlogId:
        """jlog_ctx_first_log_id: the oldest segment (any 8 hex digits), marker 0."""
        best = None
        for name in os.listdir(self.path):
            if len(name) != 8:
                continue
            try:
                log = int(name, 16)
            except ValueError:
                continue
            if all(c in "0123456789abcdefABCDEF" for c in name) and (best is None or log < best):
                best = log
        return JlogId(best or 0, 0)

    def pending_readers(self, log: int) -> int:
        ctx = _Context(self)
        try:
            return ctx.pending_readers(log)[0]
        finally:
            ctx.close()

    def resync_index(self, log: int) -> tuple[JlogId, bool]:
        ctx = self._ctx()
        try:
            return ctx.resync_index(log)
        finally:
            ctx.close()

    def idx_details(self, log: int) -> tuple[int, bool]:
        ctx = self._ctx()
        try:
            return ctx.idx_details(log)
        finally:
            ctx.close()

    def inspect_datafile(self, log: int, verbose: bool = False, out=None) -> int:
        ctx = self._ctx()
        try:
            return ctx.inspect_datafile(log, verbose, out)
        finally:
            ctx.close()

    def repair_datafile(self, log: int) -> int:
        ctx = self._ctx()
        try:
            return ctx.repair_datafile(log)
        finally:
            ctx.close()

    def raw_size(self) -> int:
        """jlog_raw_size: bytes in the regular files of the directory."""
        total = 0
        for name in os.listdir(self.path):
            try:
                st = os.stat(os.path.join(self.path, name))
            except OSError:
                continue
            if _stat.S_ISREG(st.st_mode):
                total += st.st_size
        return total

    def clean(self) -> int:
        """jlog_clean: delete segments older than every subscriber's checkpoint."""
        ctx = _Context(self)
        try:
            readers, earliest = ctx.pending_readers(0)
            if readers < 0:
                return -1
            removed = 0
            for name in os.listdir(self.path):
                log = is_datafile(name)
                if log is not None and log < earliest:
                    for victim in (name, name + INDEX_EXT):
                        try:
                            os.unlink(os.path.join(self.path, victim))
                        except FileNotFoundError:
                            pass
                    removed += 1
            return removed
        finally:
            ctx.close()


def _stderr_warn(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
