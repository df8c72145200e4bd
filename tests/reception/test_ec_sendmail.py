"""ec_sendmail (executable.ec_sendmail): a message on stdin submitted over SMTP to the
daemon's listener, found from its config (-C) or given (--server); -f, -F, -i/-oi, -t, -bs,
DSN options; failures exit non-zero and keep the message in dead.letter."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys

import pytest

from ecmta.cli.ec_sendmail import parse_args, split_server
from ecmta.tests.harness import free_port
from ecmta.tests.reception.helpers import Shared, start_mta, wait_for

EXE = [sys.executable, "-m", "ecmta.cli.ec_sendmail"]


@pytest.fixture(scope="module")
def sm():
    shared = Shared()
    try:
        yield start_mta(shared.factory)
    finally:
        shared.close()


def run(sm, args, data: bytes, tmp_path, server=True, user=None, timeout=60):
    env = dict(os.environ, EC_DEAD_LETTER=str(tmp_path / "dead.letter"))
    extra = ["--server", f"127.0.0.1:{sm.port}"] if server is True else \
        (["--server", server] if server else [])
    kw = {}
    if user is not None:
        pw = pwd.getpwnam(user)
        kw["preexec_fn"] = lambda: (os.setgid(pw.pw_gid), os.setuid(pw.pw_uid))
        env["HOME"] = str(tmp_path)
    return subprocess.run(EXE + extra + list(args), input=data, capture_output=True,
                          timeout=timeout, env=env, cwd=str(tmp_path), **kw)


def stored_for(sm, rcpt):
    return wait_for(lambda: [m for m in sm.spooled() if m.rcptto == rcpt])


def dead(tmp_path) -> bytes:
    p = tmp_path / "dead.letter"
    return p.read_bytes() if p.exists() else b""


def test_submits_stdin_with_envelope_from_f(sm, tmp_path):
    data = b"From: Someone <someone@sender.test>\nSubject: via ec_sendmail\n\nline one\nline two\n"
    p = run(sm, ["-f", "bounces@sender.test", "r1@example.com", "r2@example.com"], data, tmp_path)
    assert p.returncode == 0, p.stderr
    (m1,) = stored_for(sm, "r1@example.com")
    (m2,) = stored_for(sm, "r2@example.com")
    assert m1.batch_id == m2.batch_id and m1.mailfrom == "bounces@sender.test"
    assert m1.body.endswith(b"From: Someone <someone@sender.test>\r\nSubject: via ec_sendmail\r\n"
                            b"Date: " + m1.body.split(b"Date: ")[1].split(b"\r\n")[0] + b"\r\n"
                            b"Message-ID: " + m1.body.split(b"Message-ID: ")[1].split(b"\r\n")[0] +
                            b"\r\n\r\nline one\r\nline two\r\n")
    assert not dead(tmp_path)


def test_listener_found_from_the_daemon_config(sm, tmp_path):
    p = run(sm, ["-C", sm.d.conf, "-f", "a@sender.test", "viaconf@example.com"],
            b"Subject: conf\n\nbody\n", tmp_path, server=None)
    assert p.returncode == 0, p.stderr
    stored_for(sm, "viaconf@example.com")


def test_from_header_added_with_full_name(sm, tmp_path):
    p = run(sm, ["-f", "joe@sender.test", "-F", "Joe Bloggs", "named@example.com"],
            b"Subject: no from\n\nbody\n", tmp_path)
    assert p.returncode == 0, p.stderr
    (m,) = stored_for(sm, "named@example.com")
    assert b"\r\nFrom: Joe Bloggs <joe@sender.test>\r\n" in m.body


def test_default_sender_is_user_at_host(sm, tmp_path):
    import getpass
    import socket
    p = run(sm, ["plainuser@example.com"], b"Subject: default\n\nbody\n", tmp_path)
    assert p.returncode == 0, p.stderr
    (m,) = stored_for(sm, "plainuser@example.com")
    own = f"{getpass.getuser()}@{socket.gethostname()}"
    assert m.mailfrom == own and f"\r\nFrom: {own}\r\n".encode() in m.body
    assert b"X-Authentication-Warning" not in m.body


def test_authentication_warning_for_a_non_root_user(sm, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to run ec_sendmail as another user")
    os.chmod(tmp_path, 0o777)
    try:
        p = run(sm, ["-f", "ceo@bank.test", "warned@example.com"], b"Subject: forged\n\nbody\n",
                tmp_path, user="nobody")
    except PermissionError:
        pytest.skip("the Python interpreter is not executable by nobody here "
                    "(test_prepare_adds_the_warning_for_non_root covers the header)")
    if p.returncode != 0 and b"Permission denied" in p.stderr:
        pytest.skip("the package is not readable by nobody here")
    assert p.returncode == 0, p.stderr
    (m,) = stored_for(sm, "warned@example.com")
    import socket
    host = socket.gethostname()
    assert f"\r\nX-Authentication-Warning: {host}: nobody set sender to ceo@bank.test using -f\r\n".encode() \
        in m.body


def test_prepare_adds_the_warning_for_non_root(monkeypatch):
    from ecmta.cli import ec_sendmail
    monkeypatch.setattr(ec_sendmail.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(ec_sendmail, "default_sender", lambda: ("joe", "box.test", "joe@box.test"))
    msg, sender, rcpts = ec_sendmail.prepare(b"Subject: x\n\nbody\n",
                                             parse_args(["-f", "ceo@bank.test", "r@example.com"]))
    assert (sender, rcpts) == ("ceo@bank.test", ["r@example.com"])
    assert msg == (b"X-Authentication-Warning: box.test: joe set sender to ceo@bank.test using -f\r\n"
                   b"From: ceo@bank.test\r\nSubject: x\r\n\r\nbody\r\n")
    # the user's own address, or root: no warning
    msg, _, _ = ec_sendmail.prepare(b"Subject: x\n\nbody\n", parse_args(["-f", "joe@box.test", "r@x"]))
    assert b"X-Authentication-Warning" not in msg
    monkeypatch.setattr(ec_sendmail.os, "geteuid", lambda: 0)
    msg, _, _ = ec_sendmail.prepare(b"Subject: x\n\nbody\n", parse_args(["-f", "ceo@bank.test", "r@x"]))
    assert b"X-Authentication-Warning" not in msg


def test_a_single_dot_ends_the_message_unless_i(sm, tmp_path):
    data = b"Subject: dots\n\nbefore\n.\nafter\n"
    assert run(sm, ["-f", "a@sender.test", "dot1@example.com"], data, tmp_path).returncode == 0
    (m,) = stored_for(sm, "dot1@example.com")
    assert m.body.endswith(b"\r\n\r\nbefore\r\n")
    for flag, rcpt in (("-i", "dot2@example.com"), ("-oi", "dot3@example.com")):
        assert run(sm, [flag, "-f", "a@sender.test", rcpt], data, tmp_path).returncode == 0
        (m,) = stored_for(sm, rcpt)
        assert m.body.endswith(b"\r\n\r\nbefore\r\n.\r\nafter\r\n")


def test_t_reads_recipients_and_removes_bcc(sm, tmp_path):
    data = (b"From: a@sender.test\nTo: Tom <t1@example.com>, t2@example.com\n"
            b"Cc: c1@example.com\nBcc: hidden@example.com,\n  also-hidden@example.com\n"
            b"Subject: -t\n\nbody\n")
    p = run(sm, ["-t", "-f", "a@sender.test", "c1@example.com"], data, tmp_path)
    assert p.returncode == 0, p.stderr
    for r in ("t1@example.com", "t2@example.com", "hidden@example.com", "also-hidden@example.com"):
        (m,) = stored_for(sm, r)
        assert b"Bcc" not in m.body and b"hidden" not in m.body
        assert b"\r\nTo: Tom <t1@example.com>, t2@example.com\r\nCc: c1@example.com\r\n" in m.body
    # an address also given as an argument is left out (sendmail 8)
    assert not [m for m in sm.spooled() if m.rcptto == "c1@example.com"]


def test_8bit_body_and_dsn_options(sm, tmp_path):
    data = "Subject: 8bit\n\nGrüße\n".encode()
    p = run(sm, ["-f", "a@sender.test", "-N", "success,failure", "-R", "hdrs", "-V", "env 1",
                 "-B", "8BITMIME", "dsn8@example.com"], data, tmp_path)
    assert p.returncode == 0, p.stderr
    (m,) = stored_for(sm, "dsn8@example.com")
    assert m.body.endswith("\r\n\r\nGrüße\r\n".encode())
    assert (m.dsn.notify, m.dsn.ret, m.dsn.envid) == (("SUCCESS", "FAILURE"), "HDRS", "env 1")


def test_bs_runs_an_smtp_session_on_stdio(sm, tmp_path):
    session = (b"EHLO local.test\r\nMAIL FROM:<bs@sender.test>\r\nRCPT TO:<bs@example.com>\r\n"
               b"DATA\r\nSubject: -bs\r\n\r\nthrough stdio\r\n.\r\nQUIT\r\n")
    p = run(sm, ["-bs"], session, tmp_path)
    assert p.returncode == 0, p.stderr
    codes = [ln[:3] for ln in p.stdout.split(b"\r\n") if ln[:3].isdigit() and ln[3:4] == b" "]
    assert codes == [b"220", b"250", b"250", b"250", b"354", b"250", b"221"]
    (m,) = stored_for(sm, "bs@example.com")
    assert m.mailfrom == "bs@sender.test"


# -- failures: non-zero exit, nothing lost ------------------------------------------------------

def test_no_listener_exits_75_and_keeps_the_message(sm, tmp_path):
    port = free_port()                               # nothing listens there
    data = b"Subject: nowhere\n\nkeep me\n"
    p = run(sm, ["-f", "a@sender.test", "x@example.com"], data, tmp_path, server=f"127.0.0.1:{port}")
    assert p.returncode == 75
    assert b"cannot connect" in p.stderr and b"saved in" in p.stderr
    kept = dead(tmp_path)
    assert kept.startswith(b"From a@sender.test ") and b"\nSubject: nowhere\n\nkeep me\n" in kept


def test_refused_recipient_exits_67_and_keeps_the_message(sm, tmp_path):
    p = run(sm, ["-f", "a@sender.test", "x@else.test"], b"Subject: refused\n\nbody\n", tmp_path)
    assert p.returncode == 67
    assert b"550 5.7.1 relaying denied" in p.stderr
    assert b"Subject: refused" in dead(tmp_path)


def test_partly_refused_delivers_the_rest_and_reports(sm, tmp_path):
    p = run(sm, ["-f", "a@sender.test", "part-ok@example.com", "part-no@else.test"],
            b"Subject: partly\n\nbody\n", tmp_path)
    assert p.returncode == 67
    assert b"<part-no@else.test>: 550 5.7.1 relaying denied" in p.stderr
    stored_for(sm, "part-ok@example.com")
    assert b"Subject: partly" in dead(tmp_path)


def test_message_refused_by_the_server_exits_69(sm, tmp_path):
    # a lone CR in a header: 550 5.6.0 at the end of DATA (rfc2822_lone_lf_in_headers)
    p = run(sm, ["-f", "a@sender.test", "lonecr@example.com"], b"Subject: a\rb\n\njust a body\n",
            tmp_path)
    assert p.returncode == 69
    assert b"550 5.6.0 Lone CR or LF in headers" in p.stderr
    assert b"just a body" in dead(tmp_path)
    assert not [m for m in sm.spooled() if m.rcptto == "lonecr@example.com"]


def test_usage_errors_and_missing_recipients(sm, tmp_path):
    p = run(sm, ["-Q"], b"", tmp_path)
    assert p.returncode == 64 and b"unknown option -Q" in p.stderr
    p = run(sm, ["-f", "a@sender.test"], b"Subject: to nobody\n\nbody\n", tmp_path)
    assert p.returncode == 65 and b"no recipients" in p.stderr
    assert b"to nobody" in dead(tmp_path)
    p = run(sm, ["-h"], b"", tmp_path)
    assert p.returncode == 0 and p.stdout.startswith(b"usage: ec_sendmail")


def test_argument_and_server_parsing():
    o = parse_args(["-oi", "-fme@x.test", "-FMe Too", "-t", "-odb", "-oem", "-U", "--", "-weird@x"])
    assert (o.ignore_dots, o.sender, o.full_name, o.from_headers, o.recipients) == \
        (True, "me@x.test", "Me Too", True, ["-weird@x"])
    assert split_server("*:25") == ("127.0.0.1", 25)
    assert split_server(":2525") == ("127.0.0.1", 2525)
    assert split_server("[::]:25") == ("::1", 25)
    assert split_server("[::1]:587") == ("::1", 587)
    assert split_server("10.1.2.3:26") == ("10.1.2.3", 26)
