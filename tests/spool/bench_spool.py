"""Spool commit throughput: `python -m ecmta.tests.spool.bench_spool [dir] [seconds]`.

Runs the child's `bench` scenario (50 greenlets committing 5 KB single-recipient
messages back to back through SpoolService.commit) with force_fsync on and off, on a
real disk (default: a fresh directory under /var/tmp, not tmpfs), and prints commits/s
and messages per transaction. Not a unit test: the numbers depend on the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile

from ecmta.tests.spool.helpers import infos, run_child

CASES = [
    ("5 KB, 1 rcpt, force_fsync on", {"fsync": True, "size": 5000, "rcpts": 1}),
    ("5 KB, 1 rcpt, force_fsync off", {"fsync": False, "size": 5000, "rcpts": 1}),
    ("5 KB, 3 rcpts, force_fsync on", {"fsync": True, "size": 5000, "rcpts": 3}),
]


def main() -> None:
    root = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="spoolbench", dir="/var/tmp")
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10
    for label, opts in CASES:
        base = os.path.join(root, "spool")
        shutil.rmtree(base, ignore_errors=True)
        lines, _ = run_child("bench", base, dict(opts, workers=50, seconds=seconds), timeout=seconds * 10 + 60)
        info = infos(lines)[-1]
        print(f"{label:32s} {info['per_second']:8.0f} commits/s  "
              f"{info['commits'] / max(info['transactions'], 1):5.1f} commits per transaction",
              flush=True)
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps({"dir": root}))


if __name__ == "__main__":
    main()
