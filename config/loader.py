"""Reading configuration files: the main file, its includes and the Local_Changes_File.

Owns: `load_config(path)`, `load_config_text(text)`, `load_default_config()` (the
embedded `ecelerity.conf` package data), the include rules of MOMENTUM_DIGEST §1.4
(file or directory, alphabetical, dotfiles and subdirectories skipped; search order:
the including file's directory, then EC_CONF_SEARCH_PATH or the Momentum default path;
cycles are errors) and which files are read-only (readonly_include, included more than
once, not writable on disk, the embedded default). The parsed files are kept in a
`Sources` object on the Config so `writeback.py` can edit them in place.

Talks to: `parser.py` (syntax), `validate.py` (meaning). How it fails: every problem --
missing include, cycle, syntax error, invalid option -- is collected and raised as one
`ConfigError` whose issues carry file:line.
"""

from __future__ import annotations

import importlib.resources
import os
import pathlib
from dataclasses import dataclass, field

from ecmta.config import parser
from ecmta.config.model import Config, ConfigError, ConfigIssue, name_key
from ecmta.config.parser import IncludeStmt, ScopeStmt
from ecmta.config.validate import Builder

DEFAULT_SEARCH_PATH = ("/opt/msys/ecelerity/etc", "/opt/msys/ecelerity/etc/conf/global",
                       "/opt/msys/ecelerity/etc/conf/default")
MAX_INCLUDE_DEPTH = 16
EMBEDDED_NAME = "ecelerity.conf"
_SCHEMES = ("file://", "persist://")


@dataclass(eq=False)
class SourceFile:
    path: str                       # absolute path (or a pseudo name for text sources)
    text: str
    statements: list
    context: tuple = ()             # key path of the scope its top-level statements live in
    readonly: bool = False
    reason: str = ""                # why it is read-only
    included_readonly: bool = False


@dataclass(eq=False)
class Sources:
    main: SourceFile
    files: list = field(default_factory=list)          # every file occurrence, load order
    local_changes: SourceFile | None = None
    local_changes_path: str | None = None

    def writable(self) -> list:
        return [f for f in self.files if not f.readonly]


def search_path() -> list[str]:
    env = os.environ.get("EC_CONF_SEARCH_PATH")
    if env is not None:
        return [p for p in env.split(":") if p]
    return list(DEFAULT_SEARCH_PATH)


# -- reading files --------------------------------------------------------------------------

def _decode(data: bytes, path: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError([ConfigIssue(path, line, None, "file is not valid UTF-8 text")])


def _read(path: str) -> str:
    with open(path, "rb") as fh:
        return _decode(fh.read(), path)


class _Loader:
    def __init__(self):
        self.issues: list[ConfigIssue] = []
        self.files: list[SourceFile] = []
        self.seen: dict[str, int] = {}

    def parse_file(self, path: str, text: str | None, context: tuple) -> SourceFile | None:
        try:
            if text is None:
                text = _read(path)
            stmts = parser.parse(text, path)
        except ConfigError as exc:
            self.issues.extend(exc.errors)
            return None
        except OSError as exc:
            self.issues.append(ConfigIssue(path, 0, None, f"cannot read file: {exc.strerror or exc}"))
            return None
        sf = SourceFile(path, text, stmts, context)
        self.files.append(sf)
        real = os.path.realpath(path)
        self.seen[real] = self.seen.get(real, 0) + 1
        return sf

    def expand(self, sf: SourceFile, stack: tuple):
        self._walk(sf.statements, sf, stack, sf.context)

    def _walk(self, stmts, sf: SourceFile, stack: tuple, context: tuple):
        for st in stmts:
            if isinstance(st, ScopeStmt):
                name = st.name.text if st.name is not None else None
                self._walk(st.body, sf, stack, context + ((st.keyword.lower(), name_key(st.keyword, name)),))
            elif isinstance(st, IncludeStmt):
                self._include(st, sf, stack, context)

    def _include(self, st: IncludeStmt, sf: SourceFile, stack: tuple, context: tuple):
        def fail(msg):
            self.issues.append(ConfigIssue(st.file, st.line, None, msg))

        if len(stack) >= MAX_INCLUDE_DEPTH:
            fail(f"includes nested deeper than {MAX_INCLUDE_DEPTH} levels")
            return
        target = st.path.text
        for scheme in _SCHEMES:
            if target.startswith(scheme):
                target = target[len(scheme):]
                break
        else:
            if "://" in target:
                fail(f"cannot include '{st.path.text}': only file:// and persist:// sources are supported")
                return
        # Text held in memory has no directory of its own: only the search path applies.
        base = os.path.dirname(sf.path) if os.path.isabs(sf.path) else None
        found = _locate(target, base)
        if found is None:
            fail(f"included file '{st.path.text}' not found (searched {', '.join(_candidates(target, base))})")
            return
        if not os.path.isdir(found) and not os.path.isfile(found):
            fail(f"cannot include '{st.path.text}': not a regular file or directory")
            return
        paths = _directory_files(found) if os.path.isdir(found) else [found]
        for path in paths:
            real = os.path.realpath(path)
            if real in stack:
                chain = " -> ".join(list(stack[stack.index(real):]) + [real])
                fail(f"include cycle: {chain}")
                continue
            child = self.parse_file(path, None, context)
            if child is None:
                continue
            child.included_readonly = st.readonly
            st.files.append(child)
            self.expand(child, stack + (real,))


def _candidates(target: str, base_dir: str | None) -> list[str]:
    if os.path.isabs(target):
        return [target]
    dirs = ([base_dir] if base_dir else []) + search_path()
    return [os.path.join(d, target) for d in dirs if os.path.isabs(d)]


def _locate(target: str, base_dir: str | None) -> str | None:
    for cand in _candidates(target, base_dir):
        if os.path.exists(cand):
            return os.path.abspath(cand)
    return None


def _directory_files(directory: str) -> list[str]:
    """Regular files of a directory in alphabetical order; dotfiles and subdirectories skipped."""
    out = []
    for name in sorted(os.listdir(directory)):
        full = os.path.join(directory, name)
        if not name.startswith(".") and os.path.isfile(full):
            out.append(full)
    return out


def _mark_readonly(loader: _Loader, main_readonly_reason: str = ""):
    for sf in loader.files:
        real = os.path.realpath(sf.path)
        if sf.included_readonly:
            sf.readonly, sf.reason = True, "included with readonly_include"
        elif loader.seen.get(real, 0) > 1:
            sf.readonly, sf.reason = True, "included more than once"
        elif not os.path.exists(sf.path) or not os.access(sf.path, os.W_OK):
            sf.readonly, sf.reason = True, "not writable"
    if main_readonly_reason and loader.files:
        loader.files[0].readonly, loader.files[0].reason = True, main_readonly_reason


# -- building a Config ----------------------------------------------------------------------

def _local_changes(builder: Builder, loader: _Loader, sources: Sources):
    """Load Local_Changes_File last, so it overrides everything (conf.ref.local_changes_file)."""
    from ecmta import paths
    value = builder.root.options.get("local_changes_file")
    if value is None or not isinstance(value.value, str) or not value.value:
        return
    path = os.path.abspath(paths.resolve(value.value))
    sources.local_changes_path = path
    real = os.path.realpath(path)
    if real in loader.seen:
        builder.error(value.file, value.line, value.option,
                      f"Local_Changes_File '{value.value}' may not be the main configuration file or an included file")
        return
    if not os.path.exists(path):
        return
    sf = loader.parse_file(path, None, ())
    if sf is None:
        return
    loader.expand(sf, (real,))
    sources.local_changes = sf
    builder.walk(sf.statements)


def _build(path: str, text: str | None, *, allow_unbuilt: bool, registry, readonly_reason: str = "",
           implicit: bool = True) -> Config:
    loader = _Loader()
    main = loader.parse_file(path, text, ())
    if main is None:
        raise ConfigError(loader.issues)
    loader.expand(main, (os.path.realpath(path),))
    sources = Sources(main)
    builder = Builder(registry, allow_unbuilt=allow_unbuilt)
    builder.walk(main.statements)
    _local_changes(builder, loader, sources)
    _mark_readonly(loader, readonly_reason)
    sources.files = loader.files
    issues = loader.issues + builder.issues
    if issues:
        raise ConfigError(_ordered(issues))
    if implicit:
        builder.add_implicit()
    return builder.finish(path=path, sources=sources)


def _ordered(issues):
    seen, out = set(), []
    for i in issues:
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out


def load_config(path, *, allow_unbuilt: bool = False, registry=None, implicit: bool = True) -> Config:
    """Parse, include and validate the configuration at `path`; raises ConfigError."""
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise ConfigError([ConfigIssue(path, 0, None, "configuration file not found")])
    return _build(path, None, allow_unbuilt=allow_unbuilt, registry=registry, implicit=implicit)


def load_config_text(text: str, file: str = "<string>", *, allow_unbuilt: bool = False,
                     registry=None, implicit: bool = True) -> Config:
    """Like load_config for text held in memory; includes resolve against `file`'s directory."""
    return _build(file, text, allow_unbuilt=allow_unbuilt, registry=registry,
                  readonly_reason="held in memory", implicit=implicit)


def default_config_path() -> str | None:
    """The embedded default ecelerity.conf as a file on disk, or None inside a zip."""
    res = importlib.resources.files("ecmta.config").joinpath(EMBEDDED_NAME)
    if isinstance(res, pathlib.Path) and res.is_file():
        return str(res)
    return None


def default_config_text() -> str:
    return importlib.resources.files("ecmta.config").joinpath(EMBEDDED_NAME).read_text("utf-8")


def load_default_config(*, allow_unbuilt: bool = False, registry=None) -> Config:
    """The embedded default configuration (read-only: console changes never rewrite it)."""
    path = default_config_path()
    if path is None:
        return load_config_text(default_config_text(), f"<embedded>/{EMBEDDED_NAME}",
                                allow_unbuilt=allow_unbuilt, registry=registry)
    return _build(path, None, allow_unbuilt=allow_unbuilt, registry=registry,
                  readonly_reason="embedded default configuration")
