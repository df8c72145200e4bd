"""Runs tests/policy/scenarios.py in a subprocess (gevent-patched) and returns its result.

pytest's own process must stay unpatched, so every test that needs the hub goes through
`scenario(name, **params)`: parameters go in as JSON on stdin, the result comes back from
the `RESULT <json>` line; a failing scenario fails the test with its stderr.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

PANIC_LINE = re.compile(r"^\d+:(?P<sub>[^:]+): (?P<text>.*)$")


def scenario(name: str, timeout: float = 120, env: dict | None = None, **params) -> dict:
    proc = subprocess.run([sys.executable, "-m", "ecmta.tests.policy.scenarios", name],
                          input=json.dumps(params), capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, **(env or {})))
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise AssertionError(f"scenario {name} failed (rc={proc.returncode}):\n{proc.stderr[-4000:]}")


def lua(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def panic_texts(result: dict, subsystem: str | None = None) -> list[str]:
    """The paniclog lines of a run as "<subsystem>: <text>" (timestamps checked and cut)."""
    out = []
    for line in result["panic"]:
        m = PANIC_LINE.match(line)
        assert m, f"not a paniclog line: {line!r}"
        if subsystem is None or m.group("sub") == subsystem:
            out.append(f"{m.group('sub')}: {m.group('text')}")
    return out
