"""A gevent-patched child for the spool's acknowledgement check (pytest stays unpatched).

    python -m ecmta.tests.reliability.spool_child <spoolbase> <rounds>

Each round: a removal (or a state update) is in flight when a new commit arrives; the
commit's result must not resolve before its rows are in the database. Every store
transaction is slowed down (SLOW seconds in the pool thread) so the overlap is certain.
Prints `EARLY <id>` for a commit acknowledged while its row was not yet readable by
another connection, `OK <id>` otherwise, then `DONE`. Bounded: `rounds` rounds, 60 s.
"""

from gevent import monkey

monkey.patch_all()

import sqlite3  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402

from ecmta.actors.spool import SpoolService  # noqa: E402
from ecmta.tests.spool.child import make_batch  # noqa: E402

SLOW = 0.1


def main() -> None:
    base, rounds = sys.argv[1], int(sys.argv[2])
    svc = SpoolService({"spoolbase": base}, on_recovered=None)
    svc.start()
    real_apply = svc.store.apply

    def slow_apply(txn):
        time.sleep(SLOW)                     # a pool thread: the hub goes on meanwhile
        return real_apply(txn)
    svc.store.apply = slow_apply
    reader = sqlite3.connect(f"file:{base}/spool.db?mode=ro", uri=True)
    deadline = time.monotonic() + 60
    for n in range(rounds):
        if time.monotonic() > deadline:
            break
        first = make_batch(1, 300, f"first {n}")
        svc.commit(first).get()
        if n % 2:
            svc.remove([first[0].id])        # a removals-only transaction goes in flight
        else:
            svc.update(first[0].id, state="delivering")
            svc.flush()                      # an updates-only transaction goes in flight
        gevent.sleep(0.01)
        second = make_batch(1, 300, f"second {n}")
        svc.commit(second).get()
        mid = second[0].id
        seen = reader.execute("SELECT count(*) FROM messages WHERE id = ?", (mid,)).fetchone()[0]
        print(("OK " if seen else "EARLY ") + mid, flush=True)
    svc.stop()
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
