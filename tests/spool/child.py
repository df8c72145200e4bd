"""Gevent-patched child processes for the spool tests (pytest's own process stays unpatched).

    python -m ecmta.tests.spool.child <scenario> <spoolbase> [options as JSON]

Every scenario prints one line per event on stdout, flushed at once, and bounds its loops
in count and time. Lines: `OK <id> ...` (commit resolved), `FAIL <class> <ids>`,
`RMQ <id>` (removal requested), `RM <id>` (removal resolved), `REC <id>` (recovered), `INFO <json>`, `DONE`.
"""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402

from ecmta.actors import spool as spool_mod  # noqa: E402
from ecmta.actors.mail import Body, DsnParams, MailMessage, new_id  # noqa: E402
from ecmta.actors.spool import SpoolError, SpoolService  # noqa: E402
from ecmta.loggers import panic  # noqa: E402

panic.set_enabled_levels(panic.LEVELS)   # NOTICE lines too, on stderr (no paniclog file here)


def out(*parts) -> None:
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
    sys.stdout.flush()


def make_batch(n_rcpt: int, size: int, tag: str = "") -> list[MailMessage]:
    """One received message split per recipient, sharing one Body (Momentum's model)."""
    batch_id, conn_id = new_id(), new_id()
    head = (f"Subject: test {tag}\r\nFrom: a@example.org\r\n\r\n").encode()
    body = Body(head + (b"x" * 76 + b"\r\n") * max(0, (size - len(head)) // 78))
    msgs = []
    for i in range(n_rcpt):
        msgs.append(MailMessage(
            id=new_id(), batch_id=batch_id, conn_id=conn_id, mailfrom="a@example.org",
            rcptto=f"r{i}@example.com", body=body, size=len(body), protocol="esmtp",
            peer_ip="192.0.2.1", peer_port=40000 + i, listener_addr="127.0.0.1:25",
            ctx_conn={"ehlo_domain": "client.example", "#internal": "kept"},
            ctx_mess={"batch_size": str(n_rcpt), "mailfrom_string": "MAIL FROM:<a@example.org>"},
            routing_domain="example.com", dsn=DsnParams(("FAILURE",), "rfc822;r@example.com", "HDRS", "env1")))
    return msgs


def service(base: str, **cfg) -> SpoolService:
    conf = {"spoolbase": base}
    conf.update(cfg)
    return SpoolService(conf, on_recovered=None)


# -- scenarios -----------------------------------------------------------------------------

def crash(base: str, opts: dict) -> None:
    """Commit from many greenlets until killed; print each id as soon as it is durable,
    and remove some acknowledged messages, printing each id once the removal resolved."""
    recovered = []
    svc = service(base)
    svc.on_recovered = recovered.extend
    svc.start()
    svc.recovery_done.wait(30)
    out("INFO", json.dumps({"recovered": len(recovered), "count": svc.count()}))
    for m in recovered:
        out("REC", m.id)
    out("READY")
    deadline = time.time() + opts.get("seconds", 20)
    large = opts.get("large", 0)

    def worker(w: int) -> None:
        rnd = random.Random(w)
        for _ in range(opts.get("per_worker", 100000)):
            if time.time() > deadline:
                return
            size = large if (large and rnd.random() < 0.1) else 5000
            msgs = make_batch(rnd.choice((1, 1, 2, 3)), size)
            try:
                svc.commit(msgs).get()
            except SpoolError as exc:
                out("FAIL", type(exc).__name__, ",".join(m.id for m in msgs))
                continue
            out("OK", *(m.id for m in msgs))
            if rnd.random() < 0.2:
                out("RMQ", msgs[0].id)        # may be gone from here on
                svc.remove([msgs[0].id]).get()
                out("RM", msgs[0].id)

    gevent.joinall([gevent.spawn(worker, w) for w in range(opts.get("workers", 50))])
    svc.stop()
    out("DONE")


def group(base: str, opts: dict) -> None:
    """N committers x M sequential single-message commits; report the transaction count."""
    svc = service(base, force_fsync=opts.get("fsync", True))
    svc.start()
    n, m = opts.get("workers", 50), opts.get("per_worker", 20)

    def worker() -> None:
        for _ in range(m):
            svc.commit(make_batch(1, opts.get("size", 5000))).get()

    t0 = time.perf_counter()
    gevent.joinall([gevent.spawn(worker) for _ in range(n)], timeout=opts.get("timeout", 120))
    dt = time.perf_counter() - t0
    st = svc.stats()
    svc.stop()
    out("INFO", json.dumps({"transactions": st["transactions"], "committed": st["committed"],
                            "store_transactions": svc.store.transactions, "seconds": dt}))
    out("DONE")


def bench(base: str, opts: dict) -> None:
    """Commits/s for `seconds` with `workers` concurrent committers."""
    svc = service(base, force_fsync=opts.get("fsync", True))
    svc.start()
    stop_at = [0.0]
    done = [0]

    def worker() -> None:
        while time.perf_counter() < stop_at[0]:
            svc.commit(make_batch(opts.get("rcpts", 1), opts.get("size", 5000))).get()
            done[0] += 1

    stop_at[0] = time.perf_counter() + opts.get("seconds", 10)
    t0 = time.perf_counter()
    gevent.joinall([gevent.spawn(worker) for _ in range(opts.get("workers", 50))])
    dt = time.perf_counter() - t0
    st = svc.stats()
    svc.stop()
    out("INFO", json.dumps({"commits": done[0], "seconds": dt, "per_second": done[0] / dt,
                            "transactions": st["transactions"]}))
    out("DONE")


def recover(base: str, opts: dict) -> None:
    """Start, print every recovered message (id, body state, fields), stop."""
    got = []
    conf = {k: v for k, v in opts.items() if k not in ("timeout", "load_bodies")}
    svc = service(base, **conf)
    svc.on_recovered = got.extend
    svc.start()
    if not svc.recovery_done.wait(opts.get("timeout", 30)):
        out("INFO", json.dumps({"error": "recovery timeout"}))
    svc.flush().get(timeout=30)
    for m in got:
        out("REC", m.id, "nobody" if m.body is None else "BODY")
    if opts.get("load_bodies"):
        for m in got:
            try:
                svc.load_body(m.id)
                out("BODYOK", m.id)
            except SpoolError as exc:
                out("BODYBAD", m.id, type(exc).__name__)
        svc.flush().get(timeout=30)
    out("INFO", json.dumps({"recovered": len(got), "count": svc.count(),
                            "unreadable": svc.unreadable}))
    svc.stop()
    out("DONE")


def populate(base: str, opts: dict) -> None:
    """Commit `batches` batches of `rcpts` recipients, bodies of `size` bytes."""
    svc = service(base)
    svc.start()
    sizes = opts.get("sizes", [5000])
    for i in range(opts.get("batches", 5)):
        msgs = make_batch(opts.get("rcpts", 2), sizes[i % len(sizes)], tag=str(i))
        svc.commit(msgs).get(timeout=30)
        out("OK", *(m.id for m in msgs))
    svc.stop()
    out("DONE")


def enospc(base: str, opts: dict) -> None:
    """On a small filesystem: fill it, expect SpoolFullError, free it, expect success."""
    svc = service(base)
    svc.start()
    filler = os.path.join(os.path.dirname(base), "filler")
    for i in range(3):
        msgs = make_batch(2, 5000)
        svc.commit(msgs).get(timeout=30)
        out("OK", *(m.id for m in msgs))
    first = make_batch(1, 5000)
    svc.commit(first).get(timeout=30)
    out("OK", first[0].id)
    if opts.get("rlimit"):
        # No filesystem to fill: cap the size of any file this process writes instead.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (opts["rlimit"], resource.RLIM_INFINITY))
    else:
        # Fill what is left of the filesystem.
        with open(filler, "wb") as fh:
            try:
                for _ in range(100000):
                    fh.write(b"\0" * 65536)
                    fh.flush()
            except OSError as exc:
                out("INFO", json.dumps({"filled": str(exc)}))
    # A removal asked for while the disk is full: retried until it is durable.
    removal = svc.remove([m.id for m in first])
    failures = 0
    for i in range(opts.get("attempts", 400)):
        size = opts.get("large", 300000) if i % 2 else 20000
        msgs = make_batch(2, size)
        try:
            svc.commit(msgs).get(timeout=30)
            out("OK", *(m.id for m in msgs))
        except SpoolError as exc:
            failures += 1
            out("FAIL", type(exc).__name__, ",".join(m.id for m in msgs), json.dumps([exc.reply, str(exc)]))
            if failures >= 4:
                break
    if opts.get("rlimit"):
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    else:
        os.unlink(filler)
    for i in range(opts.get("after", 5)):
        msgs = make_batch(2, 5000 if i % 2 else 300000)
        for attempt in range(20):     # the first may still meet a retry in progress
            try:
                svc.commit(msgs).get(timeout=30)
                out("OK", *(m.id for m in msgs))
                break
            except SpoolError as exc:
                out("RETRY", type(exc).__name__, str(exc).replace("\n", " "))
                gevent.sleep(0.2)
    removal.get(timeout=30)
    for m in first:
        out("RM", m.id)
    svc.stop()
    out("DONE")


def roundtrip(base: str, opts: dict) -> None:
    """Commit one batch, update, load_body, remove, through the service."""
    svc = service(base, exclude_vctx_conn=("^secret",), exclude_vctx_mess=("_string$",))
    svc.start()
    msgs = make_batch(3, opts.get("size", 5000))
    msgs[0].ctx_conn["secret_key"] = "x"
    msgs[0].ctx_conn["#secret_internal"] = "kept"
    own = Body(b"Subject: own\r\n\r\nedited for r2\r\n")
    msgs[2].body = own
    svc.commit(msgs).get(timeout=30)
    svc.update(msgs[0].id, attempts=2, next_attempt=1234.5, code="451 4.0.0 later", state="delayed")
    svc.flush().get(timeout=30)
    m0 = svc.load(msgs[0].id)
    out("INFO", json.dumps({
        "count": svc.count(),
        "body0": svc.load_body(msgs[0].id).decode(), "body2": svc.load_body(msgs[2].id).decode(),
        "same": msgs[0].body.data == svc.load_body(msgs[1].id),
        "m0": {"attempts": m0.attempts, "next_attempt": m0.next_attempt, "code": m0.code,
               "state": m0.state, "ctx_conn": m0.ctx_conn, "ctx_mess": m0.ctx_mess},
        "bodies": svc.store._w.execute("SELECT count(*) FROM bodies").fetchone()[0],
    }))
    svc.remove([msgs[0].id, msgs[1].id]).get(timeout=30)
    out("INFO", json.dumps({"count": svc.count(),
                            "bodies": svc.store._w.execute("SELECT count(*) FROM bodies").fetchone()[0],
                            "unlink": svc.unlink_stats()}))
    try:
        svc.load_body(msgs[0].id)
    except SpoolError as exc:
        out("INFO", json.dumps({"missing": type(exc).__name__}))
    out("STATS", json.dumps(spool_mod.render_unlink_stats(svc.unlink_stats())))
    svc.stop()
    out("DONE")


def stopdrain(base: str, opts: dict) -> None:
    """Hand over many commits without waiting, then stop: every one must resolve True."""
    svc = service(base)
    svc.start()
    pending = []
    for i in range(opts.get("commits", 300)):
        msgs = make_batch(1 + i % 3, 5000 if i % 10 else 300000)
        pending.append((msgs, svc.commit(msgs)))
    svc.stop()
    for msgs, res in pending:
        if res.ready() and res.successful():
            out("OK", *(m.id for m in msgs))
        else:
            out("FAIL", "unresolved" if not res.ready() else type(res.exception).__name__)
    late = svc.commit(make_batch(1, 100))
    out("LATE", type(late.exception).__name__ if late.ready() else "unresolved")
    out("DONE")


def logwait(base: str, opts: dict) -> None:
    """A logger that holds the log barrier: removals wait for it (at most
    LOG_BARRIER_WAIT), commits do not; the removal is done once it answers."""
    from ecmta.loggers import bus
    held = []
    handle = bus.subscribe((bus.LogBarrier,), held.append)     # answers when told to
    svc = service(base)
    svc.start()
    first = make_batch(1, 5000)
    svc.commit(first).get(timeout=30)
    removed = svc.remove([first[0].id])
    gevent.sleep(0.1)
    t0 = time.monotonic()
    svc.commit(make_batch(1, 5000)).get(timeout=30)     # not behind the held barrier
    commit_secs = time.monotonic() - t0
    # a flush (delivery's "delivering" mark) does not wait for the log either; the
    # stop's flush (removals=True) does
    svc.update(first[0].id, state="delivering")
    t0 = time.monotonic()
    full = svc.flush(removals=True)
    svc.flush().get(timeout=30)
    flush_secs = time.monotonic() - t0
    info = {"barriers": len(held), "removed_while_held": removed.ready(),
            "commit_secs": commit_secs, "count_while_held": svc.count(),
            "flush_secs": flush_secs, "full_flush_while_held": full.ready()}
    for b in held:
        b.one_done()
    info["removed"] = removed.get(timeout=30)
    info["full_flush"] = full.get(timeout=30)
    info["count_after"] = svc.count()
    # a logger that never answers delays a removal by LOG_BARRIER_WAIT, no more
    held.clear()
    second = make_batch(1, 5000)
    svc.commit(second).get(timeout=30)
    t0 = time.monotonic()
    svc.remove([second[0].id]).get(timeout=30)
    info["unanswered_secs"] = time.monotonic() - t0
    info["limit"] = spool_mod.LOG_BARRIER_WAIT
    bus.unsubscribe(handle)
    out("INFO", json.dumps(info))
    svc.stop()
    out("DONE")


SCENARIOS = {"logwait": logwait, "crash": crash, "group": group, "bench": bench, "recover": recover,
             "populate": populate, "enospc": enospc, "roundtrip": roundtrip,
             "stopdrain": stopdrain}


def main() -> None:
    scenario, base = sys.argv[1], sys.argv[2]
    opts = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    SCENARIOS[scenario](base, opts)


if __name__ == "__main__":
    main()
