"""The spool's disk fills up (a 4 MB tmpfs, root only; skipped elsewhere):

- while full, DATA is answered `452 4.3.1 Requested action not taken: insufficient system
  storage`, the session goes on (RSET, the next transaction), the paniclog says so, and
  nothing answered 250 is lost;
- a SIGKILL while the disk is full, then a restart on the full disk: the daemon comes up,
  ec_show reads the spool, every acknowledged message is still there;
- space returns: full service without a restart (250 again), and once delivery resumes
  every acknowledged message reaches the sink exactly once (or twice with the paniclog's
  at-least-once notice).
"""

from __future__ import annotations

import collections
import os
import time

from ecmta.tests.reliability.helpers import (Injector, rcpt_ids, start_mta, stopped_notices, wait_for)

FULL = "452 4.3.1 Requested action not taken: insufficient system storage"


def fill(mnt: str, leave: int) -> str:
    """A filler file that leaves about `leave` octets free on the filesystem."""
    path = os.path.join(mnt, "filler")
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    with open(path, "wb") as fh:
        fh.write(b"\0" * max(0, free - leave))
    return path


def test_full_spool_disk_refuses_then_recovers(daemon_factory, smtp_sink, small_fs):
    s = smtp_sink()
    spool = os.path.join(small_fs, "spool")
    domain = (f'Domain "x.test" {{\n  Gateway = "127.0.0.1:{s.port}"\n'
              '  suspend_delivery = true\n}\n')
    a = start_mta(daemon_factory, spool=spool, tail=domain)
    filler = fill(small_fs, 1_800_000)   # the spool keeps 1 MB for removals (RESERVE_SPACE)
    acked: set[str] = set()

    # 1. inject until the disk is full (bounded: 400 messages of 20 KB)
    inj = Injector(a.port, "full", threads=2, per_session=5, size=20_000, limit=400).start()
    wait_for(lambda: any(r[1] == 452 for r in inj.refused) or inj._n >= 400, timeout=60,
             what="a 452 from the full disk")
    time.sleep(1.0)
    inj.stop()
    acked.update(inj.acked)
    full = [r for r in inj.refused if r[1] == 452]
    assert full, f"no 452 although the disk filled ({len(inj.acked)} accepted)"
    assert all(r[2] == FULL[4:] for r in full), full[:3]
    assert not [r for r in inj.refused if r[1] != 452], inj.refused[:5]
    assert acked, "nothing was accepted before the disk filled"
    assert any("spool write failed" in ln for ln in a.paniclog()), a.paniclog()[-5:]

    # the session goes on after a 452: RSET and another attempt get answers
    with a.smtp() as c:
        c.mail("sender@client.test")
        c.rcpt("more@x.test")
        code, _ = c.data(b"Subject: more\r\n\r\n" + b"y" * 50_000 + b"\r\n")
        assert code == 452
        assert c.rset()[0] == 250
        assert c.noop()[0] == 250
    assert acked <= set(rcpt_ids(a.spooled()))

    # 2. SIGKILL on the full disk, restart on the full disk
    a.d.kill()
    shown = a.ec_show("-n")
    assert shown.returncode == 0, shown.stderr
    assert acked <= set(rcpt_ids(a.spooled()))
    a.d.start()
    assert acked <= set(rcpt_ids(a.spooled()))
    with a.smtp() as c:
        c.mail("sender@client.test")
        c.rcpt("still-full@x.test")
        code, _ = c.data(b"Subject: still full\r\n\r\n" + b"z" * 100_000 + b"\r\n")
        assert code == 452

    # 3. space returns: 250 again without a restart
    os.unlink(filler)
    inj = Injector(a.port, "after", threads=2, per_session=5, size=2_000, limit=40).start()
    wait_for(lambda: len(inj.acked) >= 40 or inj._n >= 40 and not inj.threads[0].is_alive(),
             timeout=30, what="40 messages accepted once space returned")
    inj.stop()
    assert len(inj.acked) == 40, inj.refused[:5]
    acked.update(inj.acked)

    # 4. delivery resumes: everything acknowledged arrives, duplicates only as documented
    a.d.config_body = a.d.config_body.replace("  suspend_delivery = true\n", "")
    a.d.write_config()
    assert a.d.ok("config reload") is not None
    try:
        wait_for(lambda: acked <= set(s.received()), timeout=90, interval=0.5,
                 what="every acknowledged message at the sink")
    except AssertionError as exc:
        import subprocess
        ls = subprocess.run(["ls", "-la", spool, small_fs], capture_output=True, text=True).stdout
        raise AssertionError(f"{exc}: {ls}\n{len(acked - set(s.received()))} missing; spool "
                             f"{len(a.spooled())}; paniclog {a.paniclog()[-8:]}; mainlog {a.mainlog()[-5:]}; "
                             f"summary {a.d.console('summary')}") from None
    wait_for(lambda: not a.spooled(), timeout=30, what="an empty spool")
    got = collections.Counter(s.received())
    notices = stopped_notices(a.paniclog())
    dups = {k: n for k, n in got.items() if n > 1}
    assert all(n - 1 <= notices.get(k, 0) for k, n in dups.items()), (dups, notices)
    print(f"disk full: {len(acked)} acknowledged, {len(full)} refused with 452, "
          f"{sum(got.values())} delivered, {sum(n - 1 for n in dups.values())} duplicates")
