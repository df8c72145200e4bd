"""exim_logger, postfix_logger, sendmail_logger lines (loggers/mta_formats.py): the line of
each event in the other MTA's documented shape, the id mappings, the property that no data
breaks a line or a field, and those MTAs' own log tools reading our lines: pflogsumm,
eximstats, logwatch's sendmail service."""

import os
import re
import shutil
import subprocess
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecmta.loggers import mta_formats as M
from ecmta.tests.custom_logger.helpers import (MID, TS, delivery, failure, rcpt_rejection,
                                               reception, rejection)


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.delenv("TZ")
    time.tzset()


PF = M.PostfixFormat("mx1.ecmta.test", pid=4242)
EX = M.EximFormat("mx1.ecmta.test", pid=4242)
SM = M.SendmailFormat("mx1.ecmta.test", pid=4242)
QID = "100010012D88AED05"          # postfix_qid(MID)
EID = M.exim_id(MID)
SQID = M.sendmail_qid(MID)

# -- ids ---------------------------------------------------------------------------------------


def test_id_mappings_have_the_other_mtas_syntax_and_are_reversible():
    assert M.postfix_qid(MID) == QID
    assert re.fullmatch(r"[0-9A-F]+", QID)
    assert re.fullmatch(r"[0-9A-Za-z]{6}-[0-9A-Za-z]{6}-[0-9A-Za-z]{2}", EID)
    assert re.fullmatch(r"\w{7,9}\d{5,7}", SQID)            # logwatch's $QueueIDFormat
    assert SQID.endswith("010012")                           # the pid, sendmail style
    seen = {}
    for counter in range(0, 65536, 257):
        c = f"{counter:04X}"[::-1]
        mid = f"{c[:2]}/{c[2:]}-10012-D88AED05"
        got = (M.postfix_qid(mid), M.exim_id(mid), M.sendmail_qid(mid))
        assert got not in seen.values()
        seen[mid] = got
    assert len({v[1] for v in seen.values()}) == len(seen)


# -- Postfix ---------------------------------------------------------------------------------------

def test_postfix_reception():
    assert PF.render(reception()) == [
        f"Jun  6 18:37:49 mx1 postfix/smtpd[4242]: {QID}: client=unknown[10.0.0.1]",
        f"Jun  6 18:37:49 mx1 postfix/cleanup[4242]: {QID}: message-id=<m1@client.test>",
        f"Jun  6 18:37:49 mx1 postfix/qmgr[4242]: {QID}: from=<alice@example.com>, size=1234, "
        "nrcpt=1 (queue active)"]
    auth = reception(ctx_conn={"auth_name": "PLAIN", "auth_user": "joe"})
    assert PF.render(auth)[0].endswith("client=unknown[10.0.0.1], sasl_method=PLAIN, sasl_username=joe")


def test_postfix_bounce_reception_has_no_smtpd_line():
    lines = PF.render(reception(protocol="internal", sender_local="", sender_domain="", headers={}))
    assert [ln.split()[4] for ln in lines] == ["postfix/cleanup[4242]:", "postfix/qmgr[4242]:"]
    assert lines[0].endswith("message-id=<>") and "from=<>, size=1234" in lines[1]


def test_postfix_delivery():
    assert PF.render(delivery()) == [
        f"Jun  6 18:37:50 mx1 postfix/smtp[4242]: {QID}: to=<bob@example.net>, "
        "relay=mx.example.net[192.0.2.25]:25, delay=1.2, delays=1.2/0/0/0, dsn=2.0.0, "
        "status=sent (250 2.0.0 Ok: queued as 4F1AB)",
        f"Jun  6 18:37:50 mx1 postfix/qmgr[4242]: {QID}: removed"]


def test_postfix_deferral_and_bounce():
    [deferred] = PF.render(failure(False))
    assert deferred == (
        f"Jun  6 18:37:51 mx1 postfix/smtp[4242]: {QID}: to=<bob@example.net>, "
        "relay=mx.example.net[192.0.2.25]:25, delay=66, delays=66/0/0/0, dsn=4.7.1, "
        "status=deferred (host mx.example.net[192.0.2.25] said: 451 4.7.1 greylisted "
        "(in reply to RCPT TO command))")
    bounced, removed = PF.render(failure(True, stage=9, response="554 5.7.1 spam"))
    assert bounced.endswith("dsn=5.7.1, status=bounced (host mx.example.net[192.0.2.25] said: "
                            "554 5.7.1 spam (in reply to end of DATA command))")
    assert removed.endswith(f"{QID}: removed")
    [nohost] = PF.render(failure(False, remote_ip="", mx_host="", remote_port=0, stage=0,
                                 response="451 4.4.1 [internal] No valid hosts"))
    assert " postfix/error[4242]: " in nohost
    assert "relay=none, " in nohost and nohost.endswith("status=deferred (451 4.4.1 [internal] No valid hosts)")
    [banner] = PF.render(failure(False, stage=12, response="421 4.3.2 busy"))
    assert banner.endswith("(host mx.example.net[192.0.2.25] refused to talk to me: 421 4.3.2 busy)")


def test_postfix_rejections():
    assert PF.render(rejection()) == [
        "Jun  6 18:37:49 mx1 postfix/smtpd[4242]: NOQUEUE: reject: CONNECT from unknown[10.79.11.157]: "
        "550 relaying denied; proto=SMTP"]
    assert PF.render(rcpt_rejection()) == [
        "Jun  6 18:37:49 mx1 postfix/smtpd[4242]: NOQUEUE: reject: RCPT from unknown[10.79.11.157]: "
        "550 5.7.1 relaying denied; from=<alice@example.com> to=<x@elsewhere.test> proto=ESMTP "
        "helo=<client.test>"]
    [data] = PF.render(rcpt_rejection(msg_id=MID, rcptto="bob@example.net", phase="data", command="",
                                      code=554, text="5.7.1 spam"))
    assert f"postfix/smtpd[4242]: {QID}: reject: END-OF-MESSAGE from unknown[10.79.11.157]: 554 5.7.1 spam;" in data


# -- Exim ------------------------------------------------------------------------------------------

def test_exim_reception():
    assert EX.render(reception()) == [
        f"2012-06-06 18:37:49 {EID} <= alice@example.com H=(client.test) [10.0.0.1]:4321 P=esmtp "
        "S=1234 id=m1@client.test for bob@example.net"]
    tls_auth = reception(ctx_conn={"ehlo_domain": "c.test", "ehlo_string": "EHLO c.test", "tls": "on",
                                   "tls_protocol": "TLSv1.3", "tls_cipher": "TLS_AES_256_GCM_SHA384",
                                   "tls_cipher_usebits": "256", "auth_name": "PLAIN", "auth_user": "joe"})
    assert EX.render(tls_auth) == [
        f"2012-06-06 18:37:49 {EID} <= alice@example.com H=(c.test) [10.0.0.1]:4321 P=esmtpsa "
        "X=TLSv1.3:TLS_AES_256_GCM_SHA384:256 A=plain:joe S=1234 id=m1@client.test for bob@example.net"]
    bounce = reception(protocol="internal", sender_local="", sender_domain="", headers={})
    assert EX.render(bounce) == [f"2012-06-06 18:37:49 {EID} <= <> U=ecelerity P=local S=1234 for bob@example.net"]


def test_exim_delivery_and_completion():
    tls = {"outbound_tls_protocol": "TLSv1.2", "outbound_tls_cipher": "ECDHE-RSA-AES128-GCM-SHA256",
           "outbound_tls_cipher_usebits": "128", "outbound_tls_verified": "verified"}
    assert EX.render(delivery(tls=tls, remote_port=2525)) == [
        f"2012-06-06 18:37:50 {EID} => bob@example.net R=dnslookup T=remote_smtp H=mx.example.net "
        "[192.0.2.25]:2525 X=TLSv1.2:ECDHE-RSA-AES128-GCM-SHA256:128 CV=yes "
        "C=\"250 2.0.0 Ok: queued as 4F1AB\"",
        f"2012-06-06 18:37:50 {EID} Completed"]


def test_exim_deferral_and_failure():
    assert EX.render(failure(False)) == [
        f"2012-06-06 18:37:51 {EID} == bob@example.net R=dnslookup T=remote_smtp defer (-44) "
        "H=mx.example.net [192.0.2.25]: SMTP error from remote mail server after RCPT TO:<bob@example.net>: "
        "451 4.7.1 greylisted"]
    assert EX.render(failure(True)) == [
        f"2012-06-06 18:37:51 {EID} ** bob@example.net R=dnslookup T=remote_smtp H=mx.example.net "
        "[192.0.2.25]: SMTP error from remote mail server after RCPT TO:<bob@example.net>: "
        "550 5.1.1 no such user",
        f"2012-06-06 18:37:51 {EID} Completed"]
    [mail] = EX.render(failure(False, stage=2, response="452 4.3.1 full"))
    assert "defer (-45) H=mx.example.net [192.0.2.25]: SMTP error from remote mail server after " \
           "MAIL FROM:<alice@example.com>: 452 4.3.1 full" in mail
    [dot] = EX.render(failure(False, stage=9, response="451 4.3.0 later"))
    assert "defer (-46)" in dot and "after end of data: 451 4.3.0 later" in dot
    [banner] = EX.render(failure(False, stage=12, response="421 4.3.2 busy"))
    assert "defer (-18) H=mx.example.net [192.0.2.25]: SMTP error from remote mail server after " \
           "initial connection: 421 4.3.2 busy" in banner
    [nohost] = EX.render(failure(False, remote_ip="", mx_host="", stage=0, response="451 4.4.1 [internal] x"))
    assert nohost.endswith("== bob@example.net R=dnslookup T=remote_smtp defer (-1): 451 4.4.1 [internal] x")


def test_exim_rejections():
    assert EX.render(rejection()) == [
        "2012-06-06 18:37:49 H=[10.79.11.157]:40587 rejected connection in \"connect\" ACL: relaying denied"]
    assert EX.render(rcpt_rejection()) == [
        "2012-06-06 18:37:49 H=(client.test) [10.79.11.157]:40587 F=<alice@example.com> rejected RCPT "
        "<x@elsewhere.test>: relaying denied"]
    [temp] = EX.render(rcpt_rejection(code=451, text="4.7.1 try later"))
    assert "temporarily rejected RCPT <x@elsewhere.test>: try later" in temp
    [mail] = EX.render(rcpt_rejection(command="MailFrom", batch_id="", phase="awaiting mailfrom"))
    assert mail.endswith("H=(client.test) [10.79.11.157]:40587 rejected MAIL <alice@example.com>: relaying denied")
    [ehlo] = EX.render(rejection(command="Helo", text="5.5.2 bad helo",
                                 ctx_conn={"ehlo_domain": "x", "ehlo_string": "HELO x"}))
    assert ehlo == "2012-06-06 18:37:49 rejected HELO from (x) [10.79.11.157]:40587: bad helo"
    [data] = EX.render(rcpt_rejection(msg_id=MID, rcptto="b@e.test", phase="data", command="", text="5.7.1 spam"))
    assert data == (f"2012-06-06 18:37:49 {EID} H=(client.test) [10.79.11.157]:40587 F=<alice@example.com> "
                    "rejected after DATA: spam")


# -- sendmail --------------------------------------------------------------------------------------

def test_sendmail_reception_and_delivery():
    assert SM.render(reception()) == [
        f"Jun  6 18:37:49 mx1 sm-mta[4242]: {SQID}: from=<alice@example.com>, size=1234, class=0, "
        "nrcpts=1, msgid=<m1@client.test>, proto=ESMTP, daemon=MTA, relay=[10.0.0.1]"]
    assert SM.render(delivery()) == [
        f"Jun  6 18:37:50 mx1 sm-mta[4242]: {SQID}: to=<bob@example.net>, delay=00:00:01, "
        "xdelay=00:00:00, mailer=esmtp, pri=31234, relay=mx.example.net. [192.0.2.25], dsn=2.0.0, "
        "stat=Sent (Ok: queued as 4F1AB)"]
    assert "proto=ESMTPSA" in SM.render(reception(ctx_conn={"ehlo_string": "EHLO x", "tls": "on",
                                                            "auth_user": "joe", "auth_name": "PLAIN"}))[0]


def test_sendmail_failures_and_rejections():
    assert SM.render(failure(False)) == [
        f"Jun  6 18:37:51 mx1 sm-mta[4242]: {SQID}: to=<bob@example.net>, delay=00:01:05, xdelay=00:00:00, "
        "mailer=esmtp, pri=121234, relay=mx.example.net. [192.0.2.25], dsn=4.7.1, "
        "stat=Deferred: 451 4.7.1 greylisted"]
    [bounced] = SM.render(failure(True, seconds=90061))
    assert bounced.endswith("delay=1+01:01:01, xdelay=00:00:00, mailer=esmtp, pri=121234, "
                            "relay=mx.example.net. [192.0.2.25], dsn=5.1.1, stat=no such user")
    [nohost] = SM.render(failure(False, remote_ip="", mx_host="", response="451 4.4.1 [internal] x"))
    assert "mailer=esmtp, pri=121234, dsn=4.4.1, stat=Deferred: 451 4.4.1 [internal] x" in nohost
    assert SM.render(rejection()) == [
        "Jun  6 18:37:49 mx1 sm-mta[4242]: NOQUEUE: ruleset=check_relay, arg1=[10.79.11.157], "
        "arg2=10.79.11.157, relay=[10.79.11.157], reject=550 relaying denied"]
    assert SM.render(rcpt_rejection()) == [
        f"Jun  6 18:37:49 mx1 sm-mta[4242]: {M.sendmail_qid('20/00-10012-D88AED05')}: ruleset=check_rcpt, "
        "arg1=<x@elsewhere.test>, relay=[10.79.11.157], reject=550 5.7.1 relaying denied"]


def test_log_transient_failures_off_skips_deferrals():
    actor = M.MtaLoggerActor.__new__(M.MtaLoggerActor)
    actor.fmt, actor.log_transient = PF, False
    assert list(actor.render(failure(False))) == []
    assert len(list(actor.render(failure(True)))) == 2


# -- properties --------------------------------------------------------------------------------------

PF_LINE = re.compile(r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d mx1 postfix/(\w+)\[4242\]: ([0-9A-F]+|NOQUEUE): (.*)$")
PF_TO = re.compile(r"to=<([^>]*)>, relay=([^,]+), delay=([^,]+), delays=[^,]+, dsn=\d\.\d+\.\d+, "
                   r"status=(sent|deferred|bounced) \(")
PF_FROM = re.compile(r"^from=<([^>]*)>, size=(\d+), nrcpt=1 \(queue active\)$")
EX_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (?:([0-9A-Za-z]{6}-[0-9A-Za-z]{6}-[0-9A-Za-z]{2}) "
                     r"(<=|=>|==|\*\*|Completed)|H=)")
SM_LINE = re.compile(r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d mx1 sm-mta\[4242\]: (\w{7,9}\d{5,7}|NOQUEUE): "
                     r"(from=<[^,<>]*>, size=\d+, class=0, nrcpts=1, |to=<[^,<>]*>, delay=[\d:+]+, |"
                     r"ruleset=check_\w+, arg1=[^,]*, |Milter: data, reject=)")

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)


@settings(max_examples=150, deadline=None)
@given(local=text, domain=text, sender=text, reply=text, helo=text, mid_header=text)
def test_no_data_breaks_a_line_or_a_field(local, domain, sender, reply, helo, mid_header):
    conn = {"ehlo_domain": helo, "ehlo_string": f"EHLO {helo}"}
    recs = {
        "R": reception(rcpt_local=local, rcpt_domain=domain, sender_local=sender, ctx_conn=conn,
                       headers={"message-id": mid_header}),
        "D": delivery(rcpt_local=local, rcpt_domain=domain, response="250 " + reply, mx_host=helo),
        "T": failure(False, rcpt_local=local, rcpt_domain=domain, response="451 " + reply),
        "P": failure(True, rcpt_local=local, rcpt_domain=domain, response="550 " + reply),
        "J": rcpt_rejection(text=reply, mailfrom=f"{sender}@{domain}", ctx_conn=conn,
                            ctx_mess={"rcptto_localpart": local, "rcptto_domain": domain}),
    }
    counts = {"R": (3, 1, 1), "D": (2, 2, 1), "T": (1, 1, 1), "P": (2, 2, 1), "J": (1, 1, 1)}
    for kind, rec in recs.items():
        pf, ex, sm = PF.render(rec), EX.render(rec), SM.render(rec)
        assert (len(pf), len(ex), len(sm)) == counts[kind]
        for ln in pf + ex + sm:
            assert "\n" not in ln and "\r" not in ln
        for ln in pf:
            m = PF_LINE.match(ln)
            assert m, ln
            body = m.group(3)
            if kind in ("D", "T", "P") and m.group(1) != "qmgr":
                to = PF_TO.search(body)
                assert to and to.group(1) == M._pf_addr(M.address(local, domain)), ln
            if kind == "R" and m.group(1) == "qmgr":
                assert PF_FROM.match(body), ln
        for ln in ex:
            assert EX_LINE.match(ln), ln
            # the address field is one token
            if " <= " in ln or " => " in ln or " == " in ln or " ** " in ln:
                assert len(ln.split(" ")[4].split()) == 1
        for ln in sm:
            assert SM_LINE.match(ln), ln


# -- the other MTAs' own tools ------------------------------------------------------------------------

def _now_records():
    """A realistic day: four messages received, two delivered, one deferred, one bounced,
    two rejections (connection, RCPT)."""
    now = time.time() - 60
    ids = [f"{n}0/00-10012-D88AED05" for n in range(1, 5)]
    out = [reception(ts=now, msg_id=i, size=1000 * (k + 1)) for k, i in enumerate(ids)]
    out += [delivery(ts=now + 1, msg_id=ids[0], size=1000),
            delivery(ts=now + 1, msg_id=ids[3], size=4000, rcpt_domain="example.org"),
            failure(False, ts=now + 2, msg_id=ids[1], size=2000),
            failure(True, ts=now + 2, msg_id=ids[2], size=3000),
            rejection(ts=now + 3), rcpt_rejection(ts=now + 3)]
    return out


def _write(tmp_path, fmt, name):
    path = tmp_path / name
    path.write_text("".join(ln + "\n" for rec in _now_records() for ln in fmt.render(rec)))
    return path


def _tool(name, *extra):
    for d in (os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin").split(":") + list(extra):
        p = os.path.join(d, name) if d else ""
        if p and os.access(p, os.X_OK):
            return p
    return None


def test_pflogsumm_reads_our_postfix_log(tmp_path):
    exe = _tool("pflogsumm")
    if exe is None:
        pytest.skip("pflogsumm is not installed (apt-get install pflogsumm)")
    path = _write(tmp_path, PF, "mail.log")
    out = subprocess.run([exe, "-i", str(path)], capture_output=True, text=True, timeout=60).stdout
    totals = {m.group(2): int(m.group(1)) for m in re.finditer(r"^\s+(\d+)\s+(\w+(?: \w+)?)", out, re.M)}
    assert totals["received"] == 4, out
    assert totals["delivered"] == 2
    assert totals["deferred"] == 1
    assert totals["bounced"] == 1
    assert totals["rejected"] == 2
    assert totals["bytes received"] == 10000
    assert totals["bytes delivered"] == 5000
    assert "example.net" in out and "example.org" in out
    assert "relaying denied" in out


def test_eximstats_reads_our_exim_log(tmp_path):
    exe = _tool("eximstats", "/tmp/exim4x/usr/sbin")
    if exe is None:
        pytest.skip("eximstats is not installed (it comes with exim4-base)")
    path = _write(tmp_path, EX, "mainlog")
    out = subprocess.run(["perl", exe, "-ne", "-nr", "-nt", str(path)], capture_output=True, text=True,
                         timeout=60).stdout
    received = re.search(r"^\s+Received\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\S+)\s+(\d+)\s+(\S+)", out, re.M)
    assert received, out
    assert received.group(1) in ("10000", "9KB", "10KB") and received.group(2) == "4"
    assert (received.group(4), received.group(6)) == ("1", "1")          # delayed, failed
    delivered = re.search(r"^\s+Delivered\s+(\S+)\s+(\d+)\s+(\d+)", out, re.M)
    assert delivered and delivered.group(2) == "2" and delivered.group(3) == "2", out
    rejects = re.search(r"^\s+Rejects\s+(\d+)", out, re.M)
    assert rejects and rejects.group(1) == "2", out


def test_logwatch_sendmail_service_reads_our_sendmail_log(tmp_path):
    script = "/usr/share/logwatch/scripts/services/sendmail"
    if not os.path.exists(script) or shutil.which("perl") is None:
        pytest.skip("logwatch is not installed (apt-get install logwatch)")
    path = _write(tmp_path, SM, "maillog")
    # what logwatch's *RemoveHeaders / *MultiService filters hand the service script
    body = "".join(re.sub(r"^[A-Z][a-z]{2} [ \d]\d [\d:]{8} \S+ sm-mta\[\d+\]: ", "", ln) + "\n"
                   for ln in path.read_text().splitlines())
    env = dict(os.environ, PERL5LIB="/usr/share/logwatch/lib", LOGWATCH_DETAIL_LEVEL="10",
               sendmail_relaydeniedthreshold="1", sendmail_checkrcptrejectthreshold="1")
    out = subprocess.run(["perl", script], input=body, capture_output=True, text=True, env=env,
                         timeout=60).stdout
    assert re.search(r"Messages To Recipients:\s+4", out), out
    assert re.search(r"Bytes Transferred:\s+10000", out), out
    assert re.search(r"^esmtp\s+2$", out, re.M), out
    assert "Mail Deferred:" in out and "451 4.7.1 greylisted" in out
    assert "Mail Rejected:" in out and "no such user" in out
    assert "relaying denied" in out
