"""The spool acknowledges a commit only once its rows are written: a commit that arrives
while a removals-only or updates-only transaction is in flight must wait for a
transaction of its own (found by the SIGKILL test: acknowledged mail lost after a crash)."""

from __future__ import annotations

import subprocess
import sys


def test_commit_during_a_maintenance_transaction_is_not_acknowledged_early(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ecmta.tests.reliability.spool_child",
                           str(tmp_path / "spool"), "8"], capture_output=True, text=True, timeout=120)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and lines[-1:] == ["DONE"], proc.stderr[-3000:]
    early = [ln for ln in lines if ln.startswith("EARLY ")]
    assert not early, f"acknowledged before written: {early}"
    assert len([ln for ln in lines if ln.startswith("OK ")]) == 8
