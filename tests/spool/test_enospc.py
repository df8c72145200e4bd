"""Out of space: every commit that cannot be written fails with a SpoolError carrying
452 4.3.1, the process goes on, and commits succeed again once space returns.

Two ways to run out: a 4 MB tmpfs filled up with a filler file (needs `mount`, i.e. root;
this is the real ENOSPC), and RLIMIT_FSIZE in the child (EFBIG; runs anywhere)."""

from __future__ import annotations

import json
import subprocess

import pytest

from ecmta.actors.spool_store import REPLY_INSUFFICIENT_STORAGE
from ecmta.tests.spool.helpers import ok_ids, run_child, verify_spool


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}); the RLIMIT_FSIZE variant covers it")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _check(base, lines, expect_full: bool) -> None:
    fails = [line.split(" ", 3) for line in lines if line.startswith("FAIL ")]
    assert fails, "no commit failed although the disk was full"
    for _, cls, _ids, detail in fails:
        reply, _text = json.loads(detail)
        assert reply == REPLY_INSUFFICIENT_STORAGE
        assert cls in (("SpoolFullError",) if expect_full else ("SpoolFullError", "SpoolWriteError"))
    # Space returned: the next five commits succeed, without a restart.
    last_fail = max(i for i, line in enumerate(lines) if line.startswith("FAIL "))
    assert sum(line.startswith("OK ") for line in lines[last_fail:]) == 5
    removed = {line.split()[1] for line in lines if line.startswith("RM ")}
    acked = set(ok_ids(lines)) - removed
    failed = {i for f in fails for i in f[2].split(",")}
    rec_lines, _ = run_child("recover", base, {})
    recovered = {line.split()[1] for line in rec_lines if line.startswith("REC ")}
    assert recovered == acked and not (recovered & failed)
    assert set(verify_spool(base)["ids"]) == acked


def test_full_tmpfs_fails_commits_then_recovers(small_fs):
    base = small_fs / "spool"
    lines, _ = run_child("enospc", base, {})
    _check(base, lines, expect_full=True)


def test_file_size_limit_fails_commits_then_recovers(tmp_path):
    base = tmp_path / "spool"
    lines, _ = run_child("enospc", base, {"rlimit": 65536})
    _check(base, lines, expect_full=False)
