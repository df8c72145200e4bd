"""JlogWriterActor (under gevent, in a child process) and ec_logger's jlog destinations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from ecmta.loggers.ec_logger import LogConfigError, destination
from ecmta.loggers.jlog import Jlog
from ecmta.loggers.jlog_writer import JlogDestination
from ecmta.tests.jlog.helpers import read_all


@pytest.mark.parametrize("raw, expected", [
    ("jlog:///var/log/ecelerity/mainlog.jlog=>reader",
     ("/var/log/ecelerity/mainlog.jlog", "reader")),
    ("cluster:///var/log/ecelerity/mainlog.cluster=>master",
     ("/var/log/ecelerity/mainlog.cluster", "master")),
    ("JLOG:////tmp/x=>a=>b", ("/tmp/x=>a", "b")),
    ("jlog:///tmp/nosub", ("/tmp/nosub", "master")),
    ("jlog:///tmp/emptysub=>", ("/tmp/emptysub", "master")),
    ("jlog://log/delivery_log_rt=>my_subscriber", ("/state/log/delivery_log_rt", "my_subscriber")),
])
def test_jlog_destinations(raw, expected):
    d = destination(raw, "mainlog", "/state")
    assert isinstance(d, JlogDestination) and (d.path, d.subscriber) == expected


def test_other_destinations_unchanged_or_refused():
    assert destination("log/mainlog.ec", "mainlog", "/state") == "/state/log/mainlog.ec"
    assert destination("file:///var/m.ec", "mainlog", "/state") == "/var/m.ec"
    with pytest.raises(LogConfigError, match="'gopher://' is not available"):
        destination("gopher://x", "mainlog", "/state")
    with pytest.raises(LogConfigError, match="needs a path"):
        destination("jlog://=>x", "mainlog", "/state")


CHILD = textwrap.dedent("""
    import gevent.monkey; gevent.monkey.patch_all()
    import json, os, sys, time
    import gevent
    from ecmta.loggers.jlog_writer import JlogWriterActor
    from ecmta.loggers.writer import WriterFlush, WriterLine, WriterReopen
    path, blocker = sys.argv[1], sys.argv[2]
    ref = JlogWriterActor.start(path, "reader", name="mainlog", mode=0o640)
    for i in range(500):
        ref.tell(WriterLine("line %d" % i))
    f = WriterFlush(); ref.tell(f); f.done.wait(20)
    flushed = f.done.ready()
    ref.tell(WriterReopen())
    for i in range(500, 700):
        ref.tell(WriterLine("line %d" % i))
    f = WriterFlush(); ref.tell(f); f.done.wait(20)
    # a destination that cannot be created keeps its lines and retries
    bad = JlogWriterActor.start(os.path.join(blocker, "sub", "x.jlog"), "reader")
    bad.tell(WriterLine("kept 1")); bad.tell(WriterLine("kept 2"))
    gevent.sleep(0.3)
    os.unlink(blocker)
    f2 = WriterFlush(); bad.tell(f2); f2.done.wait(20)
    bad.stop()
    # lines told just before a stop are written by on_stop
    for i in range(700, 1000):
        ref.tell(WriterLine("line %d" % i))
    ref.stop()
    print(json.dumps({"flushed": flushed, "retried": f2.done.ready()}))
""")


def test_writer_actor_appends_every_line_in_order(tmp_path):
    path = str(tmp_path / "logs" / "mainlog.jlog")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be")
    p = subprocess.run([sys.executable, "-c", CHILD, path, str(blocker)], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.splitlines()[-1]) == {"flushed": True, "retried": True}
    assert "cannot write jlog" in p.stderr
    jl = Jlog(path)
    assert jl.list_subscribers() == ["reader"]
    got = read_all(jl, "reader")
    assert [d for *_x, d in got] == [b"line %d\n" % i for i in range(1000)]
    stamps = [s + u / 1e6 for _i, s, u, _d in got]
    assert stamps == sorted(stamps)
    assert [d for *_x, d in read_all(Jlog(str(blocker / "sub" / "x.jlog")), "reader")] == \
        [b"kept 1\n", b"kept 2\n"]
    assert os.stat(path).st_mode & 0o777 == 0o750
