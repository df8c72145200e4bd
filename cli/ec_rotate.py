"""ec_rotate: rotate and compress the log files ecelerity writes (executable.ec_rotate,
log_rotating).

    ec_rotate [-c|-compress /path/to/utility] [-conf /path/to/file] [-d|-default]
              [-l|-logfile /path/to/logfile]... [-logdir /path/to/dir]... [-n|-nocompress]
              [-r|-retention number] [-s|-socket /path/to/socket] [-v]

Owns: the ec_rotate.conf format, the rotation of each file and the compression of the
rotated ones. Talks to: the daemon's control socket (ecmta.transports.control_client,
one `reopen logs`), the compression utility (subprocesses, several at once).

For each log file X that exists: X.<retention> and older (compressed or not) are
deleted, X.<n> is renamed X.<n+1> (newest last), X is renamed X.1. Then ecelerity is told
`reopen logs` over the control socket once for all files; it answers after every log
writer has finished the batch it was writing, so from then on nothing is added to X.1 and
new lines go to a new X (no line is lost: until the reopen they go to X.1). Then every
rotated file not compressed yet is compressed (`bzip2` by default, `-c /usr/bin/gzip`
possible; several at once; Python's bz2 in a process pool when the utility is missing).
X.1 is compressed only when the reopen succeeded; the older ones always are.

ec_rotate.conf (log_rotating, Example 34.1): `key = value` lines, `#` comments, a
trailing `\\` continues the line; values are whitespace-separated lists.

    enabled = yes                      # no: do nothing (for disabling the cron job)
    logfiles = log/mainlog.ec \\
               log/paniclog.ec         # the files to rotate
    logdirs = log/adaptive             # every *.log file in these directories too
    retention = 7                      # rotated files kept (X.1 ... X.7)
    control_socket = /tmp/2025         # the Control_Listener (Unix path or host:port)
    path_to_bzip = /usr/bin/bzip2      # the compression utility

Relative paths (files, dirs) are relative to the state directory ($ECMTA_HOME, default
~/.local/state/ecmta), as in ecelerity.conf. Which config is read: -conf FILE; else
(also with -d) `<state>/ec_rotate.conf`, then /opt/msys/ecelerity/etc/ec_rotate.conf, if
one exists; else the defaults: the mainlog, paniclog, rejectlog, bouncelog and acctlog
(`<state>/log/*.ec`), retention 7, socket /tmp/2025, bzip2. Command-line options win:
-l / -logdir replace the config's lists, -r, -s, -c, -n override it.

A jlog (a directory) is not rotated: its records go when its subscribers checkpoint them.
Exit status: 0; 1 when a file could not be rotated or compressed or the daemon could not
be told to reopen its logs (what could be done was done); 2 for usage errors.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys

from ecmta import paths
from ecmta.transports.control_client import DEFAULT_ADDRESS, ControlClient, ControlError

DEFAULT_RETENTION = 7
DEFAULT_COMPRESS = "/usr/bin/bzip2"
MOMENTUM_CONF = "/opt/msys/ecelerity/etc/ec_rotate.conf"
CONF_NAME = "ec_rotate.conf"
DEFAULT_LOGFILES = ("log/mainlog.ec", "log/paniclog.ec", "log/rejectlog.ec", "log/bouncelog.ec",
                    "log/acctlog.ec")
COMPRESSED = (".bz2", ".gz", ".xz", ".zst")
KNOWN_KEYS = ("enabled", "logfiles", "logdirs", "retention", "control_socket", "path_to_bzip")
REOPEN_TIMEOUT = 60.0


class RotateError(Exception):
    pass


# -- the config file -------------------------------------------------------------------------------

def parse_conf(text: str, source: str = "ec_rotate.conf") -> tuple[dict, list[str]]:
    """(settings, warnings): settings maps each key to its list of words."""
    out, warnings = {}, []
    logical, start = "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if not logical:
            start = n
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        line, logical = logical.strip(), ""
        if not line:
            continue
        key, sep, value = line.partition("=")
        key = key.strip().lower()
        if not sep or not key:
            warnings.append(f"{source}:{start}: not a 'key = value' line: {line}")
            continue
        if key not in KNOWN_KEYS:
            warnings.append(f"{source}:{start}: unknown option '{key}' (ignored)")
        out[key] = [w.strip("\"'") for w in value.split()]
    return out, warnings


def _yes(words: list[str]) -> bool:
    return (words[0].lower() if words else "yes") in ("yes", "y", "true", "1", "on")


# -- rotating ---------------------------------------------------------------------------------------

def _numbered(path: str) -> list[tuple[int, str]]:
    """(n, full path) of every rotated X.n[.ext] of path X."""
    folder, base = os.path.split(path)
    rx = re.compile(re.escape(base) + r"\.(\d+)(" + "|".join(re.escape(c) for c in COMPRESSED) + r")?$")
    out = []
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return []
    for name in names:
        m = rx.match(name)
        if m:
            out.append((int(m.group(1)), os.path.join(folder, name)))
    return sorted(out)


def rotate_file(path: str, retention: int, say) -> bool:
    """Shift X.n to X.n+1 (dropping those past retention) and X to X.1; False if X is not
    there (nothing to rotate)."""
    if not os.path.lexists(path):
        say(f"{path}: not found, skipped")
        return False
    if os.path.isdir(path):
        say(f"{path}: a directory (jlog?), not rotated")
        return False
    for n, old in sorted(_numbered(path), reverse=True):
        if n >= retention:
            os.unlink(old)
            say(f"removed {old}")
            continue
        new = f"{path}.{n + 1}" + old[len(f"{path}.{n}"):]
        os.replace(old, new)
    os.replace(path, f"{path}.1")
    say(f"rotated {path} -> {path}.1")
    return True


def reopen_logs(socket_path: str) -> str:
    client = ControlClient.connect(socket_path, reply_timeout=REOPEN_TIMEOUT)
    try:
        ok, text = client.command("reopen logs")
    finally:
        client.close()
    if not ok:
        raise ControlError(text.strip() or "reopen logs failed")
    return text.strip()


def _compress_py(path: str, ext: str) -> str:
    """Process-pool job: compress path to path+ext with Python's codec, remove path."""
    import bz2
    import gzip
    import lzma
    opener = {".bz2": bz2.open, ".gz": gzip.open, ".xz": lzma.open}[ext]
    tmp = path + ext + ".tmp"
    with open(path, "rb") as src, opener(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    os.replace(tmp, path + ext)
    os.unlink(path)
    return path + ext


def extension_of(program: str) -> str:
    name = os.path.basename(program)
    for key, ext in (("bzip2", ".bz2"), ("pbzip2", ".bz2"), ("lbzip2", ".bz2"), ("gzip", ".gz"),
                     ("pigz", ".gz"), ("xz", ".xz"), ("zstd", ".zst")):
        if name.startswith(key):
            return ext
    return ".bz2" if "bz" in name else ".gz"


def compress_all(files: list[str], program: str, say, workers: int | None = None) -> list[str]:
    """Compress files at once (a utility process each, at most `workers` at a time, or a
    process pool of Python codecs); returns the errors."""
    if not files:
        return []
    ext = extension_of(program)
    exe = program if os.path.isfile(program) and os.access(program, os.X_OK) else shutil.which(program)
    workers = workers or max(1, os.cpu_count() or 1)
    errors = []
    if exe:
        running: list[tuple[str, subprocess.Popen]] = []
        queue = list(files)
        while queue or running:
            while queue and len(running) < workers:
                f = queue.pop(0)
                proc = subprocess.Popen([exe, "-f", f], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                running.append((f, proc))
            f, proc = running.pop(0)
            _out, err = proc.communicate()
            if proc.returncode != 0:
                errors.append(f"{exe} {f}: exit {proc.returncode}: {err.decode(errors='replace').strip()}")
            else:
                say(f"compressed {f} -> {f}{ext}")
        return errors
    if ext not in (".bz2", ".gz", ".xz"):
        return [f"{program}: not found"]
    say(f"{program} not found: compressing with Python's {ext[1:]} codec")
    with concurrent.futures.ProcessPoolExecutor(max_workers=min(workers, len(files))) as pool:
        futures = {pool.submit(_compress_py, f, ext): f for f in files}
        for fut in concurrent.futures.as_completed(futures):
            f = futures[fut]
            try:
                say(f"compressed {f} -> {fut.result()}")
            except Exception as exc:
                errors.append(f"compressing {f}: {exc}")
    return errors


def uncompressed_rotations(path: str, include_first: bool) -> list[str]:
    return [p for n, p in _numbered(path)
            if not p.endswith(COMPRESSED) and (include_first or n > 1)]


# -- the command -----------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ec_rotate", allow_abbrev=False,
                                description="Rotate and compress ecelerity's log files.")
    p.add_argument("-c", "-compress", "--compress", dest="compress", metavar="/path/to/utility",
                   help="compression utility (default /usr/bin/bzip2)")
    p.add_argument("-conf", "--conf", dest="conf", metavar="/path/to/file", help="ec_rotate.conf to use")
    p.add_argument("-d", "-default", "--default", dest="default", action="store_true",
                   help="use the default ec_rotate.conf (state directory, then /opt/msys/ecelerity/etc)")
    p.add_argument("-l", "-logfile", "--logfile", dest="logfiles", action="append", default=[],
                   metavar="/path/to/logfile", help="a log file to rotate (repeatable)")
    p.add_argument("-logdir", "--logdir", dest="logdirs", action="append", default=[],
                   metavar="/path/to/dir", help="rotate every *.log file of this directory (repeatable)")
    p.add_argument("-n", "-nocompress", "--nocompress", dest="nocompress", action="store_true",
                   help="do not compress rotated files")
    p.add_argument("-r", "-retention", "--retention", dest="retention", type=int, metavar="number",
                   help="rotated files to keep (default 7)")
    p.add_argument("-s", "-socket", "--socket", dest="socket", metavar="/path/to/socket",
                   help="the Control_Listener socket (default /tmp/2025)")
    p.add_argument("-v", "--verbose", dest="verbose", action="store_true", help="say what is done")
    return p


def find_conf(args, state: str) -> str | None:
    if args.conf:
        return args.conf
    for candidate in (os.path.join(state, CONF_NAME), MOMENTUM_CONF):
        if os.path.isfile(candidate):
            return candidate
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    state = paths.state_dir()
    say = (lambda text: print(text, flush=True)) if args.verbose else (lambda text: None)
    conf_path = find_conf(args, state)
    conf: dict = {}
    if conf_path:
        try:
            with open(conf_path, encoding="utf-8", errors="replace") as fh:
                conf, warnings = parse_conf(fh.read(), conf_path)
        except OSError as exc:
            print(f"ec_rotate: cannot read {conf_path}: {exc.strerror}", file=sys.stderr)
            return 2
        for w in warnings:
            print(f"ec_rotate: {w}", file=sys.stderr)
        say(f"config {conf_path}")
    if not _yes(conf.get("enabled", ["yes"])):
        say("enabled = no: nothing rotated")
        return 0
    try:
        retention = args.retention if args.retention is not None else \
            int((conf.get("retention") or [DEFAULT_RETENTION])[0])
    except ValueError:
        print(f"ec_rotate: retention must be a number: {conf.get('retention')}", file=sys.stderr)
        return 2
    if retention < 1:
        print("ec_rotate: retention must be 1 or more", file=sys.stderr)
        return 2
    if args.logfiles or args.logdirs:
        logfiles, logdirs = args.logfiles, args.logdirs
    elif conf_path:
        logfiles, logdirs = conf.get("logfiles", []), conf.get("logdirs", [])
    else:
        logfiles, logdirs = list(DEFAULT_LOGFILES), []
    socket_path = args.socket or (conf.get("control_socket") or [DEFAULT_ADDRESS])[0]
    program = args.compress or (conf.get("path_to_bzip") or [DEFAULT_COMPRESS])[0]

    files = [paths.resolve(f, state) for f in logfiles]
    for d in logdirs:
        d = paths.resolve(d, state)
        try:
            files += sorted(os.path.join(d, n) for n in os.listdir(d)
                            if n.endswith(".log") and os.path.isfile(os.path.join(d, n)))
        except OSError as exc:
            say(f"{d}: {exc.strerror}, skipped")
    files = list(dict.fromkeys(files))

    status = 0
    rotated = []
    for f in files:
        try:
            if rotate_file(f, retention, say):
                rotated.append(f)
        except OSError as exc:
            print(f"ec_rotate: cannot rotate {f}: {exc}", file=sys.stderr)
            status = 1
    reopened = False
    if rotated:
        try:
            answer = reopen_logs(socket_path)
            reopened = True
            say(f"reopen logs: {answer}")
        except ControlError as exc:
            print(f"ec_rotate: cannot tell ecelerity to reopen its logs: {exc}", file=sys.stderr)
            status = 1
    if not args.nocompress:
        todo = []
        for f in files:
            todo += uncompressed_rotations(f, include_first=reopened or f not in rotated)
        errors = compress_all(todo, program, say)
        for e in errors:
            print(f"ec_rotate: {e}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
