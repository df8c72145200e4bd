"""The option, scope and module registry: every name ecelerity.conf may use, declared once.

Owns: `OptionSpec` (one per option of config.options.summary and of built modules),
`ScopeSpec` (one per scope keyword: Domain, Binding, ESMTP_Listener, Listen, Peer, ...),
`ModuleSpec` (one per module of chapter 71). The data lives in `options_data.py`,
`scopes_data.py` and `modules_data.py`; this module gives the types and the lookups.

Lookups are case-insensitive. `built=False` marks what ecmta does not implement yet: the
validator turns its use into a config error "option X is not available in this version"
(or "module X is not available in this version") so nothing is ever silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Value types the parser converts literals into.
#   bool     ec_atobool: on/off true/false enabled/disabled 1/0 (the raw literal is kept for echo)
#   int      decimal integer, quoted or not
#   octal    file modes: 0644 written unquoted, read as base 8
#   string   quoted or bare
#   enum     string restricted to `choices` (case-insensitive)
#   list     ( a b "c" ), commas allowed as separators
#   dict     [ k = v  k2 = v2 ]
#   rate     "N" or "N/S" -> (count, seconds)
#   interval integer seconds, or "N unit" (seconds|minutes|hours|days) where the page says so
#   size     integer bytes
#   regex_list  a list of regular expressions (Python `re`), each compiled when read
#   scope    the option is a scope keyword (listed for completeness; see ScopeSpec)
TYPES = frozenset({"bool", "int", "octal", "string", "enum", "list", "dict", "rate",
                   "interval", "size", "scope", "regex_list"})


@dataclass(frozen=True)
class OptionSpec:
    name: str                      # canonical capitalisation, as the console echoes it
    type: str                      # one of TYPES
    default: Any = None            # typed default value; None = no default
    scopes: frozenset = frozenset({"global"})   # lowercased scope kinds it is valid in
    dynamic: bool = True           # False = "(non-dynamic)": needs a restart
    doc: str = ""                  # momentum-docs page stem
    choices: tuple = ()            # enum values (canonical spelling)
    built: bool = False            # implemented by ecmta
    module: str | None = None      # owning module, None for core options
    description: str = ""


@dataclass(frozen=True)
class ScopeSpec:
    name: str                      # canonical keyword, e.g. "ESMTP_Listener"
    named: bool | None             # True: takes an instance name; False: anonymous; None: either
    parents: frozenset             # lowercased kinds it may appear inside ("global" = top level)
    doc: str = ""
    built: bool = False
    module: str | None = None


@dataclass(frozen=True)
class ModuleSpec:
    name: str                      # module name as written in the stanza, e.g. "ec_logger"
    title: str = ""                # chapter 71 title
    doc: str = ""                  # page stem, e.g. "modules.ec_logger"
    singleton: bool = False        # singletons take no instance name
    built: bool = False
    api: str = ""                  # `module list` API: Logger, Singleton, Validation, ...
    description: str = ""
    hint: str = ""                 # said after "not available in this version" (what to do)
    options: dict = field(default_factory=dict)    # lower name -> OptionSpec (built modules)
    subscopes: dict = field(default_factory=dict)  # lower name -> ScopeSpec (e.g. scriptlet's script)


def _index(items):
    return {item.name.lower(): item for item in items}


_tables: dict | None = None


def _load() -> dict:
    # Lazy: the data modules import the spec classes above, so loading them at import
    # time would make the import order matter.
    global _tables
    if _tables is None:
        from ecmta.config import modules_data, options_data, scopes_data
        _tables = {"OPTIONS": _index(options_data.OPTIONS), "SCOPES": _index(scopes_data.SCOPES),
                   "MODULES": _index(modules_data.MODULES)}
    return _tables


def __getattr__(name: str):
    if name in ("OPTIONS", "SCOPES", "MODULES"):
        return _load()[name]
    raise AttributeError(name)


def option(name: str) -> OptionSpec | None:
    return _load()["OPTIONS"].get(name.lower())


def scope(name: str) -> ScopeSpec | None:
    return _load()["SCOPES"].get(name.lower())


def module(name: str) -> ModuleSpec | None:
    return _load()["MODULES"].get(name.lower())
