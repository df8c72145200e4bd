"""Envelope address parsing (RFC 5321 4.1.2, RFC 6531) and xtext (RFC 3461)."""
import pytest

from ecmta.transports.smtp_address import (
    E_IP_LITERAL, E_LENGTH, E_SYNTAX, E_UTF8, NULL_ADDRESS, Address, AddressError, parse_path,
    xtext_decode, xtext_encode)


def parse(s, **kw):
    addr, end = parse_path(s, **kw)
    assert end == len(s), (s, end)
    return addr


@pytest.mark.parametrize("s,local,domain", [
    ("<a@b.example>", "a", "b.example"),
    ("<A.B-c_d+e@Sub-1.Example.ORG>", "A.B-c_d+e", "Sub-1.Example.ORG"),
    ("<!#$%&'*+-/=?^_`{|}~@x.example>", "!#$%&'*+-/=?^_`{|}~", "x.example"),
    ('<"a b"@x.example>', '"a b"', "x.example"),
    ('<"a@b"@x.example>', '"a@b"', "x.example"),
    ('<"\\\\\\""@x.example>', '"\\\\\\""', "x.example"),
    ('<""@x.example>', '""', "x.example"),
    ("<u@[127.0.0.1]>", "u", "[127.0.0.1]"),
    ("<u@[IPv6:::1]>", "u", "[IPv6:::1]"),
    ("<u@[x-tag:some-content]>", "u", "[x-tag:some-content]"),
    ("<postmaster>", "postmaster", ""),
    ("a@b.example", "a", "b.example"),
    ("<a@b>", "a", "b"),
    ("<a@123.example>", "a", "123.example"),
])
def test_valid_paths(s, local, domain):
    a = parse(s)
    assert (a.localpart, a.domain) == (local, domain)


def test_null_path():
    assert parse("<>") is NULL_ADDRESS and NULL_ADDRESS.is_null and str(NULL_ADDRESS) == ""


def test_source_route():
    a = parse("<@one.example,@[192.0.2.1]:u@d.example>")
    assert a.route == ("one.example", "[192.0.2.1]") and str(a) == "u@d.example"


def test_literal_flag_and_qualify():
    assert parse("<u@[192.0.2.1]>").literal
    a = parse("<abuse>")
    assert not a.is_qualified and str(a.qualify("example.com")) == "abuse@example.com"
    assert parse("<a@b.c>").qualify("x.y") == Address("a", "b.c")
    assert NULL_ADDRESS.qualify("x.y") is NULL_ADDRESS


@pytest.mark.parametrize("s", [
    "<", "<a@b.example", "<a@>", "<@>", "<a@b..example>", "<a@-b.example>", "<a@b-.example>",
    "<a..b@c.example>", "<.a@c.example>", "<a.@c.example>", "<a b@c.example>", '<"a@c.example>',
    '<"a\x01"@c.example>', "<a@[1.2.3.4.5]>", "<a@[IPv6:12345::]>", "<a@[unterminated>",
    "<@a.example:>", "<@a.example,b@c.example>", "@a:b@c.example", "<a@b.example.>",
    "<a@b_c.example>", "<a(comment)@b.example>", "<a@b.example >", "< a@b.example>", "",
])
def test_invalid_paths(s):
    with pytest.raises(AddressError) as e:
        parse(s)
    assert e.value.reason in (E_SYNTAX, E_LENGTH)


def test_relaxed_dots():
    assert parse("<a..b@c.example>", pedantic=False).localpart == "a..b"
    assert parse("<ab.@c.example>", pedantic=False).localpart == "ab."


def test_spaces_in_brackets_option():
    assert str(parse("<  a@b.example  >", space_in_brackets=True)) == "a@b.example"
    assert parse("< >", space_in_brackets=True) is NULL_ADDRESS


def test_lengths():
    parse("<" + "a" * 64 + "@b.example>")
    with pytest.raises(AddressError) as e:
        parse("<" + "a" * 65 + "@b.example>")
    assert e.value.reason == E_LENGTH
    with pytest.raises(AddressError):
        parse("<a@" + ".".join(["b" * 63] * 4) + ">")       # domain 255, path 260


def test_utf8():
    a = parse("<j\u00f6rg@m\u00fcller.example>")
    assert a.is_utf8 and a.domain == "m\u00fcller.example"
    for s in ("<j\u00f6rg@x.example>", "<a@m\u00fcller.example>", '<"\u00e9"@x.example>'):
        with pytest.raises(AddressError) as e:
            parse(s, utf8=False)
        assert e.value.reason == E_UTF8
    # length counts octets, not characters
    with pytest.raises(AddressError):
        parse("<" + "\u00e9" * 33 + "@x.example>")


def test_ip_literal_refused():
    with pytest.raises(AddressError) as e:
        parse("<a@[192.0.2.1]>", allow_ip_literal=False)
    assert e.value.reason == E_IP_LITERAL


def test_parse_from_offset_returns_end():
    s = "MAIL FROM:<a@b.example> SIZE=1"
    addr, end = parse_path(s, 10)
    assert str(addr) == "a@b.example" and s[end:] == " SIZE=1"


@pytest.mark.parametrize("raw,decoded", [
    ("abc", "abc"), ("a+2Bb", "a+b"), ("a+3Db", "a=b"), ("+20", " "), ("", ""),
    ("rfc822+3Ba@b", "rfc822;a@b"), ("x+2b", "x+"),
])
def test_xtext_decode(raw, decoded):
    assert xtext_decode(raw) == decoded


@pytest.mark.parametrize("raw", ["a=b", "a b", "a+", "a+2", "a+ZZ", "\u00e9", "a\x7f"])
def test_xtext_decode_errors(raw):
    with pytest.raises(ValueError):
        xtext_decode(raw)


def test_xtext_roundtrip():
    for s in ("plain", "a+b=c d", "caf\u00e9", "\x01"):
        assert xtext_decode(xtext_encode(s)) == s
    assert xtext_encode("a+b=c d") == "a+2Bb+3Dc+20d"
