"""Momentum's Lua dialect rewrite (!=, ^^, \\) is token-aware: strings and comments stay."""

import pytest

from ecmta.policy.dialect import rewrite


@pytest.mark.parametrize("src, want", [
    ("if a != b then end", "if a ~= b then end"),
    ("x = a ^^ b", "x = a ~ b"),
    ("x = a \\ 2", "x = a // 2"),
    ("x = (a\\b)^^(c!=d)", "x = (a//b)~(c~=d)"),
    ("x = a ~= b and ~a", "x = a ~= b and ~a"),        # native 5.4 operators untouched
    ("x = a ^ 2", "x = a ^ 2"),                         # power stays power
    ("x = a & b | c << 1 >> 2", "x = a & b | c << 1 >> 2"),
])
def test_operators(src, want):
    assert rewrite(src) == want


@pytest.mark.parametrize("src", [
    's = "a != b ^^ c \\\\ d"',
    "s = 'it\\'s != ok \\\\'",
    "s = [[ a != b \\ c ^^ d ]]",
    "s = [==[ ]] != ]=] \\ ]==]",
    "-- a != b \\ c ^^ d",
    "--[[ a != b\n \\ c ^^ d ]]",
    "--[==[ ]] != ]==]",
])
def test_strings_and_comments_untouched(src):
    assert rewrite(src) == src


def test_mixed_code_strings_comments():
    src = ('local s = "x != y" -- keep != here\n'
           'if s != "\\\\" then n = 7 \\ 2 end --[[ ^^ ]] m = a ^^ b\n')
    want = ('local s = "x != y" -- keep != here\n'
            'if s ~= "\\\\" then n = 7 // 2 end --[[ ^^ ]] m = a ~ b\n')
    assert rewrite(src) == want


def test_line_numbers_preserved():
    src = "a = 1\nb = [[\nx != y\n]]\nif a != b then\n  c = a \\ b\nend\n"
    out = rewrite(src)
    assert out.count("\n") == src.count("\n")
    assert out.splitlines()[4] == "if a ~= b then"
    assert out.splitlines()[5] == "  c = a // b"


def test_shebang_blanked_keeping_lines():
    assert rewrite("#!/usr/bin/lua\nx = 1 != 2\n") == "\nx = 1 ~= 2\n"


def test_unterminated_string_passes_through():
    # Lua's compiler reports it with the line number; the rewriter must not loop or raise.
    src = 'x = "abc\ny = 1 != 2\n'
    assert rewrite(src) == 'x = "abc\ny = 1 ~= 2\n'


def test_long_bracket_vs_index():
    assert rewrite("t[a] = b != c") == "t[a] = b ~= c"
    assert rewrite("t[ [[k]] ] = 1 \\ 2") == "t[ [[k]] ] = 1 // 2"
