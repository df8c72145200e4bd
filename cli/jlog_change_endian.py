"""`jlog_change_endian source {tole|tobe} destination` (executable.jlog_change_endian):
an exact copy of a jlog in the other byte order.

`tole` reads a big-endian jlog and writes a little-endian one, `tobe` the reverse (also
`tolittle`/`tobig`). The destination must not exist; its parent must. Every 32-bit field
is swapped: the metastore (storage_log, unit_limit, safety, hdr_magic), each checkpoint
(log, marker), each record header (magic, tv_sec, tv_usec, mlen), each index offset (64
bits) and a `pre_commit` file's fill pointer and buffered headers; message bytes are copied
as they are. The checks and messages are libjlog's jlog_change_endian.pl: if the source is
damaged the reason is printed, nothing is left at the destination, and the exit status is 1.

Departures from the Perl script (written before header magics existed): a 16-byte
metastore is expected (12 bytes is the old format, copied as such), and a record's magic
must be the metastore's (0 for the old format) rather than 0; an incomplete record at the
end of the segment being written (a write in progress) is left out of the copy with a note.
Everything is checked before anything is written.
"""

from __future__ import annotations

import os
import re
import shutil
import sys

from ecmta.loggers.jlog import METASTORE, PRE_COMMIT, Codec, subscriber_from_filename

USAGE = "Usage: jlog_change_endian <source jlog> <endianness (tobe or tole)> <destination jlog>"


class Die(Exception):
    pass


def convert(src: str, direction: str, dst: str, say=print) -> None:
    """Write the converted copy of src at dst; Die(reason) if src has a problem."""
    d = direction.lower()
    if d in ("tole", "tolittle"):
        frm, to = Codec(">"), Codec("<")
    elif d in ("tobe", "tobig"):
        frm, to = Codec("<"), Codec(">")
    else:
        raise ValueError(direction)
    out = plan(src, frm, to, say)
    try:
        os.mkdir(dst)
    except OSError as exc:
        raise Die(f"could not mkdir {dst}: {exc.strerror}") from None
    try:
        for name, data in out:
            with open(os.path.join(dst, name), "wb") as fh:
                fh.write(data)
        shutil.copymode(src, dst)
    except BaseException:
        shutil.rmtree(dst, ignore_errors=True)
        raise


def plan(src: str, frm: Codec, to: Codec, say=print) -> list[tuple[str, bytes]]:
    """Check src and return the converted files (name, bytes)."""
    try:
        names = os.listdir(src)
    except OSError as exc:
        raise Die(f"could not opendir {src}: {exc.strerror}") from None
    has_meta = METASTORE in names
    files = [n for n in names if n != METASTORE]
    checkpoints = [n for n in files if n.startswith("cp.")]
    files = [n for n in files if not n.startswith("cp.")]
    segments = sorted((n for n in files if re.fullmatch(r"[0-9A-Fa-f]{8}", n)),
                      key=lambda n: int(n, 16))
    files = [n for n in files if not re.fullmatch(r"[0-9A-Fa-f]{8}", n)]
    indexes = [n for n in files if re.fullmatch(r"[0-9A-Fa-f]{8}.idx", n)]
    files = [n for n in files if not re.fullmatch(r"[0-9A-Fa-f]{8}.idx", n)]
    if not has_meta:
        raise Die("no metastore found")
    for name in files:
        if name != PRE_COMMIT:
            say(f"unexpected file found: {name} (skipping)")
    out: list[tuple[str, bytes]] = []

    raw = _read(src, METASTORE)
    if len(raw) not in (12, 16):
        raise Die("metastore has invalid size")
    fields = frm.u32.iter_unpack(raw)
    values = [v for (v,) in fields]
    current, unit_limit = values[0], values[1]
    hdr_magic = values[3] if len(values) == 4 else 0
    out.append((METASTORE, b"".join(to.u32.pack(v) for v in values)))

    if not checkpoints:
        raise Die("no checkpoints")
    oldest_cp = 0xFFFFFFFF
    cps = {}
    for cp in checkpoints:
        name = subscriber_from_filename(cp)
        raw = _read(src, cp)
        if len(raw) != 8:
            raise Die(f"checkpoint {name} has invalid size")
        seg, marker = frm.id.unpack(raw)
        if seg > current:
            raise Die(f"checkpoint {name} points to segment newer than current segment")
        out.append((cp, to.id.pack(seg, marker)))
        oldest_cp = min(oldest_cp, seg)
        cps[name] = (seg, marker)

    lastnum = oldest_cp
    segdata = []
    for seg in segments:
        num = int(seg, 16)
        if num < oldest_cp:
            raise Die(f"segment {seg} is older than any checkpoint")
        if num > current:
            raise Die(f"segment {seg} is newer than the current segment")
        if num > lastnum + 1:
            say(_missing(lastnum + 1, num - 1))
        lastnum = max(lastnum, num)
        idx = next((i for i in indexes if i.lower() == f"{seg}.idx".lower()), None)
        indexes = [i for i in indexes if i.lower() != f"{seg}.idx".lower()]
        segdata.append((seg, idx))
    if current > lastnum + 1:
        say(_missing(lastnum + 1, current - 1))
    for idx in indexes:
        say(f"index {idx} doesn't correspond to any segment (skipping)")

    records = {}
    for seg, idx in segdata:
        files_out, records[seg] = _segment(src, seg, idx, current, unit_limit, hdr_magic,
                                           frm, to, say)
        out.extend(files_out)

    for name, (seg, marker) in cps.items():
        if seg == 0 and marker == 0:
            continue
        match = next((s for s, _i in segdata if int(s, 16) == seg), None)
        if match is None:
            if seg != current:
                raise Die(f"checkpoint {name} points to nonexistent segment")
        elif marker > records[match]:
            raise Die(f"checkpoint {name} points past the end of segment")

    if PRE_COMMIT in names:
        out.append((PRE_COMMIT, _pre_commit(_read(src, PRE_COMMIT), hdr_magic, frm, to)))
    return out


def _read(src: str, name: str) -> bytes:
    with open(os.path.join(src, name), "rb") as fh:
        return fh.read()


def _missing(first: int, last: int) -> str:
    if last > first:
        return f"segments {first:08x} though {last:08x} missing"
    return f"segment {first:08x} missing"


def _records(data: bytes, seg: str, frm: Codec, to: Codec, hdr_magic: int, unit_limit: int,
             say, tail_ok: bool):
    """Swap every header; (converted bytes, record offsets, records)."""
    out = bytearray()
    offsets = []
    off, warned = 0, False
    while off < len(data):
        if not warned and off > unit_limit:
            say(f"segment {seg} has message offset larger than unit limit")
            warned = True
        if off + 16 > len(data):
            if tail_ok:
                say(f"segment {seg} offset {off}: incomplete record at the end left out")
                break
            raise Die(f"segment {seg} offset {off}: not enough room for message header")
        reserved, sec, usec, mlen = frm.header.unpack_from(data, off)
        if reserved != hdr_magic:
            raise Die(f"segment {seg} offset {off}: reserved field ({reserved:08x} != "
                      f"{hdr_magic:08x})")
        if off + 16 + mlen > len(data):
            if tail_ok:
                say(f"segment {seg} offset {off}: incomplete record at the end left out")
                break
            raise Die(f"segment {seg} offset {off}: not enough room for message body")
        out += to.header.pack(reserved, sec, usec, mlen)
        out += data[off + 16:off + 16 + mlen]
        offsets.append(off)
        off += 16 + mlen
    return bytes(out), offsets


def _segment(src, seg, idx, current, unit_limit, hdr_magic, frm, to, say):
    data = _read(src, seg)
    body, offsets = _records(data, seg, frm, to, hdr_magic, unit_limit, say,
                             tail_ok=int(seg, 16) == current)
    files = [(seg, body)]
    if not idx:
        return files, len(offsets)
    idx_raw = _read(src, idx)
    idx_len = len(idx_raw)
    new_idx = bytearray()
    idx_off = 0
    complete = True
    for data_off in offsets:
        if idx_off == idx_len:
            if current > int(seg, 16):
                say(f"index {idx} is incomplete (not an error)")
            complete = False
            break
        if idx_off + 8 > idx_len:
            raise Die(f"index {idx} offset {idx_off}: no room for next offset")
        (off,) = frm.offset.unpack_from(idx_raw, idx_off)
        if off != data_off:
            raise Die(f"index {idx} offset {idx_off}: index points to wrong offset")
        new_idx += to.offset.pack(off)
        idx_off += 8
    if complete:
        if idx_off == idx_len:
            if int(seg, 16) < current:
                say(f"index {idx} not current or closed")
        elif idx_off + 8 > idx_len:
            raise Die(f"index {idx} offset {idx_off}: no room for closing index")
        elif idx_off + 8 < idx_len:
            raise Die(f"index {idx} offset {idx_off}: index too long")
        else:
            (off,) = frm.offset.unpack_from(idx_raw, idx_off)
            if off != 0:
                raise Die(f"index {idx} offset {idx_off}: closing offset not 0")
            new_idx += to.offset.pack(0)
    files.append((idx, bytes(new_idx)))
    return files, len(offsets)


def _pre_commit(raw: bytes, hdr_magic: int, frm: Codec, to: Codec) -> bytes:
    if len(raw) < 4:
        return raw
    (pos,) = frm.u32.unpack_from(raw, 0)
    buf = raw[4:]
    if pos > len(buf):
        raise Die("pre_commit fill pointer is past its buffer")
    body, _offsets = _records(buf[:pos], PRE_COMMIT, frm, to, hdr_magic, 1 << 62,
                              lambda _t: None, tail_ok=False)
    return to.u32.pack(pos) + body + buf[pos:]


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3 or args[1].lower() not in ("tole", "tolittle", "tobe", "tobig"):
        print(USAGE)
        return 1
    src, direction, dst = args
    if os.path.lexists(dst):
        print(f"could not mkdir {dst}: File exists", file=sys.stderr)
        return 1
    try:
        convert(src, direction, dst)
    except Die as exc:
        print(exc, file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{exc.filename or src}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
