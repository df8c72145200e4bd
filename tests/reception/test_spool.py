"""Reception into the spool: one message instance per recipient sharing one body and a batch
id, exact mainlog R lines, Message-ID as documented, SIGKILL while several smtplib clients
send (every message that got a 250 is recovered after the restart, none twice: ec_show -n /
-s, the spool and the mainlog agree), and a full disk (452 4.3.1, the session goes on and
succeeds once space is back)."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import subprocess
import threading
import time

import pytest

from ecmta.tests.harness import free_port
from ecmta.tests.reception.helpers import (ID_RE, MTA, NO_DELIVERY, config, local_port, message,
                                           queue_id, wait_for)


def test_one_instance_per_recipient_sharing_one_body_and_a_batch_id(mta):
    m = mta()
    t0 = int(time.time())
    with m.smtp() as s:
        s.sendmail("Info@PostalEngine.test", ["bob@example.com", "carol@example.com",
                                              "dave@example.com"], message("three"))
        port = s.sock.getsockname()[1]
    t1 = int(time.time()) + 1
    got = wait_for(lambda: (lambda g: g if len(g) == 3 else None)(m.spooled()))
    batch = {x.batch_id for x in got}
    assert len(batch) == 1
    (batch,) = batch
    ids = [x.id for x in got]
    assert len(set(ids)) == 3 and batch in ids                   # the first keeps the batch id
    keys = m.body_keys()
    assert len({keys[i] for i in ids}) == 1                      # one stored body for the batch
    assert len({x.body for x in got}) == 1
    for x in got:
        assert (x.mailfrom, x.peer_ip, x.peer_port, x.protocol) == \
            ("Info@PostalEngine.test", "127.0.0.1", port, "esmtp")
        assert x.listener_addr == f"127.0.0.1:{m.port}"
        assert x.size == len(x.body)
    lines = wait_for(lambda: (lambda g: g if len(g) == 3 else None)(m.mainlog()))
    conn = {r.conn_id for r in got}.pop()
    for line, x in zip(lines, sorted(got, key=lambda x: x.rcptto)):
        local, domain = x.rcptto.split("@")
        ts = int(line.split("@", 1)[0])
        assert t0 <= ts <= t1
        assert line == (f"{ts}@{x.id}@{batch}@{conn}@R@{local}@{domain}@Info@postalengine.test@"
                        f"127.0.0.1@{x.size}@esmtp@default@default")


def test_message_id_and_date_as_documented(mta):
    m = mta()
    with m.smtp() as s:
        s.ehlo()
        s.mail("a@sender.test")
        s.rcpt("x@example.com")
        code, resp = s.data(b"Subject: ids\r\n\r\nbody\r\n")
    batch = queue_id(resp.decode())
    (x,) = wait_for(lambda: m.spooled())
    hdrs = x.body.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
    # <00.00.02001.C6DD1CA4@centos>: the batch id with "/" and "-" as dots, then the hostname
    slot_rev = batch[-8:]
    assert f"Message-ID: <{batch[:2]}.{batch[3:5]}.{batch[6:11]}.{slot_rev}@mx.ecmta.test>" in hdrs
    pid = int(batch[6:11])
    assert pid == m.d.proc.pid % 100000
    slot = int(slot_rev[::-1], 16)                               # reversed hex unix time
    assert abs(slot - time.time()) < 60
    assert re.fullmatch(ID_RE, batch)


# -- SIGKILL while clients send ---------------------------------------------------------------------

CLIENTS = 6
PER_CLIENT = 400            # upper bound; the kill comes long before


def _client(port: int, k: int, acked: list, lock: threading.Lock, stop: threading.Event) -> None:
    try:
        s = smtplib.SMTP("127.0.0.1", port, local_hostname=f"c{k}.test", timeout=10)
        s.ehlo()
    except OSError:
        return
    try:
        for i in range(PER_CLIENT):
            if stop.is_set():
                return
            rcpts = [f"c{k}m{i}a@example.com", f"c{k}m{i}b@example.com"]
            s.mail(f"client{k}@sender.test")
            for r in rcpts:
                s.rcpt(r)
            code, resp = s.data(message(f"crash c{k} m{i}"))
            if code == 250:
                with lock:
                    acked.append((queue_id(resp.decode()), tuple(rcpts)))
    except (OSError, smtplib.SMTPException):
        return                                   # the daemon died under us


def _ec_show_messages(mta_: MTA) -> list[dict]:
    proc = mta_.ec_show("-s")
    assert proc.returncode == 0, proc.stderr
    out, cur = [], None
    for ln in proc.stdout.splitlines():
        if ln.startswith("Message: "):
            cur = {"id": ln[9:]}
            out.append(cur)
        elif cur is not None and ln.startswith("  Recipient: "):
            cur["rcpt"] = ln[13:]
        elif cur is not None and ln.startswith("  BatchID: "):
            cur["batch_line"] = ln
    return out


def test_sigkill_while_clients_send_loses_no_acknowledged_message(daemon_factory):
    body = config()
    ports = {"smtp": free_port()}
    d = daemon_factory(body, ports=ports, skip=NO_DELIVERY).start()
    first = MTA(d)
    acked: list = []
    lock, stop = threading.Lock(), threading.Event()
    threads = [threading.Thread(target=_client, args=(first.port, k, acked, lock, stop), daemon=True)
               for k in range(CLIENTS)]
    for t in threads:
        t.start()
    # kill once the clients are well under way (150 acknowledgements, or after 5 s)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(acked) < 150:
        time.sleep(0.01)
    os.kill(d.proc.pid, signal.SIGKILL)
    d.proc.wait(10)
    stop.set()
    for t in threads:
        t.join(15)
        assert not t.is_alive()
    with lock:
        acked_now = list(acked)
    assert len(acked_now) >= 10, "the clients hardly sent anything before the kill"
    print(f"{len(acked_now)} messages acknowledged before SIGKILL")
    mainlog_before = first.mainlog()

    # restart on the same state directory and config
    d2 = daemon_factory(body, home=d.home, ports=ports, skip=NO_DELIVERY).start()
    second = MTA(d2)
    count = second.ec_show("-n")
    assert count.returncode == 0, count.stderr
    shown = _ec_show_messages(second)
    assert int(count.stdout.strip()) == len(shown)
    ids = [x["id"] for x in shown]
    assert len(ids) == len(set(ids))
    pairs = {(m.batch_id, m.rcptto) for m in second.spooled()}
    assert len(pairs) == len(ids)                                   # no instance twice
    for batch, rcpts in acked_now:
        for r in rcpts:
            assert (batch, r) in pairs, f"acknowledged {batch} -> {r} lost"
    # at most the messages whose 250 was in flight are there without an acknowledgement
    assert len(pairs) - 2 * len(acked_now) <= 2 * CLIENTS
    # the mainlog never names a message the spool does not hold, and names none twice
    r_ids = [ln.split("@")[1] for ln in mainlog_before if "@R@" in ln]
    assert len(r_ids) == len(set(r_ids)) and set(r_ids) <= set(ids)
    # the restarted daemon takes new mail with fresh ids
    with second.smtp() as s:
        s.sendmail("after@sender.test", ["after@example.com"], message("after restart"))
    after = wait_for(lambda: [m for m in second.spooled() if m.rcptto == "after@example.com"])
    assert after[0].id not in ids
    r_after = wait_for(lambda: (lambda r: r if after[0].id in r else None)(
        [ln.split("@")[1] for ln in second.mainlog() if "@R@" in ln]))
    assert len(r_after) == len(set(r_after))
    assert not set(r_after) - set(ids) - {after[0].id}


# -- disk full --------------------------------------------------------------------------------------

@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()})")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(path: str) -> None:
    """Write zeros until the file system is full (bounded by its 4 MB size)."""
    chunk = b"\0" * 65536
    with open(path, "wb") as fh:
        for _ in range(200):
            try:
                fh.write(chunk)
                fh.flush()
            except OSError:
                break
    # leave nothing at all
    for size in (4096, 512, 1):
        try:
            with open(path, "ab") as fh:
                for _ in range(64):
                    fh.write(b"\0" * size)
                    fh.flush()
        except OSError:
            pass


def test_disk_full_answers_452_and_keeps_the_session(mta, small_fs):
    m = mta(glob=f'spoolbase = "{small_fs}/spool"')
    w = m.wire()
    w.cmd("EHLO client.test")
    body = b"Subject: fill\r\n\r\n" + b"x" * 20000 + b"\r\n"

    def send(rcpt):
        assert w.cmd("MAIL FROM:<a@sender.test>").code == 250
        assert w.cmd(f"RCPT TO:<{rcpt}>").code == 250
        assert w.cmd("DATA").code == 354
        return w.cmd(body + b".")

    assert send("before@example.com").code == 250
    filler = os.path.join(small_fs, "filler")
    _fill(filler)
    replies = []
    for i in range(5):
        r = send(f"full{i}@example.com")
        replies.append(r.raw)
        if r.code != 250:
            break
    assert replies[-1] == b"452 4.3.1 Requested action not taken: insufficient system storage\r\n"
    assert w.cmd("NOOP").code == 250                            # the session goes on
    assert w.cmd("RSET").code == 250
    port = local_port(w)
    rej = wait_for(lambda: [r for r in m.rejections() if r["R"] == f"127.0.0.1:{port}"])
    assert (rej[-1]["E"], rej[-1]["P"], rej[-1]["M"]) == ("452", "data", "spool")
    os.unlink(filler)
    r = wait_for(lambda: (lambda x: x if x.code == 250 else None)(send("after@example.com")),
                 timeout=20, interval=0.5)
    assert "queued as" in r.text
    stored = {x.rcptto for x in m.spooled(f"{small_fs}/spool")}
    assert {"before@example.com", "after@example.com"} <= stored
    refused = {f"full{i}@example.com" for i, raw in enumerate(replies) if not raw.startswith(b"250")}
    assert not refused & stored
