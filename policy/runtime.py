"""Lua runtimes for policy scripts, and the pool that lends them to sessions.

Owns: `Generation` (the scripts of one configuration, compiled once: sources rewritten from
Momentum's dialect, the modules they registered, which phases each implements), `Runtime`
(one lupa LuaRuntime with the bootstrap and every script of a generation loaded and
init() run), and `RuntimePool` (checkout/checkin, epochs, growth, reaping).

Lua version: 5.4 (lupa.lua54). Momentum's Lua is 5.1 plus bitwise operators; 5.4 has those
operators natively and can yield across pcall and metamethods, which the suspending msys
functions need. Compatibility (policy/lua/ecmta/bootstrap.lua): `!=`, `^^`, `\\` are
rewritten (policy/dialect.py); Momentum's metamethod names (__and, __or, __xor, __not,
__intdiv) are aliased by setmetatable; non-integral operands of bitwise operators are
truncated as Momentum does; unpack, loadstring, table.getn/maxn/foreach(i), string.gfind,
math.pow/mod/ldexp/log10/cosh/sinh/tanh, gcinfo, getfenv/setfenv (through _ENV upvalues)
and module()/package.seeall exist; tostring() and print() show integral floats as 5.1
does ("5", not "5.0"). Not possible in 5.4: the `..` operator still renders an integral
float as "5.0" (write `("%d"):format(x)` or math.floor), setfenv cannot change the global
environment (level 0), integer arithmetic wraps at 64 bits instead of losing precision,
and `string.format("%d", 2.5)` raises instead of truncating. os.exit raises.

Rules (docs/design.md §2.4): a runtime is checked out by one callout at a time, including
its suspensions, because msys.runInPool runs Lua on it from a pool thread (lupa releases
the GIL while Lua runs). `config reload` makes a new Generation with a new epoch; idle
runtimes of older epochs are closed at once, busy ones when they are checked in (their
running callout finishes on its old scripts). A session whose `self` or `_TLS` holds data
is pinned to the runtime that has it and waits for that runtime; other sessions take any
runtime, preferring ones with no pinned sessions. The pool grows on demand up to
`max_runtimes`; above that, checkouts wait.

Script options applied to lupa: gc_pause and gc_stepmul (collectgarbage "incremental"),
always_gc (a full collection after each callout), script_ttl (an idle runtime older than
this is closed) and reap_interval (how often idle runtimes are examined, at checkin), and
max_spare_per_master (idle runtimes kept). Loading and init() run on the hub (config load
and pool growth); a runtime costs about a millisecond per small script to create.
"""

from __future__ import annotations

import collections
import os
import time
from dataclasses import dataclass, field
from importlib import resources

import lupa.lua54 as lua54
from gevent.event import AsyncResult
from gevent.monkey import get_original

from ecmta.loggers import chunk_logger
from ecmta.loggers.panic import panic
from ecmta.policy import audit_series, dialect
from ecmta.policy import msys as M
from ecmta.policy import msys_bounce, objects

os_thread_ident = get_original("_thread", "get_ident")
_os_sleep = get_original("time", "sleep")

LUA_DIR = str(resources.files("ecmta.policy") / "lua")
SUBSYSTEM = "scriptlet"
COMMIT_FAILED = ("Module 'scriptlet' instance 'scriptlet' initialization failed while "
                 "preparing to commit. Consult your vendor.")


class ScriptletError(Exception):
    """The scripts of a configuration cannot be used; `lines` say why (paniclog text),
    str() ends with Momentum's commit failure line."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = list(lines)
        super().__init__("\n".join(self.lines + [COMMIT_FAILED]))


@dataclass
class ScriptOptions:
    script_ttl: float = 300.0
    gc_pause: int = 200
    gc_stepmul: int = 200
    always_gc: bool = False
    reap_interval: float = 1.0
    max_spare_per_master: int = 5000


@dataclass
class Script:
    name: str       # the `script "name"` stanza = the module name it must register
    path: str
    source: bytes   # rewritten to Lua 5.4


@dataclass
class Generation:
    epoch: int
    scripts: list[Script]
    options: ScriptOptions
    package_path: str
    wanted: frozenset = frozenset()                    # stanza names
    modules: tuple[str, ...] = ()                      # registration order, stanza names only
    methods: dict[str, frozenset] = field(default_factory=dict)
    by_phase: dict[str, tuple[str, ...]] = field(default_factory=dict)   # dispatchable phases
    hooks: dict[str, tuple[str, ...]] = field(default_factory=dict)      # init, deinit, core_* ...
    deinit_reported: bool = False    # init()/deinit() output is logged once per generation


def resolve_source(source: str, root: str, search_path: list[str]) -> str:
    """`source = "dir.file"` or "dir/file" -> the .lua file (implementing.policy.scriptlets
    62.2.4): under the script root, then EC_CONF_SEARCH_PATH, then ecmta's own msys/ dir.
    Raises ScriptletError with Momentum's "Unable to open" line naming the root path."""
    rel = source.replace(".", "/").replace("/", os.sep) + ".lua"
    for base in [root, *search_path, LUA_DIR]:
        path = os.path.join(base, rel)
        if os.path.isfile(path):
            return path
    missing = os.path.join(root, rel)
    try:
        with open(missing, "rb"):
            pass
    except OSError as exc:
        raise ScriptletError([f"Unable to open '{missing}', errno={exc.errno} {exc.strerror}"])
    return missing


def read_script(name: str, path: str) -> Script:
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise ScriptletError([f"Unable to open '{path}', errno={exc.errno} {exc.strerror}"])
    text = raw.decode("utf-8", "surrogateescape")
    return Script(name, path, dialect.rewrite(text).encode("utf-8", "surrogateescape"))


def package_path(root: str, search_path: list[str]) -> str:
    dirs = [root, *search_path, LUA_DIR]
    return ";".join(f"{d}/?.lua;{d}/?/init.lua" for d in dirs)


def _deny_attributes(obj, name, is_setting):
    raise AttributeError("Python attributes are not accessible from policy scripts")


def _read_bootstrap() -> bytes:
    return (resources.files("ecmta.policy") / "lua" / "ecmta" / "bootstrap.lua").read_bytes()


_BOOTSTRAP = _read_bootstrap()


class Runtime:
    """One Lua state with every script of a generation loaded. Checked out exclusively."""

    def __init__(self, gen: Generation, engine, *, first: bool = False) -> None:
        self.gen = gen
        self.epoch = gen.epoch
        self.engine = engine
        self.first = first               # the generation's probe: it reports load problems
        self.current = None              # CalloutCtx of the callout using it
        self.prints: list[str] = []      # print() lines waiting for the hub
        self.registered: dict[str, frozenset] = {}
        self.reg_order: list[str] = []
        self.pins = 0                    # sessions whose self/_TLS live here
        self.busy = False
        self.closed = False
        self.idle_since = time.monotonic()
        self.pending = None              # AsyncResult of a pool job still running Lua here
        self.forget: list[int] = []      # session ids whose state must be dropped
        self.waiters: collections.deque = collections.deque()   # pinned sessions waiting
        self.lua = lua54.LuaRuntime(encoding=None, unpack_returned_tuples=True,
                                    register_eval=False, register_builtins=False,
                                    attribute_filter=_deny_attributes)
        entry = self.lua.execute(_BOOTSTRAP, self.lua.table_from(self._api()), self._opts())
        self.callout = entry[b"callout"]
        self.pack_pcall = entry[b"pack_pcall"]
        self.run_pool_job = entry[b"run_pool_job"]
        self._load_script = entry[b"load_script"]
        self._call_plain = entry[b"call_plain"]
        self._forget = entry[b"forget"]
        self.full_gc = entry[b"full_gc"]
        entry[b"gc_setup"](gen.options.gc_pause, gen.options.gc_stepmul)
        self._load_all()

    # -- construction -------------------------------------------------------------------
    def _opts(self):
        t = self.lua.table_from
        return t({
            b"constants": t({k.encode(): v for k, v in M.CONSTANTS.items()}),
            b"unavailable_namespaces": t([n.encode() for n in M.UNAVAILABLE_NAMESPACES]),
            b"unavailable_functions": t([n.encode() for n in M.UNAVAILABLE_FUNCTIONS]),
            b"msg_unavailable": t([n.encode() for n in M.MSG_UNAVAILABLE]),
            b"provided_modules": t([n.encode() for n in M.PROVIDED_MODULES]),
            b"package_path": self.gen.package_path.encode(),
            b"max_callout_seconds": self.engine.max_callout_seconds,
        })

    def _api(self) -> dict:
        api = {name.encode(): fn for name, fn in objects.API.items()}
        api.update({
            b"print": self._print,
            b"rewrite": lambda src: dialect.rewrite(M.s(src)).encode("utf-8", "surrogateescape"),
            b"expand_macro": self._expand_macro,
            b"block_sleep": self._block_sleep,
            b"dns_blocking": self._dns_blocking,
            b"pool_async": self._pool_async,
            b"register_module": self._register_module,
            b"os_thread": os_thread_ident,
            b"b64encode": M.b64encode, b"b64decode": M.b64decode,
            b"qpencode": M.qpencode, b"qpdecode": M.qpdecode,
            b"pcre_match": M.pcre_match, b"pcre_replace": M.pcre_replace,
            b"pcre_split": M.pcre_split,
            b"threadpool_count": M.threadpool_count, b"threadpool_find": M.threadpool_find,
        })
        api.update(msys_bounce.API)      # msys.bounce.* (policy/msys_bounce.py)
        api[b"chunk_logger_log"] = chunk_logger.lua_log   # msys.beta.chunk_logger_int.log
        api.update(audit_series.lua_api(self._peer))     # msys.audit_series.*
        return api

    def _load_all(self) -> None:
        for script in self.gen.scripts:
            ok, err = self._load_script(script.source, ("@" + script.path).encode())
            if not ok:
                raise ScriptletError([f"{script.name}: {M.s(err)}"])
        for name in [n for n in self.reg_order if n in self.gen.wanted]:
            if "init" in self.registered.get(name, ()):
                ok, value = self._call_plain(name.encode(), b"init")
                if not ok or value is not True:
                    why = M.s(value) if not ok else f"init() returned {value!r}, not true"
                    raise ScriptletError([f"{name}: {why}"])
        if not self.first:
            self.prints.clear()      # the generation's first runtime already logged these
        self.flush()

    # -- callbacks from Lua (never wait, never switch greenlets) -----------------------
    def _print(self, text) -> None:
        self.prints.append(M.s(text))

    def _expand_macro(self, text):
        from ecmta.policy.macros import expand
        c = self.current
        if c is None:
            return M.b(expand(M.s(text)))
        return M.b(expand(M.s(text), c.vctx, c.msg, c.ac))

    def _peer(self) -> str | None:
        # The remote address of the session whose callout runs here (msys.audit_series'
        # default key); None during init()/deinit().
        c = self.current
        if c is None:
            return None
        if c.ac is not None and c.ac.peer_addr:
            return audit_series.peer_ip(c.ac.peer_addr)
        return getattr(c.msg, "peer_ip", None) or None

    @staticmethod
    def _block_sleep(seconds) -> None:
        # msys.sleep off the scheduler (a pool thread): blocks the calling thread.
        _os_sleep(max(0.0, float(seconds)))

    def _dns_blocking(self, name, rtype, priority, server):
        if os_thread_ident() == self.engine.hub_thread:
            raise RuntimeError("msys.dnsLookup cannot suspend here (inside a coroutine the "
                               "script created); call it from the callout itself")
        resolver = self.engine.resolver_for(M.s(server) if server else None)
        return M.dns_lookup(resolver, M.s(name), M.s(rtype), bool(priority))

    def _pool_async(self, pool, fn, completion, mode) -> None:
        c = self.current
        if c is None:
            raise RuntimeError("msys.runInPool(..., true) needs a running callout")
        sched = mode == M.CONSTANTS["ECTP_COMPLETE_CALLBACK_SCHED"]
        c.async_jobs.append((M.pool_key(pool), fn, completion, sched))

    def _register_module(self, name, *fns) -> bool:
        mod = M.s(name)
        usable = frozenset(M.s(f) for f in fns if M.usable_method(M.s(f)))
        if not usable:
            if self.first:   # written by flush(), outside Lua
                self.prints.append(f"no usable methods found for module {mod} in "
                                   "registerModule call")
            return False
        if mod not in self.registered:
            self.reg_order.append(mod)
        self.registered[mod] = usable
        return True

    # -- use -----------------------------------------------------------------------------
    def flush(self) -> None:
        """Write print() lines to the paniclog (on the hub, outside Lua)."""
        if self.prints:
            lines, self.prints = self.prints, []
            for line in lines:
                panic(line, SUBSYSTEM)

    def forget_sessions(self) -> None:
        while self.forget:
            self._forget(self.forget.pop())

    def call_plain(self, module: str, fname: str):
        return self._call_plain(module.encode(), fname.encode())

    def close(self) -> None:
        """deinit() every module (must return true), then drop the Lua state."""
        if self.closed:
            return
        self.closed = True
        quiet, self.gen.deinit_reported = self.gen.deinit_reported, True
        for name in self.gen.modules:
            if "deinit" in self.registered.get(name, ()):
                try:
                    ok, value = self.call_plain(name, "deinit")
                except Exception as exc:   # a broken state must not stop the others
                    ok, value = False, str(exc)
                if (not ok or value is not True) and not quiet:
                    why = M.s(value) if not ok else f"deinit() returned {value!r}, not true"
                    panic(f"{name} deinit failed: {why}", SUBSYSTEM, level="WARNING")
        if quiet:
            self.prints.clear()
        self.flush()
        self.lua = self.callout = self.pack_pcall = self.run_pool_job = None
        self._load_script = self._call_plain = self._forget = None


def build_generation(epoch: int, stanzas: list[tuple[str, str]], root: str,
                     search_path: list[str], options: ScriptOptions, engine) -> tuple:
    """Compile one configuration's scripts; returns (Generation, first Runtime).

    Loads them into a first runtime, which runs init() and reports what Momentum reports
    (no usable methods, errors); raises ScriptletError if the configuration cannot apply."""
    scripts = [read_script(name, resolve_source(source, root, search_path))
               for name, source in stanzas]
    wanted = frozenset(name for name, _ in stanzas)
    gen = Generation(epoch, scripts, options, package_path(root, search_path), wanted)
    try:
        rt = Runtime(gen, engine, first=True)
    except ScriptletError as exc:
        for line in exc.lines:
            panic(line, SUBSYSTEM)
        raise
    except lua54.LuaError as exc:
        panic(str(exc), SUBSYSTEM)
        raise ScriptletError([str(exc)]) from None
    gen.modules = tuple(n for n in rt.reg_order if n in wanted)
    gen.methods = {n: rt.registered[n] for n in gen.modules}
    by_phase: dict[str, list[str]] = {}
    hooks: dict[str, list[str]] = {}
    for name in gen.modules:
        for method in sorted(gen.methods[name]):
            (by_phase if method in M.PHASE_SHAPES else hooks).setdefault(method, []).append(name)
    gen.by_phase = {phase: tuple(names) for phase, names in by_phase.items()}
    gen.hooks = {hook: tuple(names) for hook, names in hooks.items()}
    return gen, rt


class RuntimePool:
    """Lends runtimes of the current generation; see the module docstring for the rules."""

    def __init__(self, engine, max_runtimes: int) -> None:
        self.engine = engine
        self.max_runtimes = max(1, int(max_runtimes))
        self.gen: Generation | None = None
        self.idle: list[Runtime] = []            # LIFO, current epoch only
        self.count = 0                            # runtimes of the current epoch
        self.waiters: collections.deque = collections.deque()
        self.created = 0
        self._last_reap = time.monotonic()

    # -- generations ---------------------------------------------------------------------
    def install(self, gen: Generation, first: Runtime) -> None:
        old_idle = self.idle
        self.gen = gen
        self.idle, self.count = [first], 1
        self.created += 1
        for rt in old_idle:
            rt.close()
        self._wake()

    def close(self) -> None:
        for rt in self.idle:
            rt.close()
        self.idle, self.count, self.gen = [], 0, None

    # -- checkout/checkin ----------------------------------------------------------------
    def checkout(self, home: Runtime | None = None) -> Runtime:
        """A runtime for one callout (waits cooperatively if none can be had)."""
        while True:
            if home is not None and home.epoch == self.gen.epoch and not home.closed:
                if not home.busy:
                    self._take(home)
                    return home
                ev = AsyncResult()
                home.waiters.append(ev)
                ev.get()
                continue
            rt = self._pick()
            if rt is not None:
                return rt
            ev = AsyncResult()
            self.waiters.append(ev)
            ev.get()

    def _take(self, rt: Runtime) -> None:
        self.idle.remove(rt)
        rt.busy = True
        rt.forget_sessions()

    def _pick(self) -> Runtime | None:
        for i in range(len(self.idle) - 1, -1, -1):      # newest unpinned first
            rt = self.idle[i]
            if not rt.pins:
                del self.idle[i]
                rt.busy = True
                rt.forget_sessions()
                return rt
        if self.count < self.max_runtimes:
            self.count += 1
            try:
                rt = Runtime(self.gen, self.engine)
            except Exception:
                self.count -= 1
                raise
            self.created += 1
            rt.busy = True
            return rt
        if self.idle:
            rt = self.idle.pop()
            rt.busy = True
            rt.forget_sessions()
            return rt
        return None

    def checkin(self, rt: Runtime) -> None:
        """Give a runtime back; one still running a pool job comes back when it ends."""
        if rt.pending is not None and not rt.pending.ready():
            rt.pending.rawlink(lambda _res: self._checkin_now(rt))
            return
        self._checkin_now(rt)

    def _checkin_now(self, rt: Runtime) -> None:
        rt.pending = None
        rt.busy = False
        rt.current = None
        if rt.epoch != self.gen.epoch or rt.closed:
            rt.close()
            self._wake_home(rt)
            return
        rt.forget_sessions()
        rt.idle_since = time.monotonic()
        self.idle.append(rt)
        if rt.waiters:
            self._wake_home(rt)
        else:
            self._wake()
        self._maybe_reap()

    def _wake_home(self, rt: Runtime) -> None:
        while rt.waiters:
            rt.waiters.popleft().set(None)
        self._wake()

    def _wake(self) -> None:
        if self.waiters:
            self.waiters.popleft().set(None)

    # -- reaping -------------------------------------------------------------------------
    def _maybe_reap(self) -> None:
        opts = self.gen.options
        now = time.monotonic()
        if now - self._last_reap < opts.reap_interval:
            return
        self._last_reap = now
        keep_spare = max(1, opts.max_spare_per_master)
        spare = [rt for rt in self.idle if not rt.pins and not rt.waiters]
        expired = [rt for rt in spare if now - rt.idle_since > opts.script_ttl]
        excess = max(0, len(spare) - keep_spare)
        victims = set(expired[: max(0, len(spare) - 1)]) | set(spare[:excess])
        for rt in victims:
            self.idle.remove(rt)
            self.count -= 1
            rt.close()

    def stats(self) -> dict:
        return {"epoch": self.gen.epoch if self.gen else 0, "runtimes": self.count,
                "idle": len(self.idle), "created": self.created,
                "waiting": len(self.waiters)}
