"""SIGKILL a writer (and a checkpointing reader) at random moments, several rounds on one
jlog: every record acknowledged (write_many returned) is there exactly once and in order,
nothing else but the tail of the batch that was being written, each record is intact, the
jlog passes jlog_sanity_check after every kill, and the next writer goes on from there."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time

from ecmta.loggers import jlog as J
from ecmta.loggers.jlog import Jlog
from ecmta.tests.jlog.crash_child import payload
from ecmta.tests.jlog.helpers import make, run_cli

ROUNDS = 8
CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "crash_child.py")


class Child:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, CHILD, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.thread.join(10)
        self.proc.stdout.close()
        self.proc.stderr.close()

    def last(self, prefix: str):
        for line in reversed(self.lines):
            if line.startswith(prefix):
                return line.split()[1]
        return None


def _torn_tail(path: str) -> bool:
    """Did the kill leave an incomplete record at the end of the current segment?"""
    seg = os.path.join(path, J.segment_name(Jlog(path).meta().storage_log))
    try:
        data = open(seg, "rb").read()
    except FileNotFoundError:
        return False
    off = 0
    while off + 16 <= len(data):
        off += 16 + int.from_bytes(data[off + 12:off + 16], sys.byteorder)
    return off != len(data)


def _everything(path: str) -> list[int]:
    """Every record still readable, in order, by a fresh subscriber from the beginning."""
    jl = Jlog(path)
    jl.remove_subscriber("audit")
    jl.add_subscriber("audit", J.BEGIN)
    out = []
    with jl.open_reader("audit") as r:
        for _id, m in r.pending():
            seq = int(m.data[:8])
            assert m.data == payload(seq), f"record {seq} damaged"
            out.append(seq)
    jl.remove_subscriber("audit")
    return out


def test_sigkill_loses_no_acknowledged_record_and_leaves_a_valid_jlog(tmp_path):
    rnd = random.Random(int(os.environ.get("ECMTA_JLOG_CRASH_SEED", "4242")))
    path = str(tmp_path / "crash.jlog")
    make(path, "keep", "live", unit_limit=96 * 1024)
    acked = -1
    next_seq = 0
    kills_mid_rollover = 0
    torn_tails = 0      # kills that left half a record (informative: it depends on timing)
    for rnd_no in range(ROUNDS):
        Jlog(path).alter_safety((J.UNSAFE, J.ALMOST_SAFE, J.SAFE)[rnd_no % 3])
        segs_before = len(Jlog(path).segments())
        w = Child("write", path, str(next_seq))
        r = Child("read", path, "live")
        deadline = time.monotonic() + 20
        while w.last("ACK") is None and time.monotonic() < deadline and w.proc.poll() is None:
            time.sleep(0.01)
        time.sleep(rnd.uniform(0.0, 0.4))
        w.kill()
        time.sleep(rnd.uniform(0.0, 0.05))
        r.kill()
        assert w.last("ACK") is not None, f"round {rnd_no}: writer never acknowledged"
        acked = int(w.last("ACK"))
        kills_mid_rollover += len(Jlog(path).segments()) != segs_before
        torn_tails += _torn_tail(path)

        # readable at once (a torn tail, if any, is invisible to readers) ...
        seqs = _everything(path)
        assert seqs == list(range(len(seqs))), f"round {rnd_no}: hole or duplicate"
        assert seqs[-1] >= acked, f"round {rnd_no}: acknowledged record {acked} lost"
        # ... and valid for jlog_sanity_check
        check = run_cli("jlog_sanity_check", sys.byteorder[0] + "e", path)
        assert (check.returncode, check.stdout) == (0, ""), check.stdout + check.stderr
        # the killed reader's checkpoint is a valid place to go on from
        cp = Jlog(path).get_checkpoint("live")
        assert cp.log <= Jlog(path).meta().storage_log
        next_seq = seqs[-1] + 1

    # the live reader, restarted, reads on without a gap up to the end
    with Jlog(path).open_reader("live") as rd:
        rest = [int(m.data[:8]) for _i, m in rd.pending()]
    assert rest == list(range(rest[0], next_seq)) if rest else True
    # and "keep", which never read, still has every record ever acknowledged
    assert Jlog(path).lag("keep") == next_seq
    assert kills_mid_rollover >= 1
    print(f"kills that left an incomplete record: {torn_tails} of {ROUNDS}")


def test_write_cut_short_by_sigkill_is_invisible_then_removed(tmp_path):
    """The kernel may stop a multi-page write of a killed process part way: the segment then
    ends with half a record. Readers never see it, jlog_sanity_check accepts it (a write in
    progress), no acknowledged record is lost, and the next writer cuts it off first."""
    rnd = random.Random(int(os.environ.get("ECMTA_JLOG_CRASH_SEED", "4242")))
    path = str(tmp_path / "torn.jlog")
    make(path, "keep", unit_limit=64 * 1024)
    next_seq, torn = 0, 0
    for rnd_no in range(ROUNDS):
        child = Child("tear", path, str(next_seq), str(rnd.randrange(1 << 30)))
        child.proc.wait(30)
        child.kill()
        assert child.proc.returncode == -signal.SIGKILL
        acked = int(child.last("ACK") or next_seq - 1)
        torn += _torn_tail(path)
        seqs = _everything(path)
        assert seqs == list(range(len(seqs))), f"round {rnd_no}: hole or duplicate"
        assert not seqs or seqs[-1] >= acked
        check = run_cli("jlog_sanity_check", sys.byteorder[0] + "e", path)
        assert (check.returncode, check.stdout) == (0, ""), check.stdout + check.stderr
        Jlog(path).open_writer().close()            # the next writer cuts the torn record
        assert not _torn_tail(path)
        next_seq = len(seqs)
    assert torn >= ROUNDS // 2
    assert Jlog(path).lag("keep") == next_seq
