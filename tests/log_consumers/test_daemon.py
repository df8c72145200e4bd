"""Log consumers through a real daemon: mail over ESMTP delivered to Postfix's smtp-sink,
the daemon's log streams (`log_streams`) read by consumers in this process and in others.

Every wait is bounded (helpers.WAIT, or less)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from ecmta.loggers import consumers
from ecmta.loggers.jlog import Jlog, JlogId
from ecmta.tests.harness import free_port
from ecmta.tests.log_consumers.helpers import (CONFIG, WAIT, ConsumerProc, SmtpSink, count, mainlog,
                                               send, stream_path, wait_for, wait_mainlog)

STREAMS = """
log_streams {
  streams = ( "mainlog" "bouncelog" "events" )
  subscribers = ( "a" "b" )
}
"""


@pytest.fixture
def sink():
    port = free_port()
    s = SmtpSink(port)
    s.port = port
    yield s
    s.stop()


def _daemon(daemon_factory, sink, extra: str = STREAMS, **ports):
    ports = {"smtp": free_port(), "sink": sink.port, "late": free_port(), **ports}
    return daemon_factory(CONFIG + extra, ports=ports).start()


def _deliver(d, n: int, first: int = 0, domain: str = "x.test") -> list[str]:
    """Send n messages and wait for their D lines; returns their message ids."""
    before = count(mainlog(d.home), "D")
    send(d.ports["smtp"], [f"u{i}@{domain}" for i in range(first, first + n)])
    lines = wait_mainlog(d.home, lambda ls: count(ls, "D") >= before + n, f"{n} deliveries")
    return [i for t, i, _l in lines if t == "R"][-n:]


def _lag_of(text: str, stream: str, subscriber: str) -> int:
    block = text.split(f"Stream: {stream}\n", 1)[1].split("\nStream: ", 1)[0]
    m = re.search(rf"^    {re.escape(subscriber)}: lag (\d+) ", block, re.M)
    assert m, text
    return int(m.group(1))


def _clean_paniclog(d) -> None:
    problems = [ln for ln in d.paniclog().splitlines() if "started" not in ln]
    assert problems == [], d.paniclog()


def _stream_ids(home: str, stream: str = "mainlog") -> list[tuple[str, str, str]]:
    return [(str(e.id), e.type, e.fields.get("msg_id", ""))
            for e in consumers.iter_events(stream_path(home, stream))]


# -- two consumers, one stream ------------------------------------------------------------------------

def test_two_consumers_at_different_positions(daemon_factory, sink):
    d = _daemon(daemon_factory, sink)
    ids = _deliver(d, 4)
    wait_for(lambda: len(_stream_ids(d.home)) >= 8, WAIT, what="8 mainlog stream records")
    main = mainlog(d.home)
    with consumers.Consumer(d.home, "mainlog", subscriber="a") as a, \
            consumers.Consumer(d.home, "mainlog", subscriber="b") as b:
        got_a = a.read()
        a.commit()
        got_b = b.read(limit=3)
        b.commit()
        # the stream carries exactly the mainlog's lines, with the typed records
        assert [e.line for e in got_a] == [line for _t, _i, line in main]
        assert [(e.type, e.fields["msg_id"]) for e in got_a] == [(t, i) for t, i, _l in main]
        assert {e.fields["msg_id"] for e in got_a if e.type == "R"} == set(ids)
        assert [e.id for e in got_b] == [e.id for e in got_a[:3]]
        text = d.ok("log streams")
        assert (_lag_of(text, "mainlog", "a"), _lag_of(text, "mainlog", "b")) == (0, 5)
        assert "Source: ec_logger/mainlog" in text and "Source: every log event" in text

        more = _deliver(d, 2, first=10)
        wait_for(lambda: len(_stream_ids(d.home)) >= 12, WAIT, what="12 mainlog stream records")
        new_a = a.read()
        assert {e.fields["msg_id"] for e in new_a} == set(more) and len(new_a) == 4
        a.commit()
        rest_b = b.read()
        b.commit()
        assert [e.id for e in got_b + rest_b] == [e.id for e in got_a + new_a]
    text = d.ok("log streams mainlog")
    assert (_lag_of(text, "mainlog", "a"), _lag_of(text, "mainlog", "b")) == (0, 0)
    # the events stream has the same events (from the bus), with ec_logger lines
    ev = [e for e in consumers.iter_events(stream_path(d.home, "events"))]
    assert sorted(e.line for e in ev) == sorted(e.line for e in got_a + new_a)
    assert d.stop() == 0
    _clean_paniclog(d)


# -- at-least-once across a kill of the consumer ------------------------------------------------------

def test_killed_consumer_resumes_at_its_checkpoint(daemon_factory, sink, tmp_path):
    d = _daemon(daemon_factory, sink)
    out = str(tmp_path / "consumer.out")
    path = stream_path(d.home, "mainlog")
    # fast for the first 8 events, then 1 s per event: killed in the middle of a batch
    c = ConsumerProc(d.home, "mainlog", "k", out, "--sleep", "1", "--slow-from", "8")
    try:
        _deliver(d, 4)
        c.wait_lines(8)
        wait_for(lambda: Jlog(path).get_checkpoint("k").marker >= 8, WAIT,
                 what="the first batch checkpointed")
        _deliver(d, 4, first=4)
        first_run = c.wait_lines(10)
    finally:
        c.kill()
    cp = Jlog(path).get_checkpoint("k")
    first_run = c.lines()
    after_cp = [line for line in first_run if JlogId(*(int(x, 16) for x in line[0].split(":"))) > cp]
    assert after_cp, "the kill came after a checkpoint: nothing to see again"

    c2 = ConsumerProc(d.home, "mainlog", "k", out, "--idle", "1.5")
    assert c2.wait_exit() == 0, c2.proc.stderr.read()
    second_run = c.lines()[len(first_run):]
    everything = _stream_ids(d.home)
    assert len(everything) == 16
    # nothing missed; the second run starts right after the checkpoint, in order, once each
    assert {x[0] for x in first_run} | {x[0] for x in second_run} == {x[0] for x in everything}
    assert [x[0] for x in second_run] == [x[0] for x in everything if
                                          JlogId(*(int(v, 16) for v in x[0].split(":"))) > cp]
    # duplicates: exactly what the first run handled after its last checkpoint
    dups = {x[0] for x in first_run} & {x[0] for x in second_run}
    assert dups == {x[0] for x in after_cp}
    assert Jlog(path).lag("k") == 0
    assert d.stop() == 0


# -- the daemon restarted while a consumer reads -------------------------------------------------------

def test_daemon_restart_while_a_consumer_reads(daemon_factory, sink, tmp_path):
    d = _daemon(daemon_factory, sink)
    out = str(tmp_path / "consumer.out")
    c = ConsumerProc(d.home, "mainlog", "r", out)
    try:
        first = _deliver(d, 3)
        c.wait_lines(6)
        assert d.stop() == 0
        time.sleep(0.5)                           # the consumer polls a jlog nobody writes
        d.start()
        second = _deliver(d, 3, first=3)
        got = c.wait_lines(12)
        time.sleep(0.5)
    finally:
        c.kill()
    got = c.lines()
    assert len(got) == 12 and len({x[0] for x in got}) == 12          # none twice, none missed
    assert sorted(x[2] for x in got if x[1] == "R") == sorted(first + second)
    assert sorted(x[2] for x in got if x[1] == "D") == sorted(first + second)
    assert [x[0] for x in got] == [x[0] for x in _stream_ids(d.home)]
    assert d.stop() == 0
    _clean_paniclog(d)


# -- a stalled consumer does not slow delivery; its lag shows -------------------------------------------

N_TIMED = 100


def _timed_delivery(d, first: int) -> float:
    t0 = time.monotonic()
    _deliver(d, N_TIMED, first=first)
    return time.monotonic() - t0


def test_stalled_consumer_does_not_slow_deliveries(daemon_factory, sink, tmp_path):
    d = _daemon(daemon_factory, sink, extra='log_streams { streams = ( "mainlog" "events" ) }\n')
    _deliver(d, 5)                                              # warm up
    without = min(_timed_delivery(d, 100), _timed_delivery(d, 200))
    # a consumer that read one event and then does nothing for an hour, and a subscriber
    # that never reads at all
    stalled = ConsumerProc(d.home, "events", "stalled", str(tmp_path / "s.out"), "--sleep", "3600")
    try:
        stalled.wait_lines(1)
        Jlog(stream_path(d.home, "mainlog")).add_subscriber("never")
        with_stalled = min(_timed_delivery(d, 300), _timed_delivery(d, 400))
        print(f"\n{N_TIMED} deliveries: {without:.2f} s without a stalled consumer, "
              f"{with_stalled:.2f} s with one")
        assert with_stalled <= 3 * without + 3.0, (without, with_stalled)
        text = d.ok("log streams")
        assert _lag_of(text, "events", "stalled") >= 4 * N_TIMED
        assert _lag_of(text, "mainlog", "never") >= 4 * N_TIMED
        assert stalled.proc.poll() is None and len(stalled.lines()) == 1
        # nothing waits in memory for the consumer: every event reaches the disk (the taps
        # hand their batches over every 50 ms, so a moment after the last delivery)
        deadline = time.monotonic() + 10
        while not re.search(r"Stream: events\n.*\n.*\n  Events: \d+ written, 0 waiting", text):
            assert time.monotonic() < deadline, text
            time.sleep(0.1)
            text = d.ok("log streams")
    finally:
        stalled.kill()
    assert d.stop() == 0


# -- the follower CLI -----------------------------------------------------------------------------------

def _follow_cli(home: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ecmta.cli.ec_log_follow", "--home", home,
                             "--poll", "0.05", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


class _Lines:
    def __init__(self, proc):
        self.lines: list[str] = []
        self.t = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.t.start()

    def _read(self, proc):
        for line in proc.stdout:
            self.lines.append(line.rstrip("\n"))


def test_follower_cli_prints_live_lines_with_a_type_filter(daemon_factory, sink):
    d = _daemon(daemon_factory, sink)
    path = stream_path(d.home, "mainlog")
    _deliver(d, 2)                                  # before the follower: not printed (--from end)
    p = _follow_cli(d.home, "-t", "D", "mainlog")
    lines = _Lines(p)
    try:
        wait_for(lambda: any(s.startswith("ec_log_follow.") for s in Jlog(path).list_subscribers()),
                 WAIT, what="the follower's subscriber")
        ids = _deliver(d, 3, first=10)
        wait_for(lambda: len(lines.lines) >= 3, WAIT, what="3 followed lines")
        time.sleep(0.3)
        main_d = [line for t, i, line in mainlog(d.home) if t == "D" and i in ids]
        assert lines.lines == main_d
        p.send_signal(signal.SIGINT)
        assert p.wait(WAIT) == 0
    finally:
        if p.poll() is None:
            p.kill()
    # the temporary subscriber is gone: it keeps nothing on disk
    assert not any(s.startswith("ec_log_follow.") for s in Jlog(path).list_subscribers())

    # a durable follower: from the beginning, R only, JSON, stops after 5 lines
    p = subprocess.run([sys.executable, "-m", "ecmta.cli.ec_log_follow", "--home", d.home, "-s",
                        "cli", "--from", "begin", "-t", "R", "--json", "--count", "5", "mainlog"],
                       capture_output=True, text=True, timeout=WAIT)
    assert p.returncode == 0, p.stderr
    recs = [json.loads(x) for x in p.stdout.splitlines()]
    assert [r["type"] for r in recs] == ["R"] * 5
    assert [r["line"] for r in recs] == [line for t, _i, line in mainlog(d.home) if t == "R"]
    # it checkpointed what it printed: run again, nothing new
    p = subprocess.run([sys.executable, "-m", "ecmta.cli.ec_log_follow", "--home", d.home, "-s",
                        "cli", "-t", "R", "--idle", "1", "mainlog"],
                       capture_output=True, text=True, timeout=WAIT)
    assert (p.returncode, p.stdout) == (0, "")
    p = subprocess.run([sys.executable, "-m", "ecmta.cli.ec_log_follow", "--home", d.home,
                        "--wait", "0", "nosuchstream"], capture_output=True, text=True, timeout=WAIT)
    assert p.returncode == 1 and "no stream jlog" in p.stderr
    assert d.stop() == 0


# -- ec_rotate and reopen logs ----------------------------------------------------------------------------

def _rotate(d, conf: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ecmta.cli.ec_rotate", "-conf", conf, "-v"],
                          capture_output=True, text=True, timeout=120, env=d.env)


def _read_any(path: str) -> list[str]:
    import bz2
    opener = bz2.open if path.endswith(".bz2") else open
    with opener(path, "rt") as fh:
        return fh.read().splitlines()


def test_ec_rotate_with_a_config_file_and_reopen(daemon_factory, sink):
    d = _daemon(daemon_factory, sink)
    bzip = shutil.which("bzip2") or "/usr/bin/bzip2"
    conf = os.path.join(d.home, "my_rotate.conf")
    with open(conf, "w") as fh:
        fh.write("# ecmta test\nenabled = yes\nlogfiles = log/mainlog.ec \\\n"
                 "           log/bouncelog.ec log/missing.ec\n"
                 f"retention = 2\ncontrol_socket = {d.sock}\npath_to_bzip = {bzip}\n")
    log = os.path.join(d.home, "log")
    batches = []
    for round_ in range(3):
        batches.append(_deliver(d, 2, first=10 * round_))
        r = _rotate(d, conf)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "reopen logs: Logs reopened" in r.stdout
    names = sorted(os.listdir(log))
    assert "mainlog.ec.1.bz2" in names and "mainlog.ec.2.bz2" in names
    assert not any(n.startswith("mainlog.ec.3") for n in names)          # retention 2
    assert not os.path.exists(os.path.join(log, "mainlog.ec.1"))         # compressed
    # each rotated file holds its round's messages, whole (R and D)
    for rotated, ids in (("mainlog.ec.2.bz2", batches[1]), ("mainlog.ec.1.bz2", batches[2])):
        lines = _read_any(os.path.join(log, rotated))
        got = sorted(ln.split("@")[1] for ln in lines if "@R@" in ln or "@D@" in ln)
        assert got == sorted(ids + ids), (rotated, lines)
    # the daemon goes on writing to the new mainlog.ec
    later = _deliver(d, 2, first=90)
    now = mainlog(d.home)
    assert sorted(i for _t, i, _l in now) == sorted(later + later)
    # the stream (a jlog, not rotated) saw everything, across the reopens (its taps hand
    # their lines over every 50 ms)
    deadline = time.monotonic() + 10
    while sum(1 for x in _stream_ids(d.home) if x[1] == "D") < 8 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sum(1 for x in _stream_ids(d.home) if x[1] == "D") == 8
    assert d.stop() == 0


# -- ec_log_trace across a rotated and the current mainlog ------------------------------------------------

def test_ec_log_trace_finds_a_message_across_rotated_and_current_mainlog(daemon_factory, sink):
    late_port = free_port()
    d = _daemon(daemon_factory, sink, late=late_port)
    send(d.ports["smtp"], ["someone@later.test"])            # nothing listens there yet: T
    lines = wait_mainlog(d.home, lambda ls: count(ls, "T") >= 1, "a transient failure")
    msg_id = [i for t, i, _l in lines if t == "R"][0]
    other = _deliver(d, 1)
    r = subprocess.run([sys.executable, "-m", "ecmta.cli.ec_rotate", "-l", "log/mainlog.ec",
                        "-s", d.sock], capture_output=True, text=True, timeout=120, env=d.env)
    assert r.returncode == 0, r.stderr
    late = SmtpSink(late_port)
    try:
        assert "later.test" in d.ok("flush domain later.test")
        wait_mainlog(d.home, lambda ls: count(ls, "D") >= 1, "the delivery after the flush")
    finally:
        late.stop()
    log = os.path.join(d.home, "log")
    files = [os.path.join(log, "mainlog.ec"), os.path.join(log, "mainlog.ec.1.bz2")]
    p = subprocess.run([sys.executable, "-m", "ecmta.cli.ec_log_trace", f"--id={msg_id}", *files],
                       capture_output=True, text=True, timeout=60, env=d.env)
    assert p.returncode == 0, p.stderr
    kinds = [ln.split("@")[4] for ln in p.stdout.splitlines()]
    assert kinds == ["R", "T", "D"], p.stdout
    assert all(ln.split("@")[1] == msg_id for ln in p.stdout.splitlines())
    # without files: the state directory's mainlog and its rotations; the other message too
    p = subprocess.run([sys.executable, "-m", "ecmta.cli.ec_log_trace", "--count", "--out"],
                       capture_output=True, text=True, timeout=60, env=d.env)
    assert "Deliveries: 2" in p.stdout, p.stdout
    p = subprocess.run([sys.executable, "-m", "ecmta.cli.ec_log_trace", "--to-domain=x.test"],
                       capture_output=True, text=True, timeout=60, env=d.env)
    assert [ln.split("@")[1] for ln in p.stdout.splitlines()] == [other[0], other[0]]
    assert d.stop() == 0


# -- configuration ------------------------------------------------------------------------------------------

def test_an_unknown_stream_refuses_the_start(daemon_factory, sink):
    d = daemon_factory(CONFIG + 'log_streams { streams = ( "nosuchlog" ) }\n',
                       ports={"smtp": free_port(), "sink": sink.port, "late": free_port()})
    with pytest.raises(RuntimeError) as err:
        d.start()
    assert "nosuchlog" in str(err.value) and "streams available" in str(err.value)


def test_instance_qualified_streams_and_reopen(daemon_factory, sink):
    extra = ('log_streams {\n  streams = ( "ec_logger/rejectlog" "bounce_logger" )\n'
             '  basedir = "$home/otherdir"\n}\n')
    d = _daemon(daemon_factory, sink, extra=extra)
    assert d.ok("reopen logs") == "Logs reopened"
    text = d.ok("log streams")
    assert "Stream: ec_logger/rejectlog" in text and "Stream: bounce_logger" in text
    assert os.path.isdir(os.path.join(d.home, "otherdir", "ec_logger%2Frejectlog.jlog"))
    assert "Subscribers: 0 (only the newest segment is kept)" in text
    assert not d.console("log streams nosuch")[0]
    assert d.stop() == 0


def test_reload_adds_a_stream_and_keeps_the_running_ones(daemon_factory, sink):
    d = _daemon(daemon_factory, sink, extra='log_streams { streams = ( "mainlog" ) }\n')
    _deliver(d, 2)
    wait_for(lambda: len(_stream_ids(d.home)) >= 4, WAIT, what="4 mainlog stream records")
    d.config_body = CONFIG + 'log_streams { streams = ( "mainlog" "events" ) }\n'
    d.write_config()
    d.ok("config reload")
    text = d.ok("log streams")
    assert "Stream: events" in text and "Events: 4 written" in text      # same mainlog writer
    ids = _deliver(d, 2, first=5)
    wait_for(lambda: len(_stream_ids(d.home)) >= 8, WAIT, what="8 mainlog stream records")
    wait_for(lambda: len(_stream_ids(d.home, "events")) >= 4, WAIT, what="4 events records")
    assert {x[2] for x in _stream_ids(d.home, "events")} == set(ids)
    # a bad name in a reload keeps the running streams
    d.config_body = CONFIG + 'log_streams { streams = ( "mainlog" "nope" ) }\n'
    d.write_config()
    ok, text = d.console("config reload")
    assert "nope" in text
    assert "Stream: events" in d.ok("log streams")
    assert d.stop() == 0
    problems = [ln for ln in d.paniclog().splitlines() if "started" not in ln and "nope" not in ln]
    assert problems == [], d.paniclog()


def test_a_custom_logger_stream_carries_its_lines(daemon_factory, sink):
    extra = ('custom_logger "rt" {\n  delivery_logfile = "log/rt.log"\n'
             '  delivery_format = "%t@%i@%r@%R@%vctx_mess{customerid}"\n}\n'
             'log_streams { streams = ( "custom_logger:rt" "rejectlog" ) }\n')
    d = _daemon(daemon_factory, sink, extra=extra)
    ids = _deliver(d, 3)
    path = os.path.join(d.home, "log", "rt.log")
    wait_for(lambda: len(_stream_ids(d.home, "custom_logger:rt")) >= 3, WAIT, what="3 stream records")
    with open(path) as fh:
        lines = fh.read().splitlines()
    evs = list(consumers.iter_events(
        consumers.stream_path(d.home, "custom_logger:rt")))
    assert [e.line for e in evs] == lines and len(lines) == 3
    assert {e.fields["msg_id"] for e in evs} == set(ids)
    assert {(e.type, e.target, e.stream) for e in evs} == {("D", "delivery_logfile", "custom_logger:rt")}
    # a rejection, in the rejectlog stream with its line
    import smtplib
    with smtplib.SMTP("127.0.0.1", d.ports["smtp"], timeout=30) as s:
        s.ehlo("client.test")
        s.mail("a@client.test")
        code, _ = s.rcpt("x@not-relayed.test")
        assert code >= 500
    wait_for(lambda: _stream_ids(d.home, "rejectlog"), WAIT, what="the rejection in its stream")
    (rej,) = list(consumers.iter_events(consumers.stream_path(d.home, "rejectlog")))
    assert rej.type == "rejection" and "not-relayed.test" in json.dumps(rej.fields)
    with open(os.path.join(d.home, "log", "rejectlog.ec")) as fh:
        assert rej.line in fh.read().splitlines()
    assert d.stop() == 0
