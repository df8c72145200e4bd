"""Sans-IO SMTP server: banner, HELO/EHLO, the envelope, sequencing, replies, limits."""
import pytest

from ecmta.tests.transports.test_smtp_server_helpers import HOST, PEER, Client, opts, wire
from ecmta.transports import smtp_replies as R
from ecmta.transports.smtp_replies import Reply
from ecmta.transports.smtp_server import (
    CLOSED, NEED_DATA, PAUSED, S_BODY, S_DATA, S_EHLO, S_MAIL, S_RCPT, Connect, DataEnd,
    DataStart, EarlyTalker, Expn, Helo, Help, MailFrom, Noop, ProtocolError, Quit, RcptTo,
    Rset, ServerOptions, SMTPServer, SMTPServerError, Vrfy)

# --- banner and connect phase -----------------------------------------------------------------


def test_banner_default_and_connect_event():
    c = Client()
    assert c.banner == f"220 {HOST} ESMTP ecelerity\r\n".encode()
    ev = c.events[0]
    assert isinstance(ev, Connect) and ev.peer == PEER and ev.state == "connect"


def test_custom_banner_text_has_no_enhanced_code():
    c = Client(opts(banner="mx ESMTP hello"))
    assert c.banner == b"220 mx ESMTP hello\r\n"


def test_connect_rejected_554_then_only_quit():
    c = Client(policy={Connect: Reply(554, "5.7.1", "go away")})
    assert c.banner == b"554 go away\r\n"           # greetings never carry enhanced codes
    assert c.cmd("EHLO x") == wire(R.BAD_SEQUENCE)
    assert c.cmd("MAIL FROM:<a@b.c>") == wire(R.BAD_SEQUENCE)
    assert c.cmd("QUIT").startswith("221 ")
    assert c.closed


def test_connect_421_closes():
    c = Client(policy={Connect: Reply(421, "4.3.2", "busy")})
    assert c.banner == b"421 busy\r\n" and c.closed


def test_connect_disconnect_flag_closes():
    c = Client(policy={Connect: (None, True)})
    assert c.banner.startswith(b"220 ") and c.closed


def test_next_event_paused_until_respond():
    srv = SMTPServer(opts())
    assert isinstance(srv.next_event(), Connect)
    assert srv.next_event() is PAUSED
    srv.receive_data(b"EHLO x\r\n")
    assert srv.next_event() is PAUSED
    srv.respond()
    assert isinstance(srv.next_event(), EarlyTalker)
    assert isinstance(srv.next_event(), Helo)


def test_respond_without_decision_raises():
    srv = SMTPServer(opts())
    srv.next_event()
    srv.respond()
    with pytest.raises(SMTPServerError):
        srv.respond()


def test_early_talker_flag_and_event():
    srv = SMTPServer(opts())
    srv.receive_data(b"EHLO fast\r\n")          # before the banner was answered
    assert srv.early_talker
    assert isinstance(srv.next_event(), Connect)
    srv.respond()
    ev = srv.next_event()
    assert isinstance(ev, EarlyTalker) and ev.nbytes == len(b"EHLO fast\r\n")


def test_no_early_talker_for_polite_client():
    c = Client()
    c.cmd("EHLO x")
    assert not c.srv.early_talker and not c.of(EarlyTalker)


# --- HELO / EHLO ------------------------------------------------------------------------------


def test_ehlo_reply_shape_momentum():
    c = Client(opts(smtp_extensions=("PIPELINING", "XDUMPCONTEXT", "8BITMIME", "AUTH LOGIN",
                                     "STARTTLS")))
    assert c.cmd("ehlo there") == (
        f"250-{HOST} says EHLO to {PEER[0]}\r\n250-PIPELINING\r\n250-XDUMPCONTEXT\r\n"
        "250-8BITMIME\r\n250-AUTH=LOGIN\r\n250-AUTH LOGIN\r\n250 STARTTLS\r\n")
    ev = c.of(Helo)[0]
    assert ev.verb == "EHLO" and ev.domain == "there" and ev.raw == "ehlo there"


def test_helo_reply_has_no_capabilities():
    c = Client()
    assert c.cmd("HELO client.example") == f"250 {HOST} says HELO to {PEER[0]}\r\n"
    assert c.srv.helo == "client.example" and not c.srv.esmtp


@pytest.mark.parametrize("line,reply", [("EHLO", R.INVALID_EHLO), ("HELO", R.INVALID_HELO),
                                        ("EHLO  ", R.INVALID_EHLO), ("HELO \x01", R.INVALID_HELO)])
def test_helo_without_domain(line, reply):
    c = Client()
    assert c.cmd(line) == wire(reply)
    assert c.errors()[0].command == line.split()[0]


def test_ehlo_size_shows_limit_and_xclient_attrs():
    c = Client(max_message_size=1048576)
    text = c.cmd("EHLO x")
    assert "250-SIZE 1048576\r\n" in text
    assert "XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT" in text


def test_policy_removes_and_adds_capabilities():
    def edit(ev):
        ev.capabilities.remove("CHUNKING")
        ev.capabilities.append("X-CUSTOM")
    c = Client(policy={Helo: edit})
    text = c.cmd("EHLO x")
    assert "CHUNKING" not in text and text.endswith("250 X-CUSTOM\r\n")
    c.cmd("MAIL FROM:<a@b.example>")
    c.cmd("RCPT TO:<c@d.example>")
    assert c.cmd("BDAT 3 LAST") == wire(R.UNRECOGNIZED)   # removed = not offered


def test_capability_removed_at_connect_phase():
    c = Client(policy={Connect: lambda ev: ev.capabilities.remove("ENHANCEDSTATUSCODES")})
    assert "ENHANCEDSTATUSCODES" not in c.cmd("EHLO x")
    assert c.cmd("MAIL FROM:<a@b.example>") == "250 MAIL FROM accepted\r\n"


def test_ehlo_rejected_by_policy():
    c = Client(policy={Helo: Reply(550, "5.7.1", "go away")})
    assert c.cmd("EHLO x") == "550 5.7.1 go away\r\n"
    assert c.srv.helo is None


def test_ehlo_custom_first_line():
    c = Client(options=opts(smtp_extensions=("PIPELINING",)),
               policy={Helo: Reply(250, "", "hi there")})
    assert c.cmd("EHLO x") == "250-hi there\r\n250 PIPELINING\r\n"


def test_ehlo_resets_transaction():
    c = Client()
    c.start_mail()
    c.cmd("EHLO again")
    assert c.srv.transaction is None
    assert c.cmd("RCPT TO:<a@b.example>") == wire(R.RCPT_NO_MAIL)


# --- enhanced status codes ------------------------------------------------------------------


def test_enhanced_codes_only_when_enabled():
    on = Client()
    off = Client(opts(smtp_extensions=("PIPELINING", "8BITMIME")))
    for c in (on, off):
        c.cmd("EHLO x")
    assert on.cmd("MAIL FROM:<a@b.example>") == "250 2.1.0 MAIL FROM accepted\r\n"
    assert off.cmd("MAIL FROM:<a@b.example>") == "250 MAIL FROM accepted\r\n"
    assert on.cmd("RCPT TO:<c@d.example>") == "250 2.1.5 RCPT TO accepted.\r\n"
    assert off.cmd("RCPT TO:<c@d.example>") == "250 RCPT TO accepted.\r\n"
    assert on.cmd("DATA") == off.cmd("DATA") == '354 continue.  finished with "\\r\\n.\\r\\n"\r\n'
    off.send(b".\r\n")
    assert off.cmd("FOO") == "500 unrecognized command\r\n"


def test_reply_parse_splits_enhanced_code():
    assert Reply.parse(550, "5.7.1 relaying denied") == R.RELAYING_DENIED
    assert Reply.parse(421, "go away") == Reply(421, "", "go away")
    assert Reply.parse(250, "2.0.0") == Reply(250, "2.0.0", "")


def test_multiline_reply_and_cr_injection_neutralised():
    assert Reply(250, "2.0.0", "a\nb").render() == b"250-2.0.0 a\r\n250 2.0.0 b\r\n"
    assert Reply(550, "", "x\r250 fake").render() == b"550 x 250 fake\r\n"


# --- MAIL FROM ------------------------------------------------------------------------------


def test_mail_from_event_fields():
    c = Client()
    c.cmd("EHLO x")
    assert c.cmd("MAIL FROM:<Bob@Example.ORG> SIZE=1000 BODY=8BITMIME") == wire(R.MAIL_OK)
    ev = c.of(MailFrom)[0]
    assert ev.address.localpart == "Bob" and ev.address.domain == "Example.ORG"
    assert ev.params.size == 1000 and ev.params.body == "8BITMIME"
    assert ev.raw == "MAIL FROM:<Bob@Example.ORG> SIZE=1000 BODY=8BITMIME"
    assert ev.state == S_MAIL and ev.qualified is ev.address


@pytest.mark.parametrize("line", [
    "MAIL FROM:", "MAIL FROM:<", "MAIL FROM:<a@>", "MAIL FROM:<@b.c>", "MAIL TO:<a@b.c>",
    "MAIL <a@b.c>", "MAIL FROM:<a@b.c>x", "MAIL FROM:<a b@c.d>", "MAIL FROM:<a@-b.c>",
    "MAIL FROM:<a@b..c>", "MAIL FROM:<a..b@c.d>", "MAIL FROM:<.a@c.d>", "MAIL FROM:<a.@c.d>",
    "MAIL FROM:<a@[1.2.3]>", "MAIL FROM:<a@[IPv6:zz::1]>", "MAIL FROM:<\"a@b.c>",
    "MAIL FROM:<bob>", "MAIL FROM:<a@b.c> ", "MAIL FROM:< a@b.c >",
    "MAIL FROM:<" + "a" * 65 + "@b.c>", "MAIL FROM:<a@" + "b" * 250 + ".example>",
])
def test_mail_from_syntax_errors(line):
    c = Client()
    c.cmd("EHLO x")
    assert c.cmd(line) == wire(R.MAIL_SYNTAX)
    err = c.errors()[-1]
    assert err.command == "MAIL" and err.state == S_MAIL and err.reply is R.MAIL_SYNTAX


@pytest.mark.parametrize("path,local,domain", [
    ("<a@b.c>", "a", "b.c"),
    ("a@b.c", "a", "b.c"),                                  # no brackets: tolerated
    (" <a@b.c>", "a", "b.c"),                               # space after the colon
    ('<"john doe"@b.c>', '"john doe"', "b.c"),
    ('<"a\\"b"@b.c>', '"a\\"b"', "b.c"),
    ("<@relay.one,@relay.two:u@d.example>", "u", "d.example"),   # source route stripped
    ("<u@[192.0.2.1]>", "u", "[192.0.2.1]"),
    ("<u@[IPv6:2001:db8::1]>", "u", "[IPv6:2001:db8::1]"),
    ("<POSTMASTER@x.example>", "POSTMASTER", "x.example"),
    ("<a+tag=x@b-c.d1.example>", "a+tag=x", "b-c.d1.example"),
])
def test_mail_from_accepted_forms(path, local, domain):
    c = Client()
    c.cmd("EHLO x")
    assert c.cmd(f"MAIL FROM:{path}") == wire(R.MAIL_OK)
    a = c.of(MailFrom)[0].address
    assert (a.localpart, a.domain) == (local, domain)


def test_source_route_kept_for_logs():
    c = Client()
    c.cmd("EHLO x")
    c.cmd("MAIL FROM:<@a.example,@b.example:u@d.example>")
    assert c.of(MailFrom)[0].address.route == ("a.example", "b.example")


def test_null_sender_allowed_by_default_and_refusable():
    c = Client()
    c.cmd("EHLO x")
    assert c.cmd("MAIL FROM:<>") == wire(R.MAIL_OK)
    assert c.of(MailFrom)[0].address.is_null
    c2 = Client(allow_null_envelope_sender=False)
    c2.cmd("EHLO x")
    assert c2.cmd("MAIL FROM:<>") == wire(R.NULL_SENDER_REFUSED)


def test_ip_literal_refused_when_disallowed():
    c = Client(allow_ip_literal=False)
    c.cmd("EHLO x")
    assert c.cmd("MAIL FROM:<a@[192.0.2.1]>") == wire(R.IP_LITERAL_REFUSED)
    c.cmd("MAIL FROM:<a@b.example>")
    assert c.cmd("RCPT TO:<u@[192.0.2.1]>") == wire(R.IP_LITERAL_REFUSED)


def test_trailing_whitespace_in_envelope_option():
    c = Client(rfc2821_allow_whitespace_in_envelope=True)
    c.cmd("EHLO x")
    assert c.cmd("MAIL FROM:<a@b.example>   ") == wire(R.MAIL_OK)
    assert c.cmd("RCPT TO:<c@d.example> \t") == wire(R.RCPT_OK)


def test_whitespace_inside_brackets_option():
    c = Client(allow_trailing_whitespace_in_commands=True)
    c.cmd("EHLO x")
    assert c.cmd("MAIL FROM:< a@b.example >") == wire(R.MAIL_OK)
    assert str(c.of(MailFrom)[0].address) == "a@b.example"


def test_relaxed_address_rules():
    c = Client(rfc2821_pedantic_address_rules=False)
    c.cmd("EHLO x")
    assert c.cmd("MAIL FROM:<a..b@xxx.example>") == wire(R.MAIL_OK)
    assert c.cmd("RCPT TO:<ab.@xxx.example>") == wire(R.RCPT_OK)


def test_unqualified_sender_rewrite():
    c = Client(domain_for_unqualified_sender_address="example.com")
    c.cmd("EHLO x")
    assert c.cmd("MAIL FROM:<bob>") == wire(R.MAIL_OK)
    ev = c.of(MailFrom)[0]
    assert str(ev.address) == "bob" and str(ev.qualified) == "bob@example.com"
    assert ev.raw == "MAIL FROM:<bob>"


def test_mail_twice():
    c = Client()
    c.cmd("EHLO x")
    c.cmd("MAIL FROM:<a@b.example>")
    assert c.cmd("MAIL FROM:<a@b.example>") == wire(R.MAIL_ALREADY)


def test_mail_rejected_by_policy_opens_no_transaction():
    c = Client(policy={MailFrom: Reply(550, "5.7.1", "relaying denied")})
    c.cmd("EHLO x")
    assert c.cmd("MAIL FROM:<a@b.example>") == "550 5.7.1 relaying denied\r\n"
    assert c.srv.transaction is None
    assert c.cmd("RCPT TO:<c@d.example>") == wire(R.RCPT_NO_MAIL)


def test_policy_disconnect_on_mail():
    c = Client(policy={MailFrom: (Reply(421, "4.7.0", "bye"), False)})
    c.cmd("EHLO x")
    assert c.cmd("MAIL FROM:<a@b.example>") == "421 4.7.0 bye\r\n" and c.closed


def test_require_ehlo():
    c = Client(require_ehlo=True)
    assert c.cmd("MAIL FROM:<a@b.example>") == wire(R.HELO_NEEDED)
    assert "550 5.5.1 RFC2821 HELO/EHLO needed" in wire(R.HELO_NEEDED)
    c.cmd("HELO x")
    assert c.cmd("MAIL FROM:<a@b.example>") == wire(R.MAIL_OK)


def test_no_ehlo_needed_by_default():
    c = Client()
    assert c.cmd("MAIL FROM:<a@b.example>") == wire(R.MAIL_OK)
    assert c.of(MailFrom)[0].state == S_EHLO


def test_auth_required_option():
    c = Client(auth_required=True)
    c.cmd("EHLO x")
    assert c.cmd("MAIL FROM:<a@b.example>") == wire(R.AUTH_REQUIRED)


# --- ESMTP parameters -------------------------------------------------------------------------


@pytest.mark.parametrize("params,reply", [
    ("SIZE=abc", Reply(501, "5.5.4", "invalid SIZE parameter")),
    ("SIZE", Reply(501, "5.5.4", "invalid SIZE parameter")),
    ("BODY=9BIT", Reply(501, "5.5.4", "invalid BODY parameter")),
    ("RET=ALL", Reply(501, "5.5.4", "invalid RET parameter")),
    ("ENVID=a=b", Reply(501, "5.5.4", "invalid ENVID parameter")),
    ("ENVID=" + "x" * 101, Reply(501, "5.5.4", "invalid ENVID parameter")),
    ("ENVID=bad+zz", Reply(501, "5.5.4", "invalid ENVID parameter")),
    ("SMTPUTF8=yes", Reply(501, "5.5.4", "invalid SMTPUTF8 parameter")),
    ("SIZE=1 SIZE=2", Reply(501, "5.5.4", "duplicate SIZE parameter")),
    ("FOO=bar", Reply(555, "5.5.4", "FOO parameter not supported")),
])
def test_mail_parameter_errors(params, reply):
    c = Client()
    c.cmd("EHLO x")
    assert c.cmd(f"MAIL FROM:<a@b.example> {params}") == wire(reply)


def test_mail_dsn_parameters_decoded():
    c = Client()
    c.cmd("EHLO x")
    assert c.cmd("MAIL FROM:<a@b.example> RET=hdrs ENVID=QQ+2Bid+3D1 AUTH=<>") == wire(R.MAIL_OK)
    p = c.of(MailFrom)[0].params
    assert (p.ret, p.envid, p.auth) == ("HDRS", "QQ+id=1", "<>")


def test_parameters_of_disabled_extensions_refused():
    c = Client(opts(smtp_extensions=("PIPELINING",)))
    c.cmd("EHLO x")
    for p in ("SIZE=10", "BODY=8BITMIME", "RET=FULL", "SMTPUTF8", "AUTH=<>"):
        key = p.split("=")[0]
        assert c.cmd(f"MAIL FROM:<a@b.example> {p}") == wire(
            Reply(555, "5.5.4", f"{key} parameter not supported"), esc=False)


def test_body_binarymime_needs_binarymime_and_chunking():
    c = Client(opts(smtp_extensions=("8BITMIME", "CHUNKING")))
    c.cmd("EHLO x")
    assert c.cmd("MAIL FROM:<a@b.example> BODY=BINARYMIME").startswith("555 ")
    c2 = Client()
    c2.cmd("EHLO x")
    assert c2.cmd("MAIL FROM:<a@b.example> BODY=BINARYMIME") == wire(R.MAIL_OK)


def test_size_parameter_over_limit():
    c = Client(max_message_size=1000)
    c.cmd("EHLO x")
    assert c.cmd("MAIL FROM:<a@b.example> SIZE=1001") == wire(R.SIZE_EXCEEDED)
    assert "552 5.3.4 message size limit exceeded" in wire(R.SIZE_EXCEEDED)
    assert c.cmd("MAIL FROM:<a@b.example> SIZE=1000") == wire(R.MAIL_OK)


# --- RCPT TO --------------------------------------------------------------------------------


def test_rcpt_without_mail_has_no_enhanced_code():
    c = Client()
    c.cmd("EHLO x")
    assert c.cmd("RCPT TO:<a@b.example>") == "503 RCPT TO without MAIL FROM\r\n"


@pytest.mark.parametrize("line", ["RCPT TO:", "RCPT TO:<>", "RCPT FROM:<a@b.c>",
                                  "RCPT TO:<a@b.c", "RCPT TO:<alice>", "RCPT TO:<a@b.c>junk"])
def test_rcpt_syntax_errors(line):
    c = Client()
    c.cmd("EHLO x")
    c.cmd("MAIL FROM:<s@b.example>")
    assert c.cmd(line) == wire(R.RCPT_SYNTAX)
    assert c.errors()[-1].state == S_RCPT


def test_rcpt_event_and_states():
    c = Client()
    c.cmd("EHLO x")
    c.cmd("MAIL FROM:<s@b.example>")
    c.cmd("RCPT TO:<one@d.example>")
    c.cmd("RCPT TO:<two@d.example>")
    first, second = c.of(RcptTo)
    assert first.state == S_RCPT and second.state == S_DATA
    assert str(second.address) == "two@d.example"


def test_postmaster_unqualified_accepted():
    c = Client()
    c.cmd("EHLO x")
    c.cmd("MAIL FROM:<s@b.example>")
    assert c.cmd("RCPT TO:<Postmaster>") == wire(R.RCPT_OK)
    ev = c.of(RcptTo)[0]
    assert str(ev.address) == "Postmaster" and str(ev.qualified) == f"Postmaster@{HOST}"


def test_unqualified_recipient_rewrite():
    c = Client(domain_for_unqualified_recipient_addresses="example.com")
    c.cmd("EHLO x")
    c.cmd("MAIL FROM:<s@b.example>")
    assert c.cmd("RCPT TO:<abuse>") == wire(R.RCPT_OK)
    assert str(c.of(RcptTo)[0].qualified) == "abuse@example.com"


def test_rcpt_dsn_parameters():
    c = Client()
    c.cmd("EHLO x")
    c.cmd("MAIL FROM:<s@b.example>")
    assert c.cmd("RCPT TO:<a@b.example> NOTIFY=success,Delay ORCPT=rfc822;A+2Bb@b.example") \
        == wire(R.RCPT_OK)
    ev = c.of(RcptTo)[0]
    assert ev.notify == ("SUCCESS", "DELAY") and ev.orcpt == ("rfc822", "A+b@b.example")
    c.cmd("RCPT TO:<b@b.example> NOTIFY=NEVER")
    assert c.of(RcptTo)[1].notify == ("NEVER",)


@pytest.mark.parametrize("param", ["NOTIFY=NEVER,SUCCESS", "NOTIFY=", "NOTIFY=SOMETIMES",
                                   "NOTIFY=DELAY,DELAY", "ORCPT=rfc822", "ORCPT=;a@b",
                                   "ORCPT=rfc822;a=b", "ORCPT=rfc822;a+4"])
def test_rcpt_dsn_parameter_errors(param):
    c = Client()
    c.cmd("EHLO x")
    c.cmd("MAIL FROM:<s@b.example>")
    key = param.split("=")[0]
    assert c.cmd(f"RCPT TO:<a@b.example> {param}") == wire(
        Reply(501, "5.5.4", f"invalid {key} parameter"))


def test_recipients_per_message_limit():
    c = Client(max_recipients_per_message=2)
    c.cmd("EHLO x")
    c.cmd("MAIL FROM:<s@b.example>")
    c.cmd("RCPT TO:<a@b.example>")
    c.cmd("RCPT TO:<b@b.example>")
    assert c.cmd("RCPT TO:<c@b.example>") == wire(R.RCPTS_PER_MESSAGE)
    assert wire(R.RCPTS_PER_MESSAGE) == \
        "452 4.5.3 Service unavailable, recipients per message limit reached\r\n"
    c.cmd("RSET")
    c.cmd("MAIL FROM:<s@b.example>")
    assert c.cmd("RCPT TO:<c@b.example>") == wire(R.RCPT_OK)


def test_refused_recipients_do_not_count():
    c = Client(policy={RcptTo: lambda ev: R.RELAYING_DENIED if "bad" in ev.raw else None},
               max_recipients_per_message=1)
    c.cmd("EHLO x")
    c.cmd("MAIL FROM:<s@b.example>")
    assert c.cmd("RCPT TO:<bad@x.example>") == wire(R.RELAYING_DENIED)
    assert c.cmd("RCPT TO:<good@x.example>") == wire(R.RCPT_OK)
    assert c.cmd("DATA").startswith("354")


def test_recipients_per_connection_limit():
    c = Client(max_recipients_per_connection=2)
    c.cmd("EHLO x")
    c.cmd("MAIL FROM:<s@b.example>")
    c.cmd("RCPT TO:<a@b.example>")
    c.cmd("RSET")
    c.cmd("MAIL FROM:<s@b.example>")
    c.cmd("RCPT TO:<b@b.example>")
    assert c.cmd("RCPT TO:<c@b.example>") == wire(R.RCPTS_PER_CONNECTION)
    assert c.srv.connection_rcpt_count == 2


def test_receptions_per_connection_limit():
    c = Client(max_receptions_per_connection=1)
    c.start_mail()
    c.cmd("DATA")
    c.send(b"Subject: a\r\n\r\nb\r\n.\r\n")
    assert c.cmd("MAIL FROM:<s@b.example>") == wire(R.RECEPTIONS_PER_CONNECTION)
    assert c.closed


# --- DATA sequencing ------------------------------------------------------------------------


def test_data_sequence_errors():
    c = Client()
    c.cmd("EHLO x")
    assert c.cmd("DATA") == wire(R.DATA_NO_MAIL)
    c.cmd("MAIL FROM:<s@b.example>")
    assert c.cmd("DATA") == wire(R.DATA_NO_RCPT)
    c.cmd("RCPT TO:<a@b.example>")
    assert c.cmd("DATA now") == wire(R.DATA_ARGS)


def test_data_refused_by_driver_keeps_transaction():
    c = Client(policy={DataStart: Reply(554, "5.5.1", "no valid recipients")})
    c.start_mail()
    assert c.cmd("DATA") == "554 5.5.1 no valid recipients\r\n"
    assert c.srv.transaction is not None
    assert c.cmd("NOOP") == wire(R.OK)             # still in command mode


def test_full_message_and_queue_id_reply():
    c = Client(policy={DataEnd: Reply(250, "2.0.0", "OK 00/00-02001-C6DD1CA4")})
    c.start_mail()
    assert c.cmd("DATA").startswith("354 ")
    out = c.send(b"Subject: hi\r\n\r\nbody\r\n.\r\n")
    assert out == b"250 2.0.0 OK 00/00-02001-C6DD1CA4\r\n"
    assert bytes(c.body) == b"Subject: hi\r\n\r\nbody\r\n"
    end = c.of(DataEnd)[0]
    assert end.state == S_BODY and end.facts.size == len(c.body)
    assert c.srv.messages_received == 1 and c.srv.transaction is None


def test_rejected_message_not_counted_and_transaction_over():
    c = Client(policy={DataEnd: Reply(550, "5.7.1", "spam")})
    c.start_mail()
    c.cmd("DATA")
    assert c.send(b"a: b\r\n\r\nx\r\n.\r\n") == b"550 5.7.1 spam\r\n"
    assert c.srv.messages_received == 0 and c.srv.transaction is None
    assert c.cmd("RCPT TO:<a@b.example>") == wire(R.RCPT_NO_MAIL)


# --- RSET / NOOP / HELP / VRFY / EXPN / QUIT --------------------------------------------------


def test_rset():
    c = Client()
    c.start_mail()
    assert c.cmd("RSET") == wire(R.OK)
    assert c.srv.transaction is None and c.of(Rset)[0].state == S_DATA
    assert c.cmd("RSET x") == wire(R.RSET_ARGS)


def test_noop_with_argument():
    c = Client()
    assert c.cmd("NOOP hello") == wire(R.OK)
    assert c.of(Noop)[0].arg == "hello"


def test_help():
    c = Client()
    text = c.cmd("HELP")
    assert text.startswith("214-2.0.0 Commands supported:\r\n214 2.0.0 HELO EHLO ")
    assert "STARTTLS" in text and "BDAT" in text
    assert c.cmd("HELP mail") == \
        "214 2.0.0 Syntax: MAIL FROM:<reverse-path> [SP <mail-parameters>]\r\n"
    assert c.cmd("HELP nosuch") == wire(R.HELP_UNKNOWN)
    assert c.of(Help)[1].arg == "mail"


def test_vrfy_expn_defaults_and_driver_answers():
    c = Client(policy={Expn: Reply(550, "5.7.1", "no")})
    assert c.cmd("VRFY bob") == wire(R.VRFY_DEFAULT)
    assert c.cmd("VRFY") == wire(R.VRFY_SYNTAX)
    assert c.cmd("EXPN staff") == "550 5.7.1 no\r\n"
    assert c.cmd("EXPN") == wire(R.EXPN_SYNTAX)
    assert c.of(Vrfy)[0].arg == "bob"


def test_quit():
    c = Client()
    assert c.cmd("QUIT") == f"221 2.0.0 {HOST} closing connection\r\n"
    assert c.closed and c.srv.next_event() is CLOSED
    c.srv.receive_data(b"NOOP\r\n")                    # ignored once closed
    assert c.srv.next_event() is CLOSED and c.srv.data_to_send() == b""


def test_quit_with_argument_refused():
    c = Client()
    assert c.cmd("QUIT now") == wire(R.NO_PARAMS)
    assert not c.closed


def test_quit_always_closes_even_with_odd_reply():
    c = Client(policy={Quit: Reply(250, "", "hmm")})
    c.cmd("QUIT")
    assert c.closed


# --- unknown commands and counters ------------------------------------------------------------


@pytest.mark.parametrize("line", ["FOO", "MAILFROM:<a@b.c>", "", "   ", "ETRN x", "TURN"])
def test_unrecognized(line):
    c = Client()
    assert c.cmd(line) == wire(R.UNRECOGNIZED)
    assert c.srv.unrecognized_commands == 1
    assert c.errors()[0].line == line


def test_disabled_extension_commands_unrecognized():
    c = Client(opts(smtp_extensions=("PIPELINING",)))
    for line in ("STARTTLS", "AUTH PLAIN", "BDAT 1", "XCLIENT ADDR=1.2.3.4", "XREMOTEIP 1.2.3.4",
                 "XSETCONTEXT a=b", "XDUMPCONTEXT"):
        assert c.cmd(line) == wire(R.UNRECOGNIZED, esc=False), line


def test_verbs_case_insensitive():
    c = Client()
    assert c.cmd("ehlo x").startswith("250-")
    assert c.cmd("mail from:<a@b.example>") == wire(R.MAIL_OK)
    assert c.cmd("rcpt to:<c@d.example>") == wire(R.RCPT_OK)


def test_bad_command_counter():
    c = Client()
    c.cmd("HELO")
    c.cmd("MAIL FROM:bad<")
    assert c.srv.bad_commands == 2 and c.srv.unrecognized_commands == 0


# --- reconfiguration --------------------------------------------------------------------------


@pytest.mark.parametrize("verb", ["MAIL FROM:<a@b.example>", "RSET"])
def test_reconfig_answers_421_and_closes(verb):
    c = Client()
    c.cmd("EHLO x")
    c.srv.reconfig_pending = True
    assert c.cmd("NOOP") == wire(R.OK)                 # other commands unaffected
    assert c.cmd(verb) == "421 4.3.2 Reconfiguration in progress\r\n"
    assert c.closed and c.errors()[-1].close


def test_reconfig_message_option():
    c = Client(reconfig_message="4.3.2 back soon")
    c.srv.reconfig_pending = True
    assert c.cmd("RSET") == "421 4.3.2 back soon\r\n"


# --- driver-side close, EOF -------------------------------------------------------------------


def test_driver_close_with_reply():
    c = Client()
    c.srv.close(Reply(421, "4.4.2", f"{HOST} timeout"))
    assert c.pump() == f"421 4.4.2 {HOST} timeout\r\n".encode() and c.closed


def test_eof_reports_client_closed():
    from ecmta.transports.smtp_server import ClientClosed
    c = Client()
    c.start_mail()
    c.send(b"NOOP")                       # a partial line left over
    c.eof()
    ev = c.of(ClientClosed)[0]
    assert ev.in_transaction and ev.unprocessed == 4 and ev.state == S_DATA and c.closed


def test_eof_after_pipelined_commands_still_processes_them():
    c = Client()
    c.srv.receive_data(b"EHLO x\r\nQUIT\r\n")
    c.srv.receive_data(b"")
    out = c.pump()
    assert out.endswith(f"221 2.0.0 {HOST} closing connection\r\n".encode())


def test_state_labels_walk():
    c = Client()
    assert c.srv.state_label == S_EHLO
    c.cmd("EHLO x")
    assert c.srv.state_label == S_MAIL
    c.cmd("MAIL FROM:<a@b.example>")
    assert c.srv.state_label == S_RCPT
    c.cmd("RCPT TO:<a@b.example>")
    assert c.srv.state_label == S_DATA
    c.cmd("DATA")
    assert c.srv.state_label == S_BODY


def test_options_defaults_match_momentum():
    o = ServerOptions()
    assert o.require_ehlo is False and o.allow_null_envelope_sender is True
    assert o.allow_ip_literal is True and o.allow_trailing_whitespace_in_commands is False
    assert o.rfc2821_allow_whitespace_in_envelope is False
    assert o.rfc2821_pedantic_address_rules is True
    assert o.rfc2822_lone_lf_in_headers == "pedantic" and o.rfc2822_lone_lf_in_body == "ignore"
    assert o.rfc2822_max_line_length == "ignore" and o.rfc2822_max_line_length_policy == "none"
    assert o.starttls_injection_policy == "reject"
    assert o.reconfig_message == "4.3.2 Reconfiguration in progress"


def test_need_data_when_idle():
    srv = SMTPServer(opts())
    srv.next_event()
    srv.respond()
    assert srv.next_event() is NEED_DATA
    srv.receive_data(b"NOO")
    assert srv.next_event() is NEED_DATA


def test_protocol_error_for_every_refusal_carries_reply():
    c = Client()
    c.cmd("FOO")
    c.cmd("DATA")
    c.cmd("RCPT TO:<a@b.c>")
    errs = c.errors()
    assert [e.reply.code for e in errs] == [500, 503, 503]
    assert all(isinstance(e, ProtocolError) and e.state == S_EHLO for e in errs)
