"""`jlogctl [-a sub] [-c] [-e sub] [-d] [-i] [-l] [-p sub] [-r] [-s] [-v] jlog ...`
(executable.jlogctl): analyze and maintain jlogs.

Options, output and exit status are libjlog 2.0.x's jlogctl.c (the flags of Momentum's
page): for each path the path is printed, then
  -a sub   add a subscriber at the beginning: "Added subscriber 'sub'"
  -e sub   remove one: "Erased subscriber 'sub'"
  -p sub   the subscriber's perspective: checkpoint, last write, next read interval
  -s       every subscriber: "\t%32s @ log:marker"
  -l       every segment: "\t%8s [%9llu bytes] %d pending readers" (directory order)
  -i       -l plus each index: "\t\t idx: N messages (%08x), open|closed", none, error
  -d       -l plus an analysis of each segment (problems on stderr)
  -r       -d plus the repair of damaged segments (not on a jlog in use)
  -c       remove segments no subscriber still needs; prints nothing
  -v       verbose analysis
Errors go to stderr ("Could not add subscriber 'x': JLOG_ERR_SUBSCRIBER_EXISTS", "error
opening 'path': JLOG_ERR_OPEN"); an unknown option or no path prints the usage and exits
255 (exit(-1)); otherwise the exit status is 0, as in C.
"""

from __future__ import annotations

import os
import sys

from ecmta.loggers.jlog import (BEGIN, INDEX_EXT, Jlog, JlogError, JlogId, is_datafile)

USAGE = """Usage:
    {prog} <options> logpath1 [logpath2 [...]]
\t-a <sub>:\tAdd <sub> as a log subscriber
\t-e <sub>:\tErase <sub> as a log subscriber
\t-p <sub>:\tShow the perspective of the subscriber <sub>
\t      -l:\tList all log segments with sizes and readers
\t      -i:\tList index information
\t      -c:\tClean all log segments with no pending readers
\t      -s:\tShow all subscribers
\t      -d:\tAnalyze datafiles
\t      -r:\tAnalyze datafiles and repair if needed
\t      -v:\tVerbose output

WARNING: the -r option can't be used on jlogs that are open by another process
"""


class Options:
    verbose = False
    show_progress = False
    show_subscribers = False
    show_files = False
    show_index_info = False
    analyze = False
    repair = False
    cleanup = False
    quiet = False
    add = None
    remove = None
    subscriber = None


OPTSTRING = "a:e:dsilrcp:v"


class UsageError(Exception):
    pass


def parse(argv: list[str]) -> tuple[list[tuple[str, str | None]], list[str]]:
    """libjlog's getopt_long.c: options first, one per argument ("-a sub" or "-asub");
    the first argument that is not an option ends them; "--" is not skipped."""
    opts, i = [], 0
    while i < len(argv):
        cur = argv[i]
        if not cur.startswith("-") or cur == "--":
            break
        if cur.startswith("--"):
            raise UsageError(f"unknown long option {cur}")
        flag = cur[1:2]
        pos = OPTSTRING.find(flag) if flag and flag not in ":?" else -1
        if pos < 0:
            raise UsageError(f"unknown option: {flag}")
        i += 1
        if OPTSTRING[pos + 1:pos + 2] == ":":
            if cur[2:]:
                opts.append((flag, cur[2:]))
            elif i >= len(argv):
                raise UsageError(f"option {flag} requires an argument")
            else:
                opts.append((flag, argv[i]))
                i += 1
        elif cur[2:]:
            raise UsageError(f"option {flag} does not take an argument")
        else:
            opts.append((flag, None))
    return opts, argv[i:]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = sys.argv[0] if sys.argv and sys.argv[0] else "jlogctl"
    if prog.endswith(".py"):
        prog = prog[:-3]
    try:
        opts, paths = parse(argv)
    except UsageError as exc:
        sys.stderr.write(f"{exc}\n")
        sys.stderr.flush()
        sys.stdout.write(USAGE.format(prog=prog))
        return 255
    o = Options()
    for flag, value in opts:
        flag = "-" + flag
        if flag == "-v":
            o.verbose = True
        elif flag == "-i":
            o.show_files = o.show_index_info = True
        elif flag == "-r":
            o.show_files = o.analyze = o.repair = True
        elif flag == "-d":
            o.show_files = o.analyze = True
        elif flag == "-a":
            o.add = value
        elif flag == "-e":
            o.remove = value
        elif flag == "-p":
            o.show_progress, o.subscriber = True, value
        elif flag == "-s":
            o.show_subscribers = True
        elif flag == "-c":
            o.show_files = o.quiet = o.cleanup = True
        elif flag == "-l":
            o.show_files = True
    if not paths:
        sys.stdout.write(USAGE.format(prog=prog))
        return 255
    for path in paths:
        if not o.quiet:
            print(path)
        sys.stdout.flush()
        process(path, o)
        sys.stdout.flush()
    return 0


def out(o: Options, text: str) -> None:
    if not o.quiet:
        print(text)


def err(text: str) -> None:
    sys.stdout.flush()
    print(text, file=sys.stderr, flush=True)


def process(path: str, o: Options) -> None:
    jl = Jlog(path)
    if o.add:
        try:
            jl.add_subscriber(o.add, BEGIN)
            out(o, f"Added subscriber '{o.add}'")
        except JlogError as exc:
            err(f"Could not add subscriber '{o.add}': {exc.name}")
    if o.remove:
        if jl.remove_subscriber(o.remove):
            out(o, f"Erased subscriber '{o.remove}'")
        else:
            err(f"Could not erase subscriber '{o.remove}': JLOG_ERR_INVALID_SUBSCRIBER")
    try:
        ctx = jl.open_reader(o.subscriber) if o.subscriber else jl.open_admin()
    except JlogError as exc:
        err(f"error opening '{path}': {exc.name}")
        return
    try:
        if o.show_progress:
            perspective(ctx, o)
        if o.show_subscribers:
            for name in jl.list_subscribers():
                out(o, f"\t{name:>32} @ {_checkpoint(ctx, name)}")
        if o.show_files:
            files(jl, ctx, o)
    finally:
        ctx.close()


def _checkpoint(ctx, name: str) -> JlogId:
    try:
        return ctx.get_checkpoint(name)
    except JlogError:
        return JlogId(0, 0)


def perspective(reader, o: Options) -> None:
    sub = o.subscriber
    cp = _checkpoint(reader, sub)
    try:
        last = reader.last_log_id()
    except JlogError as exc:
        err(f"jlog_error: {exc.name}")
        err("error callign jlog_ctx_last_log_id")
        last = JlogId(0, 0)
    out(o, "--------------------")
    out(o, f"  Perspective of the '{sub}' subscriber")
    out(o, f"    current checkpoint: {cp}")
    out(o, f"Last write: {last}")
    sys.stdout.flush()
    try:
        start, end = reader.read_interval()
    except JlogError as exc:
        err(f"jlog_error: {exc.name}")
        start = end = cp
    out(o, f"\t     next interval: [{start}, {end}]")
    out(o, "--------------------\n")


def files(jl: Jlog, ctx, o: Options) -> None:
    try:
        names = os.listdir(jl.path)
    except OSError:
        err(f"error opening '{jl.path}'")
        return
    for name in names:
        log = is_datafile(name)
        if log is None:
            continue
        full = os.path.join(jl.path, name)
        idx = full + INDEX_EXT
        try:
            st = os.stat(full)
        except OSError as exc:
            out(o, f"\t{name:>8} [error statting file: {os.strerror(exc.errno)}")
            continue
        readers = ctx.pending_readers(log)[0]
        out(o, f"\t{name:>8} [{st.st_size:9d} bytes] {readers} pending readers")
        if o.show_index_info and not o.quiet:
            if not os.path.exists(idx):
                print("\t\t idx: none")
            else:
                try:
                    marker, closed = ctx.idx_details(log)
                    print(f"\t\t idx: {marker} messages ({marker:08x}), "
                          f"{'closed' if closed else 'open'}")
                except (JlogError, OSError):
                    print("\t\t idx: error")
        if o.analyze:
            analyze(ctx, log, idx, o)
        if readers == 0 and o.cleanup:
            for victim in (full, idx):
                try:
                    os.unlink(victim)
                except OSError:
                    pass


def analyze(ctx, log: int, idx: str, o: Options) -> None:
    sys.stdout.flush()
    try:
        damaged = ctx.inspect_datafile(log, o.verbose, sys.stderr) > 0
    except (JlogError, OSError) as exc:
        err(f"cannot analyze segment {log:08x}: {exc}")
        return
    if damaged:
        err("One or more errors were found.")
        if o.repair:
            ctx.repair_datafile(log)
            err("Log file reconstructed, deleting the corresponding idx file.")
            ctx._close_index()
            try:
                os.unlink(idx)
            except OSError:
                pass


if __name__ == "__main__":
    sys.exit(main())
