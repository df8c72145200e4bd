"""Saving console changes back into the configuration files (`config writeback`).

Owns: where each change goes (MOMENTUM_DIGEST §1.4, conf.overview 15.1.2):
  1. Local_Changes_Only = true: everything goes to Local_Changes_File.
  2. A value replacing one that was last set in a writable file is replaced in place
     (only the value's characters change).
  3. Otherwise the change goes to the first writable file (load order) that defines the
     scope instance -- a stanza of it, or a file included inside it -- just before the
     stanza's closing brace (or at the end of such an included file).
  4. Otherwise to Local_Changes_File; without one, into the main file if it is writable
     (inside the deepest enclosing scope it already has), else it stays in a "virtual
     file" that is shown in a warning and nothing is lost from the running config.
`unset` removes the option's statements from writable files; `unset` of a scope removes
its stanzas from writable files; what sits in read-only files is reported in a warning.
Untouched lines keep their comments and formatting. With an alternate path, the main
file with every change applied (changes that belong elsewhere appended as stanzas) is
written there and no other file is touched. After `config begin from scratch` + commit,
the whole running configuration is written as one file.

Also `render_config(cfg)`: the running configuration as ecelerity.conf text
(`write config`, from-scratch writeback). Implicit settings are left out of the text.

Talks to: `manager.py` (the only caller), the parsed `loader.Sources`. Fails with
OSError when a file cannot be written (the files written so far stay written).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

from ecmta.config.lexer import quote
from ecmta.config.model import BUILTIN_FILE, name_key
from ecmta.config.parser import IncludeStmt, OptionStmt, ScopeStmt

INDENT = "  "


@dataclass
class Result:
    written: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    unsaved: str = ""


# -- index of the parsed files --------------------------------------------------------------

@dataclass(eq=False)
class _Def:
    sf: object
    stmt: OptionStmt
    enclosing: tuple          # ids of the ScopeStmts around it


@dataclass(eq=False)
class _Container:
    sf: object
    offset: int               # where new statements are inserted
    indent: str               # indentation of the stanza line ("" at file level)
    stanza: ScopeStmt | None  # None: the file's own top level
    enclosing: tuple


class _Index:
    def __init__(self, sources):
        self.defs: dict[tuple, list[_Def]] = {}
        self.containers: dict[tuple, list[_Container]] = {}
        self.stanzas: dict[tuple, list[_Container]] = {}
        self.order: list = []
        files = [sources.main] + ([sources.local_changes] if sources.local_changes else [])
        for sf in files:
            self._file(sf, sf.context, ())

    def _file(self, sf, context, enclosing):
        self.order.append(sf)
        self.containers.setdefault(context, []).append(
            _Container(sf, len(sf.text), "", None, enclosing))
        self._walk(sf, sf.statements, context, enclosing)

    def _walk(self, sf, stmts, context, enclosing):
        for st in stmts:
            if isinstance(st, OptionStmt):
                self.defs.setdefault((context, st.name.lower()), []).append(_Def(sf, st, enclosing))
            elif isinstance(st, ScopeStmt):
                name = st.name.text if st.name is not None else None
                key = context + ((st.keyword.lower(), name_key(st.keyword, name)),)
                inner = enclosing + (id(st),)
                c = _Container(sf, st.close, _line_indent(sf.text, st.start), st, inner)
                self.containers.setdefault(key, []).append(c)
                self.stanzas.setdefault(key, []).append(c)
                self._walk(sf, st.body, key, inner)
            elif isinstance(st, IncludeStmt):
                for child in st.files:
                    self._file(child, context, enclosing)


def _line_indent(text: str, pos: int) -> str:
    start = text.rfind("\n", 0, pos) + 1
    i = start
    while i < pos and text[i] in " \t":
        i += 1
    return text[start:i]


def _key_path(path) -> tuple:
    return tuple((k.lower(), name_key(k, n)) for k, n in path)


# -- planning edits -------------------------------------------------------------------------

class _Plan:
    def __init__(self, sources, cfg, target):
        self.sources, self.cfg, self.target = sources, cfg, target
        self.index = _Index(sources)
        self.edits: dict[int, list] = {}          # id(sf) -> [(start, end, text, seq)]
        self.files: dict[int, object] = {}
        self.removed: set[int] = set()            # ids of removed stanzas
        self.new_stanzas: dict[tuple, _Trie] = {} # (id(sf), offset) -> trie of new text
        self.virtual = _Trie(None, "", 0)
        self.warnings: list[str] = []
        self.seq = 0
        self.lcf = self._local_changes()

    # writability: with an alternate target only the main file is written (elsewhere)

    def writable(self, sf) -> bool:
        if self.target is not None:
            return sf is self.sources.main
        return not sf.readonly

    def alive(self, enclosing) -> bool:
        return not any(e in self.removed for e in enclosing)

    def _local_changes(self):
        if self.target is not None:
            return None
        if self.sources.local_changes is not None:
            return self.sources.local_changes
        if self.sources.local_changes_path:
            from ecmta.config.loader import SourceFile
            return SourceFile(self.sources.local_changes_path, "", [], ())
        return None

    def edit(self, sf, start, end, text):
        self.files[id(sf)] = sf
        self.seq += 1
        self.edits.setdefault(id(sf), []).append((start, end, text, self.seq))

    # the three operations

    def set(self, path, option, raw):
        key = _key_path(path)
        if self._local_only():
            return self._to_local(path, option, raw)
        defs = [d for d in self.index.defs.get((key, option.lower()), []) if self.alive(d.enclosing)]
        if defs and self.writable(defs[-1].sf):
            stmt = defs[-1].stmt
            self.edit(defs[-1].sf, stmt.value.start, stmt.value.end, raw)
            return
        for c in self.index.containers.get(key, []):
            if self.writable(c.sf) and self.alive(c.enclosing):
                self._insert(c, [], option, raw)
                return
        self._to_local(path, option, raw)

    def unset(self, path, option):
        key = _key_path(path)
        for d in self.index.defs.get((key, option.lower()), []):
            if not self.alive(d.enclosing):
                continue
            if self.writable(d.sf):
                self._delete(d.sf, d.stmt.start, d.stmt.end)
            else:
                self.warnings.append(f"'{option}' set at {d.sf.path}:{d.stmt.line} is in a read-only file "
                                     f"({d.sf.reason or 'read-only'}) and was not removed")

    def unset_scope(self, path):
        key = _key_path(path)
        for c in self.index.stanzas.get(key, []):
            if not self.alive(c.enclosing[:-1]):
                continue
            if self.writable(c.sf):
                self._delete(c.sf, c.stanza.start, c.stanza.end)
                self.removed.add(id(c.stanza))
            else:
                self.warnings.append(f"{c.stanza.keyword} stanza at {c.sf.path}:{c.stanza.line} is in a "
                                     f"read-only file ({c.sf.reason or 'read-only'}) and was not removed")
        for c in self.index.containers.get(key, []):
            if c.stanza is None:
                self.warnings.append(f"{c.sf.path} is included inside the removed scope; it was left as is")

    # helpers

    def _local_only(self) -> bool:
        v = self.cfg.root.options.get("local_changes_only")
        return bool(v is not None and v.value is True and self.lcf is not None)

    def _to_local(self, path, option, raw):
        """Rule 4: Local_Changes_File, else the main file, else the virtual file."""
        if self.lcf is not None:
            dest = self.lcf
        elif self.writable(self.sources.main):
            dest = self.sources.main
        else:
            self.virtual.add(path, option, raw)
            return
        # Nest inside the deepest scope the destination file already has.
        for depth in range(len(path), -1, -1):
            key = _key_path(path[:depth])
            for c in self.index.containers.get(key, []):
                if c.sf is dest and self.alive(c.enclosing):
                    return self._insert(c, path[depth:], option, raw)
        c = _Container(dest, len(dest.text), "", None, ())
        self._insert(c, path, option, raw)

    def _insert(self, c: _Container, rest, option, raw):
        trie = self.new_stanzas.get((id(c.sf), c.offset))
        if trie is None:
            trie = self.new_stanzas[(id(c.sf), c.offset)] = _Trie(c, c.indent, self.seq)
            self.files[id(c.sf)] = c.sf
            self.seq += 1
        trie.add(rest, option, raw)

    def _delete(self, sf, start, end):
        text = sf.text
        line_start = text.rfind("\n", 0, start) + 1
        line_end = text.find("\n", end)
        line_end = len(text) if line_end < 0 else line_end
        if not text[line_start:start].strip() and not text[end:line_end].strip():
            start, end = line_start, min(line_end + 1, len(text))
        self.edit(sf, start, end, "")

    # output

    def texts(self) -> dict[int, str]:
        for (fid, offset), trie in self.new_stanzas.items():
            where, what = trie.insertion(self.files[fid].text, offset)
            self.edits.setdefault(fid, []).append((where, where, what, trie.seq))
        out = {}
        for fid, edits in self.edits.items():
            sf = self.files[fid]
            text = sf.text
            for start, end, new, _ in sorted(edits, key=lambda e: (e[0], e[3]), reverse=True):
                text = text[:start] + new + text[end:]
            out[fid] = text
        return out


class _Trie:
    """New statements to insert at one place, grouped into nested stanzas."""

    def __init__(self, container, indent, seq):
        self.container, self.indent, self.seq = container, indent, seq
        self.options: dict[str, tuple] = {}
        self.children: dict[tuple, _Trie] = {}
        self.label = ""

    def add(self, path, option, raw):
        node = self
        for kind, name in path:
            key = (kind.lower(), name_key(kind, name))
            child = node.children.get(key)
            if child is None:
                child = node.children[key] = _Trie(None, "", 0)
                child.label = kind if name is None else f"{kind} {quote(name)}"
            node = child
        node.options[option.lower()] = (option, raw)

    def empty(self) -> bool:
        return not self.options and not self.children

    def lines(self, indent: str) -> list[str]:
        out = [f"{indent}{name} = {raw}" for name, raw in self.options.values()]
        for child in self.children.values():
            out.append(f"{indent}{child.label} {{")
            out += child.lines(indent + INDENT)
            out.append(f"{indent}}}")
        return out

    def insertion(self, text: str, offset: int) -> tuple[int, str]:
        """(where, what) to insert for a container whose closing brace (or file end) is at `offset`."""
        c = self.container
        if c.stanza is None:                      # end of a file
            body = "\n".join(self.lines("")) + "\n"
            return offset, (body if not text or text.endswith("\n") else "\n" + body)
        body = "\n".join(self.lines(c.indent + INDENT)) + "\n"
        line_start = text.rfind("\n", 0, offset) + 1
        if not text[line_start:offset].strip():   # "}" alone on its line: new lines go above it
            return line_start, body
        return offset, "\n" + body + c.indent


# -- entry points ---------------------------------------------------------------------------

def _coalesce(changes) -> list:
    """The net effect of a change list: the last word per option, scope removals in order."""
    final: dict = {}
    for c in changes:
        key = _key_path(c.path)
        if c.op == "unset_scope":
            for k in [k for k in final if k[0][:len(key)] == key]:
                del final[k]
            final[(key, None, len(final))] = c
        else:
            final.pop((key, c.option.lower(), None), None)
            final[(key, c.option.lower(), None)] = c
    return list(final.values())


def write_changes(cfg, sources, changes, *, scratch: bool = False, target: str | None = None) -> Result:
    result = Result()
    if sources is None:
        result.warnings.append("the configuration was not read from files; nothing can be written back")
        result.unsaved = render_config(cfg)
        return result
    if scratch:
        dest = target or sources.main.path
        if target is None and sources.main.readonly:
            result.unsaved = render_config(cfg)
            result.warnings.append(_virtual_warning(result.unsaved))
            return result
        _write(dest, render_config(cfg), sources.main.path)
        result.written.append(dest)
        return result
    plan = _Plan(sources, cfg, target)
    for c in _coalesce(changes):
        if c.op == "set":
            plan.set(c.path, c.option, c.raw)
        elif c.op == "unset":
            plan.unset(c.path, c.option)
        else:
            plan.unset_scope(c.path)
    texts = plan.texts()
    if target is not None:
        text = texts.get(id(sources.main), sources.main.text)
        _write(target, text, sources.main.path)
        result.written.append(target)
    else:
        for fid, text in texts.items():
            sf = plan.files[fid]
            _write(sf.path, text, sf.path)
            result.written.append(sf.path)
    result.warnings.extend(plan.warnings)
    if not plan.virtual.empty():
        result.unsaved = "\n".join(plan.virtual.lines("")) + "\n"
        result.warnings.append(_virtual_warning(result.unsaved))
    return result


def _virtual_warning(text: str) -> str:
    return ("Warning: not all portions of the configuration could be saved (no writable file and "
            "no Local_Changes_File); the unsaved changes are:\n" + text.rstrip("\n"))


def _write(path: str, text: str, like: str):
    """Replace `path` atomically, keeping the mode of `like` when it exists."""
    directory = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".ecmta-wb-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        if os.path.exists(like):
            os.chmod(tmp, os.stat(like).st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# -- rendering a whole configuration --------------------------------------------------------

def render_config(cfg) -> str:
    lines = _render_scope_body(cfg.root, "")
    return "\n".join(lines) + ("\n" if lines else "")


def _render_scope_body(scope, indent) -> list[str]:
    out = [f"{indent}{v.option} = {v.raw}" for v in scope.options.values() if v.file != BUILTIN_FILE]
    for child in scope.children:
        body = _render_scope_body(child, indent + INDENT)
        if child.implicit and not body:
            continue
        name = "" if child.name is None else " " + (quote(child.name) if child.name else '""')
        out.append(f"{indent}{child.kind}{name} {{")
        out += body
        out.append(f"{indent}}}")
    return out
