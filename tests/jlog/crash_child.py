"""Children for the SIGKILL tests.

`python crash_child.py write PATH FIRST`  appends records FIRST, FIRST+1, ... in batches of
random sizes, printing "ACK n" once write_many() returned for a batch ending with record n.
`python crash_child.py read PATH SUB`  reads and checkpoints SUB forever, printing "CP id".
Both run until killed.
`python crash_child.py tear PATH FIRST SEED`  writes a few batches, then one whose pwrite
stops after a random number of bytes, as a write cut short by SIGKILL in the kernel would,
and kills itself there.
"""

from __future__ import annotations

import os
import random
import signal
import sys

from ecmta.loggers import jlog as J
from ecmta.loggers.jlog import Jlog


def payload(seq: int) -> bytes:
    size = random.Random(seq).choice((0, 1, 17, 300, 4000, 9000, 25000))
    return b"%08d:" % seq + bytes([seq % 251]) * size


def writer(path: str, first: int) -> None:
    w = Jlog(path).open_writer()
    rnd = random.Random(first)
    seq = first
    while True:
        n = rnd.randint(1, 40)
        w.write_many([payload(s) for s in range(seq, seq + n)])
        seq += n
        print(f"ACK {seq - 1}", flush=True)


def reader(path: str, sub: str) -> None:
    r = Jlog(path).open_reader(sub)
    while True:
        iv = r.read_interval()
        if iv.count:
            for i in iv.ids():
                r.read(i)
            r.checkpoint(iv.end)
            print(f"CP {iv.end}", flush=True)


def tear(path: str, first: int, seed: int) -> None:
    rnd = random.Random(seed)
    w = Jlog(path).open_writer()
    seq = first
    for _ in range(rnd.randint(0, 5)):
        n = rnd.randint(1, 20)
        w.write_many([payload(s) for s in range(seq, seq + n)])
        seq += n
        print(f"ACK {seq - 1}", flush=True)
    real = J._File.pwrite

    def torn(self, data, offset):
        cut = rnd.randint(1, max(1, len(data) - 1))
        real(self, bytes(data)[:cut], offset)
        os.kill(os.getpid(), signal.SIGKILL)
    J._File.pwrite = torn
    w.write_many([payload(s) for s in range(seq, seq + rnd.randint(1, 20))])


if __name__ == "__main__":
    if sys.argv[1] == "write":
        writer(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "tear":
        tear(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        reader(sys.argv[2], sys.argv[3])
