"""custom_logger formats (modules.custom_logger): the page's example lines, every specifier
for every record kind, namespaces and macros (sieve, outbound_tls), sanitize, and the
property that no data breaks a record's line or, with the delimiter translated away, its
field count."""

import os
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecmta.loggers import custom_logger as C
from ecmta.loggers import records
from ecmta.tests.custom_logger.helpers import (CID, MID, TS, delivery, failure, rcpt_rejection,
                                               reception, rejection)


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.delenv("TZ")
    time.tzset()


def line(fmt, rec, **kw):
    return C.render_line(fmt, rec, **kw)


# -- the page's example lines ----------------------------------------------------------------

# modules.custom_logger 71.25.3: the format (the » is the page's line continuation) and the
# entry of a message rejected during the connect phase, as the page prints it (wrapped).
PAGE_REJECTION_FORMAT = ("%p @ %s @ %BI @ %A @ %U @ %n @ %h{Subject} @ %r "
                         "@ %R @ %m @ %M @ %i @ %t @ %t{%Y-%m-%d} @ %H @ %mx @ %S")
PAGE_REJECTION_LINES = (
    "unknown @  @ 00/00-00000-00000000 @  @  @ relaying denied @  @  @  @",
    "@  @ 00/00-00000-00000000 @ 1339007869 @ 2012-06-06 @ 10.79.11.157 @  @",
    "22",
)


def test_page_rejection_example_renders_identically():
    """The page's rejection-before-MAIL-FROM entry, from the same event: a connection from
    10.79.11.157 refused with "relaying denied" at 1339007869 (2012-06-06)."""
    rec = rejection(ts=1339007869, peer_ip="10.79.11.157", remote="10.79.11.157:40587",
                    text="relaying denied", phase="connect")
    got = line(PAGE_REJECTION_FORMAT, rec)
    # The page wraps the line at the column limit (where a field separator was): the same
    # text, the same 17 fields.
    page = " ".join(PAGE_REJECTION_LINES)
    assert re.sub(r"\s+", " ", got) == re.sub(r"\s+", " ", page)
    assert got == ("unknown @  @ 00/00-00000-00000000 @  @  @ relaying denied @  @  @  @  @  @ "
                   "00/00-00000-00000000 @ 1339007869 @ 2012-06-06 @ 10.79.11.157 @  @ 22")
    assert len(got.split(" @ ")) == 17 == len(PAGE_REJECTION_FORMAT.split(" @ "))
    assert "\n" not in got


def test_page_delivery_example():
    """Example 71.40: delivery_format = "%t %r@%R"."""
    assert line("%t %r@%R", delivery()) == f"{TS + 1} bob@example.net"


def test_page_namespace_example_reception_format():
    """Example 71.41: %mydate comes from the mymacros namespace, which ecmta has no macros
    for: it prints nothing, every other field is the reception's."""
    fmt = "%t@%i@R@%r@%R@%m@%M@%H@%B@%p@%g@%b@%mydate"
    want = f"{TS}@{MID}@R@bob@example.net@alice@example.com@10.0.0.1@1234@esmtp@default@default@"
    assert line(fmt, reception(), namespaces=("custom_logger", "sieve", "mymacros")) == want
    assert line(fmt, reception()) == want


def test_jlog_page_example_delivery_format():
    """modules.jlog Example 71.68: "%t@%r@%R@%vctx_mess{customerid}"."""
    assert line("%t@%r@%R@%vctx_mess{customerid}", delivery()) == f"{TS + 1}@bob@example.net@c42"


TLS = {"outbound_tls": "TLS", "outbound_tls_type": "required", "outbound_tls_cipher": "ECDHE-RSA-AES256-GCM-SHA384",
       "outbound_tls_cipher_algbits": "256", "outbound_tls_cipher_usebits": "256",
       "outbound_tls_protocol": "TLSv1.2", "outbound_tls_verified": "verified",
       "outbound_tls_issuer": "ca.test.messagesystems.com",
       "outbound_tls_subject": "server.ectest.examplecompany.com"}
TLS_TAIL = ("@%r@%R%local_ip@%outbound_tls@%outbound_tls_type@%outbound_tls_cipher"
            "@%outbound_tls_cipher_algbits@%outbound_tls_cipher_usebits@%outbound_tls_protocol"
            "@%outbound_tls_verified@%outbound_tls_issuer@%outbound_tls_subject")
TLS_NS = ("custom_logger", "sieve", "outbound_tls")


def test_tls_macros_page_example_delivery_format():
    """tls_macros Example 71.98 (delivery_format; its stray `%` before the wrap prints as is)."""
    fmt = "%t{%m:%d:%H:%M:%S}@%i@%BI@%CI@D@%d@%B@%g@%b@%N@%T@%H%" + TLS_TAIL
    got = line(fmt, delivery(tls=TLS), namespaces=TLS_NS, tls_macros=True)
    assert got == (f"06:06:18:37:50@{MID}@{MID}@{CID}@D@example.net@1234@default@default@0@1.25@192.0.2.25%"
                   "@bob@example.net192.0.2.25@TLS@required@ECDHE-RSA-AES256-GCM-SHA384@256@256@TLSv1.2"
                   "@verified@ca.test.messagesystems.com@server.ectest.examplecompany.com")
    clear = line(fmt, delivery(), namespaces=TLS_NS, tls_macros=True)
    assert clear.endswith("@bob@example.net192.0.2.25@SMTP@no@@@@@@@")


def test_tls_macros_page_example_reception_and_failures():
    rfmt = "%t{%m:%d:%H:%M:%S}@%i@%BI@%CI@R@%r@%R@%m@%M@%H@%B@%p@%g@%b" + TLS_TAIL
    assert line(rfmt, reception(), namespaces=TLS_NS, tls_macros=True) == (
        f"06:06:18:37:49@{MID}@{MID}@{CID}@R@bob@example.net@alice@example.com@10.0.0.1@1234@esmtp"
        "@default@default@bob@example.net@unknown@@@@@@@@")
    tfmt = "%t{%m:%d:%H:%M:%S}@%i@%BI@%CI@T@%d@0@%g@%b@%S@%N@%T@%H@%n" + TLS_TAIL
    assert line(tfmt, failure(False, tls=TLS), namespaces=TLS_NS, tls_macros=True) == (
        f"06:06:18:37:51@{MID}@{MID}@{CID}@T@example.net@0@default@default@4@1@65.50@192.0.2.25"
        "@451 4.7.1 greylisted@bob@example.net192.0.2.25@TLS@required@ECDHE-RSA-AES256-GCM-SHA384"
        "@256@256@TLSv1.2@verified@ca.test.messagesystems.com@server.ectest.examplecompany.com")
    # the page's permanent_failure_format has "@r@" (a literal r): printed as written
    pfmt = "%t@%i@P@%d@0@%g@%b@%S@%N@%T@%H@%n@r@%R%local_ip@%outbound_tls"
    assert line(pfmt, failure(True), namespaces=TLS_NS, tls_macros=True) == (
        f"{TS + 2}@{MID}@P@example.net@0@default@default@4@1@65.50@192.0.2.25@550 5.1.1 no such user"
        "@r@example.net192.0.2.25@SMTP")


def test_outbound_tls_needs_the_namespace_and_the_module():
    fmt = "[%outbound_tls][%{outbound_tls:outbound_tls_protocol}]"
    rec = delivery(tls=TLS)
    assert line(fmt, rec, namespaces=TLS_NS, tls_macros=True) == "[TLS][TLSv1.2]"
    assert line(fmt, rec, tls_macros=True) == "[][]"                 # namespace not listed
    assert line(fmt, rec, namespaces=TLS_NS, tls_macros=False) == "[][]"   # no tls_macros {}


# -- every specifier, every record kind ---------------------------------------------------------

SPECS = ["%A", "%b", "%B", "%BI", "%CI", "%d", "%g", "%H", "%h{Subject}", "%i", "%m", "%M", "%n",
         "%N", "%P", "%PG", "%p", "%r", "%R", "%s", "%S", "%t", "%t{%Y-%m-%d %H:%M:%S}", "%T",
         "%T{4}", "%U", "%us{3}", "%us", "%vctx_conn{ehlo_domain}", "%vctx_mess{customerid}"]


def fields(rec):
    fmt = "|".join(SPECS)
    return dict(zip(SPECS, line(fmt, rec).split("|")))


def test_reception_fields():
    rec = reception(ctx_conn={"ehlo_domain": "client.test", "auth_name": "PLAIN", "auth_user": "joe",
                              "pathway": "inbound", "pathway_group": "pg1"})
    f = fields(rec)
    assert f == {
        "%A": "PLAIN", "%b": "default", "%B": "1234", "%BI": MID, "%CI": CID, "%d": "example.net",
        "%g": "default", "%H": "10.0.0.1", "%h{Subject}": "hello there", "%i": MID, "%m": "alice",
        "%M": "example.com", "%n": "", "%N": "0", "%P": "inbound", "%PG": "pg1", "%p": "esmtp",
        "%r": "bob", "%R": "example.net", "%s": "", "%S": "22", "%t": str(TS),
        "%t{%Y-%m-%d %H:%M:%S}": "2012-06-06 18:37:49", "%T": "0.00", "%T{4}": "0.0000", "%U": "joe",
        "%us{3}": f"{TS}.000", "%us": f"{TS}.000000", "%vctx_conn{ehlo_domain}": "client.test",
        "%vctx_mess{customerid}": "c42"}


def test_reception_routing_domain_and_unauthenticated():
    rec = reception(routing_domain="gw.example.org",
                    ctx_conn={"auth_name": "PLAIN", "auth_status": "fail"})
    f = fields(rec)
    assert (f["%d"], f["%A"], f["%U"], f["%P"], f["%PG"]) == ("gw.example.org", "", "", "default", "default")


def test_delivery_fields():
    rec = delivery(ts=TS + 0.123456, retries=3, seconds=12.3456, binding="b1", binding_group="g1",
                   ctx_conn={"auth_name": "LOGIN", "auth_user": "joe", "pathway": "p"},
                   headers={"subject": "hi"})
    f = fields(rec)
    assert (f["%b"], f["%g"], f["%B"], f["%d"], f["%H"], f["%n"], f["%N"]) == \
        ("b1", "g1", "1234", "example.net", "192.0.2.25", "250 2.0.0 Ok: queued as 4F1AB", "3")
    assert (f["%T"], f["%T{4}"], f["%us{3}"], f["%us"]) == ("12.35", "12.3456", f"{TS}.123", f"{TS}.123456")
    assert (f["%r"], f["%R"], f["%m"], f["%M"], f["%p"]) == ("bob", "example.net", "alice", "example.com", "esmtp")
    assert (f["%s"], f["%S"], f["%A"], f["%U"], f["%P"], f["%h{Subject}"]) == ("", "22", "LOGIN", "joe", "p", "hi")
    assert f["%vctx_mess{customerid}"] == "c42"


@pytest.mark.parametrize("permanent", [False, True])
def test_failure_fields(permanent):
    rec = failure(permanent, stage=8)
    f = fields(rec)
    assert (f["%S"], f["%s"], f["%H"], f["%N"], f["%T"]) == ("8", "while sending BODY", "192.0.2.25", "1", "65.50")
    assert f["%n"] == ("550 5.1.1 no such user" if permanent else "451 4.7.1 greylisted")
    for stage, text in enumerate(C.STAGE_TEXT):
        assert line("%S=%s", failure(permanent, stage=stage)) == f"{stage}={text}"


def test_bounce_class_of_failures():
    pytest.importorskip("ecmta.loggers.bounce_classifier")
    got = line("%C %c", failure(True, response="550 5.1.1 <bob@example.net>: user unknown"))
    code, name = got.split(" ", 1)
    assert int(code) == 10 and name == "Invalid Recipient"
    assert line("%C|%c", delivery()) == "|"
    assert line("%C|%c", reception()) == "|"


def test_rejection_fields_after_mail_from():
    rec = rcpt_rejection(ctx_conn={"auth_name": "PLAIN", "auth_user": "joe", "ehlo_domain": "c.test"})
    f = fields(rec)
    assert (f["%p"], f["%BI"], f["%i"], f["%r"], f["%R"], f["%m"], f["%M"]) == \
        ("esmtp", "20/00-10012-D88AED05", "20/00-10012-D88AED05", "x", "elsewhere.test", "alice", "example.com")
    assert (f["%n"], f["%H"], f["%S"], f["%s"], f["%B"], f["%N"], f["%T"]) == \
        ("5.7.1 relaying denied", "10.79.11.157", "22", "", "0", "", "")
    assert (f["%A"], f["%U"], f["%P"], f["%PG"], f["%b"], f["%g"], f["%d"]) == \
        ("PLAIN", "joe", "default", "default", "", "", "")


def test_rejection_of_one_recipient_at_data_names_its_message():
    rec = rcpt_rejection(msg_id="30/00-10012-D88AED05", rcptto="carol@example.org", phase="data",
                         command="")
    assert line("%i %BI %r %R", rec) == "30/00-10012-D88AED05 20/00-10012-D88AED05 carol example.org"


def test_xfer_records_use_the_xfer_format():
    assert C.stage_of(delivery(kind="X")) == "xfer"
    assert C.stage_of(delivery()) == "delivery"
    assert C.stage_of(failure(True)) == "permanent_failure"
    assert C.stage_of(failure(False)) == "transient_failure"


# -- the format language ---------------------------------------------------------------------------

def test_literals_percent_and_unknown_macros():
    rec = reception()
    assert line("100%% %r", rec) == "100% bob"
    assert line("%r% %", rec) == "bob% %"
    assert line("%zz|%mx|%r", rec) == "||bob"          # unknown names print nothing
    assert line("%r_%R", rec) == "bob_example.net"      # one '_' before a % is a delimiter
    assert line("%r__x", rec) == ""                     # ... a name once letters follow


def test_sieve_macros_and_qualified_names():
    rec = reception()
    assert line("%{vctx_conn:ehlo_domain}/%{vctx_mess:customerid}/%{vctx_mess:none}", rec) == "client.test/c42/"
    assert line("%{vctx_mess:customerid}", rec, namespaces=("custom_logger",)) == ""   # no sieve
    assert line("%{custom_logger:r}@%{R}", rec) == "bob@example.net"


def test_unterminated_braces_are_config_errors():
    with pytest.raises(C.FormatError):
        C.compile_format("%t{%Y")
    with pytest.raises(C.FormatError):
        C.compile_format("%{vctx_conn:x")


def test_compiled_formats_report_what_records_must_carry():
    c = C.compile_format("%h{Subject} %h{X-Campaign} %r")
    assert c.headers == {"subject", "x-campaign"} and not c.uses_ctx
    assert C.compile_format("%vctx_mess{k}").uses_ctx
    assert C.compile_format("%{vctx_conn:k}").uses_ctx
    assert C.compile_format("%U").uses_ctx


# -- sanitize -----------------------------------------------------------------------------------

def test_sanitize_special_characters():
    s = C.Sanitizer("special_characters")
    assert s("a\\b\nc\rd\te\x01") == "a\\\\b\\nc\\rd\\te\\x01"


def test_sanitize_non_printable():
    s = C.Sanitizer("non_printable")
    assert s("caf\u00e9\x07ok") == "caf\\195\\169\\007ok"


def test_sanitize_tr_and_the_page_example():
    s = C.Sanitizer("special_characters,tr/ /_/")
    assert s("hello big\nworld") == "hello_big\\nworld"
    assert C.Sanitizer("tr/a-c/A-C/")("abcd") == "ABCd"
    assert C.Sanitizer("tr/@,/__/")("a@b,c") == "a_b_c"
    assert C.Sanitizer("tr/abc/x/")("abcd") == "xxxd"                # set2 padded with its last
    assert C.Sanitizer("tr/\\//|/")("a/b") == "a|b"                  # escaped slash
    assert C.Sanitizer("")("x\ny") == "x\\ny"                        # one line whatever the rule


def test_sanitize_steps_run_in_the_order_written():
    assert C.Sanitizer("tr/\n/ /,special_characters")("a\nb") == "a b"
    assert C.Sanitizer("special_characters,tr/\\\\/!/")("a\nb") == "a!nb"


def test_bad_sanitize_rules():
    for bad in ("shout", "tr/abc", "tr/z-a/x/"):
        with pytest.raises(C.FormatError):
            C.Sanitizer(bad)


def test_sanitize_applies_to_data_from_outside_only():
    rec = reception(rcpt_local="bob smith", headers={"subject": "a b"}, msg_id=MID)
    assert line("%r|%h{Subject}|%i|%t{%Y %m}", rec, sanitize="tr/ /_/") == "bob_smith|a_b|" + MID + "|2012 06"


# -- properties --------------------------------------------------------------------------------------

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
ids = st.from_regex(r"\A[0-9A-F]{2}/[0-9A-F]{2}-\d{5}-[0-9A-F]{8}\Z")


@settings(max_examples=200, deadline=None)
@given(local=text, domain=text, sender=text, reply=text, header=text, ctx=text, mid=ids)
def test_no_data_breaks_the_line_or_the_fields(local, domain, sender, reply, header, ctx, mid):
    """Addresses, replies, headers and context values with @, newlines or 8-bit text: one
    line per record always; with the delimiter translated away (sanitize tr/@/_/) the
    field count is the format's."""
    fmt = "%t@%i@%r@%R@%m@%M@%n@%h{Subject}@%vctx_mess{k}@%T"
    recs = [reception(msg_id=mid, rcpt_local=local, rcpt_domain=domain, sender_local=sender,
                      headers={"subject": header}, ctx_mess={"k": ctx}),
            delivery(msg_id=mid, rcpt_local=local, response=reply, ctx_mess={"k": ctx}),
            failure(True, msg_id=mid, sender_local=sender, response=reply),
            rcpt_rejection(text=reply, mailfrom=f"{sender}@{domain}")]
    for rec in recs:
        plain = line(fmt, rec)
        assert "\n" not in plain and "\r" not in plain
        safe = line(fmt, rec, sanitize="special_characters,tr/@/_/")
        assert "\n" not in safe and len(safe.split("@")) == 10
