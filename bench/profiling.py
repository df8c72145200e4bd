"""Profile mode: sample the ecmta daemon while a scenario's load runs, write a flame graph
(SVG) and the collapsed stacks, and print the hottest functions.

With py-spy (pip install py-spy; root or ptrace permission) the daemon runs unmodified and
py-spy samples it from outside (`py-spy record --format raw --nonblocking --pid <ecmta pid>`).
Without py-spy the daemon is started under cProfile (`python -m cProfile -o <file> -m ecmta`)
and the dump is read with pstats; greenlet switches make cProfile's cumulative times
unreliable under gevent, its own-time (tottime) column is still right.
"""

from __future__ import annotations

import html
import os
import shutil
import signal
import subprocess
import time
from collections import Counter


def pyspy() -> str | None:
    return shutil.which("py-spy")


def start_pyspy(pid: int, raw_path: str, rate: int = 200) -> subprocess.Popen:
    proc = subprocess.Popen([pyspy(), "record", "--pid", str(pid), "--format", "raw", "--rate", str(rate),
                             "--nonblocking", "--gil", "--output", raw_path],
                            stdout=subprocess.DEVNULL, stderr=open(raw_path + ".log", "w"))
    time.sleep(1.0)             # attached before the load starts
    if proc.poll() is not None:
        raise RuntimeError(f"py-spy exited: {open(raw_path + '.log').read()[-400:]}")
    return proc


def stop_pyspy(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)         # py-spy writes its output on SIGINT
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def read_collapsed(path: str) -> list[tuple[list[str], int]]:
    out = []
    with open(path, errors="replace") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, n = line.rpartition(" ")
            try:
                out.append((stack.split(";"), int(n)))
            except ValueError:
                continue
    return out


def _short(frame: str) -> str:
    """py-spy frames look like `function (path/to/file.py:123)`; drop the line number and
    keep the file from the package root (or the basename) so one function is one name."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    for marker in ("/ecmta/", "/main/", "site-packages/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = os.path.basename(path)
    return f"{name} ({path})" if path else name


def top_functions(stacks: list[tuple[list[str], int]], n: int = 25) -> str:
    own, incl = Counter(), Counter()
    total = sum(c for _, c in stacks) or 1
    for frames, count in stacks:
        names = [_short(f) for f in frames]
        if names:
            own[names[-1]] += count
        for name in set(names):
            incl[name] += count
    lines = [f"{total} samples", "", "own time (where the CPU was)", "  %own  function"]
    lines += [f"  {100 * c / total:5.1f}  {name}" for name, c in own.most_common(n)]
    lines += ["", "inclusive time (on the stack)", "  %incl function"]
    lines += [f"  {100 * c / total:5.1f}  {name}" for name, c in incl.most_common(n)]
    return "\n".join(lines)


def flamegraph_svg(stacks: list[tuple[list[str], int]], path: str, title: str, width: int = 1400) -> None:
    """A plain flame graph (root at the bottom, width = share of samples; hover for details)."""
    root: dict = {"n": 0, "kids": {}}
    for frames, count in stacks:
        node = root
        node["n"] += count
        for f in frames:
            node = node["kids"].setdefault(_short(f), {"n": 0, "kids": {}})
            node["n"] += count
    total = root["n"] or 1

    def depth(node) -> int:
        return 1 + max((depth(k) for k in node["kids"].values()), default=0)

    row, levels = 17, depth(root)
    height = row * levels + 40
    rects = []

    def walk(node, name, x, level):
        w = width * node["n"] / total
        if w < 0.3:
            return
        y = height - 20 - row * (level + 1)
        hue = 10 + (hash(name) % 40)
        label = html.escape(name)
        pct = 100 * node["n"] / total
        text = label if w > 40 else ""
        if text and len(text) * 6.2 > w:
            text = text[:max(0, int(w / 6.2) - 2)] + ".."
        rects.append(f'<g><title>{label} ({node["n"]} samples, {pct:.1f}%)</title>'
                     f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row - 1}" '
                     f'fill="hsl({hue},85%,60%)"/>'
                     f'<text x="{x + 3:.1f}" y="{y + 12}" font-size="11">{text}</text></g>')
        cx = x
        for kname, kid in sorted(node["kids"].items()):
            walk(kid, kname, cx, level + 1)
            cx += width * kid["n"] / total

    walk(root, "all", 0.0, 0)
    with open(path, "w") as fh:
        fh.write(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
                 f'font-family="monospace">\n<text x="5" y="15" font-size="13">{html.escape(title)}</text>\n')
        fh.write("\n".join(rects))
        fh.write("\n</svg>\n")


def cprofile_top(dump: str, n: int = 25) -> str:
    import io
    import pstats
    buf = io.StringIO()
    st = pstats.Stats(dump, stream=buf)
    st.sort_stats("tottime").print_stats(n)
    return buf.getvalue()
