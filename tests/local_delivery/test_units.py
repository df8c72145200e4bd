"""The maildir writer and the helpers as plain functions (no daemon)."""

from __future__ import annotations

import os
import stat

import pytest

from ecmta.actors import local_delivery as ld
from ecmta.actors.mail import MailMessage
from ecmta.tests.local_delivery.helpers import UNIQ_RE


def test_unique_names_follow_the_maildir_spec():
    names = {ld.unique_name() for _ in range(1000)}
    assert len(names) == 1000
    for n in list(names)[:20]:
        m = UNIQ_RE.match(n)
        assert m and int(m.group(3)) == os.getpid()
        assert "/" not in n and ":" not in n and not n.startswith(".")


def test_maildir_write_is_tmp_then_new(tmp_path):
    mb = str(tmp_path / "base" / "dom" / "user")
    final = ld.maildir_write(mb, "1.M1P1Q1R0.host", b"x\r\n", 0o750, 0o640, True)
    assert final == os.path.join(mb, "new", "1.M1P1Q1R0.host")
    assert open(final, "rb").read() == b"x\r\n" and os.listdir(os.path.join(mb, "tmp")) == []
    assert stat.S_IMODE(os.stat(final).st_mode) == 0o640
    assert stat.S_IMODE(os.stat(str(tmp_path / "base")).st_mode) == 0o750
    # same name again: a suffix keeps it unique, nothing is overwritten
    again = ld.maildir_write(mb, "1.M1P1Q1R0.host", b"y", 0o750, 0o640, True)
    assert again != final and open(final, "rb").read() == b"x\r\n"


def test_maildir_write_without_createusers_needs_the_mailbox(tmp_path):
    with pytest.raises(ld.MailboxMissing):
        ld.maildir_write(str(tmp_path / "nobody"), "n", b"x", 0o700, 0o600, False)
    assert not (tmp_path / "nobody").exists()


def test_maildir_write_failure_leaves_no_tmp_file(tmp_path, monkeypatch):
    mb = str(tmp_path / "u")
    real = os.fsync

    def boom(fd):
        if stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(28, "No space left on device")
        real(fd)
    monkeypatch.setattr(ld.os, "fsync", boom)
    with pytest.raises(OSError):
        ld.maildir_write(mb, "n", b"x", 0o700, 0o600, True)
    monkeypatch.undo()
    assert os.listdir(os.path.join(mb, "tmp")) == [] and os.listdir(os.path.join(mb, "new")) == []
    assert ld._os_reply(OSError(28, "x")) is ld.NO_SPACE
    assert ld._os_reply(OSError(122, "x")) is ld.MAILBOX_FULL
    assert ld._os_reply(OSError(13, "x")).code == 451


def test_mailbox_path_refuses_unsafe_names():
    t = ld.Target(module="maildir", name="m", domains=frozenset(), basedir="/b", domain_in_path=True)
    mk = lambda rcpt: MailMessage(id="i", batch_id="b", conn_id="c", mailfrom="", rcptto=rcpt)
    assert ld.mailbox_path(t, mk("Bob@Example.COM")) == "/b/example.com/Bob"
    for bad in ("a/b@x.test", "..@x.test", ".@x.test", "a\x00@x.test"):
        assert ld.mailbox_path(t, mk(bad)) is None, bad


def test_parse_mode_reads_octal_digits():
    from ecmta.config.model import Value
    assert ld.parse_mode(Value("dirmode", 775, "775", None)) == 0o775
    assert ld.parse_mode(Value("dirmode", 0o755, "0755", None)) == 0o755
    assert ld.parse_mode(Value("dirmode", 0x1ed, "0x1ed", None)) == 0o755
    for raw in ("789", "77777"):
        with pytest.raises(ValueError):
            ld.parse_mode(Value("dirmode", 0, raw, None))


def test_exit_reply():
    t = ld.Target(module="pipe_transport", name="p", domains=frozenset(),
                  codes=ld.parse_codes({"100": "550 command failed", "0": "250 ok"}))
    assert ld.exit_reply(t, 0).code == 250
    assert str(ld.exit_reply(t, 100)) == "550 command failed"
    assert str(ld.exit_reply(t, 2)) == "504 5.5.0 pipe transport gave exit status 2"
    plain = ld.Target(module="pipe_transport", name="p", domains=frozenset())
    assert ld.exit_reply(plain, 0) is None
