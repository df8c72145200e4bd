"""Crash safety: SIGKILL the daemon at random moments while mail flows in (smtplib clients)
and out (to Postfix's smtp-sink through `Domain "x.test" { Gateway = "127.0.0.1:<port>" }`).

After every kill, offline: `ec_show -n` and `ec_show -s` read the whole spool, every record
decodes, and every message that got a 250 is either at the sink or still in the spool.
Then the daemon restarts (it must come up cleanly on what the kill left).
At the end (injection stopped, the queue drained, a graceful stop): every acknowledged
message arrived, none is left in the spool, and a message that arrived more than once is
the documented at-least-once case only: the paniclog says "was being delivered when
ecelerity stopped" for it (at least once per extra copy).

Fast part: 3 kills. Slow part (-m slow): 25 kills with a busier flow. The seed is
ECMTA_CRASH_SEED (printed), so a failing run can be replayed.
"""

from __future__ import annotations

import collections
import os
import random
import re
import subprocess
import time

import pytest

from ecmta.tests.reliability.helpers import (ID_RE, Injector, rcpt_ids, start_mta, stopped_notices,
                                            wait_for)

SEED = int(os.environ.get("ECMTA_CRASH_SEED", str(int(time.time()) % 100000)))


def check_spool_offline(a) -> set[str]:
    """ec_show reads everything; returns the X-Rel-Ids in the spool."""
    n = a.ec_show("-n")
    assert n.returncode == 0, n.stderr
    count = int(re.search(r"\d+", n.stdout).group(0))
    s = a.ec_show("-s")
    assert s.returncode == 0, s.stderr[-3000:]
    shown = len(re.findall(r"^Message: " + ID_RE, s.stdout, re.M))
    spooled = a.spooled()
    assert len(spooled) == count, (len(spooled), count)
    assert shown == count, (shown, count, s.stdout[:2000])
    return set(rcpt_ids(spooled))


def _ls(path: str) -> str:
    """The spool directory and its filesystem's room (for failure messages)."""
    return subprocess.run(["ls", "-la", path, os.path.join(path, "bodies")], capture_output=True,
                          text=True).stdout + subprocess.run(["df", "-k", path], capture_output=True, text=True).stdout


def explain(a, s, ids) -> str:
    """What the logs and the sink know of some messages (for failure messages)."""
    out = []
    keep = os.environ.get("ECMTA_KEEP_FAILED")
    if keep:
        import shutil
        dest = os.path.join(keep, f"crash-{SEED}-{int(time.time())}")
        shutil.copytree(a.home, os.path.join(dest, "home"), ignore=shutil.ignore_patterns("ctl"))
        shutil.copytree(s.dir, os.path.join(dest, "sink"), dirs_exist_ok=True)
        with open(os.path.join(dest, "lost"), "w") as fh:
            fh.write("\n".join(ids) + "\n")
        out.append(f"kept in {dest}")
    for rel in ids:
        out += [ln for ln in a.mainlog() if f"@{rel}@" in ln]
        out += [ln for ln in a.paniclog() if rel in ln]
        for path in s.files():
            with open(path, "rb") as fh:
                if rel.encode() + b"@" in fh.read():
                    out.append(f"sink file {path} mentions {rel}")
    return "\n".join(out)


def run_crash_rounds(daemon_factory, sink, rounds: int, threads: int, max_seconds: float,
                     window: tuple[float, float], size_every: int = 0, spool: str | None = None,
                     sizes: tuple = (0, 0, 0, 300000)):
    rnd = random.Random(SEED)
    print(f"ECMTA_CRASH_SEED={SEED}")
    s = sink()
    a = start_mta(daemon_factory, tail=f'Domain "x.test" {{\n  Gateway = "127.0.0.1:{s.port}"\n}}\n',
                  **({"spool": spool} if spool else {}))
    full = 0
    acked: set[str] = set()
    unsure: set[str] = set()
    replies: dict = {}
    kills = 0
    started = time.monotonic()
    for rnd_no in range(rounds):
        if time.monotonic() - started > max_seconds:
            break
        inj = Injector(a.port, f"{rnd_no}", threads=threads, per_session=rnd.choice((1, 3, 10)),
                       size=rnd.choice(sizes) if size_every else 0).start()
        time.sleep(rnd.uniform(*window))
        killed_at = time.time()
        a.d.kill()
        kills += 1
        inj.stop()
        acked.update(inj.acked)
        replies.update(inj.replies)
        unsure.update(inj.unsure)
        assert not [r for r in inj.refused if r[1] < 400], inj.refused[:5]
        assert not [r for r in inj.refused if r[1] != 452 or spool is None], inj.refused[:5]
        full += sum(1 for r in inj.refused if r[1] == 452)
        in_spool = check_spool_offline(a)
        delivered = set(s.received())
        lost = acked - delivered - in_spool
        assert not lost, (f"round {rnd_no}: {len(lost)} acknowledged messages lost: {sorted(lost)[:10]}\n"
                          + explain(a, s, sorted(lost)) + f"\nreplies: {[replies[i] for i in sorted(lost)]}"
                          + f"\nkilled at {killed_at}")
        try:
            a.d.start()                   # wait_ready: the daemon comes up on what the kill left
        except Exception as exc:
            raise AssertionError(f"round {rnd_no}: the daemon did not restart after SIGKILL: {exc}\n"
                                 f"stderr tail: {a.d.stderr()[-3000:]}\n" + explain(a, s, [])) from None
    # drain: no more kills
    a_total = len(acked)
    assert a_total > 0

    def drained():
        got = set(s.received())
        return acked <= got and not a.spooled()
    try:
        wait_for(drained, timeout=120, interval=0.5, what="every acknowledged message at the sink")
    except AssertionError as exc:
        missing = sorted(acked - set(s.received()))
        left = a.spooled()
        raise AssertionError(
            f"{exc}: {len(missing)} missing {missing[:5]}, {len(left)} still spooled "
            f"({collections.Counter(m.state for m in left)}); paniclog {a.paniclog()[-6:]}; "
            f"summary {a.d.console('summary')[1][:100]}\n" + _ls(a.spool_dir()) + explain(a, s, missing[:3])) from None
    assert a.d.stop() == 0
    got = collections.Counter(s.received())
    notices = stopped_notices(a.paniclog())
    dups = {k: n for k, n in got.items() if n > 1}
    unexplained = {k: (n, notices.get(k, 0)) for k, n in dups.items() if n - 1 > notices.get(k, 0)}
    assert not unexplained, f"duplicates without a paniclog notice: {unexplained}"
    phantom = set(got) - acked - unsure - {k for k in got if k.startswith("r")}
    assert not phantom
    crit = [ln for ln in a.paniclog() if "Traceback" in ln or "CRITICAL" in ln]
    assert not crit, crit[:5]
    return {"kills": kills, "acked": a_total, "unsure": len(unsure), "delivered": sum(got.values()),
            "duplicates": sum(n - 1 for n in dups.values()), "explained": sum(n - 1 for n in dups.values()),
            "notices": sum(notices.values()), "refused_full": full,
            "seconds": round(time.monotonic() - started, 1)}


def test_sigkill_while_mail_flows_loses_nothing(daemon_factory, smtp_sink):
    stats = run_crash_rounds(daemon_factory, smtp_sink, rounds=3, threads=4, max_seconds=60,
                             window=(0.5, 2.0))
    print("crash safety (fast):", stats)
    assert stats["kills"] == 3


@pytest.mark.slow
def test_sigkill_many_times_loses_nothing(daemon_factory, smtp_sink):
    stats = run_crash_rounds(daemon_factory, smtp_sink, rounds=25, threads=8, max_seconds=600,
                             window=(0.2, 4.0), size_every=4)
    print("crash safety (slow):", stats)
    assert stats["kills"] >= 10


@pytest.mark.slow
def test_sigkill_while_the_spool_disk_fills(daemon_factory, smtp_sink, small_fs):
    """The same on a 4 MB spool filesystem with 60-200 KB messages: the disk fills and
    drains over and over (452 4.3.1 refusals are expected), kills land anywhere."""
    stats = run_crash_rounds(daemon_factory, smtp_sink, rounds=12, threads=6, max_seconds=400,
                             window=(0.5, 4.0), size_every=1, spool=os.path.join(small_fs, "spool"),
                             sizes=(60000, 120000, 200000, 300000))
    print("crash safety on a full disk (slow):", stats)
    assert stats["kills"] >= 6
