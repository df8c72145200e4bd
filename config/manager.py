"""The live configuration: generations, reloads, console changes and transactions.

Owns: the current immutable `Config` generation of one process; `reload()` (a new
generation from the files, or the old one kept and `ConfigError` raised); subscriptions
(every new generation is handed to each subscriber); console changes (`set`, `unset`,
outside a transaction they make a new generation at once); transactions (`begin`,
`begin from scratch`, `commit` -- the first to commit wins, a transaction whose base
generation is no longer current fails --, `rollback`, `replay`); and the record of
console changes that `writeback()` saves to the files (see `writeback.py`).

Non-dynamic options (`OptionSpec.dynamic = False`) cannot be changed at run time: `set`
and `unset` refuse them; a reload that changes one keeps the running value, applies the
rest and reports that a restart is needed (`ReloadResult.restart_needed`).

Talks to: `loader.py`, `validate.py` (console edits are checked like file statements),
`writeback.py`, subscribers (the daemon, the pool registry, listeners). A subscriber that
raises is reported to the paniclog and in the result's `problems`; the others still run.
Runs on the gevent hub; a lock keeps each operation atomic anyway.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

from ecmta.config import loader
from ecmta.config.model import BUILTIN_FILE, Config, ConfigError, Resolved, Value, path_label
from ecmta.config.parser import parse_value
from ecmta.config.validate import Builder, Node, option_kind


@dataclass(frozen=True)
class Change:
    op: str                     # "set" | "unset" | "unset_scope"
    path: tuple                 # ((kind, name), ...) as canonical kinds
    option: str | None = None   # canonical option name
    raw: str | None = None      # the literal (set)
    command: str = ""           # as typed, for `config replay`


@dataclass
class ReloadResult:
    config: Config
    restart_needed: list = field(default_factory=list)
    problems: list = field(default_factory=list)


# -- applying console edits to a generation -------------------------------------------------

def _builder(cfg: Config) -> Builder:
    return Builder(cfg.registry, allow_unbuilt=cfg.allow_unbuilt, root=Node.thaw(cfg.root))


def _derive(cfg: Config, b: Builder, generation: int, sources=None) -> Config:
    b.add_implicit()
    return Config(b.root.freeze(), generation=generation, registry=cfg.registry, path=cfg.path,
                  sources=sources if sources is not None else cfg.sources,
                  allow_unbuilt=cfg.allow_unbuilt)


def _require_dynamic(ok, path):
    spec = ok.spec
    if spec is not None and not spec.dynamic:
        where = f" in scope '{path_label(path)}'" if path else ""
        raise ConfigError(f"Option '{spec.name}'{where} is not dynamic: it cannot be changed at run time "
                          f"(change the configuration file and restart)")


def apply_set(cfg: Config, path: tuple, option: str, raw: str, generation: int) -> tuple[Config, Value]:
    b = _builder(cfg)
    node = b.node_at(path, create=True)
    ok = b.option_spec(node, option)
    _require_dynamic(ok, path)
    value = b.make_value(node, option, parse_value(raw))
    node.options[value.option.lower()] = value
    return _derive(cfg, b, generation), value


def apply_unset(cfg: Config, path: tuple, option: str | None, generation: int) -> Config:
    b = _builder(cfg)
    if option is None:
        if not path:
            raise ConfigError("Unsetting the global scope is not supported.")
        parent = b.node_at(path[:-1], create=False)
        target = b.node_at(path, create=False)
        if parent is None or target is None:
            raise ConfigError(f"Scope '{path_label(path)}' does not exist.")
        for key, child in list(parent.children.items()):
            if child is target:
                del parent.children[key]
        return _derive(cfg, b, generation)
    node = b.node_at(path, create=False)
    if node is None:
        raise ConfigError(f"Option '{_canonical(cfg, path, option)}' is not set in scope '{path_label(path)}'.")
    ok = b.option_spec(node, option)
    name = ok.name or option
    current = node.options.get(name.lower())
    if current is None:
        raise ConfigError(f"Option '{name}' is not set in scope '{path_label(path)}'.")
    if current.file == BUILTIN_FILE:
        raise ConfigError(f"Option '{name}' is an implicit setting; it can be overridden but not unset.")
    _require_dynamic(ok, path)
    del node.options[name.lower()]
    return _derive(cfg, b, generation)


def empty_config(cfg: Config, generation: int) -> Config:
    """What `config begin from scratch` starts from: only the implicit settings."""
    b = Builder(cfg.registry, allow_unbuilt=cfg.allow_unbuilt)
    return _derive(cfg, b, generation)


# -- transactions ---------------------------------------------------------------------------

class Transaction:
    """One console session's pending changes; `config` reads the draft while it is open."""

    def __init__(self, manager: ConfigManager, base: Config, from_scratch: bool):
        self.manager = manager
        self.base_generation = base.generation
        self.from_scratch = from_scratch
        self.draft = empty_config(base, base.generation) if from_scratch else base
        self.changes: list[Change] = []
        self.open = True
        self.restart_needed: list[str] = []     # set by a from-scratch commit

    @property
    def config(self) -> Config:
        return self.draft

    def set(self, path: tuple, option: str, raw: str, command: str = "") -> Value:
        self._check_open()
        self.draft, value = apply_set(self.draft, path, option, raw, self.base_generation)
        self.changes.append(Change("set", tuple(path), value.option, value.raw, command))
        return value

    def unset(self, path: tuple, option: str | None = None, command: str = "") -> Resolved | None:
        self._check_open()
        self.draft = apply_unset(self.draft, path, option, self.base_generation)
        self.changes.append(Change("unset" if option else "unset_scope", tuple(path),
                                   _canonical(self.draft, path, option), None, command))
        return self.draft.resolve(option, path) if option else None

    def replay(self) -> list[str]:
        return [c.command or _describe(c) for c in self.changes]

    def _check_open(self):
        if not self.open:
            raise ConfigError("The transaction is over (committed or rolled back).")


def _canonical(cfg: Config, path, option):
    if option is None:
        return None
    spec = cfg.registry.option(option)
    return spec.name if spec is not None else option


def _describe(c: Change) -> str:
    words = " ".join(f"{k} {_q(n)}" if n is not None else k for k, n in c.path)
    words = (words + " ") if words else ""
    if c.op == "set":
        return f"config set {words}{c.option} {c.raw}"
    if c.op == "unset":
        return f"config unset {words}{c.option}"
    return f"config unset {words}".rstrip()


def _q(name: str) -> str:
    from ecmta.config.lexer import needs_quotes, quote
    return quote(name) if needs_quotes(name) else name


# -- the manager ----------------------------------------------------------------------------

class ConfigManager:
    """Holds the current generation of one process (docs/design.md §3.2)."""

    def __init__(self, path: str | None = None, *, config: Config | None = None, registry=None,
                 allow_unbuilt: bool = False):
        self._registry = registry
        self._allow_unbuilt = allow_unbuilt
        if config is None:
            config = self._load(path)
        self.path = path if path is not None else config.path    # shown to operators
        # What reload() reads; None = the embedded default (kept read-only).
        self._file = path
        if path is None and config.path and config.path != loader.default_config_path():
            self._file = config.path
        self._current = config
        self._sources = config.sources
        self._next = config.generation + 1
        self._subscribers: list[Callable[[Config], None]] = []
        self._changes: list[Change] = []
        self._scratch = False
        self._lock = threading.RLock()
        self.last_reload: ReloadResult | None = None     # what the last reload reported

    # generations

    @property
    def current(self) -> Config:
        return self._current

    @property
    def generation(self) -> int:
        return self._current.generation

    @property
    def sources(self):
        return self._sources

    @property
    def changes(self) -> list[Change]:
        return list(self._changes)

    def _load(self, path):
        if path is None:
            return loader.load_default_config(allow_unbuilt=self._allow_unbuilt, registry=self._registry)
        return loader.load_config(path, allow_unbuilt=self._allow_unbuilt, registry=self._registry)

    def subscribe(self, callback: Callable[[Config], None]) -> Callable[[], None]:
        """Call `callback(new_config)` on every new generation; returns an unsubscribe function."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe():
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)
        return unsubscribe

    def _publish(self, cfg: Config) -> list[str]:
        with self._lock:
            self._current = cfg
            self._next = max(self._next, cfg.generation + 1)
            subscribers = list(self._subscribers)
        problems = []
        for cb in subscribers:
            try:
                cb(cfg)
            except Exception as exc:   # one broken subscriber must not stop the others
                from ecmta.loggers.panic import panic
                msg = f"configuration subscriber {getattr(cb, '__qualname__', cb)!r} failed: {exc!r}"
                panic(msg, subsystem="config")
                problems.append(msg)
        return problems

    def _generation(self) -> int:
        with self._lock:
            n = self._next
            self._next += 1
            return n

    # reload

    def reload(self, path: str | None = None) -> ReloadResult:
        """Re-read the files (or `path`); on error the running generation stays and
        ConfigError says why. Console changes not written back are dropped."""
        with self._lock:
            new = self._load(path if path is not None else self._file)
            old = self._current
            new, restart = keep_non_dynamic(old, new)
            cfg = Config(new.root, generation=self._generation(), registry=new.registry, path=new.path,
                         sources=new.sources, allow_unbuilt=new.allow_unbuilt)
            if path is not None:
                self.path = self._file = path
            self._sources = new.sources
            self._changes = []
            self._scratch = False
        problems = self._publish(cfg)
        self.last_reload = ReloadResult(cfg, restart, problems)
        return self.last_reload

    # console changes outside a transaction

    def set(self, path, option: str, raw: str, command: str = "") -> Value:
        with self._lock:
            cfg, value = apply_set(self._current, tuple(path), option, raw, self._generation())
            self._changes.append(Change("set", tuple(path), value.option, value.raw, command))
        self._publish(cfg)
        return value

    def unset(self, path, option: str | None = None, command: str = "") -> Resolved | None:
        with self._lock:
            cfg = apply_unset(self._current, tuple(path), option, self._generation())
            self._changes.append(Change("unset" if option else "unset_scope", tuple(path),
                                        _canonical(cfg, path, option), None, command))
        self._publish(cfg)
        return cfg.resolve(option, tuple(path)) if option else None

    # transactions

    def begin(self, from_scratch: bool = False) -> Transaction:
        with self._lock:
            return Transaction(self, self._current, from_scratch)

    def commit(self, txn: Transaction) -> Config:
        with self._lock:
            txn._check_open()
            if self._current.generation != txn.base_generation:
                txn.open = False
                raise ConfigError("Commit failed: the configuration was changed by another session "
                                  "since this transaction began; the transaction has been rolled back.")
            draft = txn.draft
            if txn.from_scratch:
                # A new configuration cannot change what only a restart changes either.
                draft, txn.restart_needed = keep_non_dynamic(self._current, draft)
            cfg = Config(draft.root, generation=self._generation(), registry=draft.registry,
                         path=self._current.path, sources=self._current.sources,
                         allow_unbuilt=draft.allow_unbuilt)
            if txn.from_scratch:
                self._scratch = True
                self._changes = []
            else:
                self._changes.extend(txn.changes)
            txn.open = False
        self._publish(cfg)
        return cfg

    def rollback(self, txn: Transaction) -> None:
        txn.open = False

    # files

    def writeback(self, path: str | None = None) -> list[str]:
        """Save console changes to the files they belong in (or all to `path`); returns warnings."""
        from ecmta.config import writeback
        with self._lock:
            result = writeback.write_changes(self._current, self._sources, self._changes,
                                             scratch=self._scratch, target=path)
            if path is None and result.written:
                # Re-read the files so the next writeback edits the new text; changes that
                # were saved are found in place then, so keeping unsaved ones is harmless.
                try:
                    self._sources = self._load(self._file).sources
                except ConfigError as exc:
                    result.warnings.append(f"the rewritten configuration does not load: {exc}")
            if path is None and not result.unsaved:
                self._changes, self._scratch = [], False
            return result.warnings

    def render(self) -> str:
        """The running configuration as ecelerity.conf text (`write config`)."""
        from ecmta.config import writeback
        return writeback.render_config(self._current)


# -- non-dynamic options on reload ----------------------------------------------------------

def keep_non_dynamic(old: Config, new: Config) -> tuple[Config, list[str]]:
    """`new` with the running value of every changed non-dynamic option put back, and the
    messages saying a restart is needed for each."""
    messages: list[str] = []
    olds = {s.key_path(): s for s in old.root.walk()}
    b = Builder(new.registry, allow_unbuilt=new.allow_unbuilt, root=Node.thaw(new.root))
    for scope in new.root.walk():
        before = olds.get(scope.key_path())
        if before is None:
            continue           # a new scope: nothing was running with its settings
        node = _node_by_keys(b.root, scope.key_path())
        for low in set(scope.options) | set(before.options):
            ok = option_kind(new.registry, scope.lkind, scope.module, low, False,
                             scope.module is not None and scope.lkind == scope.module)
            if ok.spec is None or ok.spec.dynamic:
                continue
            was, now = before.options.get(low), scope.options.get(low)
            if (was.value if was else None) == (now.value if now else None):
                continue
            if was is None:
                del node.options[low]
            else:
                node.options[low] = was
            where = path_label(scope.path()) or "global"
            messages.append(f"Option '{ok.spec.name}' in scope '{where}' changed; "
                            f"a restart is needed for the new value to take effect")
    if not messages:
        return new, []
    cfg = Config(b.root.freeze(), generation=new.generation, registry=new.registry, path=new.path,
                 sources=new.sources, allow_unbuilt=new.allow_unbuilt)
    return cfg, sorted(messages)


def _node_by_keys(root: Node, key_path: tuple) -> Node:
    node = root
    for key in key_path:
        node = node.children[key]
    return node
