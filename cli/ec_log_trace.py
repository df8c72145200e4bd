"""ec_log_trace: find and print records of ecelerity's log files (executable.ec_log_trace).

    ec_log_trace [options] [logfile ...]        (`-` reads standard input)

Owns: the reading of ec_logger-format files (mainlog, rejectlog) and bouncelogs, plain or
compressed (.bz2, .gz, .xz), the filters of the page and the output forms (lines, --date,
--count, -v, --xml, --output/--append).

Files: given on the command line in any order (`mainlog.ec*` is fine); without any, the
state directory's log/mainlog.ec and log/rejectlog.ec with their rotated files. Files of
one log (X, X.1, X.2.bz2, ... as ec_rotate leaves them) are read oldest first (X.<n> with
the highest n first, X last); different logs (a mainlog and a bouncelog) are merged by
time. Heartbeats are skipped. A line that is none of these formats is ignored (-v says
how many were).

Filters (a record is printed when it passes all that apply to it):
  --id=ID (repeatable)          the message id
  --in/--reception, --out/--delivery, --tran/--transient, --perm/--permanent
                                record kinds: R; D and X; T; P and bouncelog B (none: all)
  --from, --from-regex, --from-domain, --from-domain-regex   the envelope sender (`<>`: none)
  --to, --to-regex, --to-domain (repeatable), --to-domain-regex   the recipient
  --binding, --binding-regex, --binding-group, --binding-group-regex
  --src-ip, --src-ip-regex      the client that sent the message (rejectlog: R=)
  --dst-ip, --dst-ip-regex      the server delivered (or failed) to
  --start, --end                inclusive; epoch seconds, "Sep 12 18:12:21 2006" or
                                "09 12 18:12:21 2006" (local time)
  --vctx-conn, --vctx-mess (and -regex)   key or key=value of a rejectlog context
  --main                        mainlog records only
  --regex                       treat --id, --from, --to, --binding, ... values as regexes
The mainlog's D, X, T and P lines carry no sender, recipient local part or client IP:
those filters use the message's R line (same message id) read before them, so
`--from=a@b.test` prints a message's R line and its D/T/P lines. Filters of mainlog
fields do not match rejectlog records (the --vctx ones only match those).

Output: the matching lines (--date: epoch seconds shown as `Fri Mar 12 08:59:58 2010`);
--count: the number of records per kind; -v: records grouped by message id with their
fields named (rejectlog: every field on its line); --xml: one <record> element each.

Exit status: 0 when something matched (always with --count), 1 when nothing did, 2 for
usage or I/O errors.
"""

from __future__ import annotations

import argparse
import bz2
import glob
import gzip
import heapq
import io
import lzma
import os
import re
import sys
import time
from dataclasses import dataclass, field
from xml.sax.saxutils import escape as xml_escape
from xml.sax.saxutils import quoteattr

from ecmta import paths

ROTATED = re.compile(r"^(?P<base>.+?)\.(?P<n>\d+)(?P<ext>\.bz2|\.gz|\.xz)?$")
PLAIN_EXT = re.compile(r"^(?P<base>.+?)(?P<ext>\.bz2|\.gz|\.xz)$")
_FIELD = re.compile(r"((?:[^@\\]|\\.|\\$)*)(@|$)", re.S)
_UNESC = re.compile(r"\\(x[0-9a-fA-F]{2}|.)", re.S)
_UNESC_MAP = {"n": "\n", "r": "\r", "t": "\t"}
REJECT = re.compile(r'^(?P<ts>\d+): R="(?P<remote>[^"]*)" L="(?P<local>[^"]*)" C="(?P<conn>[^"]*)" '
                    r'PATH="(?P<path>[^"]*)" PATH_GRP="(?P<path_grp>[^"]*)" P="(?P<phase>[^"]*)" '
                    r'E=(?P<code>\S*) M=(?P<module>\S*) CTXCONN=(?P<rest>.*)$', re.S)
KIND_NAMES = {"R": "Reception", "D": "Delivery", "X": "Transfer", "T": "Transient failure",
              "P": "Permanent failure", "B": "Bounce", "J": "Rejection"}
COUNT_ORDER = (("R", "Receptions"), ("D", "Deliveries"), ("X", "Transfers"),
               ("T", "Transient failures"), ("P", "Permanent failures"), ("B", "Bounces"),
               ("J", "Rejections"))


# -- records ----------------------------------------------------------------------------------

@dataclass
class Rec:
    ts: int
    log: str                     # "main", "bounce", "reject"
    kind: str                    # R D X T P (mainlog), B T (bounce), J (reject)
    line: str
    source: str
    msg_id: str = ""
    f: dict = field(default_factory=dict)


def _unescape(text: str) -> str:
    def sub(m):
        s = m.group(1)
        if len(s) == 3 and s[0] == "x":
            return chr(int(s[1:], 16))
        return _UNESC_MAP.get(s, s)
    return _UNESC.sub(sub, text) if "\\" in text else text


def split_fields(line: str) -> list[str]:
    out, pos = [], 0
    while True:
        m = _FIELD.match(line, pos)
        out.append(_unescape(m.group(1)))
        if not m.group(2):
            return out
        pos = m.end()


def _addr(local: str, domain: str) -> str:
    return f"{local}@{domain}" if domain else local


def _raw_until(text: str, i: int, stops: str) -> int:
    """Index of the first character of `stops` at or after i that is not escaped."""
    n = len(text)
    while i < n and text[i] not in stops:
        i += 2 if text[i] == "\\" else 1
    return min(i, n)


def parse_ctx(text: str) -> tuple[dict, str]:
    """A rejectlog context block `[k=v,k2="x y"]` at the start of text: (dict, rest).
    Keys and quoted values are unescaped (loggers/formats.py rules); unquoted values are
    literal."""
    if not text.startswith("["):
        return {}, text
    out, i, n = {}, 1, len(text)
    while i < n and text[i] != "]":
        j = _raw_until(text, i, "=")
        if j >= n:
            break
        key, i = _unescape(text[i:j]), j + 1
        if i < n and text[i] == '"':
            j = _raw_until(text, i + 1, '"')
            value, i = _unescape(text[i + 1:j]), j + 1
        else:
            j = i
            while j < n and text[j] not in ",]":
                j += 1
            value, i = text[i:j], j
        out[key] = value
        if i < n and text[i] == ",":
            i += 1
    return out, text[i + 1:] if i < n else ""


def parse_line(line: str, source: str = "") -> Rec | None:
    """A record of a mainlog, bouncelog or rejectlog line; None for heartbeats and lines
    that are none of these."""
    line = line.rstrip("\r\n")
    if not line:
        return None
    m = REJECT.match(line)
    if m:
        conn, rest = parse_ctx(m.group("rest"))
        mess = {}
        if rest.startswith(" CTXMESS="):
            mess, rest = parse_ctx(rest[len(" CTXMESS="):])
        remote = m.group("remote")
        f = {"remote": remote, "src_ip": remote.rsplit(":", 1)[0].strip("[]"), "local": m.group("local"),
             "conn_id": m.group("conn"), "pathway": m.group("path"), "pathway_group": m.group("path_grp"),
             "phase": m.group("phase"), "code": m.group("code"), "module": m.group("module"),
             "ctx_conn": conn, "ctx_mess": mess, "text": rest.lstrip(" ")}
        return Rec(int(m.group("ts")), "reject", "J", line, source, "", f)
    head = line.split("@", 1)[0]
    if not head.isdigit():
        return None
    fs = split_fields(line)
    ts = int(fs[0])
    if len(fs) >= 5 and fs[1] == "" and fs[4].startswith("M"):
        return None                                   # heartbeat ts@@@@M / ts@@@@M1
    if len(fs) < 5:
        return None
    kind = fs[4]
    base = {"msg_id": fs[1], "batch_id": fs[2], "conn_id": fs[3]}
    if kind in ("B", "T") and len(fs) >= 16:
        f = dict(base, rcpt=_addr(fs[5], fs[6]), rcpt_domain=fs[6], sender=_addr(fs[7], fs[8]),
                 sender_domain=fs[8], binding_group=fs[9], binding=fs[10], stage=fs[11],
                 classification=fs[12], size=fs[13], dst_ip=fs[14], response=fs[15])
        if len(fs) > 16:
            f["user_string"] = "@".join(fs[16:])
        return Rec(ts, "bounce", kind, line, source, fs[1], f)
    if kind == "R" and len(fs) >= 14:
        f = dict(base, rcpt=_addr(fs[5], fs[6]), rcpt_domain=fs[6], sender=_addr(fs[7], fs[8]),
                 sender_domain=fs[8], src_ip=fs[9], size=fs[10], protocol=fs[11],
                 binding_group=fs[12], binding=fs[13])
        return Rec(ts, "main", kind, line, source, fs[1], f)
    if kind in ("D", "X") and len(fs) >= 12:
        f = dict(base, rcpt_domain=fs[5], size=fs[6], binding_group=fs[7], binding=fs[8],
                 retries=fs[9], seconds=fs[10], dst_ip=fs[11])
        return Rec(ts, "main", kind, line, source, fs[1], f)
    if kind in ("T", "P") and len(fs) >= 14:
        f = dict(base, rcpt_domain=fs[5], size=fs[6], binding_group=fs[7], binding=fs[8],
                 stage=fs[9], retries=fs[10], seconds=fs[11], dst_ip=fs[12],
                 response="@".join(fs[13:]))
        return Rec(ts, "main", kind, line, source, fs[1], f)
    return None


# -- files --------------------------------------------------------------------------------------

def open_text(path: str):
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="surrogateescape")
    opener = {".bz2": bz2.open, ".gz": gzip.open, ".xz": lzma.open}.get(os.path.splitext(path)[1], open)
    if opener is open:
        return open(path, encoding="utf-8", errors="surrogateescape")
    return opener(path, "rt", encoding="utf-8", errors="surrogateescape")


def family_order(files: list[str]) -> list[list[str]]:
    """Files grouped by log (X with its X.n[.ext]), each oldest first; groups in the order
    their first file was given."""
    groups: dict[str, list[tuple[int, str]]] = {}
    for path in files:
        if path == "-":
            groups.setdefault("-", []).append((0, path))
            continue
        name = os.path.basename(path)
        m = ROTATED.match(name)
        if m:
            key, rank = os.path.join(os.path.dirname(path), m.group("base")), int(m.group("n"))
        else:
            pm = PLAIN_EXT.match(name)
            key = os.path.join(os.path.dirname(path), pm.group("base") if pm else name)
            rank = 0
        groups.setdefault(key, []).append((rank, path))
    return [[p for _r, p in sorted(g, key=lambda x: -x[0])] for g in groups.values()]


def default_files(state: str) -> list[str]:
    out = []
    for name in ("mainlog.ec", "rejectlog.ec"):
        base = os.path.join(state, "log", name)
        out += [p for p in glob.glob(base + "*") if p == base or ROTATED.match(os.path.basename(p))]
    return out


class Reader:
    def __init__(self, say) -> None:
        self.unparsed = 0
        self.errors: list[str] = []
        self.say = say

    def records(self, files: list[str]):
        for path in files:
            try:
                fh = open_text(path)
            except OSError as exc:
                self.errors.append(f"{path}: {exc.strerror or exc}")
                continue
            try:
                for line in fh:
                    rec = parse_line(line, path)
                    if rec is None:
                        if line.strip() and not _heartbeat(line):
                            self.unparsed += 1
                        continue
                    yield rec
            except (OSError, EOFError, lzma.LZMAError) as exc:
                self.errors.append(f"{path}: {exc}")
            finally:
                if path != "-":
                    fh.close()


def _heartbeat(line: str) -> bool:
    return bool(re.match(r"^\d+(@@@@M1?|: Marker 1)\s*$", line))


# -- filters --------------------------------------------------------------------------------------

def parse_date(text: str) -> int:
    text = text.strip()
    if text.isdigit():
        return int(text)
    for fmt in ("%b %d %H:%M:%S %Y", "%m %d %H:%M:%S %Y", "%a %b %d %H:%M:%S %Y"):
        try:
            return int(time.mktime(time.strptime(text, fmt)))
        except ValueError:
            continue
    raise argparse.ArgumentTypeError(f"not a date: '{text}' (epoch seconds or \"Sep 12 18:12:21 2006\")")


class Matcher:
    def __init__(self, args) -> None:
        self.a = args
        rx = args.regex

        def exact(values, fold=True):
            vals = [v for v in (values or []) if v is not None]
            if not vals:
                return None
            if rx:
                pats = [re.compile(v, re.I if fold else 0) for v in vals]
                return lambda s: any(p.search(s or "") for p in pats)
            if fold:
                want = {v.lower() for v in vals}
                return lambda s: (s or "").lower() in want
            want = set(vals)
            return lambda s: (s or "") in want

        def regex(values):
            vals = [v for v in (values or []) if v is not None]
            if not vals:
                return None
            pats = [re.compile(v, re.I) for v in vals]
            return lambda s: any(p.search(s or "") for p in pats)

        def addr(values):
            vals = [("" if v == "<>" else v) for v in (values or [])]
            return exact(vals) if vals else None

        self.main_tests = []          # (field, predicate): mainlog / bouncelog fields
        for fld, pred in (("msg_id", exact(args.id, fold=False)),
                          ("sender", addr(args.from_)), ("sender", regex(args.from_regex)),
                          ("sender_domain", exact(args.from_domain)),
                          ("sender_domain", regex(args.from_domain_regex)),
                          ("rcpt", addr(args.to)), ("rcpt", regex(args.to_regex)),
                          ("rcpt_domain", exact(args.to_domain)),
                          ("rcpt_domain", regex(args.to_domain_regex)),
                          ("binding", exact(args.binding, fold=False)),
                          ("binding", regex(args.binding_regex)),
                          ("binding_group", exact(args.binding_group, fold=False)),
                          ("binding_group", regex(args.binding_group_regex)),
                          ("dst_ip", exact(args.dst_ip)), ("dst_ip", regex(args.dst_ip_regex))):
            if pred is not None:
                self.main_tests.append((fld, pred))
        self.ip_tests = [(f, p) for f, p in (("src_ip", exact(args.src_ip)),
                                             ("src_ip", regex(args.src_ip_regex))) if p is not None]
        kinds = set()
        if args.reception:
            kinds |= {"R"}
        if args.delivery:
            kinds |= {"D", "X"}
        if args.transient:
            kinds |= {"T"}
        if args.permanent:
            kinds |= {"P", "B"}
        self.kinds = kinds
        self.vctx = []
        for spec, which, is_rx in ((args.vctx_conn, "ctx_conn", False), (args.vctx_conn_regex, "ctx_conn", True),
                                   (args.vctx_mess, "ctx_mess", False), (args.vctx_mess_regex, "ctx_mess", True)):
            for item in spec or []:
                key, sep, value = item.partition("=")
                self.vctx.append((which, key, value if sep else None, is_rx))
        self.mainlog_only = bool(self.main_tests or self.kinds)
        self.known: dict[str, dict] = {}     # msg id -> what its R line said

    def learn(self, rec: Rec) -> None:
        if rec.log == "main" and rec.kind == "R" and rec.msg_id:
            self.known[rec.msg_id] = {"sender": rec.f["sender"], "sender_domain": rec.f["sender_domain"],
                                      "rcpt": rec.f["rcpt"], "src_ip": rec.f["src_ip"],
                                      "received": rec.ts}

    def value(self, rec: Rec, fld: str):
        if fld in rec.f:
            return rec.f[fld]
        known = self.known.get(rec.msg_id)
        return known.get(fld) if known else None

    def __call__(self, rec: Rec) -> bool:
        a = self.a
        if a.start is not None and rec.ts < a.start:
            return False
        if a.end is not None and rec.ts > a.end:
            return False
        if a.main and rec.log != "main":
            return False
        if rec.log == "reject":
            if self.mainlog_only:
                return False
            for which, key, want, is_rx in self.vctx:
                ctx = rec.f[which]
                if is_rx:
                    krx = re.compile(key)
                    keys = [k for k in ctx if krx.search(k)]
                    if not keys or (want is not None and not any(re.search(want, ctx[k]) for k in keys)):
                        return False
                elif key not in ctx or (want is not None and ctx[key] != want):
                    return False
        else:
            if self.vctx:
                return False
            if self.kinds and rec.kind not in self.kinds:
                return False
            for fld, pred in self.main_tests:
                v = self.value(rec, fld)
                if v is None or not pred(v):
                    return False
        for fld, pred in self.ip_tests:
            v = self.value(rec, fld)
            if v is None or not pred(v):
                return False
        return True


# -- output ---------------------------------------------------------------------------------------

def show_date(ts: int) -> str:
    return time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(ts))


def with_date(rec: Rec) -> str:
    return show_date(rec.ts) + rec.line[len(str(rec.ts)):]


def verbose_record(rec: Rec, matcher: Matcher, dates: bool) -> list[str]:
    when = show_date(rec.ts) if dates else str(rec.ts)
    f = rec.f
    if rec.log == "reject":
        lines = [f"Rejection at {when}"]
        for key in ("remote", "local", "conn_id", "pathway", "pathway_group", "phase", "code", "module"):
            lines.append(f"  {key}: {f[key]}")
        for key in ("ctx_conn", "ctx_mess"):
            lines.append(f"  {key}: " + ", ".join(f"{k}={v}" for k, v in f[key].items()))
        lines.append(f"  text: {f['text']}")
        return lines
    name = KIND_NAMES.get(rec.kind, rec.kind)
    if rec.log == "bounce":
        name = "Bounce" if rec.kind == "B" else "Transient failure (bouncelog)"
    skip = {"msg_id"}
    parts = [f"{k}={v}" for k, v in f.items() if k not in skip and v != ""]
    if rec.kind != "R" and rec.log == "main":
        known = matcher.known.get(rec.msg_id)
        if known:
            parts = [f"from={known['sender'] or '<>'}", f"to={known['rcpt']}"] + parts
    return [f"  {when} {name}: " + " ".join(parts)]


def write_xml(out, recs) -> None:
    out.write("<ec_log_trace>\n")
    for rec in recs:
        attrs = " ".join(f"{k}={quoteattr(str(v))}" for k, v in
                         (("log", rec.log), ("type", rec.kind), ("ts", rec.ts),
                          ("date", show_date(rec.ts))))
        out.write(f"  <record {attrs}>\n")
        for k, v in rec.f.items():
            if isinstance(v, dict):
                for ck, cv in v.items():
                    out.write(f"    <{k} key={quoteattr(ck)}>{xml_escape(str(cv))}</{k}>\n")
            else:
                out.write(f"    <{k}>{xml_escape(str(v))}</{k}>\n")
        out.write(f"    <line>{xml_escape(rec.line)}</line>\n  </record>\n")
    out.write("</ec_log_trace>\n")


# -- the command ----------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ec_log_trace", allow_abbrev=False,
                                description="Parse ecelerity log files and print matching records.")
    add = p.add_argument
    add("files", nargs="*", metavar="logfile", help="log files (mainlog, rejectlog, bouncelog; "
        ".bz2/.gz/.xz fine; - is standard input)")
    add("--binding", action="append")
    add("--binding-regex", action="append")
    add("--binding-group", action="append")
    add("--binding-group-regex", action="append")
    add("--count", action="store_true", help="only the number of matching records per kind")
    add("--date", action="store_true", help="show dates instead of epoch seconds")
    add("--dst-ip", action="append")
    add("--dst-ip-regex", action="append")
    add("--end", type=parse_date)
    add("--from", dest="from_", action="append")
    add("--from-domain", action="append")
    add("--from-domain-regex", action="append")
    add("--from-regex", action="append")
    add("--id", action="append", help="message id (repeatable)")
    add("--in", "--reception", dest="reception", action="store_true")
    add("--main", action="store_true", help="only records of mainlogs")
    add("--out", "--delivery", dest="delivery", action="store_true")
    add("--output", help="write to this file instead of standard output")
    add("--append", action="store_true", help="with --output: append")
    add("--perm", "--permanent", dest="permanent", action="store_true")
    add("--regex", action="store_true", help="treat the values of the plain filters as regexes")
    add("--src-ip", action="append")
    add("--src-ip-regex", action="append")
    add("--start", type=parse_date)
    add("--to", action="append")
    add("--to-domain", action="append")
    add("--to-domain-regex", action="append")
    add("--to-regex", action="append")
    add("--tran", "--transient", dest="transient", action="store_true")
    add("-v", "--verbose", action="store_true")
    add("--vctx-conn", action="append")
    add("--vctx-conn-regex", action="append")
    add("--vctx-mess", action="append")
    add("--vctx-mess-regex", action="append")
    add("--xml", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        for spec in (args.from_regex, args.to_regex, args.binding_regex, args.src_ip_regex,
                     args.dst_ip_regex, args.from_domain_regex, args.to_domain_regex,
                     args.binding_group_regex):
            for v in spec or []:
                re.compile(v)
        matcher = Matcher(args)
    except re.error as exc:
        parser.error(f"bad regular expression: {exc}")
    files = list(args.files)
    if not files:
        files = default_files(paths.state_dir())
        if not files:
            print("ec_log_trace: no log files given and none found in "
                  f"{os.path.join(paths.state_dir(), 'log')}", file=sys.stderr)
            return 2
    for path in files:
        if path != "-" and not os.path.isfile(path):
            print(f"ec_log_trace: {path}: no such file", file=sys.stderr)
            return 2
    try:
        out = open(args.output, "a" if args.append else "w", encoding="utf-8",
                   errors="surrogateescape") if args.output else sys.stdout
    except OSError as exc:
        print(f"ec_log_trace: {args.output}: {exc.strerror}", file=sys.stderr)
        return 2
    reader = Reader(None)
    families = family_order(files)
    streams = [reader.records(group) for group in families]
    merged = streams[0] if len(streams) == 1 else heapq.merge(*streams, key=lambda r: r.ts)

    counts = {k: 0 for k, _ in COUNT_ORDER}
    matched = 0
    groups: dict[str, list[Rec]] = {}
    rejects: list[Rec] = []
    xml: list[Rec] = []
    try:
        for rec in merged:
            matcher.learn(rec)
            if not matcher(rec):
                continue
            matched += 1
            counts[rec.kind if rec.log != "bounce" or rec.kind == "B" else "T"] += 1
            if args.count:
                continue
            if args.xml:
                xml.append(rec)
            elif args.verbose:
                if rec.log == "reject":
                    rejects.append(rec)
                else:
                    groups.setdefault(rec.msg_id, []).append(rec)
            else:
                out.write((with_date(rec) if args.date else rec.line) + "\n")
        if args.count:
            for key, label in COUNT_ORDER:
                if counts[key] or key in "RDTP":
                    out.write(f"{label}: {counts[key]}\n")
        elif args.xml:
            write_xml(out, xml)
        elif args.verbose:
            for msg_id, recs in groups.items():
                out.write(f"Message {msg_id}\n")
                for rec in recs:
                    out.write("\n".join(verbose_record(rec, matcher, args.date)) + "\n")
            for rec in rejects:
                out.write("\n".join(verbose_record(rec, matcher, args.date)) + "\n")
            if reader.unparsed:
                out.write(f"({reader.unparsed} lines were not log records)\n")
    except BrokenPipeError:
        return 0
    finally:
        if out is not sys.stdout:
            out.close()
        else:
            try:
                out.flush()
            except BrokenPipeError:
                pass
    for err in reader.errors:
        print(f"ec_log_trace: {err}", file=sys.stderr)
    if reader.errors:
        return 2
    return 0 if matched or args.count else 1


if __name__ == "__main__":
    sys.exit(main())
