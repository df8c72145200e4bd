r"""The `config` console command (console_commands.config) and `write config`
(console_commands.write_config).

Owns: the modes get, eval, set, unset, show, showrecurse, locate, reload, writeback,
begin, begin from scratch, commit, rollback, replay, and their output layouts:
  config get message_expiration          -> Message_Expiration = 86400
  config get domain earthlink.net ...    -> <TAB>Message_Expiration = 900  (non-global scope)
  config get blackhole (unset)           -> Option 'Blackhole' is not set in scope ''.
  config eval blackhole                  -> Blackhole = 0
  config unset <scope> <opt>             -> "Opt" has been unset. Effective value is now:
                                            <TAB>Opt = value
  lists                                  -> Relay_Hosts = (\n  10.0.0.1\n  10.0.0.2\n  )
  config locate listen                   -> Listen ":25"\n  is at Esmtp_Listener::Listen:\:25:
Decisions where the page is silent: `set` echoes like `get`; `eval` indents like `get`;
`show` prints child scopes first (`Listen ":25" { ... }`) then options, list closers at
the scope's indentation as on the page; `unset` of a whole scope answers
"Scope 'X' has been unset."; begin/commit/rollback/reload/writeback print nothing on
success except warnings (restart needed, unsaved changes, apply problems).

Talks to: `ctx.daemon.config` (ConfigManager), `ctx.daemon.reload_config(path)` (the
daemon applies a reload to running services), `ctx.session.transaction` (the open
transaction of this console session). Values are re-read from the raw command line with
the config lexer so quoting and `( lists )` work exactly as in ecelerity.conf. Fails by
raising ConsoleError with the reason.
"""

from __future__ import annotations

import os
import re

from ecmta.config import lexer
from ecmta.config.lexer import STRING, WORD
from ecmta.config.model import ConfigError, path_label
from ecmta.config.parser import DictNode, ListNode
from ecmta.config.validate import option_at, split_path
from ecmta.console.registry import ConsoleError, command

USAGE = ("config { begin [from scratch] | commit | rollback | replay | reload [path] | writeback [path]"
         " | get|eval|unset [scope ...] option | set [scope ...] option value"
         " | show|showrecurse [scope ...] [option] | locate scope [regex] }")


def _error(exc: ConfigError) -> ConsoleError:
    lines = [i.message if i.file in (None, "<console>") else str(i) for i in exc.errors]
    return ConsoleError("\n".join(lines))


# -- reading the command line ---------------------------------------------------------------

class _Line:
    """The words after `config <mode>`, with their source positions."""

    def __init__(self, ctx, args: list[str]):
        line = ctx.line if ctx.line and ctx.line.strip().lower().startswith("config") else \
            "config " + " ".join(lexer.quote(a) if lexer.needs_quotes(a) else a for a in args)
        self.text = line
        try:
            toks = lexer.tokenize(line, "<console>")[:-1]
        except ConfigError as exc:
            raise _error(exc)
        self.toks = toks[2:]          # drop "config" and the mode word

    def words(self) -> list:
        """Leading word tokens (up to the first punctuation)."""
        out = []
        for t in self.toks:
            if t.kind not in (WORD, STRING):
                break
            out.append(t)
        return out


def _manager(ctx):
    mgr = getattr(ctx.daemon, "config", None)
    if mgr is None:
        raise ConsoleError("No configuration manager is running.")
    return mgr


def _txn(ctx):
    txn = getattr(ctx.session, "transaction", None)
    return txn if txn is not None and getattr(txn, "open", False) else None


def _view(ctx):
    """The configuration `config` commands read: the open transaction's draft, else the live one."""
    txn = _txn(ctx)
    return txn.config if txn is not None else _manager(ctx).current


def _split(cfg, words: list[str], min_rest: int):
    try:
        return split_path(words, cfg.registry, min_rest=min_rest)
    except ConfigError as exc:
        raise _error(exc)


def _option_name(cfg, path, word: str) -> str:
    """Canonical option name of `word` in the scope at `path` (ConsoleError if invalid)."""
    try:
        ok = option_at(cfg.registry, path, word)
    except ConfigError as exc:
        raise _error(exc)
    if ok.error:
        raise ConsoleError(ok.error[0].upper() + ok.error[1:] + ".")
    return ok.name


# -- formatting -----------------------------------------------------------------------------

def format_value(value, indent: str = "", closer: str = "  ") -> str:
    """`Name = value`; lists and dictionaries one element per line as on the page."""
    node = value.node
    if isinstance(node, ListNode):
        lines = [f"{indent}{value.option} = ("] + [f"{indent}  {i.render()}" for i in node.items]
        lines.append(f"{indent}{closer})")
        return "\n".join(lines)
    if isinstance(node, DictNode):
        lines = [f"{indent}{value.option} = ["]
        lines += [f"{indent}  {k.render()} = {v.render()}" for k, v in node.items]
        lines.append(f"{indent}{closer}]")
        return "\n".join(lines)
    return f"{indent}{value.option} = {value.raw}"


def _scope_label(scope) -> str:
    return scope.keyword if scope.name is None else f"{scope.keyword} {lexer.quote(scope.name)}"


def _show(scope, indent: str, recurse: bool) -> list[str]:
    out = []
    for child in scope.children:
        if recurse:
            out.append(f"{indent}{_scope_label(child)} {{")
            out += _show(child, indent + "  ", True)
            out.append(f"{indent}}}")
        else:
            out.append(f"{indent}{_scope_label(child)} {{ ... }}")
    out += [format_value(v, indent, closer="") for v in scope.options.values()]
    return out


def _not_set(option: str, path) -> str:
    return f"Option '{option}' is not set in scope '{path_label(path)}'."


def _indent(path) -> str:
    return "\t" if path else ""


# -- modes ----------------------------------------------------------------------------------

def _get(ctx, line: _Line, evaluate: bool) -> str:
    cfg = _view(ctx)
    path, rest = _split(cfg, [t.text for t in line.words()], 1)
    if len(rest) != 1:
        raise ConsoleError(f"Usage: config {'eval' if evaluate else 'get'} [scope ...] option")
    option = _option_name(cfg, path, rest[0])
    try:
        value = cfg.eval(option, path) if evaluate else cfg.get(path, option)
    except ConfigError as exc:
        raise _error(exc)
    if value is None:
        return _not_set(option, path)
    return format_value(value, _indent(path))


def _set(ctx, line: _Line) -> str:
    cfg = _view(ctx)
    words = line.words()
    if len(words) < len(line.toks):          # the value starts with "(", "[" or "="
        path, rest = _split(cfg, [t.text for t in words], 1)
        if len(rest) != 1:
            raise ConsoleError("Usage: config set [scope ...] option value")
        opt_tok = words[-1]
    else:
        path, rest = _split(cfg, [t.text for t in words], 2)
        if len(rest) < 2:
            raise ConsoleError("Usage: config set [scope ...] option value")
        opt_tok = words[len(words) - len(rest)]
    option = _option_name(cfg, path, opt_tok.text)
    raw_value = line.text[opt_tok.end:]
    command_text = line.text.strip()
    try:
        from ecmta.config.parser import parse_value
        raw = parse_value(raw_value).render()
        txn = _txn(ctx)
        if txn is not None:
            value = txn.set(path, option, raw, command=command_text)
        else:
            value = _manager(ctx).set(path, option, raw, command=command_text)
    except ConfigError as exc:
        raise _error(exc)
    return format_value(value, _indent(path))


def _unset(ctx, line: _Line) -> str:
    cfg = _view(ctx)
    path, rest = _split(cfg, [t.text for t in line.words()], 0)
    if len(rest) > 1 or len(line.words()) < len(line.toks):
        raise ConsoleError("Usage: config unset [scope ...] [option]")
    option = _option_name(cfg, path, rest[0]) if rest else None
    if option is None and not path:
        raise ConsoleError("Unsetting the global scope is not supported.")
    command_text = line.text.strip()
    try:
        txn = _txn(ctx)
        target = txn if txn is not None else _manager(ctx)
        resolved = target.unset(path, option, command=command_text)
    except ConfigError as exc:
        raise _error(exc)
    if option is None:
        return f"Scope '{path_label(path)}' has been unset."
    head = f'"{option}" has been unset. Effective value is now:'
    if resolved is None or resolved.value is None:
        return head + "\n\t(no value)"
    return head + "\n" + format_value(resolved.value, "\t")


def _show_mode(ctx, line: _Line, recurse: bool) -> str:
    cfg = _view(ctx)
    path, rest = _split(cfg, [t.text for t in line.words()], 0)
    scope = cfg.find(path)
    if scope is None:
        raise ConsoleError(f"Scope '{path_label(path)}' does not exist.")
    if rest:
        if recurse or len(rest) != 1:
            raise ConsoleError("Usage: config show [scope ...] [option] | config showrecurse [scope ...]")
        option = _option_name(cfg, path, rest[0])
        value = scope.get(option)
        return format_value(value, closer="") if value is not None else _not_set(option, path)
    if recurse and path:
        lines = [f"{_scope_label(scope)} {{"] + _show(scope, "  ", True) + ["}"]
    else:
        lines = _show(scope, "", recurse)
    return "\n".join(lines)


def _locate(ctx, args: list[str]) -> str:
    if not args or len(args) > 2:
        raise ConsoleError("Usage: config locate scope_name [regex]")
    cfg = _view(ctx)
    kind = args[0].lower()
    try:
        pattern = re.compile(args[1]) if len(args) == 2 else None
    except re.error as exc:
        raise ConsoleError(f"Bad regular expression '{args[1]}': {exc}")
    out = []
    for s in cfg.root.walk():
        if s.parent is None or s.lkind != kind:
            continue
        if pattern is not None and (s.name is None or not pattern.search(s.name)):
            continue
        chain, p = [], s
        while p.parent is not None:
            chain.append((p.keyword, p.name))
            p = p.parent
        out.append(_scope_label(s))
        out.append("  is at " + path_label(list(reversed(chain))))
    if not out:
        return f"No '{args[0]}' scope found."
    return "\n".join(out)


def _begin(ctx, args) -> str:
    if [a.lower() for a in args] not in ([], ["from", "scratch"]):
        raise ConsoleError("Usage: config begin [from scratch]")
    if _txn(ctx) is not None:
        raise ConsoleError("A transaction is already in progress; use config commit or config rollback first.")
    ctx.session.transaction = _manager(ctx).begin(from_scratch=bool(args))
    return ""


def _commit(ctx) -> str:
    txn = _txn(ctx)
    if txn is None:
        raise ConsoleError("No transaction in progress.")
    ctx.session.transaction = None
    try:
        _manager(ctx).commit(txn)
    except ConfigError as exc:
        raise _error(exc)
    return "\n".join(txn.restart_needed)


def _rollback(ctx) -> str:
    txn = _txn(ctx)
    if txn is None:
        raise ConsoleError("No transaction in progress.")
    _manager(ctx).rollback(txn)
    ctx.session.transaction = None
    return ""


def _replay(ctx) -> str:
    txn = _txn(ctx)
    if txn is None:
        raise ConsoleError("No transaction in progress.")
    return "\n".join(txn.replay())


def _reload(ctx, args) -> str:
    if len(args) > 1:
        raise ConsoleError("Usage: config reload [/alternate/path]")
    if _txn(ctx) is not None:
        raise ConsoleError("config reload cannot be used inside a transaction; "
                           "use config commit or config rollback first.")
    path = os.path.abspath(args[0]) if args else None
    mgr = _manager(ctx)
    mgr.last_reload = None
    try:
        reload = getattr(ctx.daemon, "reload_config", None)
        problems = list(reload(path) or []) if reload is not None else mgr.reload(path).problems
    except ConfigError as exc:
        raise ConsoleError("Reconfigure failed.\n" + str(_error(exc)))
    last = getattr(mgr, "last_reload", None)
    notes = list(last.restart_needed) if last is not None else []
    return "\n".join(notes + [p for p in problems if p not in notes])


def _writeback(ctx, args) -> str:
    if len(args) > 1:
        raise ConsoleError("Usage: config writeback [/alternate/path]")
    try:
        warnings = _manager(ctx).writeback(os.path.abspath(args[0]) if args else None)
    except OSError as exc:
        raise ConsoleError(f"Writeback failed: {exc}")
    return "\n".join(warnings)


@command("config", help="Online configuration tuning: get, eval, set, unset, show, showrecurse, "
                        "locate, reload, writeback, begin, commit, rollback, replay", usage=USAGE)
def config_command(ctx, args: list[str]) -> str:
    if not args:
        raise ConsoleError("Usage: " + USAGE)
    mode, rest = args[0].lower(), args[1:]
    if mode in ("get", "eval"):
        return _get(ctx, _Line(ctx, args), mode == "eval")
    if mode == "set":
        return _set(ctx, _Line(ctx, args))
    if mode == "unset":
        return _unset(ctx, _Line(ctx, args))
    if mode in ("show", "showrecurse"):
        return _show_mode(ctx, _Line(ctx, args), mode == "showrecurse")
    if mode == "locate":
        return _locate(ctx, rest)
    if mode == "begin":
        return _begin(ctx, rest)
    if mode == "commit":
        return _commit(ctx)
    if mode == "rollback":
        return _rollback(ctx)
    if mode == "replay":
        return _replay(ctx)
    if mode == "reload":
        return _reload(ctx, rest)
    if mode == "writeback":
        return _writeback(ctx, rest)
    raise ConsoleError(f"Unknown config mode '{args[0]}'. Usage: {USAGE}")


@command("write config", help="Display the running configuration, or write it to a file on the server",
         usage="write config [/path/to/file]")
def write_config(ctx, args: list[str]) -> str:
    if len(args) > 1:
        raise ConsoleError("Usage: write config [/path/to/file]")
    text = _manager(ctx).render()
    if not args:
        return text.rstrip("\n")
    path = os.path.abspath(args[0])
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise ConsoleError(f"Cannot write {path}: {exc.strerror or exc}")
    return ""
