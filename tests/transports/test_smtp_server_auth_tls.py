"""Sans-IO SMTP server: AUTH exchanges, STARTTLS and injection, XCLIENT and Momentum X-commands."""
import base64
import hmac
import re

import pytest

from ecmta.tests.transports.test_smtp_server_helpers import HOST, PEER, Client, opts, wire
from ecmta.transports import smtp_replies as R
from ecmta.transports.smtp_replies import Reply
from ecmta.transports.smtp_server import (
    CLOSED, PAUSED, AuthAttempt, Helo, MailFrom, SMTPServer, SMTPServerError, StartTLS,
    StartTLSInjection, UpgradeTLS, XClient, XDumpContext, XRemoteIP, XSetContext, cram_md5_ok)


def b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def check_password(ev: AuthAttempt):
    if ev.mechanism == "CRAM-MD5":
        ok = cram_md5_ok("secret", ev.challenge, ev.response)
    else:
        ok = ev.password == "secret"
    return R.AUTH_OK if ok and ev.authcid == "bob" else None


def authed(**kw) -> Client:
    c = Client(policy={AuthAttempt: check_password}, **kw)
    c.cmd("EHLO x")
    return c


# --- AUTH PLAIN / LOGIN / CRAM-MD5 ----------------------------------------------------------


def test_plain_initial_response():
    c = authed()
    assert c.cmd("AUTH PLAIN " + b64("\0bob\0secret")) == wire(R.AUTH_OK)
    ev = c.of(AuthAttempt)[0]
    assert (ev.mechanism, ev.authcid, ev.authzid, ev.password) == ("PLAIN", "bob", "", "secret")
    assert c.srv.auth.authcid == "bob" and c.srv.auth.mechanism == "PLAIN"
    assert ev.state == "awaiting mailfrom"


def test_plain_with_authzid_and_challenge():
    c = authed()
    assert c.cmd("AUTH PLAIN") == "334 \r\n"
    assert c.cmd(b64("admin\0bob\0secret")) == wire(R.AUTH_OK)
    assert c.of(AuthAttempt)[0].authzid == "admin"


def test_plain_wrong_password_default_535():
    c = authed()
    assert c.cmd("AUTH PLAIN " + b64("\0bob\0wrong")) == wire(R.AUTH_FAILED)
    assert c.srv.auth is None
    assert "535 5.7.8" in wire(R.AUTH_FAILED)
    assert c.cmd("AUTH PLAIN " + b64("\0bob\0secret")) == wire(R.AUTH_OK)   # retry allowed


@pytest.mark.parametrize("resp", ["=", b64("bob\0secret"), b64("\0\0secret"), b64(b"\0\xff\0x")])
def test_plain_malformed(resp):
    c = authed()
    assert c.cmd("AUTH PLAIN " + resp) == wire(R.AUTH_BAD_RESPONSE)
    assert not c.of(AuthAttempt)


def test_login_exchange():
    c = authed()
    assert c.cmd("AUTH LOGIN") == "334 VXNlcm5hbWU6\r\n"         # "Username:"
    assert c.cmd(b64("bob")) == "334 UGFzc3dvcmQ6\r\n"           # "Password:"
    assert c.cmd(b64("secret")) == wire(R.AUTH_OK)
    assert c.of(AuthAttempt)[0].mechanism == "LOGIN"


def test_login_with_initial_username():
    c = authed()
    assert c.cmd("AUTH LOGIN " + b64("bob")) == "334 UGFzc3dvcmQ6\r\n"
    assert c.cmd(b64("secret")) == wire(R.AUTH_OK)


def test_cram_md5_exchange():
    c = authed()
    line = c.cmd("AUTH CRAM-MD5")
    assert line.startswith("334 ")
    challenge = base64.b64decode(line[4:].strip()).decode()
    assert re.fullmatch(rf"<\d+\.\d+@{re.escape(HOST)}>", challenge)
    digest = hmac.new(b"secret", challenge.encode(), "md5").hexdigest()
    assert c.cmd(b64(f"bob {digest}")) == wire(R.AUTH_OK)
    ev = c.of(AuthAttempt)[0]
    assert ev.challenge == challenge and ev.response == digest and ev.password is None


def test_cram_md5_wrong_digest_and_bad_form():
    c = authed()
    c.cmd("AUTH CRAM-MD5")
    assert c.cmd(b64("bob " + "0" * 32)) == wire(R.AUTH_FAILED)
    c.cmd("AUTH CRAM-MD5")
    assert c.cmd(b64("bob nothex")) == wire(R.AUTH_BAD_RESPONSE)
    assert c.cmd("AUTH CRAM-MD5 " + b64("x")) == wire(R.AUTH_NO_INITIAL)


def test_auth_cancel():
    c = authed()
    c.cmd("AUTH LOGIN")
    assert c.cmd("*") == wire(R.AUTH_CANCELLED)
    assert c.errors()[-1].reply is R.AUTH_CANCELLED
    assert c.cmd("NOOP") == wire(R.OK)                            # back in command mode


def test_auth_bad_base64():
    c = authed()
    assert c.cmd("AUTH PLAIN not*base64") == wire(R.AUTH_BAD_BASE64)
    c.cmd("AUTH LOGIN")
    assert c.cmd("%%%") == wire(R.AUTH_BAD_BASE64)
    assert "501 5.5.2" in wire(R.AUTH_BAD_BASE64)


def test_auth_twice():
    c = authed()
    c.cmd("AUTH PLAIN " + b64("\0bob\0secret"))
    assert c.cmd("AUTH PLAIN " + b64("\0bob\0secret")) == wire(R.AUTH_ALREADY)


def test_auth_inside_transaction():
    c = authed()
    c.cmd("MAIL FROM:<a@b.example>")
    assert c.cmd("AUTH PLAIN " + b64("\0bob\0secret")) == wire(R.AUTH_IN_TRANSACTION)


def test_auth_before_ehlo_and_syntax():
    c = Client()
    assert c.cmd("AUTH PLAIN") == wire(R.BAD_SEQUENCE)
    c.cmd("EHLO x")
    assert c.cmd("AUTH") == wire(R.AUTH_SYNTAX)
    assert c.cmd("AUTH DIGEST-MD5") == wire(R.AUTH_MECHANISM)


def test_mechanism_not_offered():
    c = Client(opts(smtp_extensions=("ENHANCEDSTATUSCODES", "AUTH LOGIN")))
    text = c.cmd("EHLO x")
    assert "250-AUTH=LOGIN\r\n250 AUTH LOGIN\r\n" in text
    assert c.cmd("AUTH PLAIN " + b64("\0bob\0secret")) == wire(R.AUTH_MECHANISM)


def test_credentials_never_in_protocol_errors():
    c = authed()
    c.cmd("AUTH PLAIN " + b64("\0bob\0secret") + "!")
    c.cmd("AUTH LOGIN")
    c.send(b"c2VjcmV0\n")                                          # bare LF mid-exchange
    for e in c.errors():
        assert "c2VjcmV0" not in e.line and b64("\0bob\0secret") not in e.line
    assert c.errors()[-1].reply is R.BARE_CR_LF and c.errors()[-1].command == "AUTH"
    assert c.cmd("NOOP") == wire(R.OK)


def test_sasl_line_too_long():
    c = authed()
    c.cmd("AUTH LOGIN")
    assert c.cmd("A" * 20000) == wire(R.LINE_TOO_LONG)
    assert c.cmd("NOOP") == wire(R.OK)
    assert c.max_buffered < 13000


def test_auth_line_headroom():
    c = authed()
    long_ir = b64("\0bob\0" + "s" * 6000)                          # >512, <12288
    assert c.cmd("AUTH PLAIN " + long_ir) == wire(R.AUTH_FAILED)


def test_auth_requires_tls():
    c = Client(policy={AuthAttempt: check_password}, auth_requires_tls=True)
    assert "AUTH" not in c.cmd("EHLO x")
    assert c.cmd("AUTH PLAIN " + b64("\0bob\0secret")) == wire(R.AUTH_NEEDS_TLS)
    c.cmd("STARTTLS")
    assert "250-AUTH=LOGIN PLAIN CRAM-MD5\r\n" in c.cmd("EHLO x")
    assert c.cmd("AUTH PLAIN " + b64("\0bob\0secret")) == wire(R.AUTH_OK)


def test_auth_mail_param():
    c = authed()
    c.cmd("AUTH PLAIN " + b64("\0bob\0secret"))
    c.cmd("MAIL FROM:<a@b.example> AUTH=bob+40b.example")
    assert c.of(MailFrom)[0].params.auth == "bob@b.example"


# --- STARTTLS -------------------------------------------------------------------------------


def test_starttls_flow():
    c = Client(auto_tls=False)
    assert "250-STARTTLS\r\n" in c.cmd("EHLO x")
    c.cmd("MAIL FROM:<a@b.example>")
    assert c.cmd("STARTTLS") == wire(R.STARTTLS_GO)
    assert "220 2.0.0 Ready to start TLS" in wire(R.STARTTLS_GO)
    assert c.of(UpgradeTLS) and c.srv.next_event() is PAUSED
    assert c.srv.state_label == "starttls"
    c.srv.tls_started({"cipher": "TLS_AES_128_GCM_SHA256"})
    assert c.srv.tls and c.srv.tls_info["cipher"].startswith("TLS_")
    assert c.srv.helo is None and c.srv.transaction is None      # RFC 3207 reset
    assert "STARTTLS" not in c.cmd("EHLO x")
    assert c.cmd("STARTTLS") == wire(R.TLS_ACTIVE)


def test_starttls_not_available_without_certificate():
    c = Client(tls_available=False)
    assert "STARTTLS" not in c.cmd("EHLO x")
    assert c.cmd("STARTTLS") == wire(R.UNRECOGNIZED)


def test_starttls_arguments_refused():
    c = Client()
    assert c.cmd("STARTTLS now") == wire(R.NO_PARAMS)


def test_starttls_refused_by_driver():
    c = Client(policy={StartTLS: Reply(454, "4.7.0", "TLS not available")})
    assert c.cmd("STARTTLS") == "454 4.7.0 TLS not available\r\n"
    assert not c.of(UpgradeTLS) and c.cmd("NOOP") == wire(R.OK)


def test_tls_started_misuse():
    srv = SMTPServer(opts())
    with pytest.raises(SMTPServerError):
        srv.tls_started()


def test_use_ssl_session_starts_in_tls():
    c = Client(use_ssl=True)
    assert c.srv.tls and c.events[0].tls
    assert "STARTTLS" not in c.cmd("EHLO x")
    assert c.cmd("STARTTLS") == wire(R.UNRECOGNIZED)


def test_eof_during_handshake_closes():
    c = Client(auto_tls=False)
    c.cmd("STARTTLS")
    c.srv.receive_data(b"")
    assert c.srv.next_event().__class__.__name__ == "ClientClosed"
    assert c.srv.next_event() is CLOSED


INJECT = b"STARTTLS\r\nMAIL FROM:<evil@x.example>\r\nRCPT TO:<v@y.example>\r\n"


def test_injection_reject_drops_connection():
    c = Client(auto_tls=False)
    c.cmd("EHLO x")
    out = c.send(INJECT)
    assert out == wire(R.STARTTLS_INJECTION).encode()               # no 220 was sent
    inj = c.of(StartTLSInjection)[0]
    assert inj.policy == "reject" and inj.nbytes == len(INJECT) - 10
    assert inj.sample.startswith(b"MAIL FROM")
    err = c.errors()[-1]
    assert err.close and err.command == "STARTTLS" and c.closed
    assert not c.of(MailFrom) and not c.of(UpgradeTLS)


def test_injection_ignore_discards_plaintext_commands():
    c = Client(starttls_injection_policy="ignore")
    c.cmd("EHLO x")
    assert c.send(INJECT) == wire(R.STARTTLS_GO).encode()
    assert c.of(StartTLSInjection)[0].policy == "ignore"
    assert not c.of(MailFrom) and c.srv.tls
    assert c.cmd("EHLO y").startswith("250-")                       # after TLS: works
    assert c.cmd("MAIL FROM:<a@b.example>") == wire(R.MAIL_OK)


def test_injection_allow_processes_after_tls():
    c = Client(starttls_injection_policy="allow")
    c.cmd("EHLO x")
    out = c.send(INJECT)
    assert out == (wire(R.STARTTLS_GO) + wire(R.MAIL_OK) + wire(R.RCPT_OK)).encode()
    assert c.of(MailFrom)[0].address.localpart == "evil"


def test_injection_arriving_while_decision_pending():
    srv = SMTPServer(opts(hostname=HOST), peer=PEER)
    srv.next_event()
    srv.respond()
    srv.receive_data(b"STARTTLS\r\n")
    assert isinstance(srv.next_event(), StartTLS)
    srv.receive_data(b"MAIL FROM:<evil@x.example>\r\n")            # while policy runs
    srv.respond()
    out = srv.data_to_send()
    assert b"220 " not in out.split(b"\r\n", 1)[1]
    assert out.endswith(wire(R.STARTTLS_INJECTION).encode())
    assert srv.closed


def test_no_injection_when_client_waits():
    c = Client(auto_tls=False)
    c.cmd("EHLO x")
    assert c.cmd("STARTTLS") == wire(R.STARTTLS_GO)
    assert not c.of(StartTLSInjection)


# --- XCLIENT ----------------------------------------------------------------------------------


def test_xclient_overrides_identity():
    c = Client()
    c.cmd("EHLO proxy")
    out = c.cmd("XCLIENT NAME=client.example ADDR=203.0.113.9 PORT=4321 PROTO=ESMTP "
                "HELO=client.example LOGIN=bob")
    assert out == f"220 {HOST} ESMTP ecelerity\r\n"
    ev = c.of(XClient)[0]
    assert ev.attrs["ADDR"] == "203.0.113.9" and ev.attrs["LOGIN"] == "bob"
    assert c.srv.peer == ("203.0.113.9", 4321)
    assert c.srv.helo is None and c.srv.auth.authcid == "bob"
    assert c.srv.xclient["NAME"] == "client.example"
    assert c.cmd("EHLO client.example").startswith(f"250-{HOST} says EHLO to 203.0.113.9")


def test_xclient_ipv6_unavailable_and_xtext():
    c = Client()
    c.cmd("XCLIENT ADDR=IPV6:2001:db8::5 NAME=[UNAVAILABLE] HELO=a+2Eb")
    assert c.srv.peer[0] == "2001:db8::5"
    assert c.of(XClient)[0].attrs["HELO"] == "a.b"


@pytest.mark.parametrize("line,reply", [
    ("XCLIENT", R.XCLIENT_SYNTAX),
    ("XCLIENT FOO=bar", Reply(501, "5.5.4", "Bad XCLIENT attribute name: FOO")),
    ("XCLIENT ADDR", Reply(501, "5.5.4", "Bad XCLIENT attribute name: ADDR")),
    ("XCLIENT ADDR=999.1.1.1", Reply(501, "5.5.4", "Bad ADDR syntax: ADDR=999.1.1.1")),
    ("XCLIENT PORT=70000", Reply(501, "5.5.4", "Bad PORT syntax: PORT=70000")),
    ("XCLIENT PROTO=UUCP", Reply(501, "5.5.4", "Bad PROTO syntax: PROTO=UUCP")),
    ("XCLIENT NAME=a+ZZ", Reply(501, "5.5.4", "Bad NAME syntax: NAME=a+ZZ")),
])
def test_xclient_errors(line, reply):
    c = Client()
    assert c.cmd(line) == wire(reply)


def test_xclient_in_transaction():
    c = Client()
    c.start_mail()
    assert c.cmd("XCLIENT ADDR=203.0.113.9") == wire(R.XCLIENT_IN_TRANSACTION)


def test_xclient_refused_by_policy():
    c = Client(policy={XClient: Reply(550, "5.7.0", "insufficient authorization")})
    c.cmd("EHLO x")
    assert c.cmd("XCLIENT ADDR=203.0.113.9") == "550 5.7.0 insufficient authorization\r\n"
    assert c.srv.peer == PEER and c.srv.helo == "x"


# --- XREMOTEIP / XSETCONTEXT / XDUMPCONTEXT ---------------------------------------------------


def test_xremoteip():
    c = Client()
    assert c.cmd("XREMOTEIP 203.0.113.50") == wire(R.XREMOTEIP_OK)
    assert c.srv.peer == ("203.0.113.50", PEER[1]) and c.of(XRemoteIP)[0].addr == "203.0.113.50"
    assert c.cmd("XREMOTEIP [2001:db8::1]") == wire(R.XREMOTEIP_OK)
    assert c.srv.peer[0] == "2001:db8::1"
    assert c.cmd("XREMOTEIP nonsense") == wire(R.XREMOTEIP_SYNTAX)
    assert c.cmd("XREMOTEIP") == wire(R.XREMOTEIP_SYNTAX)


def test_xsetcontext():
    c = Client()
    assert c.cmd("XSETCONTEXT option1=value1 option2=a+20b") == wire(R.XSETCONTEXT_OK)
    assert c.of(XSetContext)[0].pairs == {"option1": "value1", "option2": "a b"}
    assert c.cmd("XSETCONTEXT") == wire(R.XSETCONTEXT_SYNTAX)
    assert c.cmd("XSETCONTEXT novalue") == wire(R.XSETCONTEXT_SYNTAX)
    assert c.cmd("XSETCONTEXT a=b+Z") == wire(R.XSETCONTEXT_SYNTAX)


def test_xdumpcontext_momentum_transcript():
    def dump(ev):
        return Reply(250, "", "[connection] ehlo_domain there\n"
                              "[connection] ehlo_string ehlo there\nXDUMPCONTEXT complete")
    c = Client(opts(smtp_extensions=("PIPELINING", "XDUMPCONTEXT", "8BITMIME", "AUTH LOGIN",
                                     "STARTTLS")), policy={XDumpContext: dump})
    assert c.cmd("ehlo there").endswith("250-PIPELINING\r\n250-XDUMPCONTEXT\r\n250-8BITMIME\r\n"
                                        "250-AUTH=LOGIN\r\n250-AUTH LOGIN\r\n250 STARTTLS\r\n")
    assert c.cmd("XDUMPCONTEXT") == ("250-[connection] ehlo_domain there\r\n"
                                     "250-[connection] ehlo_string ehlo there\r\n"
                                     "250 XDUMPCONTEXT complete\r\n")
    assert c.cmd("XDUMPCONTEXT x") == wire(R.NO_PARAMS, esc=False)


def test_helo_event_sees_peer_after_xremoteip():
    c = Client()
    c.cmd("XREMOTEIP 203.0.113.77")
    assert "says EHLO to 203.0.113.77" in c.cmd("EHLO x")
    assert c.of(Helo)[0].domain == "x"
