"""STARTTLS, implicit TLS (Use_SSL) and SMTP AUTH over the wire, with certificates made by
`cryptography` for this run: smtplib, swaks and a byte-exact client; every AUTH mechanism in
and out of TLS against the default SQLite credential source, file:// and digest:// sources,
acctlog lines, client certificates and tls_verified_peer_can_relay.

Listens of the module's daemon (TLS certificate on the listener):
  $smtp    STARTTLS + AUTH PLAIN LOGIN CRAM-MD5, default SQLite source (auth.db), acctlog on
  $ssl     Use_SSL = true, same AUTH
  $files   AUTH LOGIN from file://, PLAIN from digest://, CRAM-MD5 from file://
  $verify  STARTTLS with TLS_Client_CA, TLS_Verified_Peer_Can_Relay = true
  $strict  STARTTLS, TLS_Protocols = "+ALL:-TLSv1:-TLSv1.1:-TLSv1.2" (TLS 1.3 only)
  $notls   no certificate: STARTTLS is not offered
"""

from __future__ import annotations

import base64
import hashlib
import re
import smtplib
import ssl
import subprocess

import pytest

from ecmta.actors.smtp_auth import add_user
from ecmta.tests.harness import free_port
from ecmta.tests.reception.helpers import (EXTENSIONS, Shared, auth_plain, cram_response,
                                           ctx_pairs, local_port, message, queue_id, start_mta,
                                           wait_for)

USER, PASSWORD = "alice", "s3cr3t pass"
EXT = EXTENSIONS + ' "STARTTLS" "AUTH PLAIN LOGIN CRAM-MD5"'


@pytest.fixture(scope="module")
def tx(certs):
    shared = Shared()
    digest = hashlib.md5(b"dave:ecmta:dpass").hexdigest()
    ports = {k: free_port() for k in ("ssl", "files", "verify", "strict", "notls")}
    try:
        m = start_mta(
            shared.factory, ports=ports, ext=EXT,
            listener=(f'  TLS_Certificate = "{certs.server_cert}"\n  TLS_Key = "{certs.server_key}"\n'
                      '  AuthPlainParameters = [ log_authentication = "true" ]\n'
                      '  AuthLoginParameters = [ log_authentication = "true" ]\n'
                      '  AuthCramMD5Parameters = [ log_authentication = "true" ]'),
            more_listens=(
                '  Listen "127.0.0.1:$ssl" {\n    Use_SSL = true\n  }\n'
                '  Listen "127.0.0.1:$files" {\n'
                '    AuthLoginParameters = [ uri = "file://$home/passwd" ]\n'
                '    AuthPlainParameters = [ uri = "digest://$home/digest" ]\n'
                '    AuthCramMD5Parameters = [ uri = "file://$home/passwd" ]\n  }\n'
                f'  Listen "127.0.0.1:$verify" {{\n    TLS_Client_CA = "{certs.ca}"\n'
                '    TLS_Verified_Peer_Can_Relay = true\n  }\n'
                '  Listen "127.0.0.1:$strict" {\n    TLS_Protocols = "+ALL:-TLSv1:-TLSv1.1:-TLSv1.2"\n  }\n'
                '  Listen "127.0.0.1:$notls" {\n    TLS_Certificate = ""\n    TLS_Key = ""\n  }'),
            files={"passwd": "# user:password\ncarol:c-pass\nbob@corp:b@ss:word\n",
                   "digest": f"dave:ecmta:{digest}\n"})
        add_user(m.path("auth.db"), USER, PASSWORD)
        yield m
    finally:
        shared.close()


def spooled(tx, batch):
    return sorted((m for m in tx.spooled() if m.batch_id == batch), key=lambda m: m.rcptto)


def send_one(s, rcpt="t@example.com", subject="tls"):
    s.mail("a@sender.test")
    code, text = s.rcpt(rcpt)
    assert code == 250, text
    code, resp = s.data(message(subject))
    assert code == 250, resp
    (m,) = spooled(s._tx, queue_id(resp.decode()))
    return m


def received(m) -> str:
    lines = m.body.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
    i = next(i for i, ln in enumerate(lines) if ln.startswith("Received: "))
    out = [lines[i]]
    for ln in lines[i + 1:]:
        if not ln[:1] in (" ", "\t"):
            break
        out.append(ln)
    return "\r\n".join(out)


def smtp(tx, port_name="smtp", ssl_ctx=None):
    port = tx.port if port_name == "smtp" else tx.d.ports[port_name]
    if ssl_ctx is not None:
        s = smtplib.SMTP_SSL("127.0.0.1", port, local_hostname="client.test", context=ssl_ctx, timeout=15)
    else:
        s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=15)
    s._tx = tx
    return s


# -- STARTTLS and implicit TLS -------------------------------------------------------------------

def test_starttls_with_smtplib(tx, certs):
    with smtp(tx) as s:
        s.ehlo()
        assert s.has_extn("starttls")
        code, text = s.starttls(context=certs.client_context())
        assert (code, text) == (220, b"2.0.0 Ready to start TLS")
        version = s.sock.version()
        assert version in ("TLSv1.2", "TLSv1.3")
        s.ehlo()
        assert not s.has_extn("starttls")                  # not offered twice
        m = send_one(s, subject="starttls")
    assert m.ctx_conn["tls"] == "on"
    assert m.ctx_conn["tls_protocol"] == version
    assert m.ctx_conn["tls_cipher"] and int(m.ctx_conn["tls_cipher_algbits"]) >= 128
    assert "tls_client_verified" not in m.ctx_conn
    assert re.search(r"\(ecmta [^)]+\) with ESMTPS\r\n\tid ", received(m))


def test_starttls_twice_and_with_arguments_refused(tx, certs):
    w = tx.wire()
    w.cmd("EHLO client.test")
    assert w.cmd("STARTTLS now").raw == b"501 5.5.4 Syntax error (no parameters allowed)\r\n"
    assert w.cmd("STARTTLS").code == 220
    port = local_port(w)
    w.starttls(certs.client_context())
    w.cmd("EHLO client.test")
    assert w.cmd("STARTTLS").raw == b"503 5.5.1 TLS already active\r\n"
    rej = wait_for(lambda: [r for r in tx.rejections() if r["R"] == f"127.0.0.1:{port}"][1:] and
                   [r for r in tx.rejections() if r["R"] == f"127.0.0.1:{port}"])
    assert [r["E"] for r in rej] == ["501", "503"]
    assert ctx_pairs(rej[1]["CTXCONN"])["tls"] == "on"


def test_starttls_command_injection_is_refused_and_logged(tx):
    w = tx.wire()
    w.cmd("EHLO client.test")
    w.send(b"STARTTLS\r\nMAIL FROM:<evil@sender.test>\r\n")
    r = w.reply()
    assert r.raw == b"554 5.5.1 commands pipelined after STARTTLS; connection dropped\r\n"
    assert w.closed()
    (rej,) = wait_for(lambda: [x for x in tx.rejections() if x["R"] == f"127.0.0.1:{local_port(w)}"])
    assert rej["E"] == "554"


def test_starttls_not_offered_without_a_certificate(tx):
    w = tx.wire(tx.d.ports["notls"])
    ehlo = w.cmd("EHLO client.test")
    assert "STARTTLS" not in ehlo.lines
    assert w.cmd("STARTTLS").raw == b"500 5.5.2 unrecognized command\r\n"


def test_implicit_tls_use_ssl_with_smtplib(tx, certs):
    with smtp(tx, "ssl", certs.client_context()) as s:
        code, _ = s.ehlo()
        assert code == 250 and not s.has_extn("starttls")
        m = send_one(s, subject="use_ssl")
    assert m.ctx_conn["tls"] == "on"
    assert "with ESMTPS\r\n" in received(m)


def test_implicit_tls_banner_comes_after_the_handshake(tx, certs):
    w = tx.wire(tx.d.ports["ssl"], tls=certs.client_context())
    assert w.banner.raw.startswith(b"220 mx.ecmta.test ESMTP ")


def test_tls_protocols_limits_the_versions(tx, certs):
    old = certs.client_context()
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    w = tx.wire(tx.d.ports["strict"])
    w.cmd("EHLO client.test")
    assert w.cmd("STARTTLS").code == 220
    with pytest.raises(ssl.SSLError):
        w.starttls(old)
    w = tx.wire(tx.d.ports["strict"])
    w.cmd("EHLO client.test")
    w.cmd("STARTTLS")
    w.starttls(certs.client_context())
    assert w.sock.version() == "TLSv1.3"
    assert w.cmd("EHLO client.test").code == 250


# -- client certificates -----------------------------------------------------------------------------

def test_verified_client_certificate_sets_ctx_and_may_relay(tx, certs):
    with smtp(tx, "verify") as s:
        s.ehlo()
        s.starttls(context=certs.client_context(cert=True))
        s.ehlo()
        m = send_one(s, rcpt="far@else.test", subject="client cert")     # relayed: verified peer
    c = m.ctx_conn
    assert c["tls_client_verified"] == "yes"
    assert c["tls_client_cert_subject_cn"] == "client.test"
    assert c["tls_client_cert_issuer_cn"] == "ecmta test CA"
    assert c["tls_client_cert_subject"] == "/organizationName=ecmta tests/commonName=client.test"


def test_no_client_certificate_means_no_relay(tx, certs):
    with smtp(tx, "verify") as s:
        s.ehlo()
        s.starttls(context=certs.client_context())
        s.ehlo()
        s.mail("a@sender.test")
        assert s.rcpt("far@else.test") == (550, b"5.7.1 relaying denied")
        m = send_one(s, rcpt="near@example.com", subject="no cert")
    assert "tls_client_verified" not in m.ctx_conn and m.ctx_conn["tls"] == "on"


# -- AUTH ---------------------------------------------------------------------------------------------

def _auth(s, mech, user=USER, password=PASSWORD):
    s.user, s.password = user, password
    fn = {"PLAIN": s.auth_plain, "LOGIN": s.auth_login, "CRAM-MD5": s.auth_cram_md5}[mech]
    return s.auth(mech, fn)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "starttls"])
@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_auth_mechanisms_against_the_default_sqlite_source(tx, certs, mech, tls):
    with smtp(tx) as s:
        s.ehlo()
        if tls:
            s.starttls(context=certs.client_context())
            s.ehlo()
        assert set(s.esmtp_features["auth"].split()) == {"PLAIN", "LOGIN", "CRAM-MD5"}
        code, text = _auth(s, mech)
        assert (code, text) == (235, b"2.7.0 Authentication successful")
        m = send_one(s, rcpt=f"relayed-{mech.lower()}@else.test", subject=f"auth {mech}")
    c = m.ctx_conn
    assert (c["auth_name"], c["auth_status"], c["auth_user"], c["can_relay"]) == (mech, "pass", USER, "true")
    assert m.auth_user == USER
    assert f"with ESMTP{'S' if tls else ''}A\r\n" in received(m)


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_auth_failure_is_535_logged_and_does_not_relay(tx, mech):
    with smtp(tx) as s:
        s.ehlo()
        port = s.sock.getsockname()[1]
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            _auth(s, mech, password="wrong")
        assert (err.value.smtp_code, err.value.smtp_error) == \
            (535, b"5.7.8 Authentication credentials invalid")
        s.mail("a@sender.test")
        assert s.rcpt("x@else.test") == (550, b"5.7.1 relaying denied")
    rej = wait_for(lambda: (lambda r: r if len(r) >= 2 else None)(
        [x for x in tx.rejections() if x["R"] == f"127.0.0.1:{port}"]))
    assert [(r["E"], r["text"]) for r in rej] == [
        ("535", "5.7.8 Authentication credentials invalid"), ("550", "5.7.1 relaying denied")]
    # the phase label of a SASL exchange is not documented: the state the exchange ran in
    assert rej[0]["P"] in ("auth", "awaiting mailfrom") and rej[1]["P"] == "awaiting rcptto"
    assert ctx_pairs(rej[0]["CTXCONN"])["auth_status"] == "fail"
    assert PASSWORD not in rej[0]["line"] and "wrong" not in rej[0]["line"]


def test_auth_writes_acctlog_lines(tx):
    with smtp(tx) as s:
        s.ehlo()
        peer = "127.0.0.1:%d" % s.sock.getsockname()[1]
        _auth(s, "PLAIN")
    with smtp(tx) as s:
        s.ehlo()
        peer2 = "127.0.0.1:%d" % s.sock.getsockname()[1]
        with pytest.raises(smtplib.SMTPAuthenticationError):
            _auth(s, "LOGIN", user="mallory", password="x")
    lines = wait_for(lambda: [ln for ln in tx.acctlog() if peer in ln or peer2 in ln][1:] and
                     [ln for ln in tx.acctlog() if peer in ln or peer2 in ln])
    listen = f"127.0.0.1:{tx.port}"
    assert re.fullmatch(rf"\d+@N@{re.escape(listen)}@{peer}@alice@1", lines[0])
    assert re.fullmatch(rf"\d+@N@{re.escape(listen)}@{peer2}@mallory@0", lines[1])


def test_auth_over_implicit_tls(tx, certs):
    with smtp(tx, "ssl", certs.client_context()) as s:
        s.ehlo()
        assert _auth(s, "CRAM-MD5")[0] == 235
        m = send_one(s, rcpt="ssl-auth@else.test", subject="ssl auth")
    assert "with ESMTPSA\r\n" in received(m)


def test_auth_exchange_on_the_wire(tx):
    w = tx.wire()
    w.cmd("EHLO client.test")
    r = w.cmd("AUTH CRAM-MD5")
    assert r.code == 334
    challenge = base64.b64decode(r.lines[0]).decode()
    assert re.fullmatch(r"<\d+\.\d+@mx\.ecmta\.test>", challenge)
    assert w.cmd(cram_response(USER, PASSWORD, r.lines[0])).code == 235
    assert w.cmd("AUTH PLAIN " + auth_plain(USER, PASSWORD)).raw == b"503 5.5.1 Already authenticated\r\n"
    w = tx.wire()
    w.cmd("EHLO client.test")
    assert w.cmd("AUTH LOGIN").raw == b"334 VXNlcm5hbWU6\r\n"          # "Username:"
    assert w.cmd("*").raw == b"501 5.0.0 Authentication cancelled\r\n"
    assert w.cmd("AUTH PLAIN !!notbase64").raw == b"501 5.5.2 Cannot Base64-decode client response\r\n"
    assert w.cmd("AUTH DIGEST-MD5").raw == b"504 5.5.4 Unrecognized authentication type\r\n"
    w.cmd("MAIL FROM:<a@sender.test>")
    assert w.cmd("AUTH PLAIN " + auth_plain(USER, PASSWORD)).raw == \
        b"503 5.5.1 AUTH not permitted during a mail transaction\r\n"


def test_auth_from_file_and_digest_sources(tx):
    for mech, user, password, ok in [("LOGIN", "carol", "c-pass", True),
                                     ("LOGIN", "bob@corp", "b@ss:word", True),
                                     ("LOGIN", "carol", "nope", False),
                                     ("CRAM-MD5", "carol", "c-pass", True),
                                     ("PLAIN", "dave", "dpass", True),
                                     ("PLAIN", "dave", "dpas", False),
                                     ("PLAIN", USER, PASSWORD, False)]:        # not in this source
        with smtp(tx, "files") as s:
            s.ehlo()
            if ok:
                assert _auth(s, mech, user, password)[0] == 235, (mech, user)
            else:
                with pytest.raises(smtplib.SMTPAuthenticationError):
                    _auth(s, mech, user, password)


def test_cram_md5_cannot_use_a_digest_source(tx):
    # CRAM-MD5 needs the clear-text password; a digest file cannot provide it
    w = tx.wire(tx.d.ports["files"])
    w.cmd("EHLO client.test")
    r = w.cmd("AUTH CRAM-MD5")
    assert w.cmd(cram_response("dave", "dpass", r.lines[0])).code == 535


# -- swaks ---------------------------------------------------------------------------------------------

def _swaks(tx, *args):
    proc = subprocess.run(["swaks", "--server", "127.0.0.1", "--helo", "client.test",
                           "--from", "a@sender.test", "--hide-informational", *args],
                          capture_output=True, text=True, timeout=60)
    return proc


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_swaks_starttls_auth_pipelined(tx, mech):
    proc = _swaks(tx, "--port", str(tx.port), "--tls", "--auth", mech, "--auth-user", USER,
                  "--auth-password", PASSWORD, "--pipeline", "--to", f"sw-{mech.lower()}@else.test",
                  "--header", f"Subject: swaks {mech}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "<-  220 2.0.0 Ready to start TLS" in proc.stdout
    assert "<~  235 2.7.0 Authentication successful" in proc.stdout
    batch = queue_id(next(ln for ln in proc.stdout.splitlines() if "queued as" in ln))
    (m,) = spooled(tx, batch)
    assert m.rcptto == f"sw-{mech.lower()}@else.test" and m.ctx_conn["auth_name"] == mech
    assert "with ESMTPSA\r\n" in received(m)


def test_swaks_tls_on_connect(tx):
    proc = _swaks(tx, "--port", str(tx.d.ports["ssl"]), "--tls-on-connect", "--to", "sw-ssl@example.com")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    batch = queue_id(next(ln for ln in proc.stdout.splitlines() if "queued as" in ln))
    (m,) = spooled(tx, batch)
    assert m.ctx_conn["tls"] == "on"


def test_swaks_wrong_password_exits_nonzero(tx):
    proc = _swaks(tx, "--port", str(tx.port), "--auth", "PLAIN", "--auth-user", USER,
                  "--auth-password", "bad", "--to", "x@else.test")
    assert proc.returncode != 0
    assert "<~* 535 5.7.8 Authentication credentials invalid" in proc.stdout or \
        "<** 535 5.7.8 Authentication credentials invalid" in proc.stdout


# -- every extension inside TLS, pipelined and not ------------------------------------------------

TLS_SCRIPT = [
    b"EHLO client.test\r\n",
    b"XSETCONTEXT tenant=tls+20tenant\r\n",
    b"MAIL FROM:<j\xc3\xb6rg@sender.test> SMTPUTF8 BODY=8BITMIME RET=HDRS ENVID=e1\r\n",
    b"RCPT TO:<tls-a@example.com> NOTIFY=SUCCESS ORCPT=rfc822;tls-a@example.com\r\n",
    b"RCPT TO:<tls-b@else.test>\r\n",
    b"RCPT TO:<tls-c@example.com>\r\n",
    b"DATA\r\n",
    "Subject: in tls\r\n\r\nGr\u00fc\u00dfe\r\n..dot\r\n.\r\n".encode(),
    b"MAIL FROM:<a@sender.test>\r\n",
    b"RCPT TO:<tls-d@example.com>\r\n",
    b"BDAT 20\r\nSubject: chunk\r\n\r\nab",
    b"BDAT 4 LAST\r\ncd\r\n",
    b"XDUMPCONTEXT\r\n",
    b"QUIT\r\n",
]


def _tls_session(tx, certs, how: str, pipelined: bool) -> list[bytes]:
    ctx = certs.client_context()
    if how == "use_ssl":
        w = tx.wire(tx.d.ports["ssl"], tls=ctx)
    else:
        w = tx.wire()
        w.cmd("EHLO client.test")
        assert w.cmd("STARTTLS").code == 220
        w.starttls(ctx)
    if pipelined:
        w.send(b"".join(TLS_SCRIPT))
        out = [w.reply().raw for _ in TLS_SCRIPT]
    else:
        out = []
        for chunk in TLS_SCRIPT:
            w.send(chunk)
            out.append(w.reply().raw)
    assert w.closed()
    return out


@pytest.mark.parametrize("how", ["starttls", "use_ssl"])
def test_every_extension_inside_tls_pipelined_and_not(tx, certs, how):
    norm = lambda raws: [re.sub(rb"[0-9A-F]{2}/[0-9A-F]{2}-\d{5}-[0-9A-F]{8}", b"<id>", r)  # noqa: E731
                         for r in raws]
    plain = _tls_session(tx, certs, how, pipelined=False)
    piped = _tls_session(tx, certs, how, pipelined=True)
    assert norm(piped) == norm(plain)
    assert [int(r[:3]) for r in plain] == [250, 250, 250, 250, 550, 250, 354, 250, 250, 250, 250,
                                           250, 250, 221]
    for raws in (plain, piped):
        first = queue_id(raws[7].decode())
        a, c = spooled(tx, first)
        assert (a.rcptto, c.rcptto) == ("tls-a@example.com", "tls-c@example.com")
        assert a.mailfrom == "jörg@sender.test" and a.body.endswith("\r\n\r\nGrüße\r\n.dot\r\n".encode())
        assert (a.dsn.notify, a.dsn.orcpt, a.dsn.ret, a.dsn.envid) == \
            (("SUCCESS",), "rfc822;tls-a@example.com", "HDRS", "e1")
        assert a.ctx_conn["tenant"] == "tls tenant" and a.ctx_conn["tls"] == "on"
        assert "with ESMTPS\r\n" in received(a)
        (d,) = spooled(tx, queue_id(raws[11].decode()))
        assert d.body.endswith(b"\r\n\r\nabcd\r\n")
        assert b"250-[connection] tls on\r\n" in raws[12]


def test_credentials_added_while_running_are_used_at_once(tx):
    with smtp(tx) as s:
        s.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError):
            _auth(s, "PLAIN", "latecomer", "pw-1")
    add_user(tx.path("auth.db"), "latecomer", "pw-1")
    with smtp(tx) as s:
        s.ehlo()
        assert _auth(s, "PLAIN", "latecomer", "pw-1")[0] == 235
    add_user(tx.path("auth.db"), "latecomer", "pw-2")          # password changed
    with smtp(tx) as s:
        s.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError):
            _auth(s, "PLAIN", "latecomer", "pw-1")
    with open(tx.path("passwd"), "a") as fh:                    # file:// source
        fh.write("erin:e-pass\n")
    with smtp(tx, "files") as s:
        s.ehlo()
        assert _auth(s, "LOGIN", "erin", "e-pass")[0] == 235


def test_tls_verify_mode_require_refuses_a_client_without_certificate(certs, daemon_factory):
    from ecmta.tests.reception.helpers import start_mta as start
    m = start(daemon_factory, ext=EXT,
              listener=(f'  TLS_Certificate = "{certs.server_cert}"\n  TLS_Key = "{certs.server_key}"\n'
                        f'  TLS_Client_CA = "{certs.ca}"\n  TLS_Verify_Mode = "require"'))
    w = m.wire()
    w.cmd("EHLO client.test")
    assert w.cmd("STARTTLS").code == 220
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        w.starttls(certs.client_context())
        w.cmd("EHLO client.test")                  # TLS 1.3 reports the refusal on first use
    w = m.wire()
    w.cmd("EHLO client.test")
    w.cmd("STARTTLS")
    w.starttls(certs.client_context(cert=True))
    assert w.cmd("EHLO client.test").code == 250
    assert "[connection] tls_client_verified yes" in w.cmd("XDUMPCONTEXT").lines
