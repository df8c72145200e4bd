"""Registry-checked construction of the scope tree from parsed statements.

Owns: the rules that decide what a statement means -- which keywords are scopes, modules
and module sub-scopes, where each may appear, which options are valid in which scope,
what is not built yet, how repeated stanzas merge -- and the conversion of literals to
typed values (via `values.py`). Also `split_path()`, the same rules applied to the words
of a console command (`config set esmtp_listener listen :587 concurrency 5`).

Talks to: a registry (the module `ecmta.config.registry` by default; tests may pass a
`Registry` built here from a few specs), `loader.py` (gives statements, with includes
already attached), `manager.py` (console edits go through `Builder.set_option`).

How it fails: every problem becomes a `ConfigIssue(file, line, option, message)`; the
walk goes on so that one run reports every error; `Builder.finish()` raises one
`ConfigError` holding them all.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from ecmta.config import values
from ecmta.config.model import (BUILTIN_FILE, CASE_SENSITIVE_NAMES, Config, ConfigError,
                                ConfigIssue, Scope, Value, name_key)
from ecmta.config.parser import MAX_DEPTH, IncludeStmt, OptionStmt, ScopeStmt, parse_value

GLOBAL = "global"
# Every module accepts these two (module_config).
DEBUG_LEVELS = ("DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL")
# Modules of which only one instance *name* may exist (modules.scriptlet).
SINGLE_NAME_MODULES = frozenset({"scriptlet"})

# The settings an empty configuration file already has (console_commands.config,
# "begin from scratch"; conf.ref.threadpool; conf.ref.debug_flags; conf.ref.timestampformat).
IMPLICIT_THREADPOOLS = (("SwapOut", {"Concurrency": "5"}), ("SwapIn", {"Concurrency": "5"}),
                        ("Unlink", {"Backlog": "100", "Concurrency": "6"}),
                        ("Batch_Unlink", {"Concurrency": "4"}), ("Close", {"Concurrency": "0"}),
                        ("CPU", {"Concurrency": "4"}), ("IO", {"Concurrency": "50"}),
                        ("SpoolIn", {"Concurrency": "1"}))
_ALL_FLAGS = "( TIME FD SMTP LOG1 DNS DNSDS NET SIG MEM DB LIC SSL MOD START ALL )"
IMPLICIT_DEBUG_FLAGS = (("DEBUG", "()"), ("INFO", "()"), ("NOTICE", "()"), ("WARNING", "()"),
                        ("ERROR", _ALL_FLAGS), ("CRITICAL", _ALL_FLAGS))
IMPLICIT_GLOBAL = (("TimestampFormat", '"[%a %d %b %Y %H:%M:%S] "'),)


# -- registries -----------------------------------------------------------------------------

class Registry:
    """A registry built from lists of specs (tests); same lookups as `ecmta.config.registry`."""

    def __init__(self, options=(), scopes=(), modules=()):
        self.OPTIONS = {o.name.lower(): o for o in options}
        self.SCOPES = {s.name.lower(): s for s in scopes}
        self.MODULES = {m.name.lower(): m for m in modules}

    def option(self, name):
        return self.OPTIONS.get(name.lower())

    def scope(self, name):
        return self.SCOPES.get(name.lower())

    def module(self, name):
        return self.MODULES.get(name.lower())


def default_registry():
    from ecmta.config import registry
    return registry


def registry_extra(reg, name: str, default):
    """Optional tables beside the registry (options_data.BUILT_SCOPES, SCOPE_DEFAULTS,
    ENUM_ACCEPTS_INT): from options_data for the default registry, else an attribute of
    the registry object, else `default`."""
    if reg is default_registry():
        from ecmta.config import options_data
        return getattr(options_data, name, default)
    return getattr(reg, name, default)


def _module_implicit_spec(name: str):
    from ecmta.config.registry import OptionSpec
    if name == "enabled":
        return OptionSpec("Enabled", "bool", True, frozenset(), built=True)
    return OptionSpec("Debug_Level", "enum", "ERROR", frozenset(), choices=DEBUG_LEVELS, built=True)


# -- what a keyword means in a given parent -------------------------------------------------

@dataclass(frozen=True)
class ChildKind:
    kind: str | None            # canonical keyword; None when `error` is set
    module: str | None = None   # lowercased module the scope belongs to
    named: bool | None = None   # True: needs a name, False: takes none, None: either
    built: bool = True
    what: str = "scope"         # "scope" or "module" (for the not-built message)
    untyped: bool = False       # contents cannot be checked (unbuilt module without data)
    error: str | None = None


def child_kind(reg, parent_lkind: str, parent_module: str | None, keyword: str,
               parent_untyped: bool = False) -> ChildKind:
    kw = keyword.lower()
    if parent_module is not None:
        mod = reg.module(parent_module)
        sub = (mod.subscopes or {}).get(kw) if mod is not None else None
        if sub is None and reg.scope(kw) is not None and parent_lkind in reg.scope(kw).parents:
            sub = reg.scope(kw)      # a global scope spec that names the module as a parent
        if sub is not None:
            if sub.parents and parent_lkind not in sub.parents:
                return ChildKind(None, error=f"scope '{sub.name}' is not valid inside '{_label(parent_lkind, reg)}'")
            return ChildKind(sub.name, parent_module, sub.named, built=_built(sub, mod), untyped=parent_untyped)
        if parent_untyped:
            return ChildKind(keyword, parent_module, None, untyped=True)
        return ChildKind(None, error=f"unknown scope '{keyword}' in module '{mod.name if mod else parent_module}'")
    mod = reg.module(kw)
    spec = reg.scope(kw)
    if mod is not None and (spec is None or parent_lkind == GLOBAL):
        if parent_lkind != GLOBAL:
            return ChildKind(None, error=f"module '{mod.name}' can only be configured in the global scope")
        untyped = not mod.built and not mod.options and not mod.subscopes
        return ChildKind(mod.name, kw, False if mod.singleton else None, built=mod.built,
                         what="module", untyped=untyped)
    if spec is None:
        opt = reg.option(kw)
        if opt is not None and opt.type == "scope":
            from ecmta.config.registry import ScopeSpec
            spec = ScopeSpec(opt.name, None, opt.scopes, opt.doc, opt.built, opt.module)
        elif opt is not None:
            return ChildKind(None, error=f"'{opt.name}' is an option, not a scope")
        elif parent_lkind == GLOBAL:
            return ChildKind(None, error=f"unknown scope or module '{keyword}'")
        else:
            return ChildKind(None, error=f"unknown scope '{keyword}'")
    if spec.parents and parent_lkind not in spec.parents:
        return ChildKind(None, error=f"scope '{spec.name}' is not valid inside '{_label(parent_lkind, reg)}'")
    return ChildKind(spec.name, None, spec.named, built=spec.built)


def _built(sub, mod) -> bool:
    # A module's own sub-scopes come with the module.
    return bool(sub.built or (mod is not None and mod.built))


def _label(lkind: str, reg) -> str:
    if lkind == GLOBAL:
        return "Global"
    spec = reg.scope(lkind) or reg.module(lkind)
    return spec.name if spec is not None else lkind


@dataclass(frozen=True)
class OptionKind:
    spec: object | None          # OptionSpec; None when untyped or on error
    name: str | None = None      # canonical name
    error: str | None = None


def option_kind(reg, lkind: str, module: str | None, name: str, untyped: bool = False,
                module_top: bool = False) -> OptionKind:
    low = name.lower()
    if module is not None:
        mod = reg.module(module)
        spec = (mod.options or {}).get(low) if mod is not None else None
        if spec is None and module_top and low in ("enabled", "debug_level"):
            spec = _module_implicit_spec(low)
        if spec is None:
            core = reg.option(low)
            if core is not None and core.type != "scope" and lkind in core.scopes:
                return OptionKind(core, core.name)
            if untyped:
                return OptionKind(None, name)
            return OptionKind(None, error=f"unknown option '{name}' in module '{mod.name if mod else module}'")
        if spec.scopes and lkind not in spec.scopes and not (spec.scopes <= {GLOBAL, module}):
            return OptionKind(None, error=f"option '{spec.name}' is not valid in scope '{_label(lkind, reg)}'")
        return OptionKind(spec, spec.name)
    spec = reg.option(low)
    if spec is None:
        if reg.scope(low) is not None or reg.module(low) is not None:
            return OptionKind(None, error=f"'{name}' is a scope; it needs {{ }}")
        return OptionKind(None, error=f"unknown option '{name}'")
    if spec.type == "scope":
        return OptionKind(None, error=f"'{spec.name}' is a scope; it needs {{ }}")
    if lkind not in spec.scopes:
        return OptionKind(None, error=f"option '{spec.name}' is not valid in scope '{_label(lkind, reg)}'")
    return OptionKind(spec, spec.name)


def instance_name(ck: ChildKind, name: str | None) -> str | None:
    """A non-singleton module written without an instance name is named after the module
    (modules_data); everything else keeps the name as written."""
    if name is None and ck.what == "module" and ck.named is None:
        return ck.kind
    return name


def check_name(kind: str, name: str | None) -> str | None:
    """Why `name` is not a valid instance name for `kind`, or None."""
    if name is None:
        return None
    k = kind.lower()
    if k in CASE_SENSITIVE_NAMES and (not name or any(c.isspace() or c == ":" for c in name)):
        return f"{kind} name '{name}' may not be empty or contain spaces or colons"
    if k in ("domain", "host") and len(name) >= 2 and name.startswith("/") and name.endswith("/"):
        try:
            re.compile(name[1:-1])
        except (re.error, RecursionError, OverflowError, ValueError) as exc:
            return f"{kind} regex {name} is not a valid regular expression: {exc}"
    if k == "peer":
        try:
            ipaddress.ip_network(name, strict=False)
        except ValueError:
            return f"Peer '{name}' is not an IP address or CIDR block"
    return None


# -- the mutable tree under construction ----------------------------------------------------

class Node:
    """A scope being built; `freeze()` turns it into an immutable `Scope`."""

    def __init__(self, kind, name, *, keyword=None, module=None, untyped=False, file=None,
                 line=0, implicit=False):
        self.kind, self.name = kind, name
        self.keyword = keyword or kind
        self.module, self.untyped = module, untyped
        self.file, self.line = file, line
        self.options: dict[str, Value] = {}
        self.children: dict[tuple, Node] = {}
        self.locations: list[tuple] = [] if file is None else [(file, line)]
        self.implicit = implicit

    @property
    def lkind(self) -> str:
        return self.kind.lower()

    @property
    def module_top(self) -> bool:
        return self.module is not None and self.lkind == self.module

    def child(self, kind, name, **kw) -> Node:
        key = (kind.lower(), name_key(kind, name))
        node = self.children.get(key)
        if node is None:
            node = self.children[key] = Node(kind, name, **kw)
        elif kw.get("file") is not None:
            node.locations.append((kw["file"], kw.get("line", 0)))
            if node.implicit:
                node.implicit = False
                node.file, node.line, node.keyword = kw["file"], kw.get("line", 0), kw.get("keyword") or node.keyword
        return node

    def freeze(self) -> Scope:
        return Scope(self.kind, self.name, keyword=self.keyword, options=self.options,
                     children=[c.freeze() for c in self.children.values()], file=self.file,
                     line=self.line, module=self.module, locations=self.locations,
                     implicit=self.implicit)

    @classmethod
    def thaw(cls, scope: Scope) -> Node:
        node = cls(scope.kind, scope.name, keyword=scope.keyword, module=scope.module,
                   file=scope.file, line=scope.line, implicit=scope.implicit)
        node.locations = list(scope.locations)
        node.options = dict(scope.options)
        for c in scope.children:
            node.children[c.key] = cls.thaw(c)
        return node


class Builder:
    """Walks statements into a Node tree, collecting every issue."""

    def __init__(self, registry=None, *, allow_unbuilt: bool = False, root: Node | None = None):
        self.reg = registry if registry is not None else default_registry()
        self.allow_unbuilt = allow_unbuilt
        self.root = root or Node("Global", None)
        self.issues: list[ConfigIssue] = []
        self._module_names: dict[str, tuple] = {}
        self.built_scopes = registry_extra(self.reg, "BUILT_SCOPES", {})
        self.int_enums = registry_extra(self.reg, "ENUM_ACCEPTS_INT", frozenset())

    def not_built(self, spec, node: Node) -> str | None:
        """Why `spec` cannot be used in `node` in this version, or None."""
        if spec is None or self.allow_unbuilt:
            return None
        if not spec.built:
            return f"option '{spec.name}' is not available in this version"
        where = self.built_scopes.get(spec.name.lower())
        if where is not None and node.lkind not in where:
            return f"option '{spec.name}' is not available in scope '{node.kind}' in this version"
        return None

    def error(self, file, line, option, message):
        self.issues.append(ConfigIssue(file, line, option, message))

    # statements

    def walk(self, stmts, node: Node | None = None, depth: int = 0):
        node = node or self.root
        for st in stmts:
            if isinstance(st, IncludeStmt):
                for f in st.files:
                    self.walk(f.statements, node, depth)
            elif isinstance(st, OptionStmt):
                self.option(st, node)
            elif isinstance(st, ScopeStmt):
                self.scope(st, node, depth + 1)

    def option(self, st: OptionStmt, node: Node):
        ok = option_kind(self.reg, node.lkind, node.module, st.name, node.untyped, node.module_top)
        if ok.error:
            self.error(st.file, st.line, st.name, ok.error)
            return
        spec = ok.spec
        missing = self.not_built(spec, node)
        if missing:
            self.error(st.file, st.line, spec.name, missing)
            return
        try:
            typed = values.convert(spec, st.value, self.int_enums)
        except values.BadValue as exc:
            self.error(st.file, st.line, ok.name, f"bad value for option '{ok.name}': {exc}")
            return
        node.options[ok.name.lower()] = Value(ok.name, typed, st.value.render(), st.file, st.line)

    def scope(self, st: ScopeStmt, node: Node, depth: int):
        name = st.name.text if st.name is not None else None
        if depth > MAX_DEPTH:
            self.error(st.file, st.line, st.keyword, f"scopes nested deeper than {MAX_DEPTH} levels")
            return
        ck = child_kind(self.reg, node.lkind, node.module, st.keyword, node.untyped)
        if ck.error:
            self.error(st.file, st.line, st.keyword, ck.error)
            return
        name = instance_name(ck, name)
        problem = self._scope_problem(ck, name)
        if problem:
            self.error(st.file, st.line, ck.kind, problem)
            return
        if ck.what == "module" and ck.module in SINGLE_NAME_MODULES and name is not None:
            first = self._module_names.setdefault(ck.module, (name, st.file, st.line))
            if first[0] != name:
                self.error(st.file, st.line, ck.kind,
                           f"only one instance name of {ck.kind} may exist "
                           f"(already declared as \"{first[0]}\" at {first[1]}:{first[2]})")
                return
        child = node.child(ck.kind, name, keyword=st.keyword, module=ck.module, untyped=ck.untyped,
                           file=st.file, line=st.line)
        self.walk(st.body, child, depth)

    def _scope_problem(self, ck: ChildKind, name) -> str | None:
        if not ck.built and not self.allow_unbuilt:
            hint = ""
            if ck.what == "module":
                spec = self.reg.module(ck.kind)
                hint = getattr(spec, "hint", "") if spec is not None else ""
            return f"{ck.what} '{ck.kind}' is not available in this version" + (f" ({hint})" if hint else "")
        if ck.named is True and name is None:
            return f"scope '{ck.kind}' needs an instance name, e.g. {ck.kind} \"name\" {{ }}"
        if ck.named is False and name is not None:
            if ck.what == "module":
                return f"module '{ck.kind}' is a singleton and takes no instance name"
            return f"scope '{ck.kind}' takes no instance name"
        return check_name(ck.kind, name)

    # console edits

    def node_at(self, path, *, create: bool) -> Node | None:
        """The node at `path` ((kind, name) pairs); with create=True missing scopes are made
        (checked like a stanza), else None when absent. Raises ConfigError on a bad path."""
        node = self.root
        for kind, name in path:
            ck = child_kind(self.reg, node.lkind, node.module, kind, node.untyped)
            if ck.error:
                raise ConfigError(ck.error)
            name = instance_name(ck, name)
            problem = self._scope_problem(ck, name)
            if problem:
                raise ConfigError(problem)
            key = (ck.kind.lower(), name_key(ck.kind, name))
            nxt = node.children.get(key)
            if nxt is None:
                if not create:
                    return None
                nxt = node.children[key] = Node(ck.kind, name, module=ck.module, untyped=ck.untyped)
            node = nxt
        return node

    def option_spec(self, node: Node, option: str, file=None, line=0) -> OptionKind:
        """The option's spec in `node` (spec None = untyped); raises ConfigError if invalid."""
        ok = option_kind(self.reg, node.lkind, node.module, option, node.untyped, node.module_top)
        if ok.error:
            raise ConfigError([ConfigIssue(file, line, option, ok.error)])
        return ok

    def make_value(self, node: Node, option: str, value_node, file=None, line=0) -> Value:
        ok = option_kind(self.reg, node.lkind, node.module, option, node.untyped, node.module_top)
        if ok.error:
            raise ConfigError([ConfigIssue(file, line, option, ok.error)])
        missing = self.not_built(ok.spec, node)
        if missing:
            raise ConfigError([ConfigIssue(file, line, ok.name, missing)])
        try:
            typed = values.convert(ok.spec, value_node, self.int_enums)
        except values.BadValue as exc:
            raise ConfigError([ConfigIssue(file, line, ok.name, f"bad value for option '{ok.name}': {exc}")])
        return Value(ok.name, typed, value_node.render(), file, line)

    # finishing

    def add_implicit(self):
        """ThreadPools, Debug_Flags and TimestampFormat that every configuration has."""
        pool_kind, flags_kind = self._kind_name("ThreadPool"), self._kind_name("Debug_Flags")
        for pool, opts in IMPLICIT_THREADPOOLS:
            node = self.root.child(pool_kind, pool, file=None, implicit=True)
            self._implicit_options(node, opts.items())
        flags = self.root.child(flags_kind, None, file=None, implicit=True)
        self._implicit_options(flags, IMPLICIT_DEBUG_FLAGS)
        self._implicit_options(self.root, IMPLICIT_GLOBAL)

    def _kind_name(self, kind: str) -> str:
        spec = self.reg.scope(kind)
        return spec.name if spec is not None else kind

    def _implicit_options(self, node: Node, items):
        for name, raw in items:
            if name.lower() in node.options:
                continue
            spec = self.reg.option(name)
            lit = parse_value(raw, BUILTIN_FILE)
            try:
                typed = values.convert(spec, lit)
            except values.BadValue:
                typed = values.generic(lit)
            node.options[name.lower()] = Value(spec.name if spec else name, typed, lit.render(), BUILTIN_FILE, 0)

    def raise_if_errors(self):
        if self.issues:
            raise ConfigError(self.issues)

    def finish(self, **config_kw) -> Config:
        self.raise_if_errors()
        return Config(self.root.freeze(), registry=self.reg, allow_unbuilt=self.allow_unbuilt, **config_kw)


def build(statements, registry=None, *, allow_unbuilt=False, implicit=True, **config_kw) -> Config:
    """A Config from already-parsed statements (includes attached); raises ConfigError."""
    b = Builder(registry, allow_unbuilt=allow_unbuilt)
    b.walk(statements)
    if implicit:
        b.add_implicit()
    return b.finish(**config_kw)


# -- console scope paths --------------------------------------------------------------------

def split_path(words, registry=None, *, want_option: bool = True, min_rest: int = 1):
    """Split console words into a scope path and the rest (option name, value words).

    A word is taken as a scope keyword when it is valid as a child scope at that point and
    enough words remain; named scopes consume the next word as the instance name. Returns
    ((kind, name), ...), remaining words. Raises ConfigError for a word that is neither.
    """
    reg = registry if registry is not None else default_registry()
    words = list(words)
    path, lkind, module, untyped, i = [], GLOBAL, None, False, 0
    while i < len(words):
        w = words[i]
        ck = child_kind(reg, lkind, module, w, untyped)
        if ck.error:
            break
        take_name = ck.named is True or (ck.named is None and i + 1 < len(words)
                                          and not _known_here(reg, ck, words[i + 1]))
        used = 2 if take_name else 1
        if want_option:
            opt = option_kind(reg, lkind, module, w, untyped, module is not None and lkind == module)
            if opt.error is None and len(words) - i - used < min_rest:
                break
        if take_name and i + 1 >= len(words):
            raise ConfigError(f"scope '{ck.kind}' needs an instance name")
        name = instance_name(ck, words[i + 1] if take_name else None)
        path.append((ck.kind, name))
        lkind, module, untyped = ck.kind.lower(), ck.module, ck.untyped
        i += used
    return tuple(path), words[i:]


def _known_here(reg, ck: ChildKind, word: str) -> bool:
    """Is `word` a child scope or an option of the scope `ck` (so not an instance name)?"""
    if ck.untyped:
        return False          # anything goes inside an unimplemented module: read a name
    lk = ck.kind.lower()
    if child_kind(reg, lk, ck.module, word, ck.untyped).error is None:
        return True
    return option_kind(reg, lk, ck.module, word, False, ck.module is not None and lk == ck.module).error is None


def path_info(registry, path) -> tuple:
    """(lkind, module, untyped, module_top) of the scope at `path`, for option lookups."""
    reg = registry if registry is not None else default_registry()
    lkind, module, untyped = GLOBAL, None, False
    for kind, _name in path:
        ck = child_kind(reg, lkind, module, kind, untyped)
        if ck.error:
            raise ConfigError(ck.error)
        lkind, module, untyped = ck.kind.lower(), ck.module, ck.untyped
    return lkind, module, untyped, module is not None and lkind == module


def option_at(registry, path, option: str) -> OptionKind:
    """The option's spec in the scope at `path` (error set when it is not valid there)."""
    reg = registry if registry is not None else default_registry()
    lkind, module, untyped, top = path_info(reg, path)
    return option_kind(reg, lkind, module, option, untyped, top)
