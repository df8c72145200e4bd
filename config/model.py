"""The immutable configuration generation every component reads (docs/design.md §3.2).

Owns: `ConfigError`/`ConfigIssue` (how every config failure is reported), `Value` (one
option as set: canonical name, typed value, raw literal, file, line), `Scope` (a merged
scope instance: kind, instance name, options, child scopes), `Config` (the root scope,
a generation number and the lookups `get`, `eval`, `resolve`, `defining_scope`,
`scopes`, `find`) and `EvalContext` (the keys a fallback lookup starts from).

Built by `validate.py` (from parsed files) and by `manager.py` (console changes); nobody
mutates a Config after it is published: a change makes a new generation. Fallback rules
live in `fallback.py`; `Config.eval` delegates there.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

BUILTIN_FILE = "<builtin>"      # file of the implicit settings (ThreadPools, Debug_Flags, ...)


# -- errors ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ConfigIssue:
    file: str | None
    line: int
    option: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.file else "<config>"
        return f"{where}: {self.message}"


class ConfigError(Exception):
    """One or more configuration problems; str() is one "file:line: message" per line."""

    def __init__(self, errors):
        if isinstance(errors, str):
            errors = [ConfigIssue(None, 0, None, errors)]
        self.errors: list[ConfigIssue] = list(errors)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


# -- values and scopes ----------------------------------------------------------------------

@dataclass(frozen=True)
class Value:
    option: str            # canonical name, e.g. "Max_Outbound_Connections"
    value: Any             # typed: bool, int, str, tuple (list), mapping (dict), Rate
    raw: str               # the literal as written, normalised to one line: enabled, "x", ( a b )
    file: str | None       # None for a value set from the console
    line: int = 0

    @property
    def node(self):
        """The literal as a syntax node (for display)."""
        from ecmta.config.parser import parse_value
        return parse_value(self.raw, self.file or "<console>")


class Rate(tuple):
    """A throttle rate "N/S": `count` events per `seconds`; count 0 means unlimited."""

    def __new__(cls, count: int, seconds: int = 1):
        return super().__new__(cls, (count, seconds))

    @property
    def count(self) -> int:
        return self[0]

    @property
    def seconds(self) -> int:
        return self[1]

    def __repr__(self) -> str:
        return f"Rate({self[0]}, {self[1]})"


class FrozenDict(dict):
    """A dictionary option's value: read-only and hashable, so Values stay immutable."""

    def _readonly(self, *a, **kw):
        raise TypeError("configuration values are read-only")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _readonly

    def __hash__(self):
        return hash(tuple(sorted(self.items())))

    def __repr__(self) -> str:
        return f"FrozenDict({dict.__repr__(self)})"


class Scope:
    """One scope instance; several stanzas of the same kind and name are merged into one."""

    __slots__ = ("kind", "name", "keyword", "options", "children", "file", "line",
                 "parent", "module", "locations", "implicit", "_by_key", "_by_kind", "_regex")

    def __init__(self, kind: str, name: str | None, *, keyword: str | None = None,
                 options=None, children=(), file: str | None = None, line: int = 0,
                 module: str | None = None, locations=(), implicit: bool = False):
        self.kind = kind                      # canonical keyword: "ESMTP_Listener", "Domain", "ec_logger"
        self.name = name                      # instance name as written, None if anonymous
        self.keyword = keyword or kind        # spelling of the first stanza (config locate echoes it)
        self.options = MappingProxyType(dict(options or {}))   # lower name -> Value
        self.children = tuple(children)
        self.file = file
        self.line = line
        self.parent: Scope | None = None
        self.module = module                  # lowercased owning module for module stanzas
        self.locations = tuple(locations)     # (file, line) of every stanza merged in here
        self.implicit = implicit
        # Lookups run per message (fallback), so children are indexed once.
        self._by_key: dict = {}
        self._by_kind: dict = {}
        self._regex: dict = {}
        for child in self.children:
            child.parent = self
            self._by_key.setdefault(child.key, child)
            self._by_kind.setdefault(child.lkind, []).append(child)

    @property
    def lkind(self) -> str:
        return self.kind.lower()

    @property
    def key(self) -> tuple:
        return (self.lkind, name_key(self.kind, self.name))

    def path(self) -> tuple:
        """(kind, name) pairs from the global scope down to this one; () for global."""
        out, s = [], self
        while s is not None and s.parent is not None:
            out.append((s.kind, s.name))
            s = s.parent
        return tuple(reversed(out))

    def key_path(self) -> tuple:
        out, s = [], self
        while s is not None and s.parent is not None:
            out.append(s.key)
            s = s.parent
        return tuple(reversed(out))

    def child(self, kind: str, name: str | None = None) -> Scope | None:
        return self._by_key.get((kind.lower(), name_key(kind, name)))

    def children_of(self, kind: str) -> list:
        return list(self._by_kind.get(kind.lower(), ()))

    def regex_children(self, kind: str) -> list:
        """[(compiled pattern, scope)] of the "/re/"-named children of `kind`, in order."""
        k = kind.lower()
        found = self._regex.get(k)
        if found is None:
            import re
            found = []
            for c in self._by_kind.get(k, ()):
                n = c.name
                if n is not None and len(n) >= 2 and n[0] == "/" and n[-1] == "/":
                    try:
                        found.append((re.compile(n[1:-1], re.IGNORECASE), c))
                    except (re.error, RecursionError, OverflowError, ValueError):
                        continue
            self._regex[k] = found
        return found

    def get(self, option: str) -> Value | None:
        return self.options.get(option.lower())

    def walk(self):
        """This scope and every descendant, depth first, in declaration order."""
        stack = [self]
        while stack:
            s = stack.pop()
            yield s
            stack.extend(reversed(s.children))

    def structure(self) -> tuple:
        """Everything that makes two scopes equal (used by tests and the XML round trip)."""
        return (self.kind, self.name, self.keyword, self.module, self.implicit, self.file, self.line,
                self.locations, tuple(sorted(self.options.items())),
                tuple(c.structure() for c in self.children))

    def label(self) -> str:
        return self.kind if self.name is None else f'{self.kind} "{self.name}"'

    def __repr__(self) -> str:
        return f"<Scope {self.label()} {len(self.options)} options {len(self.children)} children>"


# Binding and Binding_Group names are case-sensitive (conf.ref.binding); others are not.
CASE_SENSITIVE_NAMES = frozenset({"binding", "binding_group"})


def name_key(kind: str, name: str | None):
    if name is None:
        return None
    return name if kind.lower() in CASE_SENSITIVE_NAMES else name.lower()


def path_label(path) -> str:
    """The locate-style path of scope (kind, name) pairs: `Esmtp_Listener::Listen:\\:25:`."""
    if not path:
        return ""
    parts = [f"{kind}:{_esc(name) if name is not None else ''}" for kind, name in path]
    return ":".join(parts) + ":"


def _esc(name: str) -> str:
    return name.replace("\\", "\\\\").replace(":", "\\:")


# -- evaluation context ---------------------------------------------------------------------

@dataclass(frozen=True)
class EvalContext:
    """Where a lookup starts. Sending side: binding_group, binding, domain, host.
    Receiving side: listener (kind, e.g. "ESMTP_Listener"), listen (address as written),
    peer (the client's IP address), pathway, pathway_group."""
    binding_group: str | None = None
    binding: str | None = None
    domain: str | None = None
    host: str | None = None
    listener: str | None = None
    listen: str | None = None
    peer: str | None = None
    pathway: str | None = None
    pathway_group: str | None = None


@dataclass(frozen=True)
class Resolved:
    value: Value | None        # None: not set anywhere and the option has no default
    scope: Scope | None        # the scope that defines it; None for the built-in default


# -- the generation ---------------------------------------------------------------------------

class Config:
    """One immutable configuration generation."""

    def __init__(self, root: Scope, *, generation: int = 1, registry=None, path: str | None = None,
                 sources=None, allow_unbuilt: bool = False):
        self.root = root
        self.generation = generation
        self.path = path                      # main configuration file
        self.sources = sources                # loader.Sources (files, for writeback), or None
        self.allow_unbuilt = allow_unbuilt
        if registry is None:
            from ecmta.config import registry as registry_module
            registry = registry_module
        self.registry = registry

    # lookups

    def find(self, scope_path) -> Scope | None:
        """The scope at `scope_path` ((kind, name) pairs, or words as typed at the console)."""
        path = self._path(scope_path)
        s = self.root
        for kind, name in path:
            s = s.child(kind, name)
            if s is None:
                return None
        return s

    def get(self, scope_path, option: str) -> Value | None:
        """`config get`: the value set in exactly that scope, or None."""
        s = self.find(scope_path)
        return None if s is None else s.get(option)

    def eval(self, option: str, ctx=None) -> Value | None:
        """`config eval`: the most specific setting for `ctx` (EvalContext or a scope path),
        falling back to the option's default."""
        return self.resolve(option, ctx).value

    def value(self, option: str, ctx=None, default=None):
        """The typed value `eval` finds (fallback + default), or `default` when none."""
        found = self.eval(option, ctx)
        return default if found is None or found.value is None else found.value

    def resolve(self, option: str, ctx=None) -> Resolved:
        from ecmta.config import fallback
        if ctx is None or isinstance(ctx, EvalContext):
            return fallback.resolve(self, option, ctx or EvalContext())
        return fallback.resolve_at(self, option, self._path(ctx))

    def defining_scope(self, option: str, ctx=None) -> Scope | None:
        """The scope whose setting applies (throttles are shared per defining scope)."""
        return self.resolve(option, ctx).scope

    def scopes(self, kind: str) -> list[Scope]:
        """Every scope instance of `kind` anywhere in the tree, in declaration order."""
        k = kind.lower()
        return [s for s in self.root.walk() if s.parent is not None and s.lkind == k]

    def default_value(self, option: str) -> Value | None:
        from ecmta.config import fallback
        return fallback.default_value(self, option)

    def structure(self) -> tuple:
        return self.root.structure()

    def __eq__(self, other) -> bool:
        return isinstance(other, Config) and self.structure() == other.structure()

    def __hash__(self):
        return id(self)

    def _path(self, scope_path) -> tuple:
        if scope_path is None or scope_path == "" or scope_path == ():
            return ()
        if isinstance(scope_path, str):
            scope_path = scope_path.split()
        items = list(scope_path)
        if all(isinstance(p, tuple) for p in items):
            return tuple(items)
        from ecmta.config.validate import split_path
        path, rest = split_path(items, self.registry, want_option=False)
        if rest:
            raise ConfigError(f"'{rest[0]}' is not a scope here")
        return path

    def __repr__(self) -> str:
        return f"<Config generation {self.generation} from {self.path}>"
