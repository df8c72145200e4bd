"""pipe_transport through the real daemon: /bin/cat with output_file, the code map, the
default 504 text, a program killed by the timeout, a program that does not read stdin,
mainlog and rejectlog lines."""

from __future__ import annotations

import os
import time

import pytest

from ecmta.tests.local_delivery.helpers import WAIT, message, wait_for


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def test_cat_appends_the_message_to_output_file(mta):
    out = mta.path("pipe.stdout")
    before = _read(out)
    data = message("cat1")
    code, text = mta.send(["al@cat.test"], data)
    assert code == 250 and text.startswith("2.0.0 OK queued as ")
    got = _read(out)[len(before):]
    assert got.endswith(data) and got.startswith(b"Return-Path: <a@sender.test>\r\nReceived: ")
    data2 = message("cat2")
    assert mta.send(["al@cat.test"], data2)[0] == 250
    assert _read(out).endswith(data2) and _read(out)[len(before):].count(b"Subject: cat") == 2
    assert _read(mta.path("pipe.stderr")) == b""
    d = mta.wait_mainlog("D", "cat.test", 2)
    assert all(f[11] == "pipe_transport:cat" and f[9] == "0" for f in d)
    assert all(s.rcptto != "al@cat.test" for s in mta.spooled())


@pytest.mark.parametrize("rcpt, code, text, kind", [
    ("hard@codes.test", 550, "command failed", "P"),
    ("soft@codes.test", 450, "try again later", "T"),
    ("odd@codes.test", 504, "5.5.0 pipe transport gave exit status 3", "P"),
])
def test_exit_status_mapping(mta, rcpt, code, text, kind):
    assert mta.send([rcpt], message(rcpt.split("@")[0])) == (code, text)
    lines = wait_for(lambda: [f for f in mta.mainlog(kind, "codes.test")
                              if f[-1] == f"{code} {text}"], what=f"{kind} line for {rcpt}")
    f = lines[-1]
    assert f[5:9] == ["codes.test", "0", "default", "default"] and f[12] == "pipe_transport:codes"
    rej = wait_for(lambda: [ln for ln in mta.lines("rejectlog.ec") if f"E={code} M=pipe_transport " in ln],
                   what="rejectlog line")
    assert rej[-1].endswith(text)
    assert all(s.rcptto != rcpt for s in mta.spooled())


def test_exit_zero_and_environment(mta):
    assert mta.send(["env@codes.test"], message("env"), sender="snd@sender.test")[0] == 250
    line = wait_for(lambda: _read(mta.path("env.out")), what="env.out")
    assert b"S=snd@sender.test R=env@codes.test L=env H=codes.test" in line


def test_default_504_for_an_unmapped_status(mta):
    assert mta.send(["z@shell.test"], message("shell")) == (504, "5.5.0 pipe transport gave exit status 7")


def test_code_map_success_text_is_the_reply(mta):
    # /bin/true never reads its stdin: a message larger than a pipe buffer still gets 250
    assert mta.send(["q@okmap.test"], message("small")) == (250, "ok")
    big = message("bigger", ("y" * 900 + "\r\n") * 2000)
    assert mta.send(["q@okmap.test"], big) == (250, "ok")
    assert len(mta.wait_mainlog("D", "okmap.test", 2)) == 2


def test_hanging_program_hits_the_timeout(mta):
    started = time.monotonic()
    code, text = mta.send(["h@slow.test"], message("slow"))
    elapsed = time.monotonic() - started
    assert (code, text) == (451, "4.4.1 pipe transport program timed out after 2 seconds; try again later")
    assert 1.5 < elapsed < WAIT
    pid = int(wait_for(lambda: _read(mta.path("slow.pid")).strip(), what="slow.pid"))

    def gone():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    wait_for(gone, what=f"the killed program {pid} to be gone")
    assert mta.wait_mainlog("T", "slow.test")[-1][-1] == "451 " + text
    wait_for(lambda: any("ran longer than 2 seconds" in ln for ln in mta.lines("paniclog.ec")),
             what="the paniclog line")


def test_session_goes_on_after_a_pipe_failure(mta):
    import smtplib
    with smtplib.SMTP("127.0.0.1", mta.d.ports["smtp"], timeout=WAIT) as s:
        s.ehlo()
        s.mail("a@sender.test")
        s.rcpt("hard@codes.test")
        assert s.data(message("again1"))[0] == 550
        s.mail("a@sender.test")
        s.rcpt("ok@codes.test")
        assert s.data(message("again2"))[0] == 250
