"""A logger's bus feed (loggers/base.py): records published in a burst reach the logger
actor as a few batches, in order; a record whose render raises costs only itself; a
barrier follows the lines before it; unsubscribing hands over what the feed holds. Under
gevent with real actors and a real file writer, in a child process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    import gevent.monkey; gevent.monkey.patch_all()
    import json, sys
    from dataclasses import dataclass
    import gevent
    from ecmta.loggers import base, bus, panic
    from ecmta.loggers.writer import FileWriterActor

    @dataclass(frozen=True)
    class Ev:
        n: int

    class Logger(base.LoggerActor):
        kinds = (Ev,)
        def render(self, rec):
            if rec.n == 13:
                raise ValueError("unlucky")
            yield "main", f"line {rec.n}"
            if rec.n % 100 == 0:
                yield "other", f"hundred {rec.n}"

    path, other = sys.argv[1], sys.argv[2]
    panics = []
    panic.set_sink(panics.append)
    main = FileWriterActor.start(path)
    oth = FileWriterActor.start(other)
    ref = Logger.start("t", {"main": main, "other": oth})
    handle = base.attach(ref, Logger.kinds)
    for i in range(2000):                  # one burst, no yield to the hub
        bus.publish(Ev(i))
    ok = bus.barrier().wait(20)
    burst = open(path).read().splitlines()
    hundreds = open(other).read().splitlines()
    handled = ref.proxy().ec_stats().get()["handled"]
    gevent.sleep(0.1)                      # a quiet spell: the next record goes at once
    bus.publish(Ev(5000))
    bus.publish(Ev(5001))
    bus.unsubscribe(handle)                # hands over what the feed still holds
    bus.publish(Ev(6000))                  # not subscribed any more
    ref.stop()                             # drains its mailbox into the writers
    main.stop(); oth.stop()
    after = open(path).read().splitlines()[len(burst):]
    print(json.dumps({"ok": ok, "burst": burst, "hundreds": hundreds, "handled": handled,
                      "panics": panics, "after": after}))
""")


def test_feed_batches_in_order_and_isolates_a_failing_record(tmp_path):
    out = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "main.log"),
                          str(tmp_path / "other.log")], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["ok"] is True
    assert got["burst"] == [f"line {i}" for i in range(2000) if i != 13]
    assert got["hundreds"] == [f"hundred {i}" for i in range(0, 2000, 100)]
    # 2000 records and a barrier in a few messages, not one message per record
    assert got["handled"] < 20
    assert len(got["panics"]) == 1 and "unlucky" in got["panics"][0]
    assert got["after"] == ["line 5000", "line 5001"]
