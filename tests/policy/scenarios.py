"""Policy engine scenarios run under gevent, one per process.

    python -m ecmta.tests.policy.scenarios <scenario>  < params.json

pytest's own process is never monkey-patched, so tests/policy/util.py runs each scenario
here in a subprocess: it reads the parameters as JSON on stdin and prints one line
`RESULT <json>` on stdout. The paniclog is captured through `panic.set_sink`, so results
carry the exact lines (`<ts>:<subsystem>: <text>`) the daemon would write.
"""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

import gevent  # noqa: E402
from gevent.monkey import get_original  # noqa: E402

from ecmta.actors.mail import Body, MailMessage  # noqa: E402
from ecmta.loggers import panic as paniclog  # noqa: E402
from ecmta.policy import (AcceptConstruct, PolicyEngine, ScriptletError,  # noqa: E402
                          ValidationContext)
from ecmta.policy.runtime import ScriptOptions  # noqa: E402

PANIC: list[str] = []
os_ident = get_original("_thread", "get_ident")


# -- helpers -----------------------------------------------------------------------------
def write_files(files: dict, root: str | None = None) -> str:
    root = root or tempfile.mkdtemp(prefix="ecpol")
    for rel, text in (files or {}).items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as fh:
            fh.write(text)
    return root


def resolver(port: int):
    import dns.resolver
    res = dns.resolver.Resolver(configure=False)
    res.nameservers = ["127.0.0.1"]
    res.port = port
    res.lifetime = 5
    return res


def make_engine(p: dict, root: str | None = None, **kw) -> PolicyEngine:
    root = write_files(p.get("files", {}), root)
    if p.get("dns_port"):
        kw.setdefault("resolver", resolver(p["dns_port"]))
    opts = ScriptOptions(**p.get("options", {}))
    if "bindings" in p:
        kw.setdefault("bindings", p["bindings"])
    if "binding_groups" in p:
        kw.setdefault("binding_groups", p["binding_groups"])
    for key in ("max_runtimes", "max_callout_seconds"):
        if key in p:
            kw.setdefault(key, p[key])
    return PolicyEngine([tuple(s) for s in p["stanzas"]], script_root=root, options=opts, **kw)


def result_dict(r) -> dict:
    return {"reply": list(r.reply) if r.reply else None, "disconnect": r.disconnect,
            "tarpit": r.tarpit, "discard": r.discard, "msg_code": r.msg_code,
            "verdict": r.verdict, "again": r.again, "retry_after": r.retry_after,
            "error": r.error, "module": r.module}


def make_message(spec: dict, others: dict) -> MailMessage:
    if spec.get("share"):
        body = others[spec["share"]].body
    else:
        body = Body(spec.get("data", "Subject: test\r\n\r\nhello\r\n").encode())
    return MailMessage(id=spec.get("id", "AB/CD-00001-00000001"), batch_id=spec.get("batch_id", "B1"),
                       conn_id=spec.get("conn_id", "C1"), mailfrom=spec.get("mailfrom", "a@from.example"),
                       rcptto=spec.get("rcptto", "b@to.example"), body=body,
                       listener_addr=spec.get("listener_addr", "10.1.2.3:25"),
                       peer_ip=spec.get("peer_ip", "10.9.8.7"), peer_port=spec.get("peer_port", 41000),
                       routing_domain=spec.get("routing_domain", ""), code=spec.get("code", ""))


def message_snapshot(m: MailMessage, messages: dict) -> dict:
    return {"headers": [list(h) for h in m.body.headers()] if m.body else None,
            "body": m.body.body.decode("utf-8", "replace") if m.body else None,
            "mailfrom": m.mailfrom, "rcptto": m.rcptto, "binding": m.binding,
            "binding_group": m.binding_group, "priority": m.priority, "code": m.code,
            "routing_domain": m.routing_domain, "ctx_mess": dict(m.ctx_mess),
            "ctx_conn": dict(m.ctx_conn),
            "shares_body_with": sorted(n for n, o in messages.items() if o is not m and o.body is m.body)}


# -- scenarios ---------------------------------------------------------------------------
def phases(p: dict) -> dict:
    """Generic: load scripts, run a list of steps against named sessions and messages."""
    try:
        eng = make_engine(p)
    except ScriptletError as exc:
        return {"load_error": str(exc), "lines": exc.lines}
    sessions: dict[str, ValidationContext] = {}
    acs: dict[str, AcceptConstruct] = {}
    messages: dict[str, MailMessage] = {}
    for name, spec in p.get("messages", {}).items():
        messages[name] = make_message(spec, messages)
    counts = p.get("session_counts", {})

    def session(name):
        if name not in sessions:
            sessions[name] = ValidationContext(dict(p.get("conn", {})))
            acs[name] = AcceptConstruct("10.1.2.3:25", "10.9.8.7:41000",
                                        list(p.get("capabilities", ["PIPELINING", "8BITMIME"])),
                                        session_count=lambda cidr, svc: counts.get(f"{cidr}|{svc}", -1))
        return sessions[name], acs[name]

    out = []
    for step in p["steps"]:
        v, ac = session(step.get("session", "s1"))
        if "new_message" in step:
            v.new_message()
            out.append(None)
            continue
        if step.get("finalize"):
            v.finalize_recipients()
            out.append(None)
            continue
        if "recipients" in step:
            v.recipients[:] = step["recipients"]
            out.append(None)
            continue
        msg = messages.get(step.get("msg")) if step.get("msg") else None
        fn = eng.run_settled if step.get("settled") else eng.run
        r = fn(step["phase"], v, ac if step.get("ac", True) else None, msg, step.get("arg"))
        out.append(result_dict(r))
    snap = {name: {"conn": dict(v.conn), "mess": dict(v.mess), "recipients": list(v.recipients),
                   "final": v.rcptlist_final, "capabilities": list(acs[name].capabilities)}
            for name, v in sessions.items()}
    return {"results": out, "sessions": snap,
            "messages": {n: message_snapshot(m, messages) for n, m in messages.items()},
            "modules": list(eng.modules), "epoch": eng.epoch, "stats": eng.stats()}


def load(p: dict) -> dict:
    """Only load: the error text, or the modules and phases (and a first ehlo callout)."""
    root = write_files(p.get("files", {}))
    kw = {}
    if "search_path" in p:
        kw["search_path"] = [write_files(p["search_files"], tempfile.mkdtemp(prefix="ecsp"))]
    try:
        eng = make_engine(p, root, **kw)
    except ScriptletError as exc:
        return {"root": root, "load_error": str(exc), "lines": exc.lines}
    v = ValidationContext()
    r = eng.run("validate_ehlo", v, AcceptConstruct(), None, "x")
    return {"root": root, "modules": list(eng.modules), "phases": sorted(eng._gen.by_phase),
            "ehlo": result_dict(r), "conn": dict(v.conn)}


def reload(p: dict) -> dict:
    """A callout of epoch 1 sleeps while `config reload` swaps in epoch 2 (or fails to)."""
    root = write_files(p["files"])
    eng = make_engine(p, root)
    v_old = ValidationContext()
    holder = {}

    def old_session():
        holder["old"] = eng.run("validate_connect", v_old, AcceptConstruct())
    g = gevent.spawn(old_session)
    gevent.sleep(p.get("reload_after", 0.1))
    write_files(p["files2"], root)
    try:
        epoch = eng.reload([tuple(s) for s in p.get("stanzas2", p["stanzas"])])
        reload_error = None
    except ScriptletError as exc:
        epoch, reload_error = eng.epoch, str(exc)
    v_new = ValidationContext()
    t0 = time.monotonic()
    new = eng.run("validate_connect", v_new, AcceptConstruct())
    new_elapsed = time.monotonic() - t0
    g.join(10)
    stats_after = eng.stats()
    eng.close()
    return {"epoch": epoch, "reload_error": reload_error, "old": result_dict(holder["old"]),
            "new": result_dict(new), "old_conn": v_old.conn, "new_conn": v_new.conn,
            "new_elapsed": new_elapsed, "stats": stats_after}


def concurrent(p: dict) -> dict:
    """N sessions, each running `phases` in its own greenlet; checks interleaving."""
    eng = make_engine(p)
    n = p["sessions"]
    vctxs = [ValidationContext({"sid": str(i)}) for i in range(n)]
    results: list = [None] * n
    finished: list = [None] * n
    t0 = time.monotonic()

    def one(i):
        out = []
        for ph in p["phases"]:
            out.append(result_dict(eng.run(ph, vctxs[i], AcceptConstruct(peer_addr=f"10.0.0.{i % 250}:1"))))
        eng.run("validate_dealloc", vctxs[i])
        results[i] = out
        finished[i] = time.monotonic() - t0
    greenlets = [gevent.spawn(one, i) for i in range(n)]
    gevent.joinall(greenlets, timeout=p.get("timeout", 60))
    elapsed = time.monotonic() - t0
    return {"elapsed": elapsed, "results": results, "conns": [v.conn for v in vctxs],
            "finished": finished, "stats": eng.stats(), "all_done": all(g.ready() for g in greenlets)}


def pool_thread(p: dict) -> dict:
    """One session runs Lua in a pool thread (msys.runInPool) while others keep going."""
    eng = make_engine(p)
    hub = os_ident()
    t0 = time.monotonic()
    marks: dict = {}

    def slow():
        v = ValidationContext()
        r = eng.run("validate_data", v, AcceptConstruct(), make_message({}, {}))
        marks["slow_done"] = time.monotonic() - t0
        marks["slow"] = (result_dict(r), dict(v.conn))

    def quick(i):
        v = ValidationContext()
        eng.run("validate_ehlo", v, AcceptConstruct(), None, "x")
        marks.setdefault("quick_done", []).append(time.monotonic() - t0)
    gs = [gevent.spawn(slow)]
    gevent.sleep(0.05)
    gs += [gevent.spawn(quick, i) for i in range(p.get("quick", 20))]
    gevent.joinall(gs, timeout=30)
    gevent.sleep(p.get("settle", 0.3))     # fire-and-forget jobs finish after the phase
    return {"hub": hub, "marks": marks, "stats": eng.stats()}


def bench(p: dict) -> dict:
    """Cost per message of an empty phase and of a trivial Lua callout."""
    eng = make_engine(p)
    v = ValidationContext()
    ac = AcceptConstruct()
    msg = make_message({}, {})
    n = p.get("n", 20000)
    out = {}
    for label, phase in (("empty", "validate_rcptto_list"), ("trivial", "validate_data")):
        eng.run(phase, v, ac, msg)
        t0 = time.perf_counter()
        for _ in range(n):
            eng.run(phase, v, ac, msg)
        out[label + "_us"] = (time.perf_counter() - t0) / n * 1e6
    from ecmta.policy.runtime import Runtime
    t0 = time.perf_counter()
    rts = [Runtime(eng._gen, eng) for _ in range(20)]
    out["runtime_ms"] = (time.perf_counter() - t0) / 20 * 1e3
    out["runtime_kb"] = rts[0].lua.eval(b"collectgarbage('count')")
    return out


def from_config(p: dict) -> dict:
    """PolicyEngine.from_config on a real ecelerity.conf (ecmta.config)."""
    from ecmta.config import load_config
    root = write_files(dict(p["files"], **{"ecelerity.conf": p["conf"]}))
    cfg = load_config(os.path.join(root, "ecelerity.conf"), allow_unbuilt=True)
    eng = PolicyEngine.from_config(cfg)
    v = ValidationContext()
    msg = make_message({"mailfrom": "x@mydomain.com"}, {})
    out = [result_dict(eng.run("validate_ehlo", v, AcceptConstruct(), None, "x")),
           result_dict(eng.run("validate_set_binding", v, None, msg))]
    opts = eng._gen.options
    return {"root": root, "modules": list(eng.modules), "results": out, "conn": v.conn,
            "binding": msg.binding, "options": [opts.script_ttl, opts.gc_pause, opts.gc_stepmul,
                                                opts.always_gc, opts.reap_interval,
                                                opts.max_spare_per_master]}


def killed(p: dict) -> dict:
    """Sessions killed while suspended (session timeout): runtimes come back, others run."""
    eng = make_engine(p)
    vs = [ValidationContext({"sid": str(i)}) for i in range(p["sessions"])]
    gs = [gevent.spawn(eng.run, "validate_connect", v, AcceptConstruct()) for v in vs]
    gevent.sleep(p.get("kill_after", 0.1))
    gevent.killall(gs, timeout=5)
    for v in vs:
        eng.end_session(v)
    after_kill = eng.stats()
    gevent.sleep(p.get("settle", 0.0))
    v = ValidationContext({"sid": "fresh"})
    r = eng.run("validate_ehlo", v, AcceptConstruct(), None, "x")
    return {"after_kill": after_kill, "stats": eng.stats(), "fresh": result_dict(r),
            "conn": v.conn}


SCENARIOS = {f.__name__: f for f in (phases, load, reload, concurrent, pool_thread, bench,
                                     from_config, killed)}


def main() -> int:
    name = sys.argv[1]
    params = json.load(sys.stdin)
    paniclog.set_sink(PANIC.append)
    try:
        result = SCENARIOS[name](params)
    except Exception:
        traceback.print_exc()
        return 1
    result["panic"] = list(PANIC)
    sys.stdout.write("RESULT " + json.dumps(result, default=repr) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
