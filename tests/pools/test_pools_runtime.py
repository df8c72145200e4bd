"""Runs every check of pool_checks.py in its own monkey-patched subprocess (pytest's own
process stays unpatched), and reports the child's output when one fails."""

import os
import re
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pool_checks.py")
with open(SCRIPT) as _fh:
    CHECKS = re.findall(r"^@check\ndef (\w+)\(", _fh.read(), re.M)


def test_checks_found():
    assert len(CHECKS) >= 10, CHECKS


@pytest.mark.parametrize("name", CHECKS)
def test_pool_check(name):
    env = dict(os.environ)
    env.pop("PYTEST_CURRENT_TEST", None)
    proc = subprocess.run([sys.executable, SCRIPT, name], capture_output=True, text=True,
                          timeout=120, env=env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0 and f"OK {name}" in proc.stdout, \
        f"check {name} failed (exit {proc.returncode})\n{proc.stdout}\n{proc.stderr}"
