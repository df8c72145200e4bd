"""Which setting applies: the fallback rules of MOMENTUM_DIGEST §1.5, one API for all.

Owns: the precedence chains.
  Sending side (binding_group / binding / domain / host):
      binding::domain (the binding wherever it lives: inside its group or global)
      > binding_group::domain > binding > binding_group > global domain > global > default.
      Inside one container an exact Domain stanza is consulted before regex stanzas
      ("/re/"), which are tried in declaration order. Host stanzas (binding > group >
      global) come first for options valid in Host; `max_outbound_connections` and
      `cluster_max_outbound_connections` do not fall back from a Host: with a host in the
      context, a matching Host stanza without the option (or no Host stanza) gives -1.
  Receiving side (listener / listen / peer):
      Listen::Peer > Listen > listener-level Peer > listener
      > pathway_group::pathway > pathway > pathway_group > global > default,
      the most specific Peer CIDR containing the client address winning at each level,
      and the pathway being the context's, else the `pathway` option of that chain.
Every lookup returns the defining scope too (`Resolved.scope`), so throttles can share
one object per defining scope.

Talks to: `model.Config` (which delegates `eval`/`resolve` here). Fails with
`ConfigError` for an option the registry does not know.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from ecmta.config import values
from ecmta.config.model import ConfigError, EvalContext, Rate, Resolved, Scope, Value
from ecmta.config.validate import registry_extra

HOST_ONLY = frozenset({"max_outbound_connections", "cluster_max_outbound_connections"})
SENDING_KINDS = frozenset({"binding_group", "binding", "domain", "host"})
PATHWAY_KINDS = frozenset({"pathway_group", "pathway"})


# -- option specs ---------------------------------------------------------------------------

def _spec(cfg, option: str, module: str | None = None):
    reg = cfg.registry
    if module is not None:
        mod = reg.module(module)
        spec = (mod.options or {}).get(option.lower()) if mod is not None else None
        if spec is not None:
            return spec
    return reg.option(option)


def default_value(cfg, option: str, module: str | None = None, kinds=()) -> Value | None:
    """The built-in default; a per-scope-kind default (SCOPE_DEFAULTS) of the most specific
    kind in `kinds` wins over the option's general one."""
    spec = _spec(cfg, option, module)
    if spec is None:
        return None
    default = spec.default
    per_kind = registry_extra(cfg.registry, "SCOPE_DEFAULTS", {})
    for kind in kinds:
        if (spec.name.lower(), kind) in per_kind:
            default = per_kind[(spec.name.lower(), kind)]
            break
    if default is None:
        return None
    if spec.type == "rate" and isinstance(default, tuple) and len(default) == 2:
        default = Rate(*default)
    return Value(spec.name, default, values.default_raw(replace(spec, default=default)), None, 0)


def _check_known(cfg, option: str, module: str | None = None):
    if _spec(cfg, option, module) is not None:
        return
    mod = cfg.registry.module(module) if module else None
    if mod is not None and not mod.built and not mod.options and not mod.subscopes:
        return        # inside a module ecmta does not implement: options are untyped
    raise ConfigError(f"unknown option '{option}'")


# -- matching -------------------------------------------------------------------------------

def _matching(container: Scope | None, kind: str, target: str | None) -> list[Scope]:
    """Domain/Host stanzas of `container` for `target`: the exact one, then matching regexes."""
    if container is None or target is None:
        return []
    t = target.lower()
    exact = container.child(kind, t)
    out = [exact] if exact is not None else []
    for pattern, scope in container.regex_children(kind):
        if scope is not exact and pattern.search(t):
            out.append(scope)
    return out


def best_peer(container: Scope | None, address: str | None) -> Scope | None:
    """The Peer child whose CIDR contains `address` with the longest prefix."""
    if container is None or not address:
        return None
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return None
    best, best_len = None, -1
    for s in container.children_of("peer"):
        try:
            net = ipaddress.ip_network(s.name, strict=False)
        except (ValueError, TypeError):
            continue
        if net.version == ip.version and ip in net and net.prefixlen > best_len:
            best, best_len = s, net.prefixlen
    return best


# -- chains ---------------------------------------------------------------------------------

def _group_of(root: Scope, binding: str) -> Scope | None:
    for g in root.children_of("binding_group"):
        if g.child("binding", binding) is not None:
            return g
    return None


def _group(root: Scope, ctx: EvalContext) -> Scope | None:
    """The context's binding group: the one named, else the one holding its binding."""
    if ctx.binding_group:
        return root.child("binding_group", ctx.binding_group)
    return _group_of(root, ctx.binding) if ctx.binding else None


def _sending(root: Scope, ctx: EvalContext, with_hosts: bool) -> list[Scope]:
    group = _group(root, ctx)
    bindings = []
    if ctx.binding:
        bindings = [b for b in ((group.child("binding", ctx.binding) if group else None),
                                root.child("binding", ctx.binding)) if b is not None]
    chain: list[Scope] = []
    if with_hosts and ctx.host:
        chain += _hosts(root, group, bindings, ctx.host)
    for b in bindings:
        chain += _matching(b, "domain", ctx.domain)
    chain += _matching(group, "domain", ctx.domain)
    chain += bindings
    if group is not None:
        chain.append(group)
    chain += _matching(root, "domain", ctx.domain)
    return chain


def _hosts(root, group, bindings, host) -> list[Scope]:
    out = []
    for b in bindings:
        out += _matching(b, "host", host)
    out += _matching(group, "host", host)
    out += _matching(root, "host", host)
    return out


def _listener_scope(root: Scope, ctx: EvalContext) -> Scope | None:
    if ctx.listener:
        return root.child(ctx.listener, None)
    if ctx.listen:   # no listener named: the one that has this Listen
        for s in root.children:
            if s.child("listen", ctx.listen) is not None:
                return s
    return None


def _listening(root: Scope, ctx: EvalContext) -> list[Scope]:
    listener = _listener_scope(root, ctx)
    if listener is None:
        return []
    listen = listener.child("listen", ctx.listen) if ctx.listen else None
    chain = [best_peer(listen, ctx.peer), listen, best_peer(listener, ctx.peer), listener]
    return [s for s in chain if s is not None]


def _pathway_name(chain: list[Scope]) -> str | None:
    for s in chain:
        v = s.get("pathway")
        if v is not None and isinstance(v.value, str):
            return v.value
    return None


def _pathways(root: Scope, name: str | None, group_name: str | None) -> list[Scope]:
    if not name and not group_name:
        return []
    group = root.child("pathway_group", group_name) if group_name else None
    if group_name is None and name:
        group = next((g for g in root.children_of("pathway_group") if g.child("pathway", name)), None)
    chain = [group.child("pathway", name) if (group is not None and name) else None,
             root.child("pathway", name) if name else None, group]
    return [s for s in chain if s is not None]


def chain_for(cfg, ctx: EvalContext, *, with_hosts: bool = True) -> list[Scope]:
    """The scopes consulted for `ctx`, most specific first, ending with the global scope."""
    root = cfg.root
    chain = _sending(root, ctx, with_hosts)
    listening = _listening(root, ctx)
    chain += listening
    if listening or ctx.pathway or ctx.pathway_group:
        chain += _pathways(root, ctx.pathway or _pathway_name(listening), ctx.pathway_group)
    chain.append(root)
    return _unique(chain)


def _unique(chain):
    seen, out = set(), []
    for s in chain:
        if id(s) not in seen:
            seen.add(id(s))
            out.append(s)
    return out


def _first(cfg, option: str, chain: list[Scope], module: str | None = None) -> Resolved:
    low = option.lower()
    for s in chain:
        v = s.options.get(low)
        if v is not None:
            return Resolved(v, s)
    kinds = [s.lkind for s in chain if s.parent is not None]
    return Resolved(default_value(cfg, option, module, kinds), None)


def _host_only(cfg, option: str, ctx: EvalContext) -> Resolved:
    root = cfg.root
    group = _group(root, ctx)
    bindings = []
    if ctx.binding:
        bindings = [b for b in ((group.child("binding", ctx.binding) if group else None),
                                root.child("binding", ctx.binding)) if b is not None]
    hosts = _hosts(root, group, bindings, ctx.host)
    for h in hosts:
        v = h.options.get(option.lower())
        if v is not None:
            return Resolved(v, h)
    spec = _spec(cfg, option)
    name = spec.name if spec is not None else option
    scope = hosts[0] if hosts else None
    return Resolved(Value(name, -1, "-1", None, 0), scope)


# -- public entry points --------------------------------------------------------------------

def resolve(cfg, option: str, ctx: EvalContext) -> Resolved:
    _check_known(cfg, option)
    if ctx.host and option.lower() in HOST_ONLY:
        return _host_only(cfg, option, ctx)
    return _first(cfg, option, chain_for(cfg, ctx))


def resolve_at(cfg, option: str, path: tuple) -> Resolved:
    """`config eval <scope path> option`: the chain a scope path stands for."""
    kinds = [k.lower() for k, _ in path]
    if kinds and set(kinds) <= SENDING_KINDS:
        ctx = EvalContext(**{k: n for k, n in _by_kind(path).items()})
        return resolve(cfg, option, ctx)
    if kinds and set(kinds) <= PATHWAY_KINDS:
        by = _by_kind(path)
        return resolve(cfg, option, EvalContext(pathway=by.get("pathway"), pathway_group=by.get("pathway_group")))
    # Lexical: the scope, its ancestors, then (for listeners) the pathway, then global.
    scopes, s = [], cfg.root
    for kind, name in path:
        nxt = s.child(kind, name)
        if nxt is None:
            break
        scopes.append(nxt)
        s = nxt
    chain = list(reversed(scopes))
    if kinds and kinds[0].endswith("_listener"):
        chain += _pathways(cfg.root, _pathway_name(chain), None)
    chain.append(cfg.root)
    module = next((sc.module for sc in scopes if sc.module), None)
    _check_known(cfg, option, module)
    return _first(cfg, option, _unique(chain), module)


def _by_kind(path) -> dict:
    return {k.lower(): n for k, n in path}
