"""maildir through the real daemon: layout, content, modes, createusers, all_domains,
mainlog/rejectlog lines, mixing with spooled recipients."""

from __future__ import annotations

import os
import re

from ecmta.tests.local_delivery.helpers import ID_RE, UNIQ_RE, message, mode, wait_for


def _only_file(mta, mailbox):
    files = wait_for(lambda: mta.maildir_files(mailbox), what=f"a message in {mailbox}/new")
    assert len(files) == 1, files
    return os.path.join(mailbox, "new", files[0])


def test_delivery_creates_the_documented_tree_with_exactly_the_message(mta):
    data = message("tree")
    code, text = mta.send(["bob@in.test"], data)
    assert code == 250 and re.fullmatch(r"2\.0\.0 OK queued as " + ID_RE, text), (code, text)
    batch = text.rsplit(" ", 1)[1]
    base = mta.path("popbase")
    mailbox = os.path.join(base, "in.test", "bob")
    assert sorted(os.listdir(mailbox)) == ["cur", "new", "tmp"]
    assert mta.maildir_files(mailbox, "tmp") == [] and mta.maildir_files(mailbox, "cur") == []
    path = _only_file(mta, mailbox)
    m = UNIQ_RE.match(os.path.basename(path))
    assert m, os.path.basename(path)
    assert ":" not in os.path.basename(path) and not os.path.basename(path).startswith(".")
    with open(path, "rb") as fh:
        stored = fh.read()
    # the message as sent, behind the two trace headers reception adds
    assert stored.endswith(data)
    head = stored[: len(stored) - len(data)]
    assert head.startswith(b"Return-Path: <a@sender.test>\r\nReceived: from [127.0.0.1] ")
    assert f"id {batch};".encode() in head and head.endswith(b"\r\n")
    assert head.count(b"\r\n") == 5           # Return-Path + Received (4 lines, folded)
    # nothing of it went to the spool
    assert all(s.rcptto != "bob@in.test" for s in mta.spooled())


def test_modes_from_the_page_example_are_octal(mta):
    mta.send(["modes@in.test"], message("modes"))
    mailbox = mta.path("popbase", "in.test", "modes")
    path = _only_file(mta, mailbox)
    assert mode(path) == 0o664
    for d in (mta.path("popbase"), mta.path("popbase", "in.test"), mailbox,
              *(os.path.join(mailbox, s) for s in ("tmp", "new", "cur"))):
        assert mode(d) == 0o775, d


def test_domain_in_path_off_and_default_modes(mta):
    code, _ = mta.send(["carol@flat.test"], message("flat"))
    assert code == 250
    mailbox = mta.path("flatbase", "carol")
    path = _only_file(mta, mailbox)
    assert not os.path.exists(mta.path("flatbase", "flat.test"))
    assert mode(path) == 0o600 and mode(mailbox) == 0o700


def test_two_deliveries_to_one_mailbox_get_unique_names(mta):
    for i in range(3):
        assert mta.send(["twice@flat.test"], message(f"twice{i}"))[0] == 250
    files = mta.maildir_files(mta.path("flatbase", "twice"))
    assert len(files) == 3 and len(set(files)) == 3
    assert all(UNIQ_RE.match(f) for f in files)


def test_createusers_off_missing_mailbox_is_rejected_and_logged(mta):
    code, text = mta.send(["nobody@strict.test"], message("missing"))
    assert (code, text) == (550, "5.1.1 <nobody@strict.test> mailbox does not exist")
    assert not os.path.exists(mta.path("strictbase", "strict.test", "nobody"))
    p = mta.wait_mainlog("P", "strict.test", where=lambda f: "<nobody@strict.test>" in f[-1])[-1]
    assert p[5:9] == ["strict.test", "0", "default", "default"]
    assert p[12:] == ["maildir:strict", "550 5.1.1 <nobody@strict.test> mailbox does not exist"]
    rej = wait_for(lambda: [ln for ln in mta.lines("rejectlog.ec") if "nobody@strict.test" in ln],
                   what="rejectlog line")
    assert "E=550 M=maildir " in rej[-1]
    assert all(f[5] != "nobody" for f in mta.mainlog("R", "strict.test"))


def test_createusers_off_existing_mailbox_gets_tmp_new_cur(mta):
    user = mta.path("strictbase", "strict.test", "dave")
    os.makedirs(user)
    code, _ = mta.send(["dave@strict.test"], message("existing"))
    assert code == 250
    path = _only_file(mta, user)
    assert mode(path) == 0o640
    assert all(mode(os.path.join(user, s)) == 0o750 for s in ("tmp", "new", "cur"))


def test_missing_mailbox_stores_nothing_for_the_other_recipients(mta):
    code, _ = mta.send(["first@in.test", "ghost@strict.test", "later@remote.test"], message("mixfail"))
    assert code == 550
    assert not os.path.exists(mta.path("popbase", "in.test", "first"))
    assert all(s.rcptto != "later@remote.test" for s in mta.spooled())


def test_local_and_spooled_recipients_in_one_message(mta):
    code, text = mta.send(["erin@in.test", "far@remote.test"], message("mixed"))
    assert code == 250 and text.startswith("2.0.0 OK queued as ")
    _only_file(mta, mta.path("popbase", "in.test", "erin"))
    spooled = [s for s in mta.spooled() if s.rcptto == "far@remote.test"]
    assert len(spooled) == 1
    mta.wait_mainlog("R", "in.test", where=lambda f: f[5] == "erin")
    mta.wait_mainlog("R", "remote.test", where=lambda f: f[5] == "far")
    mta.wait_mainlog("D", "in.test", where=lambda f: f[2] == text.rsplit(" ", 1)[1])
    assert not mta.mainlog("D", "remote.test")


def test_mainlog_reception_then_delivery_line(mta):
    code, text = mta.send(["frank@in.test"], message("logs"))
    assert code == 250
    batch = text.rsplit(" ", 1)[1]
    d = mta.wait_mainlog("D", "in.test", where=lambda f: f[2] == batch)
    assert len(d) == 1
    f = d[0]
    assert re.fullmatch(ID_RE, f[1]) and f[3] and f[4] == "D"
    assert f[5:10] == ["in.test", f[6], "default", "default", "0"]
    assert int(f[6]) > len(message("logs")) and re.fullmatch(r"\d+\.\d{3}", f[10])
    assert f[11] == "maildir:inpath" and len(f) == 12
    lines = mta.lines("mainlog.ec")
    r_at = next(i for i, ln in enumerate(lines) if f"@{f[1]}@" in ln and "@R@" in ln)
    d_at = next(i for i, ln in enumerate(lines) if f"@{f[1]}@" in ln and "@D@" in ln)
    assert r_at < d_at
    r = lines[r_at].split("@")
    assert r[5:8] == ["frank", "in.test", "a"] and r[11] == "esmtp"


def test_unsafe_local_part_is_refused(mta):
    code, text = mta.send(["a/b@flat.test"], message("slash"))
    assert code == 550 and text.startswith("5.1.3 "), (code, text)
    assert not os.path.exists(mta.path("flatbase", "a"))


def test_misconfigured_stanza_answers_4xx_and_writes_the_paniclog(mta):
    code, text = mta.send(["x@broken.test"], message("broken"))
    assert (code, text) == (451, "4.3.5 Local delivery is not configured correctly; try again later")
    wait_for(lambda: any('maildir "broken": basedir is not set' in ln
                         for ln in mta.lines("paniclog.ec")), what="paniclog line")
    assert mta.wait_mainlog("T", "broken.test")


def test_disabled_stanza_leaves_its_domain_to_the_spool(mta):
    assert mta.send(["y@off.test"], message("off"))[0] == 250
    assert not os.path.exists(mta.path("offbase"))
    assert any(s.rcptto == "y@off.test" for s in mta.spooled())
