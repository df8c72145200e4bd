"""The scriptlet module: Momentum's Lua policy callouts, driven from the session greenlet.

Owns: `PolicyEngine` — loading `scriptlet "scriptlet" { script "name" { source = ... } }`
(modules.scriptlet, implementing.policy.scriptlets), phase dispatch in registration order,
the coroutine driver that performs suspending requests (msys.sleep, msys.dnsLookup,
msys.runInPool, msys.threadpool.stat) cooperatively, per-session Lua state, and reload.

Who calls it: the SMTP session driver, once per phase, from the session's greenlet:

    result = engine.run(phase, vctx, ac=None, msg=None, arg=None)   -> PhaseResult

A phase no module implements returns the shared `CONTINUE` after one dict lookup. After
the last phase of a connection the driver calls `run("validate_dealloc", vctx)` (or
`end_session(vctx)`), which releases the session's Lua state.

VALIDATE_AGAIN: run() returns `again=True, retry_after=s`; the driver calls run() again with
the same arguments after that many seconds (cooperatively) and the phase resumes at the
module that asked. `run_settled()` does exactly that loop (bounded by `max_again`).

Logs: print() lines and load problems to the paniclog (`<ts>:scriptlet: ...`). A callout
that raises or returns an illegal value writes Momentum's two lines
`<ts>:scriptlet-00147: <callout> error: <message or (null)>` and
`<ts>:scriptlet-00239: <module> error: <message or (null)>` and the phase answers
`451 4.3.0` (at connect: `421 4.3.0` and disconnect). Nothing a script does can raise out
of run() except the greenlet being killed.
"""

from __future__ import annotations

import itertools
import os

import gevent
import lupa.lua54 as lua54

from ecmta.loggers.panic import panic
from ecmta.policy import msys as M
from ecmta.policy.context import CONTINUE, PhaseResult, ValidationContext
from ecmta.policy.objects import CalloutCtx
from ecmta.policy.runtime import (SUBSYSTEM, RuntimePool, ScriptletError, ScriptOptions,
                                  build_generation, os_thread_ident)

REQ = 1
K_SLEEP, K_DNS, K_POOL, K_TP = 1, 2, 3, 4
DEALLOC = "validate_dealloc"
SET_BINDING = "validate_set_binding"
ERROR_REPLY = (451, "4.3.0", "Temporary policy failure (script error), try again later")
CONNECT_ERROR_REPLY = (421, "4.3.0", "Temporary policy failure (script error), closing connection")
TRUE_WORDS = ("true", "1", "yes", "on", "enabled")
_sids = itertools.count(1)


class SessionState:
    """The engine's per-connection bookkeeping, kept in `vctx._policy`."""
    __slots__ = ("sid", "home", "ran", "again", "owned")

    def __init__(self) -> None:
        self.sid = next(_sids)
        self.home = None       # Runtime holding this session's self/_TLS (pinned), or None
        self.ran: set[str] = set()
        self.again: tuple[str, int] | None = None
        self.owned: dict = {}  # id(msg) -> Body the message owns (copy-on-write)


# -- configuration -------------------------------------------------------------------------
def _val(v):
    return getattr(v, "value", v)


def _as_bool(v) -> bool:
    v = _val(v)
    return v if isinstance(v, bool) else str(v).strip().lower() in TRUE_WORDS


def options_from_scope(options: dict) -> ScriptOptions:
    o = ScriptOptions()
    conv = {"script_ttl": float, "gc_pause": int, "gc_stepmul": int, "always_gc": _as_bool,
            "reap_interval": float, "max_spare_per_master": int}
    for name, fn in conv.items():
        if name in options:
            raw = _val(options[name])
            try:
                setattr(o, name, fn(raw))
            except (TypeError, ValueError):
                raise ScriptletError([f"scriptlet: invalid {name} = {raw!r}"]) from None
    return o


def stanzas_from_config(cfg) -> tuple[list[tuple[str, str]], ScriptOptions]:
    """[(script name, source)] and options from `cfg.scopes("scriptlet")`, or from a plain
    list of (name, source) pairs."""
    if isinstance(cfg, (list, tuple)):
        return [(str(n), str(src)) for n, src in cfg], ScriptOptions()
    stanzas: list[tuple[str, str]] = []
    merged: dict = {}
    names = set()
    for scope in cfg.scopes("scriptlet"):
        names.add(scope.name or "scriptlet")
        merged.update(scope.options)
        for child in scope.children:
            if str(getattr(child, "kind", "script")).lower() != "script":
                continue
            src = child.options.get("source")
            if src is None:
                raise ScriptletError([f"scriptlet: script \"{child.name}\" has no source"])
            stanzas.append((child.name, str(_val(src))))
    if len(names) > 1:
        raise ScriptletError(["scriptlet: only one named instance of the scriptlet module may "
                              f"appear in a configuration (found {', '.join(sorted(names))})"])
    return stanzas, options_from_scope(merged)


def _config_dir(cfg) -> str:
    for path in (getattr(cfg, "path", None), getattr(getattr(cfg, "root", None), "file", None)):
        if path:
            return os.path.dirname(os.path.abspath(str(path)))
    return os.getcwd()


def _scope_names(cfg, kind: str):
    try:
        return {str(sc.name) for sc in cfg.scopes(kind) if sc.name}
    except Exception:
        return None


class PolicyEngine:
    """The Lua policy engine of one daemon (see the module docstring)."""

    def __init__(self, scripts=(), *, script_root: str | None = None,
                 search_path: list[str] | None = None, options: ScriptOptions | None = None,
                 resolver=None, max_runtimes: int = 256, bindings=None, binding_groups=None,
                 again_delay: float = 0.05, max_again: int = 200,
                 max_callout_seconds: int = 10) -> None:
        self.hub_thread = os_thread_ident()
        self.max_callout_seconds = max_callout_seconds
        self.script_root = os.path.abspath(script_root or os.getcwd())
        if search_path is None:
            env = os.environ.get("EC_CONF_SEARCH_PATH", "")
            search_path = [p for p in env.split(os.pathsep) if p]
        self.search_path = list(search_path)
        self.resolver = resolver
        self._resolvers: dict[str, object] = {}
        self.bindings = None if bindings is None else set(bindings) | {"default"}
        self.binding_groups = None if binding_groups is None else set(binding_groups) | {"default"}
        self.again_delay = again_delay
        self.max_again = max_again
        self._epoch = 0
        self._pool = RuntimePool(self, max_runtimes)
        self._gen = None
        self._load(list(scripts), options or ScriptOptions())

    @classmethod
    def from_config(cls, cfg, **kw) -> "PolicyEngine":
        """An engine for a config generation (or a list of (name, source) pairs)."""
        stanzas, options = stanzas_from_config(cfg)
        if not isinstance(cfg, (list, tuple)):
            kw.setdefault("script_root", _config_dir(cfg))
            kw.setdefault("bindings", _scope_names(cfg, "binding"))
            kw.setdefault("binding_groups", _scope_names(cfg, "binding_group"))
        return cls(stanzas, options=options, **kw)

    def reload(self, cfg) -> int:
        """Swap in the scripts of a new config generation; returns the new epoch. On
        failure the running scripts stay and ScriptletError says why."""
        stanzas, options = stanzas_from_config(cfg)
        if not isinstance(cfg, (list, tuple)):
            self.script_root = _config_dir(cfg)
            self.bindings = _scope_names(cfg, "binding")
            self.bindings = None if self.bindings is None else self.bindings | {"default"}
            groups = _scope_names(cfg, "binding_group")
            self.binding_groups = None if groups is None else groups | {"default"}
        self._load(stanzas, options)
        return self._epoch

    def _load(self, stanzas, options: ScriptOptions) -> None:
        gen, first = build_generation(self._epoch + 1, stanzas, self.script_root,
                                      self.search_path, options, self)
        self._epoch += 1
        self._gen = gen
        self._pool.install(gen, first)

    def close(self) -> None:
        """deinit() every idle runtime (daemon shutdown)."""
        self._pool.close()

    # -- introspection -------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def modules(self) -> tuple[str, ...]:
        return self._gen.modules

    def has_phase(self, phase: str) -> bool:
        return phase in self._gen.by_phase

    def stats(self) -> dict:
        return self._pool.stats()

    def binding_exists(self, name: str) -> bool:
        return self.bindings is None or name in self.bindings

    def binding_group_exists(self, name: str) -> bool:
        return self.binding_groups is None or name in self.binding_groups

    def resolver_for(self, server: str | None):
        """The dnspython Resolver for msys.dnsLookup (`server` = options.server)."""
        import dns.resolver
        if not server:
            if self.resolver is None:
                self.resolver = dns.resolver.Resolver()
            return self.resolver
        res = self._resolvers.get(server)
        if res is None:
            host, port = server, 53
            if "#" in server:
                host, _, p = server.partition("#")
                port = int(p)
            elif server.count(":") == 1:
                host, _, p = server.partition(":")
                port = int(p)
            res = dns.resolver.Resolver(configure=False)
            res.nameservers = [host.strip("[]")]
            res.port = port
            self._resolvers[server] = res
        return res

    # -- sessions ------------------------------------------------------------------------
    def end_session(self, vctx: ValidationContext | None) -> None:
        """Forget the session's Lua state (self, _TLS). run(validate_dealloc) does this."""
        st = vctx._policy if vctx is not None else None
        if st is None:
            return
        vctx._policy = None
        self._unpin(st)

    @staticmethod
    def _unpin(st: SessionState) -> None:
        rt = st.home
        if rt is None:
            return
        st.home = None
        rt.pins -= 1
        rt.forget.append(st.sid)
        if not rt.busy and not rt.closed:
            rt.forget_sessions()

    def _pin(self, st: SessionState, rt, keep: bool) -> None:
        if keep:
            if st.home is not rt:
                self._unpin(st)
                st.home = rt
                rt.pins += 1
        elif st.home is rt:
            st.home = None
            rt.pins -= 1

    # -- phases ----------------------------------------------------------------------------
    def run(self, phase: str, vctx: ValidationContext | None = None, ac=None, msg=None,
            arg=None) -> PhaseResult:
        """Run every module's callout for `phase`, in registration order.

        arg: validate_ehlo/validate_mailfrom/validate_rcptto: the command's string;
             validate_rcptto_list(_final): the list of recipient addresses.
        When both vctx and msg are given and the message's ctx dictionaries are empty,
        they become the vctx's (msg:context_* and vctx:get/set see the same values).
        run() moves vctx.disposition and vctx.tarpit into the result and clears them.
        """
        gen = self._gen
        mods = gen.by_phase.get(phase)
        if not mods:
            if phase == DEALLOC:
                self.end_session(vctx)
            return CONTINUE
        if vctx is None:
            vctx = ValidationContext()
        if vctx.bypass("scriptlet"):
            if phase == DEALLOC:
                self.end_session(vctx)
            return CONTINUE
        st = vctx._policy
        if st is None:
            st = vctx._policy = SessionState()
        start = 0
        if st.again is not None:
            if st.again[0] == phase:
                start = st.again[1]
            st.again = None
        if phase == DEALLOC:
            mods = tuple(m for m in mods if m in st.ran)
            if not mods:
                self.end_session(vctx)
                return CONTINUE
        if msg is not None:
            if not msg.ctx_conn and msg.ctx_conn is not vctx.conn:
                msg.ctx_conn = vctx.conn
            if not msg.ctx_mess and msg.ctx_mess is not vctx.mess:
                msg.ctx_mess = vctx.mess
        vctx.phase = phase
        ctx = CalloutCtx(self, phase, vctx, ac, msg, st.owned)
        result = self._run_modules(ctx, st, gen, mods, start, arg)
        if phase == DEALLOC:
            self.end_session(vctx)
        return result

    def run_settled(self, phase: str, vctx: ValidationContext | None = None, ac=None,
                    msg=None, arg=None) -> PhaseResult:
        """run(), re-called after `retry_after` while a module answers VALIDATE_AGAIN."""
        if vctx is None:
            vctx = ValidationContext()
        for _ in range(self.max_again):
            result = self.run(phase, vctx, ac, msg, arg)
            if not result.again:
                return result
            gevent.sleep(result.retry_after)
        if vctx._policy is not None:
            vctx._policy.again = None
        self._log_failure(phase, "scriptlet", f"VALIDATE_AGAIN returned {self.max_again} times")
        return self._failure_result(phase)

    def _run_modules(self, ctx: CalloutCtx, st: SessionState, gen, mods, start: int, arg):
        phase = ctx.phase
        shape = M.PHASE_SHAPES[phase]
        try:
            rt = self._pool.checkout(st.home)
        except (ScriptletError, lua54.LuaError) as exc:
            self._log_failure(phase, mods[start], str(exc))
            return self._failure_result(phase, ctx)
        if rt.gen is not gen:
            # A reload happened while this session waited for a runtime: use its scripts.
            mods, start = rt.gen.by_phase.get(phase, ()), 0
            if phase == DEALLOC:
                mods = tuple(m for m in mods if m in st.ran)
        verdict, error, again = M.VALIDATE_CONT, False, False
        clean = False
        try:
            rt.current = ctx
            larg = self._lua_arg(rt, shape, arg)
            for i in range(start, len(mods)):
                name = mods[i]
                ctx.module = name
                ok, value, keep = self._callout(rt, ctx, name, phase, shape, st.sid, larg)
                st.ran.add(name)
                self._pin(st, rt, keep)
                if not ok or not _legal(value, phase):
                    self._log_failure(phase, name, M.s(value) if not ok else None)
                    error = True
                    break
                if phase == DEALLOC:
                    continue          # teardown: its return value means nothing (docs return none)
                verdict = int(value)
                if verdict == M.VALIDATE_DONE:
                    break
                if verdict == M.VALIDATE_AGAIN:
                    st.again = (phase, i)
                    again = True
                    break
            clean = True
        finally:
            if not clean:
                # The greenlet was killed mid-callout: its Lua state here is abandoned.
                rt.forget.append(st.sid)
                if st.home is rt:
                    st.home = None
                    rt.pins -= 1
            elif rt.gen.options.always_gc and rt.lua is not None:
                rt.full_gc()
            if ctx.async_jobs:
                gevent.spawn(self._run_async, rt, ctx.async_jobs)
            else:
                self._pool.checkin(rt)
        if error:
            return self._failure_result(phase, ctx)
        return self._result(ctx, verdict, again)

    @staticmethod
    def _lua_arg(rt, shape: int, arg):
        if arg is None:
            return None
        if shape == 4:
            items = [arg] if isinstance(arg, (str, bytes)) else list(arg)
            return rt.lua.table_from([M.b(a) for a in items])
        return M.b(arg)

    def _callout(self, rt, ctx, name, phase, shape, sid, larg):
        """Drive one callout's coroutine to its end: (ok, value or error, keep_state)."""
        try:
            co = rt.callout.coroutine(name.encode(), phase.encode(), sid, shape, ctx.vctx,
                                      ctx.ac, ctx if ctx.msg is not None else None, larg)
            out = co.send(None)
            while out[0] == REQ:
                reply = self._perform(rt, out)
                rt.flush()
                out = co.send(reply)
        except Exception as exc:     # xpcall catches script errors; this is the engine's own
            return False, (str(exc) or exc.__class__.__name__).encode(), False
        finally:
            rt.flush()
        return out[1], out[2], out[3]

    # -- suspending requests (the session greenlet waits here, outside Lua) ---------------
    def _perform(self, rt, out) -> tuple:
        kind = out[1]
        try:
            if kind == K_SLEEP:
                gevent.sleep(max(0.0, float(out[2])))
                return (True,)
            if kind == K_DNS:
                name, rtype, prio, server = out[2], out[3], out[4], out[5]
                resolver = self.resolver_for(M.s(server) if server else None)
                return (True, *M.dns_lookup(resolver, M.s(name), M.s(rtype), bool(prio)))
            if kind == K_POOL:
                return (True, self._pool_wait(rt, out[2], out[3]))
            if kind == K_TP:
                op = out[2]
                if op == b"count":
                    return (True, M.threadpool_count())
                if op == b"find":
                    return (True, M.threadpool_find(out[3]))
                return (True, *M.threadpool_stat_flat(out[3]))
            return (False, b"unknown request from the Lua runtime")
        except Exception as exc:
            return (False, M.b(str(exc) or exc.__class__.__name__))

    @staticmethod
    def _pool_wait(rt, pool, fn):
        from ecmta import pools
        key = M.pool_key(pool)
        try:
            res = pools.submit(key, rt.pack_pcall, fn)
        except KeyError as exc:
            raise RuntimeError(f"msys.runInPool: {exc.args[0]}") from None
        rt.pending = res          # the runtime stays out until the job is done, even if killed
        value = res.get()
        rt.pending = None
        return value

    def _run_async(self, rt, jobs) -> None:
        """msys.runInPool(pool, fn, true | completion): after the phase, one by one, on the
        runtime that ran the script (kept checked out until they are done)."""
        from ecmta import pools
        try:
            for key, fn, completion, sched in jobs:
                try:
                    res = pools.submit(key, rt.run_pool_job, fn, None if sched else completion)
                    rt.pending = res
                    packed = res.get()
                    rt.pending = None
                    if not packed[1]:
                        panic(f"runInPool closure error: {M.s(packed[2])}", SUBSYSTEM)
                    if packed[b"completion_error"]:
                        panic(f"runInPool completion error: {M.s(packed[b'completion_error'])}",
                              SUBSYSTEM)
                    if completion is not None and sched:
                        done = rt.pack_pcall(completion)
                        if not done[1]:
                            panic(f"runInPool completion error: {M.s(done[2])}", SUBSYSTEM)
                except Exception as exc:
                    panic(f"runInPool error: {exc}", SUBSYSTEM)
                finally:
                    rt.flush()
        finally:
            self._pool.checkin(rt)

    # -- results ---------------------------------------------------------------------------
    @staticmethod
    def _log_failure(phase: str, module: str, detail: str | None) -> None:
        text = detail if detail else "(null)"
        panic(f"{phase} error: {text}", "scriptlet-00147")
        panic(f"{module} error: {text}", "scriptlet-00239")

    def _failure_result(self, phase: str, ctx: CalloutCtx | None = None) -> PhaseResult:
        if ctx is not None:
            ctx.vctx.disposition = None
            ctx.vctx.tarpit = 0.0
        connect = phase == "validate_connect"
        return PhaseResult(reply=CONNECT_ERROR_REPLY if connect else ERROR_REPLY,
                           disconnect=connect, error=True, module=SUBSYSTEM)

    def _result(self, ctx: CalloutCtx, verdict: int, again: bool) -> PhaseResult:
        vctx = ctx.vctx
        disp, tarpit = vctx.disposition, vctx.tarpit
        if disp is None and not tarpit and ctx.discard is None and ctx.msg_code is None \
                and not again and verdict == M.VALIDATE_CONT:
            return CONTINUE
        vctx.disposition, vctx.tarpit = None, 0.0
        reply = (disp.code, disp.enhanced, disp.text) if disp is not None else None
        answered = reply is not None or ctx.discard is not None
        return PhaseResult(reply=reply, disconnect=bool(disp and disp.disconnect),
                           tarpit=tarpit, discard=ctx.discard, msg_code=ctx.msg_code,
                           verdict=verdict, again=again,
                           retry_after=self.again_delay if again else 0.0,
                           module=SUBSYSTEM if answered else None)


def _legal(value, phase: str) -> bool:
    if phase == DEALLOC:
        return True
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        return False
    if phase == SET_BINDING:
        return int(value) in (M.VALIDATE_CONT, M.VALIDATE_DONE)
    return int(value) in (M.VALIDATE_CONT, M.VALIDATE_DONE, M.VALIDATE_AGAIN)
