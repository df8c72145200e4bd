"""Real daemons with custom_logger, exim_logger, postfix_logger and sendmail_logger stanzas:
one message to four gateway domains (Postfix's smtp-sink accepts, a scripted server answers
RCPT with 451 or 550, a closed port refuses), a recipient refused for relaying, a
connection refused by policy, an authenticated message; each module's lines for each event,
its files and modes, jlog:// and syslog:// destinations, the paniclog, thread_pool, config
errors and reloads, and pflogsumm / eximstats reading the daemon's own logs."""

import base64
import os
import re
import shutil
import smtplib
import socket
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from ecmta.actors.smtp_auth import add_user
from ecmta.loggers import mta_formats as M
from ecmta.tests.custom_logger.helpers import (read_lines, start, wait_for, wait_lines)
from ecmta.tests.harness import free_port

ID = r"[0-9A-F]{2}/[0-9A-F]{2}-\d{5}-[0-9A-F]{8}"
NULL = "00/00-00000-00000000"
RCPTS = ["bob@sink.test", "carol@defer.test", "dave@fail.test", "erin@closed.test"]

POLICY = """\
require("msys.core");
require("msys.extended.message");
require("msys.extended.vctx");
local mod = {};
function mod:validate_connect(ac, vctx)
  if vctx:get(msys.core.VCTX_CONN, "peer_hint") == "refuse" then
    vctx:set_code(550, "relaying denied")
    return msys.core.VALIDATE_DONE
  end
  return msys.core.VALIDATE_CONT
end
function mod:validate_data_spool_each_rcpt(msg, ac, vctx)
  msg:context_set(msys.core.ECMESS_CTX_MESS, "customerid", "c-" .. (string.gsub(msg:rcptto(), "@", "+")))
  return msys.core.VALIDATE_CONT
end
msys.registerModule("tag", mod);
"""
SCRIPTLET = 'scriptlet "scriptlet" {\n  script "tag" {\n    source = "policy/tag"\n  }\n}\n'
REFUSE_LISTEN = '  Listen "127.0.0.1:$refuse" {\n    Context = [ peer_hint = "refuse" ]\n  }\n'

PAGE_REJECTION_FORMAT = ("%p @ %s @ %BI @ %A @ %U @ %n @ %h{Subject} @ %r @ %R @ %m @ %M @ %i @ %t "
                         "@ %t{%Y-%m-%d} @ %H @ %mx @ %S")

CUSTOM = SCRIPTLET + """
custom_logger "custom_logger1" {
  mainlog = "$home/log/customlog.cl"
  mainlog_mode = 0600
  reception_logfile = "$home/log/reception.cl"
  reception_format = "%t@%i@%BI@%CI@R@%r@%R@%m@%M@%H@%B@%p@%g@%b@%h{Subject}@%vctx_conn{ehlo_domain}@%A@%U"
  delivery_logfile = "$home/log/delivery.cl"
  delivery_log_mode = 0640
  delivery_format = "%t@%i@D@%d@%H@%N@%T{3}@%n@%h{Subject}@%vctx_mess{customerid}@%{vctx_conn:ehlo_domain}"
  transient_failure_logfile = "$home/log/transient.cl"
  transient_failure_format = "%t@%i@T@%d@%H@%S@%s@%n@%C"
  permanent_failure_logfile = "$home/log/permanent.cl"
  permanent_failure_format = "%t@%i@P@%d@%H@%S@%s@%n@%C@%c"
  rejection_logfile = "$home/log/rejection.cl"
  rejection_format = "REJECTION_FORMAT"
  sanitize = "special_characters"
  log_errors = on
  paniclog = "$home/log/custom_panic.cl"
}
""".replace("REJECTION_FORMAT", PAGE_REJECTION_FORMAT)


def _send_all(m):
    m.send("alice@sender.test", RCPTS, subject="hi there")
    code, text = m.refused_rcpt("alice@sender.test", "x@elsewhere.test")
    assert code == 550 and b"relaying denied" in text, (code, text)
    with pytest.raises((smtplib.SMTPConnectError, smtplib.SMTPServerDisconnected)):
        smtplib.SMTP("127.0.0.1", m.d.ports["refuse"], timeout=10)


@pytest.fixture
def custom(daemon_factory, servers):
    m = start(daemon_factory, {**servers, "refuse": free_port()}, CUSTOM, listen=REFUSE_LISTEN,
              files={"policy/tag.lua": POLICY})
    _send_all(m)
    return m


def test_custom_logger_stage_files(custom):
    m = custom
    log = lambda name: m.path("log", name)  # noqa: E731
    lines = wait_lines(log("reception.cl"), lambda ls: len(ls) >= 4, "4 reception lines")
    # the bounce for dave@fail.test may be received by then too (from <> on "internal")
    recs = [ln for ln in lines if "@esmtp@" in ln]
    assert len(recs) == 4 and all("@R@alice@sender.test@@@127.0.0.1@" in ln and "@internal@" in ln
                                  for ln in lines if ln not in recs), lines
    rx = re.compile(rf"^(\d+)@({ID})@({ID})@({ID})@R@(\w+)@([\w.]+)@alice@sender\.test@127\.0\.0\.1@"
                    r"(\d+)@esmtp@default@default@hi there@client\.test@@$")
    parsed = [rx.match(ln) for ln in recs]
    assert all(parsed), recs
    assert sorted(f"{p.group(5)}@{p.group(6)}" for p in parsed) == sorted(RCPTS)
    assert len({p.group(3) for p in parsed}) == 1 and len({p.group(2) for p in parsed}) == 4
    ids = {f"{p.group(5)}@{p.group(6)}": p.group(2) for p in parsed}

    [d] = wait_lines(log("delivery.cl"), lambda ls: len(ls) >= 1, "the delivery line")
    sink_port = m.d.ports["sink"]
    ts, mid, kind, domain, host, tries, secs, reply, subj, cust, ehlo = d.split("@")
    assert (mid, kind, domain, host, tries, subj, cust, ehlo) == (
        ids["bob@sink.test"], "D", "sink.test", "127.0.0.1", "0", "hi there", "c-bob+sink.test", "client.test")
    assert re.fullmatch(r"\d+\.\d{3}", secs) and reply.startswith("250 ")

    [t] = wait_lines(log("transient.cl"), lambda ls: len(ls) >= 2, "two transient lines")[:1]
    ts_lines = read_lines(log("transient.cl"))
    by_domain = {ln.split("@")[3]: ln for ln in ts_lines}
    assert by_domain["defer.test"] == (f"{by_domain['defer.test'].split('@')[0]}@{ids['carol@defer.test']}@T@"
                                       "defer.test@127.0.0.1@4@during RCPT TO@"
                                       "451 4.7.1 greylisted, try later@70")
    closed = by_domain["closed.test"].split("@")
    assert closed[1:7] == [ids["erin@closed.test"], "T", "closed.test", "", "0", "while not connected"]
    assert closed[7].startswith("451 4.4.1 [internal]")

    perm = wait_lines(log("permanent.cl"), lambda ls: any("fail.test" in ln for ln in ls), "the P line")
    [p] = [ln for ln in perm if "@fail.test@" in ln]
    assert p.split("@")[1:] == [ids["dave@fail.test"], "P", "fail.test", "127.0.0.1", "4", "during RCPT TO",
                                "550 5.1.1 no such user here", "10", "Invalid Recipient"]
    assert sink_port


def test_custom_logger_rejections_and_the_page_example(custom):
    m = custom
    rej = wait_lines(m.path("log", "rejection.cl"), lambda ls: len(ls) >= 2, "two rejection lines")
    connect = [ln for ln in rej if ln.startswith("unknown @ ")]
    rcpt = [ln for ln in rej if ln.startswith("esmtp @ ")]
    assert len(connect) == 1 and len(rcpt) == 1, rej
    # the page's entry for a message rejected during the connect phase, from the same event
    f = connect[0].split(" @ ")
    date = time.strftime("%Y-%m-%d", time.localtime(int(f[12])))
    assert connect[0] == (f"unknown @  @ {NULL} @  @  @ relaying denied @  @  @  @  @  @ {NULL} @ {f[12]} @ "
                          f"{date} @ 127.0.0.1 @  @ 22")
    g = rcpt[0].split(" @ ")
    assert len(g) == 17
    assert (g[5], g[7], g[8], g[9], g[10], g[14], g[16]) == (
        "5.7.1 relaying denied", "x", "elsewhere.test", "alice", "sender.test", "127.0.0.1", "22")
    assert re.fullmatch(ID, g[2]) and g[2] != NULL and g[11] == g[2]


def test_custom_logger_mainlog_modes_and_no_heartbeats(custom):
    m = custom
    main = wait_lines(m.path("log", "customlog.cl"), lambda ls: len(ls) >= 10, "every stage in the mainlog")
    kinds = {ln.split("@")[4] if "@R@" in ln else (ln.split("@")[2] if not ln.startswith(("unknown", "esmtp"))
                                                   else "J") for ln in main}
    assert {"R", "D", "T", "P", "J"} <= kinds, main
    # the mainlog holds exactly the stage files' lines
    stage_lines = sum((read_lines(m.path("log", f)) for f in
                       ("reception.cl", "delivery.cl", "transient.cl", "permanent.cl", "rejection.cl")), [])
    time.sleep(1.2)
    assert sorted(read_lines(m.path("log", "customlog.cl"))) == sorted(
        sum((read_lines(m.path("log", f)) for f in
             ("reception.cl", "delivery.cl", "transient.cl", "permanent.cl", "rejection.cl")), []))
    assert len(stage_lines) >= 10
    assert stat.S_IMODE(os.stat(m.path("log", "customlog.cl")).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(m.path("log", "delivery.cl")).st_mode) == 0o640
    assert stat.S_IMODE(os.stat(m.path("log", "reception.cl")).st_mode) == 0o644
    assert not any("@@@@M" in ln for ln in read_lines(m.path("log", "customlog.cl")))


# -- exim, postfix, sendmail ---------------------------------------------------------------------

MTAS = SCRIPTLET + """
postfix_logger "postfix_logger1" {
  mainlog = "$home/log/postfix/mainlog"
  paniclog = "$home/log/postfix/paniclog"
}
exim_logger "exim_logger1" {
  mainlog = "$home/log/exim/mainlog"
  paniclog = "$home/log/exim/paniclog"
}
exim_logger "exim_quiet" {
  mainlog = "$home/log/exim/quiet"
  log_transient_failures = false
}
sendmail_logger "sendmail_logger1" {
  mainlog = "$home/log/sendmail/mainlog"
  paniclog = "$home/log/sendmail/paniclog"
}
"""


@pytest.fixture
def mtas(daemon_factory, servers):
    m = start(daemon_factory, {**servers, "refuse": free_port()}, MTAS, listen=REFUSE_LISTEN,
              files={"policy/tag.lua": POLICY})
    _send_all(m)
    return m


def _done(lines, n_final):
    """Enough lines: every recipient's outcome (and the bounce of dave's failure) logged."""
    return lambda ls: sum(1 for ln in ls if any(k in ln for k in n_final)) >= 5


def test_postfix_logger_lines(mtas):
    m = mtas
    lines = wait_lines(m.path("log", "postfix", "mainlog"),
                       lambda ls: sum("status=" in ln for ln in ls) >= 5, "five status= lines")
    pre = r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d mx1 postfix/(\w+)\[\d+\]: "
    for ln in lines:
        assert re.match(pre + r"([0-9A-F]{17}|NOQUEUE): ", ln), ln
    clients = [ln for ln in lines if "client=unknown[127.0.0.1]" in ln]
    assert len(clients) == 4
    qmgr = [re.search(r": ([0-9A-F]{17}): from=<alice@sender\.test>, size=(\d+), nrcpt=1", ln) for ln in lines]
    assert len([q for q in qmgr if q]) == 4
    assert sum("message-id=<m1@client.test>" in ln for ln in lines) == 4
    sent = [ln for ln in lines if "status=sent" in ln]
    assert len(sent) == 1 and re.search(
        r"postfix/smtp\[\d+\]: [0-9A-F]{17}: to=<bob@sink\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, "
        r"delay=[\d.]+, delays=[\d./]+, dsn=2\.0\.0, status=sent \(250 ", sent[0]), sent[0]
    deferred = [ln for ln in lines if "status=deferred" in ln]
    assert any("to=<carol@defer.test>" in ln and "dsn=4.7.1" in ln and
               "(host 127.0.0.1[127.0.0.1] said: 451 4.7.1 greylisted, try later (in reply to RCPT TO command))"
               in ln for ln in deferred), deferred
    assert any("postfix/error[" in ln and "to=<erin@closed.test>, relay=none" in ln for ln in deferred)
    bounced = [ln for ln in lines if "status=bounced" in ln and "dave@fail.test" in ln]
    assert len(bounced) == 1 and "dsn=5.1.1" in bounced[0] and \
        "said: 550 5.1.1 no such user here (in reply to RCPT TO command)" in bounced[0]
    rejects = [ln for ln in lines if ": reject: " in ln]
    assert any("NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 550 5.7.1 relaying denied; "
               "from=<alice@sender.test> to=<x@elsewhere.test> proto=ESMTP helo=<client.test>" in ln
               for ln in rejects), rejects
    assert any("NOQUEUE: reject: CONNECT from unknown[127.0.0.1]: 550 relaying denied; proto=SMTP" in ln
               for ln in rejects), rejects
    removed = [ln for ln in lines if ln.endswith(": removed")]
    assert len(removed) >= 2


def test_exim_logger_lines(mtas):
    m = mtas
    lines = wait_lines(m.path("log", "exim", "mainlog"),
                       lambda ls: sum(" => " in ln or " ** " in ln or " == " in ln for ln in ls) >= 4,
                       "the outcomes")
    eid = r"[0-9A-Za-z]{6}-[0-9A-Za-z]{6}-[0-9A-Za-z]{2}"
    stamp = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "
    recv = [ln for ln in lines if re.match(stamp + eid + " <= alice@sender.test ", ln)]
    assert len(recv) == 4
    for ln in recv:
        assert re.search(r" H=\(client\.test\) \[127\.0\.0\.1\]:\d+ P=esmtp S=\d+ id=m1@client\.test for \S+$", ln), ln
    by_id = {ln.split()[2]: ln.split()[-1] for ln in recv}
    out = {}
    for ln in lines:
        f = ln.split()
        if len(f) > 3 and f[3] in ("=>", "==", "**"):
            out.setdefault(f[2], []).append((f[3], ln))
    flags = {by_id[i]: [x[0] for x in v] for i, v in out.items() if i in by_id}
    assert flags == {"bob@sink.test": ["=>"], "carol@defer.test": ["=="], "dave@fail.test": ["**"],
                     "erin@closed.test": ["=="]}
    ok = [ln for ln in lines if " => bob@sink.test " in ln][0]
    assert re.search(r"R=dnslookup T=remote_smtp H=127\.0\.0\.1 \[127\.0\.0\.1\]:\d+ C=\"250 ", ok), ok
    assert any(re.search(r"== carol@defer\.test R=dnslookup T=remote_smtp defer \(-44\) H=127\.0\.0\.1 "
                         r"\[127\.0\.0\.1\]:\d+: SMTP error from remote mail server after RCPT TO:"
                         r"<carol@defer\.test>: 451 4\.7\.1 greylisted, try later$", ln) for ln in lines), lines
    assert any(re.search(r"\*\* dave@fail\.test R=dnslookup T=remote_smtp H=127\.0\.0\.1 \[127\.0\.0\.1\]:\d+: "
                         r"SMTP error from remote mail server after RCPT TO:<dave@fail\.test>: "
                         r"550 5\.1\.1 no such user here$", ln) for ln in lines)
    completed = {ln.split()[2] for ln in lines if ln.endswith(" Completed")}
    assert {i for i, r in by_id.items() if r in ("bob@sink.test", "dave@fail.test")} <= completed
    assert any(re.search(r"H=\(client\.test\) \[127\.0\.0\.1\]:\d+ F=<alice@sender\.test> rejected RCPT "
                         r"<x@elsewhere\.test>: relaying denied$", ln) for ln in lines)
    assert any(re.search(r"H=\[127\.0\.0\.1\]:\d+ rejected connection in \"connect\" ACL: relaying denied$", ln)
               for ln in lines)
    # log_transient_failures = false: no == lines, the rest alike
    quiet = wait_lines(m.path("log", "exim", "quiet"), lambda ls: sum(" ** " in ln for ln in ls) >= 1, "** line")
    assert not any(" == " in ln for ln in quiet) and sum(" <= alice" in ln for ln in quiet) == 4


def test_sendmail_logger_lines(mtas):
    m = mtas
    lines = wait_lines(m.path("log", "sendmail", "mainlog"),
                       lambda ls: sum("stat=" in ln for ln in ls) >= 4, "the stat= lines")
    pre = r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d mx1 sm-mta\[\d+\]: (\w{7,9}\d{5,7}|NOQUEUE): "
    for ln in lines:
        assert re.match(pre, ln), ln
    froms = [ln for ln in lines if ": from=<alice@sender.test>, size=" in ln]
    assert len(froms) == 4
    for ln in froms:
        assert re.search(r"class=0, nrcpts=1, msgid=<m1@client\.test>, proto=ESMTP, daemon=MTA, "
                         r"relay=\[127\.0\.0\.1\]$", ln), ln
    assert any(re.search(r"to=<bob@sink\.test>, delay=\d\d:\d\d:\d\d, xdelay=00:00:00, mailer=esmtp, pri=\d+, "
                         r"relay=127\.0\.0\.1\. \[127\.0\.0\.1\], dsn=2\.0\.0, stat=Sent", ln) for ln in lines)
    assert any("to=<carol@defer.test>" in ln and "dsn=4.7.1, stat=Deferred: 451 4.7.1 greylisted, try later" in ln
               for ln in lines)
    assert any("to=<dave@fail.test>" in ln and "dsn=5.1.1, stat=no such user here" in ln for ln in lines)
    assert any("ruleset=check_rcpt, arg1=<x@elsewhere.test>, relay=[127.0.0.1], "
               "reject=550 5.7.1 relaying denied" in ln for ln in lines)
    assert any("NOQUEUE: ruleset=check_relay, arg1=[127.0.0.1], arg2=127.0.0.1, relay=[127.0.0.1], "
               "reject=550 relaying denied" in ln for ln in lines)
    # one queue id per message: the from= line and its to= line agree
    qids = {re.match(pre, ln).group(1) for ln in froms}
    assert len(qids) == 4
    assert {re.match(pre, ln).group(1) for ln in lines if "to=<" in ln} <= qids | {
        re.match(pre, ln).group(1) for ln in lines if ": from=<>" in ln}


def _tool(name, *extra):
    for d in os.environ.get("PATH", "").split(":") + ["/usr/sbin", "/usr/bin", *extra]:
        p = os.path.join(d, name) if d else ""
        if p and os.access(p, os.X_OK):
            return p
    return None


def test_pflogsumm_and_eximstats_read_the_daemons_logs(mtas):
    m = mtas
    wait_lines(m.path("log", "postfix", "mainlog"), lambda ls: sum("status=" in ln for ln in ls) >= 5,
               "five status= lines")
    wait_lines(m.path("log", "exim", "mainlog"), lambda ls: sum(" ** " in ln for ln in ls) >= 2, "** lines")
    pflogsumm, eximstats = _tool("pflogsumm"), _tool("eximstats", "/tmp/exim4x/usr/sbin")
    if pflogsumm is None and eximstats is None:
        pytest.skip("neither pflogsumm nor eximstats is installed")
    if pflogsumm:
        out = subprocess.run([pflogsumm, "-i", m.path("log", "postfix", "mainlog")], capture_output=True,
                             text=True, timeout=60).stdout
        totals = {t: int(n) for n, t in re.findall(r"^\s+(\d+)\s+(received|delivered|bounced|rejected)", out, re.M)}
        # four received over SMTP (the bounce Momentum generates is not an smtpd reception)
        assert totals == {"received": 4, "delivered": 1, "bounced": 2, "rejected": 2}, out
        assert re.search(r"^\s+2\s+deferred\s+\(2\s+deferrals\)", out, re.M), out
    if eximstats:
        out = subprocess.run(["perl", eximstats, "-ne", "-nr", "-nt", m.path("log", "exim", "mainlog")],
                             capture_output=True, text=True, timeout=60).stdout
        received = re.search(r"^\s+Received\s+\S+\s+(\d+)\s+(\d+)\s+(\d+)\s+\S+\s+(\d+)", out, re.M)
        assert received and received.group(1) == "5", out           # 4 + the bounce
        assert received.group(3) == "2" and received.group(4) == "2", out   # delayed, failed
        assert re.search(r"^\s+Delivered\s+\S+\s+1\s+1", out, re.M), out
        assert re.search(r"^\s+Rejects\s+2", out, re.M), out


# -- authenticated sessions -----------------------------------------------------------------------

AUTHED = """
custom_logger "c" {
  reception_logfile = "$home/log/r.cl"
  reception_format = "%A|%U|%r"
}
postfix_logger "p" { mainlog = "$home/log/p.log" }
exim_logger "e" { mainlog = "$home/log/e.log" }
sendmail_logger "s" { mainlog = "$home/log/s.log" }
"""


def test_auth_method_and_user(daemon_factory, servers):
    m = start(daemon_factory, servers, AUTHED)
    add_user(m.path("auth.db"), "joe", "pw")
    with smtplib.SMTP("127.0.0.1", m.d.ports["smtp"], local_hostname="client.test", timeout=20) as s:
        s.ehlo("client.test")
        code, _ = s.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0joe\0pw").decode())
        assert code == 235
        s.sendmail("joe@sender.test", ["bob@sink.test"], b"Subject: a\r\nMessage-ID: <a@b>\r\n\r\nx\r\n")
    assert wait_lines(m.path("log", "r.cl"), bool, "the R line") == ["PLAIN|joe|bob"]
    [pf] = [ln for ln in wait_lines(m.path("log", "p.log"), lambda ls: len(ls) >= 3, "postfix") if "client=" in ln]
    assert pf.endswith("client=unknown[127.0.0.1], sasl_method=PLAIN, sasl_username=joe")
    [ex] = wait_lines(m.path("log", "e.log"), bool, "exim <=")[:1]
    assert " P=esmtpa A=plain:joe S=" in ex
    [sm] = wait_lines(m.path("log", "s.log"), bool, "sendmail from=")[:1]
    assert "proto=ESMTPA" in sm


# -- destinations, paniclog, pools, configuration ---------------------------------------------------

READER = textwrap.dedent("""
    import json, sys
    from ecmta.loggers.jlog import Jlog
    r = Jlog(sys.argv[1]).open_reader(sys.argv[2])
    out = [data.decode() for _id, (_ts, data) in r.pending()]
    r.close()
    print(json.dumps(out))
""")


def test_jlog_and_syslog_destinations(daemon_factory, servers):
    """The jlog page's custom_logger (delivery_logfile = jlog://...=>my_subscriber) and a
    syslog:// rejection log through syslog_io's datagram socket."""
    import json
    sockdir = __import__("tempfile").mkdtemp(prefix="ecsl", dir="/tmp")
    sock_path = os.path.join(sockdir, "log")
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(sock_path)
    rx.settimeout(20)
    try:
        tail = f"""
syslog_io {{
  ident = "ecmta-test"
  socket = "{sock_path}"
}}
custom_logger "custom_logger_jlog" {{
  delivery_logfile = "jlog://$home/log/delivery_log_rt=>my_subscriber"
  delivery_format = "%t@%r@%R@%vctx_mess{{customerid}}"
  rejection_logfile = "syslog://?facility=local3&priority=warning"
  rejection_format = "%H %n %r@%R"
}}
""" + SCRIPTLET
        m = start(daemon_factory, servers, tail, files={"policy/tag.lua": POLICY})
        m.send("alice@sender.test", ["bob@sink.test"])
        code, _ = m.refused_rcpt("alice@sender.test", "x@elsewhere.test")
        assert code == 550
        data, _ = rx.recvfrom(65536)
        text = data.decode()
        # <PRI> = local3 (19) * 8 + warning (4) = 156
        assert re.fullmatch(r"<156>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d ecmta-test\[\d+\]: "
                            r"127\.0\.0\.1 5\.7\.1 relaying denied x@elsewhere\.test", text), text
        path = m.path("log", "delivery_log_rt")

        def records():
            p = subprocess.run([sys.executable, "-c", READER, path, "my_subscriber"], capture_output=True,
                               text=True, timeout=60)
            got = json.loads(p.stdout) if p.returncode == 0 else []
            return got or None
        [rec] = wait_for(records, what="the jlog record")
        assert re.fullmatch(r"\d+@bob@sink\.test@c-bob\+sink\.test\n?", rec), rec
    finally:
        rx.close()
        shutil.rmtree(sockdir, ignore_errors=True)


NOTES = """
ThreadPool "custom_logger1_pool" {
  concurrency = 1
  backlog = 1024
}
custom_logger "custom_logger1" {
  thread_pool = "custom_logger1_pool"
  concurrency = 2
  log_deliveries = on
  log_errors = on
  paniclog = "$home/log/custom_panic.cl"
  reception_logfile = "$home/log/r.cl"
  reception_format = "%t %i"
}
postfix_logger "p" {
  mainlog = "$home/log/p.log"
  paniclog = "$home/log/p_panic.log"
}
custom_logger "quiet" {
  paniclog = "$home/log/quiet_panic.cl"
  reception_logfile = "$home/log/q.cl"
  reception_format = "%t"
}
"""


def test_paniclog_thread_pool_and_a_switch_without_format(daemon_factory, servers):
    m = start(daemon_factory, servers, NOTES)
    note = 'custom_logger "custom_logger1": log_deliveries is on but delivery_format is not set'
    for name in ("paniclog.ec", "custom_panic.cl", "p_panic.log"):
        lines = wait_lines(m.path("log", name), lambda ls: any(note in ln for ln in ls), "the note")
        assert re.match(r"^\d+:custom_logger: " + re.escape(note), [ln for ln in lines if note in ln][0])
    # log_errors is off (the default) for "quiet": its paniclog stays empty
    assert read_lines(m.path("log", "quiet_panic.cl")) == []
    m.send("alice@sender.test", ["bob@sink.test"])
    wait_lines(m.path("log", "r.cl"), bool, "the R line (written from the named pool)")
    assert read_lines(m.path("log", "q.cl"))


def test_configuration_errors(daemon_factory, servers):
    for tail, problem in (
            ('custom_logger "c" {\n  sanitize = "shout"\n  mainlog = "$home/c"\n}\n', "unknown sanitize rule"),
            ('custom_logger "c" {\n  mainlog = "$home/c"\n  reception_format = "%t{%Y"\n}\n', "unterminated"),
            ('custom_logger "c" {\n  thread_pool = "nope"\n  mainlog = "$home/c"\n  reception_format = "%t"\n}\n',
             "no such ThreadPool"),
            ('exim_logger "e" {\n  mainlog = "syslog://?facility=nowhere"\n}\n', "unknown syslog facility"),
            ('custom_logger "c" {\n  mainlog = "pipe://x"\n  reception_format = "%t"\n}\n', "pipe://")):
        d = start(daemon_factory, servers, tail, wait=False).d
        deadline = time.monotonic() + 20
        while d.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert d.proc.poll() not in (None, 0), tail
        assert problem in d.stderr(), (problem, d.stderr()[-2000:])


def test_config_reload_changes_formats_and_keeps_them_on_error(daemon_factory, servers):
    tail = 'custom_logger "c" {\n  reception_logfile = "$home/log/r.cl"\n  reception_format = "one %r"\n}\n'
    m = start(daemon_factory, servers, tail)
    m.send("alice@sender.test", ["bob@sink.test"])
    wait_lines(m.path("log", "r.cl"), lambda ls: ls == ["one bob"], "the first format")
    m.d.config_body = m.d.config_body.replace('"one %r"', '"two %r@%R"')
    m.d.write_config()
    assert m.d.ok("config reload") == ""
    m.send("alice@sender.test", ["carol@sink.test"])
    wait_lines(m.path("log", "r.cl"), lambda ls: ls == ["one bob", "two carol@sink.test"], "the new format")
    m.d.config_body = m.d.config_body.replace('"two %r@%R"', '"three %t{%Y"')
    m.d.write_config()
    assert "unterminated" in m.d.ok("config reload")
    m.send("alice@sender.test", ["dave@sink.test"])
    wait_lines(m.path("log", "r.cl"), lambda ls: ls[-1:] == ["two dave@sink.test"], "the kept format")


# -- TLS ------------------------------------------------------------------------------------------

def test_tls_macros_and_exim_tls_fields_of_a_delivery_over_tls(daemon_factory, servers, tmp_path):
    """tls_macros' example formats against a real STARTTLS delivery (the delivery tests'
    recording sink with a certificate of the tests' CA)."""
    from ecmta.tests.delivery.helpers import Sink, make_certs
    certs = make_certs(str(tmp_path))
    sink = Sink(tls={"cert": certs.server_cert, "key": certs.server_key})
    try:
        tail = f"""
Domain "tls.test" {{
  Gateway = "127.0.0.1:{sink.port}"
  tls = required
  tls_verify = ca
  tls_ca = "{certs.ca}"
}}
tls_macros {{}}
custom_logger "custom_logger1" {{
  namespace = "custom_logger,sieve,outbound_tls"
  mainlog = "$home/log/customlog.cl"
  reception_format = "R@%r@%R@%outbound_tls@%outbound_tls_type"
  delivery_format = "D@%r@%R%local_ip@%outbound_tls@%outbound_tls_type@%outbound_tls_cipher@%outbound_tls_cipher_algbits@%outbound_tls_cipher_usebits@%outbound_tls_protocol@%outbound_tls_verified@%outbound_tls_issuer@%outbound_tls_subject"
}}
exim_logger "e" {{ mainlog = "$home/log/exim.log" }}
"""
        m = start(daemon_factory, servers, tail)
        m.send("alice@sender.test", ["tom@tls.test", "bob@sink.test"])
        lines = wait_lines(m.path("log", "customlog.cl"), lambda ls: sum(ln.startswith("D@") for ln in ls) >= 2,
                           "two D lines")
        assert "R@tom@tls.test@unknown@" in lines
        [tls] = [ln for ln in lines if ln.startswith("D@tom@")]
        f = tls.split("@")
        assert f[:4] == ["D", "tom", "tls.test127.0.0.1", "TLS"] and f[4] == "required", tls
        assert f[5] and f[6].isdigit() and f[7].isdigit() and f[8].startswith("TLSv1")
        assert f[9] == "verified" and f[10] and f[11], tls
        [clear] = [ln for ln in lines if ln.startswith("D@bob@")]
        assert clear == "D@bob@sink.test127.0.0.1@SMTP@no@@@@@@@"
        ex = wait_lines(m.path("log", "exim.log"), lambda ls: sum(" => " in ln for ln in ls) >= 2, "=> lines")
        [tls_line] = [ln for ln in ex if " => tom@tls.test " in ln]
        assert re.search(r" X=TLSv1\.\d:\S+:\d+ CV=yes C=\"250", tls_line), tls_line
    finally:
        sink.proc.kill()
        sink.proc.wait(5)


def test_concurrency_gives_the_instance_a_pool_of_its_own(daemon_factory, servers):
    m = start(daemon_factory, servers, 'custom_logger "cl2" {\n  concurrency = 3\n'
              '  reception_logfile = "$home/log/cl2.cl"\n  reception_format = "%t %i"\n}\n')
    ok, out = m.d.console("threads stats")
    assert ok and "CUSTOM_LOGGER:CL2 thread pool: concurrency 3" in out
    m.send("alice@sender.test", ["bob@sink.test"])
    wait_lines(m.path("log", "cl2.cl"), bool, "the R line")
