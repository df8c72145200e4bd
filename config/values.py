"""Literal -> typed value conversion per `OptionSpec.type` (registry.TYPES).

Owns: `convert(spec, node)` (raises `BadValue` with a sentence the validator prefixes
with file:line and the option name), `ec_atobool`, and `default_raw(spec)`, the literal
the console prints for a built-in default (`Blackhole = 0`). Used by `validate.py`
(files) and `manager.py` (console `config set`).

Typed forms: bool -> bool, int/octal/size/interval -> int, string/enum -> str,
list and regex_list (each item compiled as a Python regex) -> tuple, dict -> FrozenDict,
rate -> Rate(count, seconds). An option the registry does not type (inside a module ecmta
does not implement, only with allow_unbuilt) keeps its literal structure: str, tuple,
FrozenDict.
"""

from __future__ import annotations

import re

from ecmta.config.lexer import needs_quotes, quote
from ecmta.config.model import FrozenDict, Rate
from ecmta.config.parser import DictNode, ListNode, Scalar


class BadValue(Exception):
    """The literal does not fit the option's type; the text says what was expected."""


_TRUE = {"on", "true", "enabled", "1"}
_FALSE = {"off", "false", "disabled", "0"}
_INT = re.compile(r"^[+-]?\d+$")
_UNITS = {"second": 1, "seconds": 1, "sec": 1, "secs": 1, "s": 1,
          "minute": 60, "minutes": 60, "min": 60, "mins": 60, "m": 60,
          "hour": 3600, "hours": 3600, "h": 3600,
          "day": 86400, "days": 86400, "d": 86400}


def ec_atobool(text: str) -> bool:
    """Momentum's ec_atobool: on/off, true/false, enabled/disabled, 1/0 (any case)."""
    t = text.strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise BadValue(f"expected a boolean (on/off, true/false, enabled/disabled, 1/0), got {_show(text)}")


def _show(text: str) -> str:
    return quote(text)


def _scalar(node, what: str) -> str:
    if isinstance(node, Scalar):
        return node.text
    kind = "a list" if isinstance(node, ListNode) else "a dictionary"
    raise BadValue(f"expected {what}, got {kind}")


def _int(text: str) -> int:
    if not _INT.match(text.strip()):
        raise BadValue(f"expected an integer, got {_show(text)}")
    return int(text.strip())


def _octal(text: str) -> int:
    # strtol(base 0) like Momentum: 0644 octal, 0x1a4 hex, 420 decimal.
    t = text.strip()
    try:
        if re.fullmatch(r"0[0-7]+|0", t):
            return int(t, 8)
        if re.fullmatch(r"0[xX][0-9a-fA-F]+", t):
            return int(t, 16)
        if re.fullmatch(r"[1-9]\d*", t):
            return int(t)
    except ValueError:
        pass
    raise BadValue(f"expected an octal number such as 0644, got {_show(text)}")


def _rate(text: str) -> Rate:
    m = re.fullmatch(r"\s*(\d+)\s*(?:/\s*(\d+)\s*)?", text)
    if not m:
        raise BadValue(f'expected a rate "N" or "N/S" (N per S seconds), got {_show(text)}')
    count, seconds = int(m.group(1)), int(m.group(2) or 1)
    if seconds <= 0:
        raise BadValue(f"rate period must be at least one second, got {_show(text)}")
    return Rate(count, seconds)


def _interval(text: str) -> int:
    t = text.strip()
    if _INT.match(t):
        return int(t)
    m = re.fullmatch(r"([+-]?\d+)\s*([A-Za-z]+)", t)
    if m and m.group(2).lower() in _UNITS:
        return int(m.group(1)) * _UNITS[m.group(2).lower()]
    raise BadValue(f'expected seconds or "N seconds|minutes|hours|days", got {_show(text)}')


def _enum(spec, text: str, int_enums) -> str | int:
    if not spec.choices:
        return text
    for choice in spec.choices:
        if str(choice).lower() == text.lower():
            return str(choice)
    if spec.name.lower() in int_enums and _INT.match(text.strip()):
        return int(text.strip())
    raise BadValue(f"expected one of {', '.join(str(c) for c in spec.choices)}; got {_show(text)}")


def generic(node):
    """The literal's own structure: str, tuple or FrozenDict."""
    if isinstance(node, Scalar):
        return node.text
    if isinstance(node, ListNode):
        return tuple(generic(i) for i in node.items)
    return FrozenDict((k.text, generic(v)) for k, v in node.items)


def convert(spec, node, int_enums=frozenset()):
    """The typed value of `node` for the option `spec` (None = untyped). `int_enums`:
    lowercased names of enum options that also take a plain integer (max_retries)."""
    try:
        return _convert(spec, node, int_enums)
    except ValueError as exc:      # int() of thousands of digits: Python's conversion limit
        raise BadValue(f"number out of range ({exc})") from None


def _convert(spec, node, int_enums):
    if spec is None:
        return generic(node)
    t = spec.type
    if t == "bool":
        return ec_atobool(_scalar(node, "a boolean"))
    if t == "int":
        return _int(_scalar(node, "an integer"))
    if t == "size":
        return _int(_scalar(node, "a size in bytes"))
    if t == "octal":
        return _octal(_scalar(node, "an octal number"))
    if t == "interval":
        return _interval(_scalar(node, "an interval"))
    if t == "rate":
        return _rate(_scalar(node, "a rate"))
    if t == "enum":
        return _enum(spec, _scalar(node, "one word"), int_enums)
    if t == "string":
        return _scalar(node, "a string")
    if t == "list":
        if isinstance(node, Scalar):          # a single element written without parentheses
            return (node.text,)
        if isinstance(node, DictNode):
            raise BadValue("expected a list ( ... ), got a dictionary")
        return generic(node)
    if t == "regex_list":
        return _regex_list(_convert(_LIST, node, int_enums))
    if t == "dict":
        if not isinstance(node, DictNode):
            raise BadValue("expected a dictionary [ key = value ... ]")
        return generic(node)
    if t == "scope":
        raise BadValue("is a scope; write it as a stanza with { }")
    return generic(node)


class _ListSpec:
    type = "list"


_LIST = _ListSpec()


def _regex_list(patterns: tuple) -> tuple:
    for p in patterns:
        if not isinstance(p, str):
            raise BadValue(f"expected a list of regular expressions, got a nested {typed_raw(None, p)}")
        try:
            re.compile(p)
        except re.error as exc:
            raise BadValue(f"bad regular expression {_show(p)}: {exc}") from None
    return patterns


# -- defaults as literals -------------------------------------------------------------------

def default_raw(spec) -> str:
    """The literal the console shows for a built-in default. Booleans print as 0/1, as
    does a true/false enum default (console_commands.config: `Blackhole = 0`)."""
    if spec.type == "enum" and str(spec.default).lower() in ("true", "false"):
        return "1" if str(spec.default).lower() == "true" else "0"
    return typed_raw(spec, spec.default, bool_digits=True)


def typed_raw(spec, value, *, bool_digits: bool = False) -> str:
    t = spec.type if spec is not None else None
    if t == "rate" and isinstance(value, tuple) and len(value) == 2 and not isinstance(value, Rate):
        value = Rate(*value)      # registry defaults are plain (count, seconds) tuples
    if isinstance(value, bool):
        return ("1" if value else "0") if bool_digits else ("true" if value else "false")
    if t == "octal" and isinstance(value, int):
        return "0%o" % value
    if isinstance(value, Rate):
        return quote(f"{value.count}/{value.seconds}" if value.seconds != 1 else str(value.count))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (tuple, list)):
        return "( " + " ".join(_word(v) for v in value) + " )" if value else "()"
    if isinstance(value, dict):
        if not value:
            return "[]"
        return "[ " + " ".join(f"{_word(k)} = {_word(v)}" for k, v in value.items()) + " ]"
    if value is None:
        return '""'
    return quote(str(value))


def _word(v) -> str:
    if isinstance(v, (tuple, list, dict)):
        return typed_raw(None, v)
    s = str(v)
    return quote(s) if needs_quotes(s) else s
