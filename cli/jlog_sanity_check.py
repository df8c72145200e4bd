"""`jlog_sanity_check {le|be} jlog` (executable.jlog_sanity_check): report what is wrong in
a jlog; nothing is printed when it is OK.

The checks and their wording are libjlog's jlog_sanity_check.pl (2.0.x): the metastore,
every checkpoint (size, segment not newer than storage_log), the segments (missing ones,
ones older than every checkpoint or newer than storage_log), each segment record by record
(header magic, room for header and body, time going backwards, offsets past the unit
limit) against its index (each offset, the closing 0), and where each checkpoint points.
The byte order is given as on the page (`le`/`be`, also `little`/`big`, before or after the
path as the Perl script takes it; the machine's own when left out).

Departures, each for a reason: the page's "if the jlog is OK, nothing is printed" is kept,
so the Perl script's "segment X has N records" lines only appear with -v; an incomplete
record at the very end of the segment being written is a write in progress or an
interrupted writer (the next writer removes it), not damage, so it is shown only with -v;
the Perl script's rewriting of zero header magics is not done (a check changes nothing);
the metastore of 12 bytes (before header magics) is read as magic 0, as libjlog does; a
`pre_commit` file (libjlog >= 2.2.1) is expected, not reported.

Exit status: 0 nothing found, 1 problems reported (or usage), 2 the jlog cannot be checked
(the reason on stderr, as the Perl script's die).
"""

from __future__ import annotations

import os
import re
import sys

from ecmta.loggers.jlog import METASTORE, PRE_COMMIT, codec_for, subscriber_from_filename

ENDIANS = ("le", "little", "be", "big")


class Fatal(Exception):
    pass


class Report:
    def __init__(self, verbose: bool = False) -> None:
        self.verbose = verbose
        self.lines: list[str] = []
        self.problems = 0
        self.warnings: list[str] = []

    def problem(self, text: str) -> None:
        self.lines.append(text)
        self.problems += 1

    def note(self, text: str) -> None:
        self.lines.append(text)

    def detail(self, text: str) -> None:
        if self.verbose:
            self.lines.append(text)


def check(path: str, endian: str | None = None, verbose: bool = False) -> Report:
    """Check one jlog; a Report of what was found (Fatal if it cannot be read)."""
    rep = Report(verbose)
    codec = codec_for(endian)
    try:
        names = os.listdir(path)
    except OSError as exc:
        raise Fatal(f"could not opendir {path}: {exc.strerror}") from None
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
        raise Fatal("no metastore found")
    for name in files:
        if name != PRE_COMMIT:
            rep.problem(f"unexpected file found: {name} (skipping)")
    current, unit_limit, hdr_magic = _metastore(path, codec)

    oldest_cp = 0xFFFFFFFF
    cps: dict[str, tuple[int, int]] = {}
    for cp in checkpoints:
        name = subscriber_from_filename(cp)
        if os.path.getsize(os.path.join(path, cp)) != 8:
            rep.problem(f"checkpoint {name} has invalid size")
            continue
        with open(os.path.join(path, cp), "rb") as fh:
            seg, marker = codec.id.unpack(fh.read(8))
        if seg > current:
            rep.problem(f"checkpoint {name} points to segment newer than current segment")
            continue
        oldest_cp = min(oldest_cp, seg)
        cps[name] = (seg, marker)
    if not cps:
        rep.warnings.append("no valid checkpoints")

    lastnum = oldest_cp
    segdata = []
    for seg in segments:
        num = int(seg, 16)
        if num < oldest_cp:
            rep.problem(f"segment {seg} is older than any checkpoint")
        if num > current:
            rep.problem(f"segment {seg} is newer than the current segment")
        if num > lastnum + 1:
            rep.problem(_missing(lastnum + 1, num - 1))
        lastnum = max(lastnum, num)
        idx = next((i for i in indexes if i.lower() == f"{seg}.idx".lower()), None)
        indexes = [i for i in indexes if i.lower() != f"{seg}.idx".lower()]
        segdata.append([seg, idx, None])
    if current > lastnum + 1:
        rep.problem(_missing(lastnum + 1, current - 1))
    for idx in indexes:
        rep.problem(f"index {idx} doesn't correspond to any segment (skipping)")

    for entry in segdata:
        entry[2] = _segment(path, entry[0], entry[1], current, unit_limit, hdr_magic, codec, rep)

    for name, (seg, marker) in cps.items():
        if seg == 0 and marker == 0:
            continue
        entry = next((e for e in segdata if int(e[0], 16) == seg), None)
        if entry is None:
            if seg != current:
                rep.problem(f"checkpoint {name} points to nonexistent segment")
        elif entry[2] is None:
            rep.problem(f"checkpoint {name} points to a damaged segment")
        elif marker > entry[2]:
            rep.problem(f"checkpoint {name} points past the end of segment")
    return rep


def _missing(first: int, last: int) -> str:
    if last > first:
        return f"segments {first:08x} though {last:08x} missing"
    return f"segment {first:08x} missing"


def _metastore(path: str, codec) -> tuple[int, int, int]:
    meta = os.path.join(path, METASTORE)
    size = os.path.getsize(meta)
    if size not in (12, 16):
        raise Fatal("metastore has invalid size")
    with open(meta, "rb") as fh:
        raw = fh.read(16)
    if size == 12:
        raw += b"\0\0\0\0"
    current, unit_limit, _safety, hdr_magic = codec.meta.unpack(raw)
    return current, unit_limit, hdr_magic


def _segment(path, seg, idx, current, unit_limit, hdr_magic, codec, rep: Report):
    """Walk one segment against its index; the number of records, or None if damaged."""
    with open(os.path.join(path, seg), "rb") as fh:
        data = fh.read()
    data_len = len(data)
    idx_data = b""
    if idx:
        with open(os.path.join(path, idx), "rb") as fh:
            idx_data = fh.read()
    idx_len = len(idx_data)
    num = int(seg, 16)
    last_marker = 0
    last_time = (0, 0)
    warned_timewarp = warned_toobig = False
    data_off = idx_off = 0
    torn = False
    while data_off < data_len:
        if not warned_toobig and data_off > unit_limit:
            rep.problem(f"segment {seg} has message offset larger than unit limit")
            warned_toobig = True
        if data_off + 16 > data_len:
            if num == current:
                torn = True
                rep.detail(f"segment {seg} offset {data_off}: incomplete record at the end "
                           "(a write in progress or an interrupted writer)")
            else:
                rep.problem(f"segment {seg} offset {data_off}: not enough room for message header")
            break
        reserved, tv_sec, tv_usec, mlen = codec.header.unpack_from(data, data_off)
        if reserved != hdr_magic:
            rep.problem(f"segment {seg} offset {data_off}: reserved field "
                        f"({reserved:08x} != {hdr_magic:08x})")
        if not warned_timewarp:
            if (tv_sec, tv_usec) < last_time:
                rep.problem(f"segment {seg} offset {data_off}: time goes backwards")
                warned_timewarp = True
            else:
                last_time = (tv_sec, tv_usec)
        if data_off + 16 + mlen > data_len:
            if num == current and reserved == hdr_magic:
                torn = True
                rep.detail(f"segment {seg} offset {data_off}: incomplete record at the end "
                           "(a write in progress or an interrupted writer)")
            else:
                rep.problem(f"segment {seg} offset {data_off}: not enough room for message body")
            break
        last_marker += 1
        if idx:
            if idx_off == idx_len:
                if current > num:
                    rep.note(f"index {idx} is incomplete (not an error)")
                idx = None
            elif idx_off + 8 > idx_len:
                rep.problem(f"index {idx} offset {idx_off}: no room for next offset")
                idx = None
            else:
                (off,) = codec.offset.unpack_from(idx_data, idx_off)
                if off != data_off:
                    rep.problem(f"index {idx} offset {idx_off}: index points to wrong offset")
                    idx = None
                else:
                    idx_off += 8
        data_off += 16 + mlen
    records = last_marker if (data_off == data_len or torn) else None
    if records is None:
        idx = None
    if idx:
        if idx_off == idx_len:
            if num < current:
                rep.problem(f"index {idx} not current or closed")
        elif idx_off + 8 > idx_len:
            rep.problem(f"index {idx} offset {idx_off}: no room for closing index")
        elif idx_off + 8 < idx_len:
            rep.problem(f"index {idx} offset {idx_off}: index too long")
        else:
            (off,) = codec.offset.unpack_from(idx_data, idx_off)
            if off != 0:
                rep.problem(f"index {idx} offset {idx_off}: closing offset not 0")
    rep.detail(f"segment {seg} has {last_marker} records")
    return records


USAGE = "Usage: jlog_sanity_check {le|be} <path to jlog>"


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = False
    if args and args[0] in ("-v", "--verbose"):
        verbose, args = True, args[1:]
    endian = None
    if args and args[0].lower() in ENDIANS:
        endian, args = args[0], args[1:]
    elif len(args) == 2 and args[1].lower() in ENDIANS:
        endian, args = args[1], args[:1]
    if len(args) != 1:
        print(USAGE)
        return 1
    try:
        rep = check(args[0], endian, verbose)
    except (Fatal, OSError) as exc:
        print(exc, file=sys.stderr)
        return 2
    for w in rep.warnings:
        print(w, file=sys.stderr)
    for line in rep.lines:
        print(line)
    return 1 if rep.problems else 0


if __name__ == "__main__":
    sys.exit(main())
