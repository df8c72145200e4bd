"""Runs tests/dns/scenarios.py in a gevent-patched subprocess and returns its result.

pytest's own process stays unpatched: parameters go in as JSON on stdin, the result comes
back on the `RESULT <json>` line; a failing scenario fails the test with its stderr.
"""

from __future__ import annotations

import json
import subprocess
import sys


def scenario(name: str, timeout: float = 60, **params) -> dict:
    proc = subprocess.run([sys.executable, "-m", "ecmta.tests.dns.scenarios", name],
                          input=json.dumps(params), capture_output=True, text=True,
                          timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise AssertionError(f"scenario {name} failed (rc={proc.returncode}):\n{proc.stderr[-4000:]}")
