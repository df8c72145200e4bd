"""Lexer and parser: tokens, lines, quoting, comments, lists, dictionaries, scopes."""

import pytest

from ecmta.config import ConfigError
from ecmta.config.lexer import EOF, EQ, STRING, WORD, needs_quotes, quote, tokenize
from ecmta.config.parser import (MAX_DEPTH, DictNode, IncludeStmt, ListNode, OptionStmt, Scalar,
                                 ScopeStmt, parse, parse_value)


def kinds(text):
    return [(t.kind, t.text) for t in tokenize(text)][:-1]


def fails(text, file="f.conf"):
    with pytest.raises(ConfigError) as info:
        parse(text, file)
    err = info.value.errors[0]
    return err.file, err.line, err.message


# -- lexer ----------------------------------------------------------------------------------

def test_tokens_carry_lines_and_offsets():
    toks = tokenize('a = 1\n\n  b "two words"\n')
    assert [(t.kind, t.text, t.line) for t in toks] == [
        (WORD, "a", 1), (EQ, "=", 1), (WORD, "1", 1), (WORD, "b", 3), (STRING, "two words", 3), (EOF, "", 4)]
    b = toks[3]
    assert 'a = 1\n\n  b "two words"\n'[b.start:b.end] == "b"


def test_hash_and_c_comments_do_not_nest():
    text = "a 1 # comment { }\n/* x /* y */ b 2 /* multi\nline */ c 3"
    assert kinds(text) == [(WORD, "a"), (WORD, "1"), (WORD, "b"), (WORD, "2"), (WORD, "c"), (WORD, "3")]
    assert tokenize(text)[-2].line == 3


def test_non_nesting_comment_leaves_trailing_close():
    # "/* a /* b */ c */": the first */ ends the comment, so "c" and "*/" are tokens.
    assert kinds("/* a /* b */ c */") == [(WORD, "c"), (WORD, "*/")]


def test_bare_tokens_allow_paths_and_addresses():
    assert kinds("Listen /tmp/2025 {}") == [(WORD, "Listen"), (WORD, "/tmp/2025"), ("{", "{"), ("}", "}")]
    assert kinds("source = msys.boot") == [(WORD, "source"), (EQ, "="), (WORD, "msys.boot")]
    assert kinds("Listen :25 Gateway=10.10.10.50") == [
        (WORD, "Listen"), (WORD, ":25"), (WORD, "Gateway"), (EQ, "="), (WORD, "10.10.10.50")]
    assert kinds("ThreadPool accept-pool *.example.com") == [
        (WORD, "ThreadPool"), (WORD, "accept-pool"), (WORD, "*.example.com")]


def test_bare_token_stops_at_specials_and_comment():
    assert kinds("a=b") == [(WORD, "a"), (EQ, "="), (WORD, "b")]
    assert kinds("x(y)z") == [(WORD, "x"), ("(", "("), (WORD, "y"), (")", ")"), (WORD, "z")]
    assert kinds("k#c\nv") == [(WORD, "k"), (WORD, "v")]
    assert kinds("/tmp/x/*c*/y") == [(WORD, "/tmp/x"), (WORD, "y")]
    assert kinds("a,b") == [(WORD, "a"), (",", ","), (WORD, "b")]


def test_quotes_double_single_and_escapes():
    assert kinds('"a b" \'c d\'') == [(STRING, "a b"), (STRING, "c d")]
    assert kinds(r'"say \"hi\"" "back\\slash" "\d+\."') == [
        (STRING, 'say "hi"'), (STRING, "back\\slash"), (STRING, r"\d+\.")]
    assert kinds("'it\\'s'") == [(STRING, "it's")]
    assert kinds('"# not a comment /* either */"') == [(STRING, "# not a comment /* either */")]


def test_multiline_string_counts_lines():
    toks = tokenize('a "x\ny"\nb 1')
    assert toks[1].text == "x\ny" and toks[1].line == 1
    assert toks[2].line == 3


@pytest.mark.parametrize("text,line,needle", [
    ('a = "open\n\n', 1, "unterminated string"),
    ("a = 1\n/* open\n\n", 2, "unterminated /* comment"),
    ("a = \u201cfancy\u201d", 1, "typographic quote"),
    ("a = 'x", 1, "unterminated string"),
    ("a = b\x00c", 1, "NUL"),
])
def test_lexical_errors_name_the_line(text, line, needle):
    f, ln, msg = fails(text)
    assert (f, ln) == ("f.conf", line) and needle in msg


def test_quote_round_trips():
    for s in ["plain", "two words", 'q"uote', "back\\slash", "", "/* x */", "a#b", "\u00e9"]:
        assert tokenize(quote(s))[0].text == s
    assert not needs_quotes("msys.boot") and not needs_quotes("/tmp/2025")
    assert needs_quotes("a b") and needs_quotes("a=b") and needs_quotes("") and needs_quotes("x/*")


# -- parser ---------------------------------------------------------------------------------

def test_options_with_and_without_equals():
    stmts = parse("a = 1\nb 2\nc = \"three\"\n")
    assert [(s.name, s.value.text, s.value.quoted, s.line) for s in stmts] == [
        ("a", "1", False, 1), ("b", "2", False, 2), ("c", "three", True, 3)]


def test_scope_forms():
    text = """
    ESMTP_Listener { }
    Esmtp_Listener = { }
    Domain "example.com" { }
    Domain example.org { }
    Listen /tmp/2025 {}
    ec_logger "ec_logger"
    {
    }
    """
    stmts = parse(text)
    assert [(s.keyword, s.name.text if s.name else None) for s in stmts] == [
        ("ESMTP_Listener", None), ("Esmtp_Listener", None), ("Domain", "example.com"),
        ("Domain", "example.org"), ("Listen", "/tmp/2025"), ("ec_logger", "ec_logger")]
    assert [s.line for s in stmts] == [2, 3, 4, 5, 6, 7]
    assert all(isinstance(s, ScopeStmt) for s in stmts)


def test_option_followed_by_scope_is_not_a_scope_name():
    stmts = parse("foo = bar\nSecurity { }\nUse_IP false\nDomain x { }")
    assert isinstance(stmts[0], OptionStmt) and stmts[0].value.text == "bar"
    assert isinstance(stmts[1], ScopeStmt) and stmts[1].keyword == "Security"
    assert isinstance(stmts[2], OptionStmt)
    assert isinstance(stmts[3], ScopeStmt) and stmts[3].name.text == "x"


def test_nested_scopes_and_spans():
    text = 'binding "b" {\n  domain "d" {\n    x = 1\n  }\n}\n'
    (b,) = parse(text)
    (d,) = b.body
    (x,) = d.body
    assert (b.line, d.line, x.line) == (1, 2, 3)
    assert text[b.start:b.end].startswith("binding") and text[b.end - 1] == "}"
    assert text[x.value.start:x.value.end] == "1"
    assert text[d.close] == "}"


def test_lists_with_and_without_commas_multiline():
    (o,) = parse('headerlist = ("from", "to",\n  subject\n  "x y" )')
    assert isinstance(o.value, ListNode)
    assert [i.text for i in o.value.items] == ["from", "to", "subject", "x y"]
    (e,) = parse("DEBUG = ()")
    assert e.value.items == ()
    (n,) = parse("x = ( a ( b c ) [ k = v ] )")
    assert isinstance(n.value.items[1], ListNode) and isinstance(n.value.items[2], DictNode)


def test_dictionary_keys_of_every_form():
    text = """
    context = [ my_key = "my_value"  my_other_key = "my_other_value" ]
    code = [ "0" = "250 ok" ]
    custom_classes = [ 99 = "profanity" ]
    bits = [ 0.0.0.1 = "list1_hits", 0.0.0.2 "list2" ]
    AuthLoginParameters = [ uri = "file:///opt/msys/ecelerity/etc/passwd" log_authentication = "true" ]
    map [ a = b ]
    """
    stmts = parse(text)
    keys = [[(k.text, v.text) for k, v in s.value.items] for s in stmts]
    assert keys == [
        [("my_key", "my_value"), ("my_other_key", "my_other_value")],
        [("0", "250 ok")], [("99", "profanity")],
        [("0.0.0.1", "list1_hits"), ("0.0.0.2", "list2")],
        [("uri", "file:///opt/msys/ecelerity/etc/passwd"), ("log_authentication", "true")],
        [("a", "b")]]


def test_include_statements():
    stmts = parse('include "a.conf"\nreadonly_include = b.conf\nINCLUDE /etc/x.d\n')
    assert [(type(s), s.readonly, s.path.text, s.line) for s in stmts] == [
        (IncludeStmt, False, "a.conf", 1), (IncludeStmt, True, "b.conf", 2), (IncludeStmt, False, "/etc/x.d", 3)]


def test_render_normalises_literals():
    (o,) = parse('x = ( a "b c" , d )')
    assert o.value.render() == '( a "b c" d )'
    (d,) = parse('y = [ k = "v" n 1 ]')
    assert d.value.render() == '[ k = "v" n = 1 ]'
    assert Scalar("two words").render() == '"two words"'


@pytest.mark.parametrize("text,line,needle", [
    ("a = 1\n}\n", 2, "unexpected '}'"),
    ("Domain x {\n  a = 1\n", 1, "unterminated scope"),
    ("a = 1\nb\n", 2, "has no value"),
    ("a = 1\nb =\n}", 2, "has no value"),
    ("x = ( a b\n\n", 1, "unterminated list"),
    ("x = [ a = 1\n", 1, "unterminated dictionary"),
    ("x = [ a = ]", 1, "has no value"),
    ("x = [ ( ) = 1 ]", 1, "expected a dictionary key"),
    ("\n\n= 5", 3, "expected an option or scope name"),
    ("x = ( a } )", 1, "unexpected '}' in list"),
    ("include {\n}", 1, "needs a file or directory path"),
])
def test_syntax_errors_give_file_and_line(text, line, needle):
    f, ln, msg = fails(text)
    assert (f, ln) == ("f.conf", line), msg
    assert needle in msg


def test_depth_cap_scopes_and_values():
    deep = "".join(f"s{i} {{\n" for i in range(MAX_DEPTH + 1)) + "}\n" * (MAX_DEPTH + 1)
    f, line, msg = fails(deep)
    assert line == MAX_DEPTH + 1 and "nested deeper" in msg
    f, line, msg = fails("x = " + "(" * 5000 + ")" * 5000)
    assert line == 1 and "nested deeper" in msg
    ok = "".join(f"s{i} {{\n" for i in range(MAX_DEPTH)) + "}\n" * MAX_DEPTH
    assert len(parse(ok)) == 1


def test_parse_value_for_the_console():
    assert parse_value("= 5").text == "5"
    assert [i.text for i in parse_value("( 10.0.0.1 10.0.0.2 )").items] == ["10.0.0.1", "10.0.0.2"]
    with pytest.raises(ConfigError, match="after the value"):
        parse_value("a b")
    with pytest.raises(ConfigError, match="missing value"):
        parse_value("  ")


def test_control_characters_outside_quotes_are_refused():
    f, line, msg = fails("a = 1\nb\x1fc = 2\n")
    assert line == 2 and msg == "control character U+001F outside quotes"
    assert parse('a = "tab\there \x01 ok"')[0].value.text == "tab\there \x01 ok"
