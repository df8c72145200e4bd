"""End to end: one ecmta delivers to a second ecmta, to Postfix's smtp-sink (SMTP and LMTP)
and to the recording sink, routed by MX records from dnsmasq; connections are reused; a
binding's bind_address is the source the receiver sees.
"""

import os
import pwd
import shutil
import subprocess
import tempfile

import pytest

from ecmta.tests.delivery.helpers import domain_port, parse_mail, wait_for
from ecmta.tests.harness import free_port


def test_ecmta_delivers_to_a_second_ecmta(mta):
    """A's mail for peer.test goes to B (MX mx.peer.test -> 127.0.0.1, B's port); B keeps it
    (delivery suspended for its own domain) with the body A received, plus its trace lines."""
    b = mta(hostname="b.ecmta.test", relay='"peer.test"',
            tail='Domain "peer.test" {\n  suspend_delivery = true\n}\n')
    a = mta(tail=domain_port("peer.test", b.port))
    a.send("alice@sender.test", ["bob@peer.test"], subject="to the peer", body="line one\r\nline two\r\n")
    [r_a] = a.wait_records("R", 1)
    [d] = a.wait_records("D", 1)
    [r_b] = b.wait_records("R", 1)
    # A's D line: same ids as its R line, the peer's address, first attempt
    assert (d["id"], d["batch"], d["conn"]) == (r_a["id"], r_a["batch"], r_a["conn"])
    assert (d["domain"], d["size"], d["group"], d["binding"], d["retries"], d["ip"]) == \
        ("peer.test", r_a["size"], "default", "default", "0", "127.0.0.1")
    # B received it from A with the original envelope
    assert (r_b["rl"], r_b["rd"], r_b["sl"], r_b["sd"], r_b["ip"], r_b["proto"]) == \
        ("bob", "peer.test", "alice", "sender.test", "127.0.0.1", "esmtp")
    spooled = wait_for(lambda: b.spooled(), what="B's spool")
    [m] = spooled
    assert (m.mailfrom, m.rcptto) == ("alice@sender.test", "bob@peer.test")
    got = parse_mail(m.body)
    assert got["Subject"] == "to the peer"
    assert got.get_payload() == "line one\r\nline two\r\n" or got.get_payload() == "line one\nline two\n"
    received = got.get_all("Received")
    assert any("by b.ecmta.test" in h for h in received), received
    assert any("by a.ecmta.test" in h for h in received), received
    # delivered means removed from A's spool
    wait_for(lambda: not a.spooled(), what="A's spool to empty")


def _smtp_sink(dump: str, port: int, lmtp: bool = False) -> subprocess.Popen:
    exe = shutil.which("smtp-sink", path=os.environ.get("PATH", "") + ":/usr/sbin")
    if exe is None:
        pytest.skip("smtp-sink is not installed (./run-tests installs postfix)")
    args = [exe]
    if os.geteuid() == 0:
        user = "nobody"
        os.chown(dump, pwd.getpwnam(user).pw_uid, -1)
        args += ["-u", user]
    if lmtp:
        args += ["-L"]
    args += ["-d", os.path.join(dump, "%H%M%S."), f"127.0.0.1:{port}", "32"]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    import socket

    def listening():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return proc.poll() is not None
    wait_for(listening, 10, what="smtp-sink to listen")
    assert proc.poll() is None, proc.stderr.read()
    return proc


@pytest.mark.parametrize("lmtp", [False, True], ids=["smtp", "lmtp"])
def test_ecmta_delivers_to_postfix_smtp_sink(mta, lmtp):
    dump = tempfile.mkdtemp(prefix="ecpfx")
    port = free_port()
    proc = _smtp_sink(dump, port, lmtp=lmtp)
    try:
        extra = '  delivery_method = "LMTP"\n  lmtp_port = ' + str(port) + "\n" if lmtp else ""
        a = mta(tail=domain_port("sink.test", port, extra))
        rcpts = [f"user{i}@sink.test" for i in range(3)]
        a.send("alice@sender.test", rcpts, subject="to smtp-sink")
        ds = a.wait_records("D", 3)
        assert sorted(d["domain"] for d in ds) == ["sink.test"] * 3
        assert {d["ip"] for d in ds} == {"127.0.0.1"}

        def dumped():
            files = [os.path.join(dump, f) for f in os.listdir(dump)]
            return files if files else None
        files = wait_for(dumped, what="smtp-sink's dump file")
        text = b"".join(open(f, "rb").read() for f in files)
        # the dump holds the envelope (X-Mail-From / X-Rcpt-To style lines) and the message
        assert b"alice@sender.test" in text
        for r in rcpts:
            assert r.encode() in text
        assert b"Subject: to smtp-sink" in text
    finally:
        proc.kill()
        proc.wait(5)
        shutil.rmtree(dump, ignore_errors=True)


def test_connection_is_reused_for_mail_arriving_within_idle_timeout(mta, sink):
    """idle_timeout keeps a connection open for the next message (conf.ref.idle_timeout):
    three messages sent one after the other, each waited for, use one connection."""
    s = sink()
    a = mta(glob="idle_timeout = 5", tail=domain_port("sink.test", s.port))
    for i in range(3):
        a.send("alice@sender.test", [f"r{i}@sink.test"], subject=f"reuse {i}")
        s.wait_messages(i + 1)
    assert len(s.events("connect")) == 1, s.events("connect")
    assert len(a.wait_records("D", 3)) == 3


def test_connection_closes_after_idle_timeout(mta, sink):
    s = sink()
    a = mta(glob="idle_timeout = 1", tail=domain_port("sink.test", s.port))
    a.send("alice@sender.test", ["r@sink.test"])
    [m] = s.wait_messages(1)
    [c] = wait_for(lambda: s.events("close"), 10, what="the idle connection to close")
    assert 0.7 <= c["t"] - m["t"] <= 4.0, (m, c)


def test_batch_of_recipients_in_one_transaction(mta, sink):
    """Recipients of one message to one domain go in one transaction, up to
    max_recipients_per_batch (digest 3.2: 200 recipients go out as 2 batches)."""
    s = sink()
    a = mta(glob="max_recipients_per_batch = 3", tail=domain_port("sink.test", s.port))
    rcpts = [f"u{i}@sink.test" for i in range(7)]
    a.send("alice@sender.test", rcpts)
    a.wait_records("D", 7)
    msgs = s.messages()
    assert sorted(len(m["rcpts"]) for m in msgs) == [1, 3, 3]
    assert sorted(r for m in msgs for r in m["rcpts"]) == sorted(rcpts)


LUA_BINDING = """\
require("msys.core");
require("msys.extended.message");
local mod = {};
function mod:validate_set_binding(msg)
  if msg:rcptto() == "viab1@bind.test" then
    msg:binding("b1");
  end
  return msys.core.VALIDATE_CONT;
end
msys.registerModule("pick", mod);
"""


def test_binding_uses_its_bind_address(mta, sink):
    """Binding "b1" { bind_address = 127.0.0.2 } chosen by msg:binding("b1") in
    validate_set_binding: the receiver sees 127.0.0.2; the default binding stays 127.0.0.1.
    The D lines name the binding."""
    s = sink()
    a = mta(tail=domain_port("bind.test", s.port) +
            'Binding "b1" {\n  bind_address = 127.0.0.2\n}\n'
            'scriptlet "scriptlet" {\n  script "pick" {\n    source = "policy/pick"\n  }\n}\n',
            files={"policy/pick.lua": LUA_BINDING})
    a.send("alice@sender.test", ["viab1@bind.test"])
    a.send("alice@sender.test", ["plain@bind.test"])
    s.wait_messages(2)
    by_rcpt = {}
    conns = {c["conn"]: c for c in s.events("connect")}
    for m in s.messages():
        for r in m["rcpts"]:
            by_rcpt[r] = conns[m["conn"]]["peer"]
    assert by_rcpt == {"viab1@bind.test": "127.0.0.2", "plain@bind.test": "127.0.0.1"}
    ds = {d["id"]: d for d in a.wait_records("D", 2)}
    rs = {r["rl"]: r for r in a.records("R")}
    assert (rs["viab1"]["group"], rs["viab1"]["binding"]) == ("default", "b1")
    assert (ds[rs["viab1"]["id"]]["group"], ds[rs["viab1"]["id"]]["binding"]) == ("default", "b1")
    assert ds[rs["plain"]["id"]]["binding"] == "default"


def test_large_bodies_from_the_spool_and_dot_transparency(mta, sink):
    """1.5 MB messages (kept in body files by the spool, not resident: max_resident_active_
    queue = 0), one with lines that start with dots: the remote gets the original octets
    after our trace headers."""
    import smtplib

    from ecmta.tests.delivery.helpers import make_message
    s = sink()
    a = mta(glob="max_resident_active_queue = 0", tail=domain_port("sink.test", s.port))
    orig = {}
    for r, body in (("x@sink.test", "hello\r\n"),
                    ("y@sink.test", "\r\n.leading dot\r\n..two\r\n.\r\nend\r\n")):
        orig[r] = make_message("alice@sender.test", r, "big", body, size=1_500_000)
        with smtplib.SMTP("127.0.0.1", a.port, timeout=30) as c:
            assert not c.sendmail("alice@sender.test", [r], orig[r])
    for m in s.wait_messages(2):
        got = s.body(m)
        assert got.endswith(orig[m["rcpts"][0]]), (len(got), len(orig[m["rcpts"][0]]))
    ds = a.wait_records("D", 2)
    assert all(int(d["size"]) > 1_500_000 for d in ds)


def test_dsn_parameters_and_size_are_relayed(mta, sink):
    """RET/ENVID on MAIL and NOTIFY/ORCPT on RCPT go on to a remote that offers DSN; the
    SIZE declared is the size of the message as sent (RFC 1870)."""
    import re
    s = sink(extensions=["PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "DSN", "SIZE"])
    a = mta(tail=domain_port("sink.test", s.port))
    a.send("alice@sender.test", ["x@sink.test"], mail_options=["RET=HDRS", "ENVID=abc123"],
           rcpt_options=["NOTIFY=FAILURE,DELAY", "ORCPT=rfc822;orig@example.org"])
    [m] = s.wait_messages(1)
    [mail] = s.events("mail")
    [rcpt] = s.events("rcpt")
    assert mail["mailfrom"].startswith("MAIL FROM:<alice@sender.test> ")
    assert "RET=HDRS" in mail["mailfrom"] and "ENVID=abc123" in mail["mailfrom"]
    assert rcpt["raw"] == "RCPT TO:<x@sink.test> NOTIFY=FAILURE,DELAY ORCPT=rfc822;orig@example.org"
    size = int(re.search(r"SIZE=(\d+)", mail["mailfrom"]).group(1))
    [r] = a.records("R")
    assert size == m["size"] == int(r["size"]), (size, m["size"], r["size"])
