"""The decisive test: SIGKILL a committing process at random moments, several rounds on
one spool. Every id printed after its commit resolved must be there exactly once, every
id printed after its removal resolved must be gone, nothing may be corrupt, every commit
is all or nothing, and the next start must hand back exactly what is on disk."""

from __future__ import annotations

import os
import random
import re
import time

from ecmta.tests.spool.helpers import LiveChild, verify_spool

ROUNDS = 5


def _check_batches(state: dict, rcpts: dict) -> None:
    """A commit is one batch: all recipients present, or all but r0 (removed), or none."""
    by_batch: dict[str, set] = {}
    for msg_id in state["ids"]:
        by_batch.setdefault(state["batch_of"][msg_id], set()).add(rcpts[msg_id])
    for batch, present in by_batch.items():
        n = state["expected"][batch]
        assert present in (set(range(n)), set(range(1, n))), (batch, present, n)


def test_sigkill_never_loses_or_duplicates_acknowledged_mail(tmp_path):
    base = tmp_path / "spool"
    rnd = random.Random(int(os.environ.get("ECMTA_SPOOL_CRASH_SEED", "20260511")))
    acked, removed, maybe_removed, on_disk = set(), set(), set(), set()
    total_acked = 0
    for rnd_no in range(ROUNDS):
        child = LiveChild("crash", base, {"workers": 50, "seconds": 30, "large": 300000},
                          str(tmp_path / "child.err"))
        try:
            assert child.wait_for("READY", 60), open(tmp_path / "child.err").read()[-3000:]
            # Spool-in handed back exactly what the previous round left on disk.
            recovered = {line.split()[1] for line in child.lines if line.startswith("REC ")}
            assert recovered == on_disk, f"round {rnd_no}: recovery differs from the spool"
            time.sleep(rnd.uniform(0.3, 2.5))
        finally:
            child.kill()
        round_acked = [i for line in child.lines if line.startswith("OK ") for i in line.split()[1:]]
        round_removed = [line.split()[1] for line in child.lines if line.startswith("RM ")]
        maybe_removed.update(line.split()[1] for line in child.lines if line.startswith("RMQ "))
        assert round_acked, "the child acknowledged nothing before it was killed"
        total_acked += len(round_acked)
        acked.update(round_acked)
        removed.update(round_removed)

        state = _inspect(base)
        present = set(state["ids"])
        missing = (acked - removed - maybe_removed) - present
        assert not missing, f"round {rnd_no}: {len(missing)} acknowledged messages lost: {sorted(missing)[:5]}"
        assert not (removed & present), f"round {rnd_no}: removed messages came back"
        _check_batches(state, state["rcpt_index"])
        on_disk = present
    assert total_acked > 500
    print(f"{ROUNDS} rounds, {total_acked} acknowledged, {len(removed)} removed, {len(on_disk)} on disk")


def _inspect(base) -> dict:
    from ecmta.actors.spool_store import SpoolReader
    state = verify_spool(base)
    reader = SpoolReader(str(base))
    batch_of, rcpt_index = {}, {}
    for msg, _ in reader.rows():
        batch_of[msg.id] = msg.batch_id
        rcpt_index[msg.id] = int(re.match(r"r(\d+)@", msg.rcptto).group(1))
    reader.close()
    state["batch_of"], state["rcpt_index"] = batch_of, rcpt_index
    return state
