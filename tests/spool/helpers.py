"""Shared helpers for the spool tests: run the gevent child, check a spool offline."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter

from ecmta.actors.spool_store import SpoolReader

CHILD = [sys.executable, "-m", "ecmta.tests.spool.child"]


def run_child(scenario: str, base: str, opts: dict | None = None, timeout: float = 120):
    """Run one scenario to completion: (stdout lines, stderr text). Fails on a bad exit."""
    proc = subprocess.run(CHILD + [scenario, str(base), json.dumps(opts or {})],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"child {scenario} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    lines = proc.stdout.splitlines()
    assert lines and lines[-1] == "DONE", proc.stderr[-4000:]
    return lines, proc.stderr


def infos(lines) -> list[dict]:
    return [json.loads(line[5:]) for line in lines if line.startswith("INFO ")]


def ok_ids(lines) -> list[str]:
    return [i for line in lines if line.startswith("OK ") for i in line.split()[1:]]


class LiveChild:
    """A child whose stdout is collected line by line while it runs (for SIGKILL tests)."""

    def __init__(self, scenario: str, base: str, opts: dict, stderr_path: str) -> None:
        self._err = open(stderr_path, "ab")
        self.proc = subprocess.Popen(CHILD + [scenario, str(base), json.dumps(opts)],
                                     stdout=subprocess.PIPE, stderr=self._err)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for raw in self.proc.stdout:
            self.lines.append(raw.decode().rstrip("\n"))

    def wait_for(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.lines:
                return True
            if self.proc.poll() is not None and not self._reader.is_alive():
                return text in self.lines
            time.sleep(0.02)
        return False

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)
        self._reader.join(timeout=30)   # what was printed before the kill is in the pipe
        self._err.close()


def verify_spool(base: str) -> dict:
    """Open the spool read-only and check every record and body; returns what is there.
    Asserts: records decode, bodies pass size/CRC, every batch is complete."""
    reader = SpoolReader(str(base))
    try:
        ids, batches, expected = [], Counter(), {}
        for msg, bad in reader.rows():
            assert bad is None, f"corrupt record {bad}"
            ids.append(msg.id)
            reader.body(msg.id)
            batches[msg.batch_id] += 1
            expected[msg.batch_id] = int(msg.ctx_mess.get("batch_size", 0))
        assert len(ids) == len(set(ids)), "duplicate ids in the spool"
        for batch, n in batches.items():
            assert n <= expected[batch], f"batch {batch}: {n} > {expected[batch]}"
        return {"ids": ids, "batches": batches, "expected": expected,
                "quarantine": reader.quarantined()}
    finally:
        reader.close()


def db(base: str) -> sqlite3.Connection:
    return sqlite3.connect(os.path.join(str(base), "spool.db"), isolation_level=None)
