"""Log consumers without a daemon: the stream record format, Consumer/follow checkpoint
rules (at-least-once), attach() in its own thread, ec_log_trace parsing and filters,
ec_rotate's config file and rotation."""

from __future__ import annotations

import bz2
import json
import os
import subprocess
import sys
import time

import pytest

from ecmta.cli import ec_log_trace, ec_rotate
from ecmta.loggers import consumers, records
from ecmta.loggers.bounce_logger import OutOfBandBounce
from ecmta.loggers.jlog import Jlog, JlogId


def _delivery(i: int, kind: str = "D") -> records.Delivery:
    return records.Delivery(1700000000 + i, f"00/00-00000-{i:08X}", "b", "c", "x.test", 100,
                            "default", "default", 0, 0.5, "127.0.0.1", kind=kind)


def _write(path: str, recs, stream: str = "mainlog") -> None:
    Jlog.ensure(path)
    w = Jlog(path).open_writer()
    try:
        w.write_many([(consumers.encode(stream, "mainlog", r, f"line {r.msg_id}"), r.ts) for r in recs])
    finally:
        w.close()


# -- the format ----------------------------------------------------------------------------------

def test_encode_is_one_ascii_json_line_with_type_fields_and_line():
    rec = records.Reception(1700000000.5, "ID1", "B1", "C1", "al\u00efce", "x.test", "s", "y.test",
                            "1.2.3.4", 310, "esmtp", "g", "b", ctx_conn={"k": "v\nw"})
    raw = consumers.encode("mainlog", "mainlog", rec, "the@line")
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1 and raw.isascii()
    obj = json.loads(raw)
    assert list(obj) == ["v", "stream", "type", "record", "target", "ts", "line", "fields"]
    assert (obj["v"], obj["stream"], obj["type"], obj["record"], obj["line"]) == \
        (1, "mainlog", "R", "Reception", "the@line")
    assert obj["fields"]["rcpt_local"] == "al\u00efce" and obj["fields"]["ctx_conn"] == {"k": "v\nw"}
    assert obj["ts"] == 1700000000.5
    ev = consumers.decode(JlogId(0, 1), 1.0, raw)
    assert (ev.type, ev.record, ev.line, ev.fields["msg_id"]) == ("R", "Reception", "the@line", "ID1")


@pytest.mark.parametrize("rec,etype", [
    (_delivery(1), "D"), (_delivery(1, "X"), "X"),
    (records.Failure(1, "i", "b", "c", "d", 0, "g", "b", 5, 0, 1.0, "ip", "451 x", False), "T"),
    (records.Failure(1, "i", "b", "c", "d", 0, "g", "b", 5, 0, 1.0, "ip", "550 x", True), "P"),
    (records.Rejection(1, "1.2.3.4:5", "l", "c", "p", "pg", "phase", 550, "core", {}, {}, "no"),
     "rejection"),
    (records.Auth(1, "l", "p", "u", True), "auth"),
    (OutOfBandBounce(1, "i", "b", "c", "o@x", "s@y", "g", "b", 10, 1, "ip", "r"), "B"),
])
def test_event_types(rec, etype):
    assert consumers.event_type(rec) == etype
    assert json.loads(consumers.encode("events", "events", rec, ""))["type"] == etype


def test_type_filter_letters_words_and_record_names():
    ev = consumers.decode(JlogId(0, 1), 0, consumers.encode("s", "t", _delivery(1), "x"))
    assert consumers.wanted(ev, consumers.parse_types("D,P"))
    assert not consumers.wanted(ev, consumers.parse_types("R"))
    assert not consumers.wanted(ev, consumers.parse_types("d"))        # letters are exact
    assert consumers.wanted(ev, consumers.parse_types(["delivery"]))   # record names are not
    assert consumers.parse_types("") is None and consumers.parse_types(None) is None


def test_stream_paths_quote_names():
    assert consumers.stream_path("/s", "mainlog") == "/s/streams/mainlog.jlog"
    assert consumers.stream_path("/s", "custom_logger:rt/delivery_logfile", "/abs") == \
        "/abs/custom_logger:rt%2Fdelivery_logfile.jlog"
    assert consumers.unquote_name("custom_logger:rt%2Fdelivery_logfile") == \
        "custom_logger:rt/delivery_logfile"


def test_a_foreign_record_decodes_as_its_text():
    ev = consumers.decode(JlogId(0, 1), 5.0, b"1@2@3\n")
    assert (ev.type, ev.line, ev.ts) == ("", "1@2@3", 5.0)


# -- reading and checkpoints ------------------------------------------------------------------------

def test_two_consumers_keep_their_own_positions(tmp_path):
    path = str(tmp_path / "s.jlog")
    _write(path, [_delivery(i) for i in range(10)])
    with consumers.Consumer(None, path, subscriber="a") as a, \
            consumers.Consumer(None, path, subscriber="b") as b:
        assert len(a.read()) == 10
        a.commit()
        got = b.read(limit=4)
        b.commit()
        assert [e.fields["msg_id"] for e in got] == [f"00/00-00000-{i:08X}" for i in range(4)]
        assert (a.lag(), b.lag()) == (0, 6)
        # read but not committed: seen again after a rewind (or a restart)
        more = b.read(limit=3)
        b.rewind()
        assert [e.id for e in b.read(limit=3)] == [e.id for e in more]
    assert Jlog(path).lag("b") == 6


def test_follow_checkpoints_after_each_batch_and_resumes(tmp_path):
    path = str(tmp_path / "s.jlog")
    _write(path, [_delivery(i) for i in range(5)])
    seen = [e.id for e in consumers.follow(None, path, subscriber="f", idle_timeout=0.2, poll=0.02)]
    assert len(seen) == 5 and Jlog(path).lag("f") == 0
    _write(path, [_delivery(i) for i in range(5, 8)])
    again = [e.id for e in consumers.follow(None, path, subscriber="f", idle_timeout=0.2, poll=0.02)]
    assert again == [JlogId(0, 6), JlogId(0, 7), JlogId(0, 8)]


def test_follow_closed_mid_batch_redelivers_only_the_event_in_hand(tmp_path):
    path = str(tmp_path / "s.jlog")
    _write(path, [_delivery(i) for i in range(6)])
    gen = consumers.follow(None, path, subscriber="f", poll=0.02)
    first = [next(gen).id for _ in range(3)]
    gen.close()                 # the third was handed out, maybe not processed: kept
    assert Jlog(path).get_checkpoint("f") == first[1]
    rest = [e.id for e in consumers.follow(None, path, subscriber="f", idle_timeout=0.2, poll=0.02)]
    assert rest[0] == first[2] and len(rest) == 4


def test_type_filter_skips_and_checkpoints_other_types(tmp_path):
    path = str(tmp_path / "s.jlog")
    _write(path, [_delivery(0), _delivery(1, "X"), _delivery(2)])
    got = list(consumers.follow(None, path, subscriber="f", types="X", idle_timeout=0.2, poll=0.02))
    assert [e.type for e in got] == ["X"] and Jlog(path).lag("f") == 0


def test_start_end_and_begin(tmp_path):
    path = str(tmp_path / "s.jlog")
    _write(path, [_delivery(i) for i in range(3)])
    with consumers.Consumer(None, path, subscriber="late", start="end") as c:
        assert c.read() == [] and c.lag() == 0
    _write(path, [_delivery(3)])
    with consumers.Consumer(None, path, subscriber="late") as c:
        assert [e.fields["msg_id"] for e in c.read()] == ["00/00-00000-00000003"]
        c.commit()
    with consumers.Consumer(None, path, subscriber="late", start="begin") as c:
        assert len(c.read()) == 4


def test_missing_stream_is_reported_after_the_wait(tmp_path):
    with pytest.raises(consumers.StreamNotFound):
        consumers.Consumer(str(tmp_path), "mainlog", subscriber="x", wait=0.2)


def test_follow_across_segments(tmp_path):
    path = str(tmp_path / "s.jlog")
    Jlog(path).init(unit_limit=2048)
    _write(path, [_delivery(i) for i in range(40)])
    assert len(Jlog(path).segments()) > 2
    got = list(consumers.follow(None, path, subscriber="f", idle_timeout=0.2, poll=0.02, batch=7))
    assert [e.fields["msg_id"] for e in got] == [f"00/00-00000-{i:08X}" for i in range(40)]


class _FakeService:
    def __init__(self, path):
        self.path = path

    def ensure_stream(self, name, subscriber=None):
        Jlog.ensure(self.path, subscriber)
        return self.path


def test_attach_runs_the_callback_in_its_own_thread_and_checkpoints(tmp_path):
    import threading
    path = str(tmp_path / "s.jlog")
    _write(path, [_delivery(i) for i in range(4)])
    seen, threads = [], set()

    def cb(ev):
        seen.append(ev.fields["msg_id"])
        threads.add(threading.get_ident())
        if len(seen) == 2:
            raise RuntimeError("one bad event")
    att = consumers.attach("mainlog", cb, subscriber="in", service=_FakeService(path), poll=0.02)
    deadline = time.monotonic() + 10
    while len(seen) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert att.stop(10)
    assert len(seen) == 4 and threading.get_ident() not in threads
    assert att.failures == 1 and att.handled == 4 and Jlog(path).lag("in") == 0


# -- the streams service's trimming --------------------------------------------------------------

def test_trim_keeps_only_the_newest_segment_without_subscribers(tmp_path):
    from ecmta.loggers.streams import trim_unsubscribed
    path = str(tmp_path / "s.jlog")
    Jlog(path).init(unit_limit=1024)
    _write(path, [_delivery(i) for i in range(30)])
    segs = Jlog(path).segments()
    assert len(segs) > 2
    assert trim_unsubscribed(path) == len(segs) - 1
    assert Jlog(path).segments() == segs[-1:]
    Jlog(path).add_subscriber("s")
    _write(path, [_delivery(i) for i in range(30)])
    assert trim_unsubscribed(path) == 0


# -- ec_log_trace ------------------------------------------------------------------------------------

MAIN = [
    "100@A@A@C1@R@alice@x.test@bob@y.test@1.2.3.4@310@esmtp@g@b",
    "100@@@@M",
    "101@B@B@C1@R@carol@z.test@@@1.2.3.5@300@esmtp@g@b2",
    "102@A@A@C2@T@x.test@0@g@b@5@1@0.50@5.6.7.8@451 4.7.1 try \\@ later",
    "110@A@A@C3@D@x.test@310@g@b@1@10.0@5.6.7.8",
    "111@B@B@C4@P@z.test@0@g@b2@5@0@0.20@9.9.9.9@550 no",
]
REJECT = ('120: R="1.2.3.9:4000" L="127.0.0.1:25" C="C9" PATH="p" PATH_GRP="pg" P="awaiting rcpt" '
          'E=550 M=core CTXCONN=[rdnsbl=yes,note="a, b]"] CTXMESS=[] 550 5.7.1 relaying denied')
BOUNCE = "112@B@B@C4@B@carol@z.test@@@g@b2@5@10@300@9.9.9.9@550 no"


def test_parse_lines():
    r = ec_log_trace.parse_line(MAIN[0])
    assert (r.kind, r.msg_id, r.f["sender"], r.f["rcpt"], r.f["src_ip"]) == \
        ("R", "A", "bob@y.test", "alice@x.test", "1.2.3.4")
    assert ec_log_trace.parse_line(MAIN[1]) is None
    t = ec_log_trace.parse_line(MAIN[3])
    assert (t.kind, t.f["response"], t.f["dst_ip"]) == ("T", "451 4.7.1 try @ later", "5.6.7.8")
    j = ec_log_trace.parse_line(REJECT)
    assert j.log == "reject" and j.f["ctx_conn"] == {"rdnsbl": "yes", "note": "a, b]"}
    assert j.f["src_ip"] == "1.2.3.9" and j.f["text"] == "550 5.7.1 relaying denied"
    b = ec_log_trace.parse_line(BOUNCE)
    assert (b.log, b.kind, b.f["rcpt"], b.f["classification"]) == ("bounce", "B", "carol@z.test", "10")


def _trace(tmp_path, capsys, *args):
    rc = ec_log_trace.main([*args])
    out = capsys.readouterr().out
    return rc, out.splitlines()


@pytest.fixture
def logs(tmp_path):
    main_old = tmp_path / "mainlog.ec.1.bz2"
    main_old.write_bytes(bz2.compress(("\n".join(MAIN[:3]) + "\n").encode()))
    (tmp_path / "mainlog.ec").write_text("\n".join(MAIN[3:]) + "\n")
    (tmp_path / "rejectlog.ec").write_text(REJECT + "\n120: Marker 1\n")
    (tmp_path / "bouncelog.ec").write_text(BOUNCE + "\n")
    return tmp_path


def test_trace_one_message_across_rotated_and_current(logs, capsys):
    files = [str(logs / "mainlog.ec"), str(logs / "mainlog.ec.1.bz2")]     # any order
    rc, out = _trace(logs, capsys, "--id=A", *files)
    assert rc == 0 and out == [MAIN[0], MAIN[3], MAIN[4]]
    rc, out = _trace(logs, capsys, "--id=A", "--out", *files)
    assert out == [MAIN[4]]


def test_trace_filters_use_the_reception_of_the_message(logs, capsys):
    files = [str(p) for p in logs.iterdir()]
    assert _trace(logs, capsys, "--from=bob@y.test", *files)[1] == [MAIN[0], MAIN[3], MAIN[4]]
    assert _trace(logs, capsys, "--from=<>", "--perm", *files)[1] == [MAIN[5], BOUNCE]
    assert _trace(logs, capsys, "--src-ip=1.2.3.9", *files)[1] == [REJECT]
    assert _trace(logs, capsys, "--dst-ip-regex=^9\\.", "--main", *files)[1] == [MAIN[5]]
    assert _trace(logs, capsys, "--vctx-conn=rdnsbl", *files)[1] == [REJECT]
    assert _trace(logs, capsys, "--vctx-conn=rdnsbl=no", *files)[0] == 1
    assert _trace(logs, capsys, "--binding=b2", "--to-domain=z.test", *files)[1] == [MAIN[2], MAIN[5], BOUNCE]
    assert _trace(logs, capsys, "--start=102", "--end=110", "--main", *files)[1] == [MAIN[3], MAIN[4]]
    rc, out = _trace(logs, capsys, "--count", *files)
    assert out == ["Receptions: 2", "Deliveries: 1", "Transient failures: 1", "Permanent failures: 1",
                   "Bounces: 1", "Rejections: 1"]


def test_trace_date_verbose_xml_output(logs, capsys, tmp_path):
    files = [str(logs / "mainlog.ec"), str(logs / "mainlog.ec.1.bz2")]
    out = _trace(logs, capsys, "--date", "--id=B", *files)[1]
    assert out[0].startswith(time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(101)) + "@B@")
    out = _trace(logs, capsys, "-v", "--id=A", *files)[1]
    assert out[0] == "Message A" and "Reception" in out[1] and "from=bob@y.test" in out[3]
    out = _trace(logs, capsys, "--xml", "--id=B", "--in", *files)[1]
    assert out[0] == "<ec_log_trace>" and '<record log="main" type="R"' in out[1]
    dest = tmp_path / "o.txt"
    ec_log_trace.main(["--id=A", "--output", str(dest), *files])
    ec_log_trace.main(["--id=B", "--output", str(dest), "--append", "--in", *files])
    assert dest.read_text().splitlines() == [MAIN[0], MAIN[3], MAIN[4], MAIN[2]]


def test_trace_reads_stdin():
    p = subprocess.run([sys.executable, "-m", "ecmta.cli.ec_log_trace", "--id=A", "-"],
                       input="\n".join(MAIN) + "\n", capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.splitlines() == [MAIN[0], MAIN[3], MAIN[4]]


# -- ec_rotate ---------------------------------------------------------------------------------------

def test_rotate_conf_format():
    conf, warnings = ec_rotate.parse_conf(
        "# comment\nenabled=yes\nlogfiles =  /a/mainlog.ec \\\n   /a/paniclog.ec # two\n"
        "logdirs = /a/adaptive \nretention = 3\nbogus = 1\nno equals\n", "f")
    assert conf["logfiles"] == ["/a/mainlog.ec", "/a/paniclog.ec"]
    assert conf["logdirs"] == ["/a/adaptive"] and conf["retention"] == ["3"]
    assert warnings == ["f:7: unknown option 'bogus' (ignored)", "f:8: not a 'key = value' line: no equals"]


def test_rotate_shifts_drops_and_compresses(tmp_path, monkeypatch):
    monkeypatch.setenv("ECMTA_HOME", str(tmp_path))
    log = tmp_path / "log"
    log.mkdir()
    (log / "x.log").write_text("dir file\n")
    contents = []
    for i in range(4):
        (log / "mainlog.ec").write_text(f"gen {i}\n")
        contents.append(f"gen {i}\n")
        rc = ec_rotate.main(["-l", "log/mainlog.ec", "-logdir", "log", "-r", "2",
                             "-s", str(tmp_path / "nothing-listens")])
        assert rc == 1                          # nobody to reopen: said, the rest done
    names = sorted(os.listdir(log))
    # x.log was rotated once (by -logdir); its X.1 waits for a reopen that succeeds
    assert names == ["mainlog.ec.1", "mainlog.ec.2.bz2", "x.log.1"], names
    assert (log / "mainlog.ec.1").read_text() == contents[3]
    assert bz2.decompress((log / "mainlog.ec.2.bz2").read_bytes()).decode() == contents[2]


def test_rotate_disabled_and_bad_retention(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ECMTA_HOME", str(tmp_path))
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "mainlog.ec").write_text("x\n")
    conf = tmp_path / "ec_rotate.conf"
    conf.write_text("enabled = no\nlogfiles = log/mainlog.ec\n")
    assert ec_rotate.main([]) == 0 and os.listdir(tmp_path / "log") == ["mainlog.ec"]
    conf.unlink()
    assert ec_rotate.main(["-r", "0"]) == 2 and "retention" in capsys.readouterr().err


def test_rotate_python_codec_when_the_utility_is_missing(tmp_path):
    f = tmp_path / "m.ec.2"
    f.write_bytes(b"abc\n" * 1000)
    assert ec_rotate.compress_all([str(f)], str(tmp_path / "no-bzip2"), lambda t: None) == []
    assert bz2.decompress((tmp_path / "m.ec.2.bz2").read_bytes()) == b"abc\n" * 1000
    assert not f.exists()
