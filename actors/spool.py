"""The durable spool: the spool actor (kind "spool") and the SpoolService the daemon starts.

Owns: the message store under `spoolbase` (format in actors/spool_store.py), the group
commit, spool-in at start-up and the `unlink stats` counters.

Talks to:
- the SMTP driver: `commit(messages)` returns a gevent AsyncResult that resolves True only
  once every message of the call is on disk (synced unless `force_fsync = false`); the
  driver sends 250 after that, and maps a SpoolError to `exc.reply` (452 4.3.1 for space
  and write errors).
- delivery: `update(msg_id, **fields)` (queue state, batched, durable with the next
  transaction), `remove(msg_ids)` (AsyncResult, True once the removal is durable),
  `load_body(msg_id)` (bytes, read in the SwapIn pool).
- start-up: `on_recovered(list[MailMessage])` gets every spooled message (bodies not
  loaded) in batches of `disk_queue_drain_rate`, read in the SpoolIn pool.
- the console: `count()`, `unlink_stats()` / `render_unlink_stats()`, `stats()`.

Group commit: the actor keeps at most one write transaction in flight (SwapOut pool, or
Batch_Unlink when it only removes). Every commit, update and removal that arrives while
it runs is gathered into the next single transaction, so one WAL fsync covers all of
them and durability does not cap throughput. Bodies of LARGE_BODY bytes or more are
written to their own files (SwapOut, in parallel) before their rows join a transaction.
Body files freed by removals are unlinked afterwards in the Unlink pool.

Removals follow the log: a removal joins a transaction only once the D/P lines published
before it are in their files (a lazy `loggers.bus.barrier`, at most LOG_BARRIER_WAIT), so
after a crash a message is still spooled or logged, never neither. Removals wait for that
on their own: commits never wait for the log (waiting cost the end-to-end throughput a
tenth when logs were written), and one barrier covers every removal that came meanwhile.
`flush()` (delivery's durable "delivering" mark) does not wait for those removals either;
the stop's flush (`removals=True`) does.

Logs (paniclog): quarantined or unreadable records at spool-in (naming the id and why),
write failures (at most one line per PANIC_INTERVAL with a count), a whole database set
aside, the spool-in summary (NOTICE).

Fails: a write failure fails every commit of that transaction with SpoolFullError
(ENOSPC/EDQUOT/SQLITE_FULL) or SpoolWriteError; the session goes on and the next commit
tries again, so the spool recovers by itself when space returns. Updates and removals of
a failed transaction are kept and retried (removals alone first, every RETRY_DELAY) and
their callers are told only once they are durable. A duplicate id refuses only the call
that carries it (SpoolDuplicateError). After `stop()` calls fail with SpoolClosedError.

Options: spoolbase, spool_mode (restart), force_fsync (ecmta default TRUE: unset means
durable; only an explicit `force_fsync = false` skips the sync), disk_queue_drain_rate,
unlink_on_spool_in_failure (true: corrupt records are moved into the quarantine table,
false: left in place and skipped until the next start), exclude_vctx_conn /
exclude_vctx_mess (per binding/binding_group/domain; `#` keys are always kept).
keep_message_dicts_in_memory and _unsafe_spool have no effect on the format: recovered
messages always carry their context dictionaries.

Measured (tests/spool/bench_spool.py: 50 greenlets committing 5 KB messages back to back
through commit(), ext4 on virtio, 2 cores shared with other work, 10 s per run, four runs):
    force_fsync on (default), 1 recipient:   7 900 - 9 100 commits/s, 25 commits per fsync
    force_fsync = false,      1 recipient:   8 200 - 9 300 commits/s
    force_fsync on, 3 recipients per commit: 4 600 - 5 400 commits/s (14 000-16 000 messages/s)
    100 KB bodies (in SQLite):  1 840 commits/s; 1 MB bodies (files, 20 committers): 317/s
Durability costs almost nothing here: the limit is the hub's CPU (building, encoding and
resolving each commit, about 60 us of it in the spool), not the fsync, which one commit
per transaction would cap near 5 400/s.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

import gevent
from gevent.event import AsyncResult, Event

from ecmta import paths, pools
from ecmta.actors.base import EcActor
from ecmta.actors.mail import MailMessage
from ecmta.actors.spool_store import (  # the error family is re-exported: see __all__
    LARGE_BODY, REPLY_INSUFFICIENT_STORAGE, STATE_FIELDS, BodyRecord, SpoolClosedError,
    SpoolCorruptError, SpoolDuplicateError, SpoolError, SpoolFullError, SpoolLockedError,
    SpoolNotFoundError, SpoolStore, SpoolWriteError, Txn, classify, encode_row)
from ecmta.loggers import bus
from ecmta.loggers.panic import panic

__all__ = ["REPLY_INSUFFICIENT_STORAGE", "SpoolActor", "SpoolClosedError", "SpoolCorruptError",
           "SpoolDuplicateError", "SpoolError", "SpoolFullError", "SpoolLockedError",
           "SpoolNotFoundError", "SpoolOptions", "SpoolService", "SpoolWriteError",
           "filter_context", "render_unlink_stats"]

DEFAULT_SPOOLBASE = "spool"          # under the state directory when no config says
LOG_BARRIER_WAIT = 1.0              # longest a removal waits for its log lines
UPDATE_DELAY = 0.2                   # lone state updates wait this long for company
RETRY_DELAY = 1.0                    # after a failed transaction, before retrying removals
PANIC_INTERVAL = 10.0                # at most one write-failure line per interval
STOP_TIMEOUT = 30.0
POOL_WRITE, POOL_READ, POOL_UNLINK, POOL_BATCH_UNLINK, POOL_SPOOLIN = (
    "SwapOut", "SwapIn", "Unlink", "Batch_Unlink", "SpoolIn")


# -- options -----------------------------------------------------------------------------------

def _value(cfg, name: str, default, ctx=None):
    if cfg is None:
        return default
    if isinstance(cfg, Mapping):
        return cfg.get(name.lower(), default)
    try:
        v = cfg.eval(name, ctx)
    except Exception:  # an option the registry does not know yet
        return default
    return default if v is None else v.value


def _explicit(cfg, name: str):
    """The value written in the global scope, or None when the operator did not set it."""
    if cfg is None:
        return None
    if isinstance(cfg, Mapping):
        return cfg.get(name.lower())
    v = cfg.root.get(name)
    return None if v is None else v.value


@dataclass
class SpoolOptions:
    base: str
    mode: int = 0o640
    sync: bool = True
    drain_rate: int = 100
    unlink_on_failure: bool = True

    @classmethod
    def from_config(cls, cfg, state_dir: str | None = None) -> "SpoolOptions":
        fsync = _explicit(cfg, "force_fsync")
        return cls(
            base=paths.resolve(str(_value(cfg, "spoolbase", DEFAULT_SPOOLBASE)), state_dir),
            mode=int(_value(cfg, "spool_mode", 0o640)),
            sync=True if fsync is None else bool(fsync),
            drain_rate=max(1, int(_value(cfg, "disk_queue_drain_rate", 100))),
            unlink_on_failure=bool(_value(cfg, "unlink_on_spool_in_failure", True)))


class Exclusions:
    """exclude_vctx_conn / exclude_vctx_mess for a message's (group, binding, domain)."""

    MAX_CACHED = 4096

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self._cache: dict = {}

    def __call__(self, msg: MailMessage):
        key = (msg.binding_group, msg.binding, msg.routing_domain)
        got = self._cache.get(key)
        if got is None:
            if len(self._cache) >= self.MAX_CACHED:
                self._cache.clear()
            got = self._cache[key] = (self._compile("exclude_vctx_conn", key),
                                      self._compile("exclude_vctx_mess", key))
        return got

    def _compile(self, option: str, key) -> tuple:
        ctx = None
        if self.cfg is not None and not isinstance(self.cfg, Mapping):
            try:
                from ecmta.config import EvalContext
                ctx = EvalContext(binding_group=key[0], binding=key[1], domain=key[2] or None)
            except ImportError:
                ctx = None
        patterns = _value(self.cfg, option, None, ctx) or ()
        if isinstance(patterns, str):
            patterns = (patterns,)
        out = []
        for p in patterns:
            try:
                out.append(re.compile(p))
            except re.error as exc:
                panic(f"{option}: ignoring invalid pattern {p!r} ({exc})", subsystem="spool")
        return tuple(out)


def filter_context(ctx: dict, patterns: tuple) -> dict:
    """ctx without the keys a pattern matches; `#` keys are core-internal and always kept."""
    if not patterns or not ctx:
        return ctx
    return {k: v for k, v in ctx.items()
            if k.startswith("#") or not any(p.search(k) for p in patterns)}


# -- the actor's messages (small; bodies travel only inside a commit request) ------------------

class _Request:
    """One commit() call: all of its messages commit together or not at all."""
    __slots__ = ("rows", "bodies", "large", "result", "writing", "error")

    def __init__(self, rows, bodies, large, result) -> None:
        self.rows, self.bodies, self.large, self.result = rows, bodies, large, result
        self.writing = 0
        self.error: SpoolError | None = None


@dataclass(frozen=True, slots=True)
class SpoolCommit:
    request: _Request


@dataclass(frozen=True, slots=True)
class SpoolUpdate:
    msg_id: str
    fields: dict


@dataclass(frozen=True, slots=True)
class SpoolRemove:
    msg_ids: tuple
    result: AsyncResult


@dataclass(frozen=True, slots=True)
class SpoolQuarantine:
    items: tuple                     # ((msg_id, reason), ...)


@dataclass(frozen=True, slots=True)
class SpoolFlush:
    result: AsyncResult
    removals: bool = False           # also the removals still waiting for their log lines


@dataclass(frozen=True, slots=True)
class SpoolSetSync:
    sync: bool


@dataclass(frozen=True, slots=True)
class _BodyWritten:
    request: _Request
    record: BodyRecord | None
    error: BaseException | None


@dataclass(frozen=True, slots=True)
class _TxnDone:
    ok: bool
    value: object


@dataclass(frozen=True, slots=True)
class _UnlinkDone:
    ok: int
    bad: int


@dataclass(frozen=True, slots=True)
class _Logged:
    token: object                    # the barrier (or its time limit) that answered


@dataclass(frozen=True, slots=True)
class _Kick:
    reason: str                      # "updates": the update delay ran out; "retry": after a failure


@dataclass
class SpoolCounters:
    """Shared by the service (reads) and its actor (writes); both live on the hub."""
    count: int = 0
    transactions: int = 0
    committed: int = 0
    refused: int = 0
    msg_submitted: int = 0
    msg_attempts: int = 0
    msg_failures: int = 0
    msg_successes: int = 0
    body_submitted: int = 0
    body_attempts: int = 0
    body_failures: int = 0
    body_successes: int = 0
    removes_pending: int = 0
    removes_in_flight: int = 0
    unlinks_in_flight: int = 0


@dataclass
class _Batch:
    commits: list
    updates: dict
    removes: list                    # [(ids, AsyncResult)]
    quarantine: list
    n_removes: int = 0


class SpoolActor(EcActor):
    kind = "spool"

    def __init__(self, store: SpoolStore, counters: SpoolCounters, sync: bool) -> None:
        super().__init__("spool")
        self.store, self.counters, self.sync = store, counters, sync
        self.ready: list[_Request] = []
        self.updates: dict[str, dict] = {}
        self.removes: list[tuple[tuple, AsyncResult]] = []
        # removals waiting for their log lines: not yet asked / covered by the barrier
        # in flight (see the module docstring)
        self.unlogged: list[tuple[tuple, AsyncResult]] = []
        self.logging: list[tuple[tuple, AsyncResult]] = []
        self._log_token = None
        self._log_timer = None
        self.quarantine: list[tuple[str, str]] = []
        self.flushes: list[tuple[AsyncResult, bool]] = []
        self.writing = 0                 # requests whose body files are being written
        self.in_flight: _Batch | None = None
        # After a failed transaction that mixed new messages with removals, the removals
        # go alone first (they free space); after a failed removals-only transaction they
        # wait until retry_at. New commits never wait for either: they fail or pass fast.
        self.maintenance_first = False
        self.retry_at = 0.0
        self.retry_timer = None
        self.update_timer = None
        self.last_panic = 0.0
        self.suppressed = 0
        self._handlers = {
            SpoolCommit: self._on_commit, SpoolUpdate: self._on_update,
            SpoolRemove: self._on_remove, SpoolQuarantine: self._on_quarantine,
            SpoolFlush: self._on_flush, SpoolSetSync: self._on_set_sync,
            _BodyWritten: self._on_body_written, _TxnDone: self._on_txn_done,
            _UnlinkDone: self._on_unlink_done, _Kick: self._on_kick, _Logged: self._on_logged,
        }

    def on_receive(self, message):
        handler = self._handlers.get(type(message))
        if handler is not None:
            handler(message)
        return None

    def _tell(self, msg) -> None:
        if self.actor_ref.is_alive():
            self.actor_ref.tell(msg)

    # -- arrivals ---------------------------------------------------------------------------
    def _on_commit(self, msg: SpoolCommit) -> None:
        req = msg.request
        if not req.large:
            self.ready.append(req)
            self._kick()
            return
        self.writing += 1
        req.writing = len(req.large)
        for rec in req.large:
            res = pools.submit(POOL_WRITE, self.store.write_body_file, rec.key, rec.data, self.sync)
            res.rawlink(lambda r, req=req: self._tell(_BodyWritten(
                req, r.value if r.successful() else None, None if r.successful() else r.exception)))

    def _on_body_written(self, msg: _BodyWritten) -> None:
        req = msg.request
        req.writing -= 1
        if msg.error is not None:
            req.error = req.error or classify(msg.error, "writing a body file")
        else:
            req.bodies.append(msg.record)
        if req.writing:
            return
        self.writing -= 1
        req.large = []
        if req.error is not None:
            self._fail_request(req, req.error)
        else:
            self.ready.append(req)
        self._kick()

    def _on_update(self, msg: SpoolUpdate) -> None:
        self.updates.setdefault(msg.msg_id, {}).update(msg.fields)
        self._kick()

    def _on_remove(self, msg: SpoolRemove) -> None:
        self.unlogged.append((msg.msg_ids, msg.result))
        self.counters.msg_submitted += len(msg.msg_ids)
        self.counters.removes_pending += len(msg.msg_ids)
        for msg_id in msg.msg_ids:
            self.updates.pop(msg_id, None)
        self._wait_for_log()

    def _wait_for_log(self) -> None:
        """Ask the loggers for a barrier covering the removals not yet covered; they join
        `removes` when it is answered (or after LOG_BARRIER_WAIT: a log disk that cannot
        be written must not stop the spool)."""
        if self._log_token is not None or not self.unlogged:
            return
        logged = bus.barrier(urgent=False)
        if logged.ready():                       # nobody logs: nothing to wait for
            self.removes.extend(self.unlogged)
            self.unlogged = []
            self._kick()
            return
        self.logging, self.unlogged = self.unlogged, []
        token = self._log_token = object()
        logged.rawlink(lambda _r: self._tell(_Logged(token)))
        self._log_timer = gevent.spawn_later(LOG_BARRIER_WAIT, self._tell, _Logged(token))

    def _on_logged(self, msg: _Logged) -> None:
        if msg.token is not self._log_token:
            return                               # the other of the two answers
        self._log_token = None
        if self._log_timer is not None:
            self._log_timer.kill(block=False)
            self._log_timer = None
        self.removes.extend(self.logging)
        self.logging = []
        self._wait_for_log()
        self._kick()

    def _on_quarantine(self, msg: SpoolQuarantine) -> None:
        self.quarantine.extend(msg.items)
        self._kick()

    def _on_flush(self, msg: SpoolFlush) -> None:
        self.flushes.append((msg.result, msg.removals))
        self._kick(force=True)

    def _on_set_sync(self, msg: SpoolSetSync) -> None:
        self.sync = msg.sync

    def _on_kick(self, msg: _Kick) -> None:
        if msg.reason == "retry":
            self.retry_timer = None
        else:
            self.update_timer = None
        self._kick(force=True)

    # -- the group commit -------------------------------------------------------------------
    def _kick(self, force: bool = False) -> None:
        if self.in_flight is not None:
            return
        pending = bool(self.removes or self.quarantine or self.updates)
        maint = pending and time.monotonic() >= self.retry_at
        # Lone updates wait UPDATE_DELAY for company unless someone waits on them.
        urgent = maint and bool(self.removes or self.quarantine or force or self.flushes)
        commits = [] if (self.maintenance_first and urgent) else self.ready
        if not commits and not urgent:
            if maint and self.update_timer is None:
                self.update_timer = gevent.spawn_later(UPDATE_DELAY, self._tell, _Kick("updates"))
            elif pending and not maint and self.retry_timer is None:
                self.retry_timer = gevent.spawn_later(self.retry_at - time.monotonic(),
                                                      self._tell, _Kick("retry"))
            self._check_flushes()
            return
        if commits is self.ready:
            # A fresh list even when it is empty: the batch keeps `commits`, and a commit
            # appended to the same list while this transaction runs would be acknowledged
            # by its success without having been written.
            self.ready = []
        if maint:
            batch = _Batch(commits, self.updates, self.removes, self.quarantine)
            self.updates, self.removes, self.quarantine = {}, [], []
        else:
            batch = _Batch(commits, {}, [], [])
        batch.n_removes = sum(len(ids) for ids, _ in batch.removes)
        self.counters.removes_pending -= batch.n_removes
        self.counters.removes_in_flight = batch.n_removes
        self.counters.msg_attempts += batch.n_removes
        txn = Txn([(r.rows, r.bodies) for r in commits], batch.updates,
                  [i for ids, _ in batch.removes for i in ids], batch.quarantine, self.sync)
        pool = POOL_WRITE if (commits or batch.updates or batch.quarantine) else POOL_BATCH_UNLINK
        self.in_flight = batch
        self._submit(pool, txn)

    def _submit(self, pool: str, txn: Txn) -> None:
        res = pools.submit(pool, self.store.apply, txn)
        res.rawlink(lambda r: self._tell(_TxnDone(r.successful(), r.value if r.successful() else r.exception)))

    def _on_txn_done(self, msg: _TxnDone) -> None:
        batch, self.in_flight = self.in_flight, None
        self.counters.removes_in_flight = 0
        if msg.ok:
            self._txn_succeeded(batch, msg.value)
        else:
            self._txn_failed(batch, classify(msg.value, "spool transaction"))
        self._kick()

    def _txn_succeeded(self, batch: _Batch, res) -> None:
        c = self.counters
        c.transactions += 1
        self.maintenance_first, self.retry_at = False, 0.0
        refused, first_err = 0, None
        for i, req in enumerate(batch.commits):
            err = res.failed.get(i)
            if err is not None:
                self._fail_request(req, err)
                refused += len(req.rows)
                if isinstance(err, SpoolFullError):
                    first_err = first_err or err
            else:
                c.committed += len(req.rows)
                req.result.set(True)
        c.count += res.inserted - res.removed - len(res.quarantined)
        c.msg_successes += batch.n_removes
        c.body_submitted += res.bodies_freed
        in_db = res.bodies_freed - len(res.files)
        c.body_attempts += in_db
        c.body_successes += in_db
        for _ids, result in batch.removes:
            result.set(True)
        if first_err is not None:
            self._panic_failure(first_err, refused)
        if res.files:
            c.unlinks_in_flight += len(res.files)
            c.body_attempts += len(res.files)
            done = pools.submit(POOL_UNLINK, self.store.unlink_files, res.files)
            done.rawlink(lambda r, n=len(res.files): self._tell(
                _UnlinkDone(*(r.value if r.successful() else (0, n)))))

    def _txn_failed(self, batch: _Batch, err: SpoolError) -> None:
        for req in batch.commits:
            self._fail_request(req, err)
        self.counters.msg_failures += batch.n_removes
        # Keep what was not a new message: newer updates win over the ones we put back.
        for msg_id, fields in batch.updates.items():
            self.updates[msg_id] = {**fields, **self.updates.get(msg_id, {})}
        self.removes[:0] = batch.removes
        self.counters.removes_pending += batch.n_removes
        self.quarantine[:0] = batch.quarantine
        had_maint = bool(batch.removes or batch.updates or batch.quarantine)
        if had_maint and batch.commits:
            self.maintenance_first = True            # retry them alone, at once
        elif had_maint:
            self.maintenance_first = False
            self.retry_at = time.monotonic() + RETRY_DELAY
        self._panic_failure(err, sum(len(r.rows) for r in batch.commits))

    def _fail_request(self, req: _Request, err: SpoolError) -> None:
        self.counters.refused += len(req.rows)
        req.result.set_exception(err)
        files = [b.file for b in req.bodies if b.file]
        if files:   # written for a commit that did not happen: nobody references them
            pools.submit(POOL_UNLINK, self.store.unlink_files, files)

    def _panic_failure(self, err: SpoolError, refused: int) -> None:
        now = time.monotonic()
        if now - self.last_panic < PANIC_INTERVAL:
            self.suppressed += 1
            return
        more = f" ({self.suppressed} more failures since the last report)" if self.suppressed else ""
        panic(f"spool write failed: {err}; {refused} messages refused{more}", subsystem="spool")
        self.last_panic, self.suppressed = now, 0

    def _on_unlink_done(self, msg: _UnlinkDone) -> None:
        c = self.counters
        c.unlinks_in_flight -= msg.ok + msg.bad
        c.body_successes += msg.ok
        c.body_failures += msg.bad

    def _check_flushes(self) -> None:
        if self.flushes and not (self.in_flight or self.ready or self.writing or self.updates
                                 or self.removes or self.quarantine):
            # removals waiting for the log keep only the flushes that asked for them
            logging = bool(self.unlogged or self.logging)
            still = []
            for result, removals in self.flushes:
                (still.append((result, removals)) if removals and logging else result.set(True))
            self.flushes = still

    def on_stop(self) -> None:
        # Only reached when stop() timed out: whoever still waits is told, rather than
        # left hanging; a transaction still running may yet commit (at-least-once).
        err = SpoolClosedError("spool stopped")
        batch = self.in_flight or _Batch([], {}, [], [])
        for req in self.ready + batch.commits:
            if not req.result.ready():
                req.result.set_exception(err)
        for _ids, result in self.removes + batch.removes + self.unlogged + self.logging:
            if not result.ready():
                result.set_exception(err)
        for result, _removals in self.flushes:
            result.set_exception(err)
        self.ready, self.removes, self.flushes = [], [], []
        self.unlogged, self.logging = [], []


# -- the service -------------------------------------------------------------------------------

class SpoolService:
    """The daemon's spool: start() opens the spool and begins spool-in; see the module doc."""

    name = "spool"

    def __init__(self, cfg=None, on_recovered=None, *, state_dir: str | None = None) -> None:
        self.state_dir = state_dir
        self.opts = SpoolOptions.from_config(cfg, state_dir)
        self.exclusions = Exclusions(cfg)
        self.on_recovered = on_recovered
        self.counters = SpoolCounters()
        self.store: SpoolStore | None = None
        self.ref = None
        self.accepting = False
        self.recovery_done = Event()
        self.recovered = 0
        self.unreadable = 0
        self._recovery: gevent.Greenlet | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self.store = SpoolStore(self.opts.base, mode=self.opts.mode, sync=self.opts.sync)
        info = pools.run(POOL_SPOOLIN, self.store.open)
        if info.quarantined_db:
            panic(f"spool database unreadable, moved aside to {info.quarantined_db}; "
                  f"{info.salvaged} messages salvaged into a new spool", subsystem="spool",
                  level="CRITICAL")
        self.counters.count = info.count
        self.ref = SpoolActor.start(self.store, self.counters, self.opts.sync)
        self.accepting = True
        self._recovery = gevent.spawn(self._spool_in, info.max_seq)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Graceful: refuse new work, finish what was accepted, close the database."""
        self.accepting = False
        if self._recovery is not None:
            self._recovery.kill(block=True, timeout=5)
        if self.ref is not None and self.ref.is_alive():
            done = AsyncResult()
            self.ref.tell(SpoolFlush(done, removals=True))
            if not done.wait(timeout):
                panic("spool stop: pending writes did not finish in time", subsystem="spool")
            self.ref.stop(timeout=5)
        if self.store is not None:
            pools.run(POOL_WRITE, self.store.close)

    def apply_config(self, cfg) -> None:
        new = SpoolOptions.from_config(cfg, self.state_dir)
        if (new.base, new.mode) != (self.opts.base, self.opts.mode):
            panic("spoolbase / spool_mode changes take effect at the next restart",
                  subsystem="spool", level="NOTICE")
            new.base, new.mode = self.opts.base, self.opts.mode
        if new.sync != self.opts.sync and self.ref is not None:
            self.ref.tell(SpoolSetSync(new.sync))
        self.opts = new
        self.exclusions = Exclusions(cfg)

    # -- the driver's calls -----------------------------------------------------------------
    def commit(self, messages: list[MailMessage]) -> AsyncResult:
        """AsyncResult: True once every message is durable; else a SpoolError."""
        result = AsyncResult()
        if not self.accepting:
            result.set_exception(SpoolClosedError("spool is not accepting messages"))
            return result
        if not messages:
            result.set(True)
            return result
        self.ref.tell(SpoolCommit(self._encode(messages, result)))
        return result

    def _encode(self, messages, result) -> _Request:
        rows, bodies, large, keys = [], [], [], {}
        for m in messages:
            if m.body is None:
                raise ValueError(f"message {m.id} has no body to spool")
            key = keys.get(id(m.body))
            if key is None:
                # Recipients holding the same Body object share one stored body.
                key = keys[id(m.body)] = m.id
                data = m.body.data
                (large if len(data) >= LARGE_BODY else bodies).append(BodyRecord(key, data))
            conn_re, mess_re = self.exclusions(m)
            rows.append(encode_row(m, key, filter_context(m.ctx_conn, conn_re),
                                   filter_context(m.ctx_mess, mess_re)))
        return _Request(rows, bodies, large, result)

    def update(self, msg_id: str, **fields) -> None:
        """Queue-state change (attempts, next_attempt, code, state, binding, binding_group,
        routing_domain, priority); written with the next transaction, not waited for."""
        unknown = set(fields) - set(STATE_FIELDS)
        if unknown:
            raise ValueError(f"spool update: unknown fields {', '.join(sorted(unknown))}")
        if self.ref is not None and self.accepting:
            self.ref.tell(SpoolUpdate(msg_id, fields))

    def remove(self, msg_ids) -> AsyncResult:
        """AsyncResult: True once the messages are durably gone from the spool."""
        result = AsyncResult()
        ids = (msg_ids,) if isinstance(msg_ids, str) else tuple(msg_ids)
        if self.ref is None or not self.ref.is_alive():
            result.set_exception(SpoolClosedError("spool is not running"))
        elif not ids:
            result.set(True)
        else:
            self.ref.tell(SpoolRemove(ids, result))
        return result

    def flush(self, removals: bool = False) -> AsyncResult:
        """AsyncResult: True once everything handed to the spool so far is on disk; the
        removals still waiting for their log lines only with `removals=True`."""
        result = AsyncResult()
        self.ref.tell(SpoolFlush(result, removals))
        return result

    def load_body(self, msg_id: str) -> bytes:
        """The stored body (SwapIn pool). SpoolNotFoundError, or SpoolCorruptError after
        the record has been reported and handed to quarantine."""
        if self.store is None:
            raise SpoolClosedError("spool is not running")
        try:
            return pools.run(POOL_READ, self.store.read_body, msg_id)
        except SpoolCorruptError as exc:
            self._bad_records([(msg_id, str(exc))], "load_body")
            raise

    def load(self, msg_id: str) -> MailMessage:
        """One message's metadata, body not loaded (SwapIn pool)."""
        return pools.run(POOL_READ, self.store.load, msg_id)

    def count(self) -> int:
        return self.counters.count

    # -- spool-in ---------------------------------------------------------------------------
    def _spool_in(self, upto: int) -> None:
        after = 0
        try:
            while after < upto:
                try:
                    good, bad, after = pools.run(POOL_SPOOLIN, self.store.read_batch, after, upto,
                                                 self.opts.drain_rate)
                except Exception as exc:
                    panic(f"spool_in stopped after seq {after}: {exc}; the remaining messages "
                          f"stay on disk for the next start", subsystem="spool", level="CRITICAL")
                    break
                if bad:
                    self.unreadable += len(bad)
                    self._bad_records(bad, "spool_in")
                if good:
                    self.recovered += len(good)
                    self._hand_over(good)
                gevent.sleep(0)
            panic(f"spool_in complete: {self.recovered} messages recovered, "
                  f"{self.unreadable} unreadable", subsystem="spool", level="NOTICE")
        finally:
            self.recovery_done.set()

    def _hand_over(self, messages: list[MailMessage]) -> None:
        if self.on_recovered is None:
            return
        try:
            self.on_recovered(messages)
        except Exception as exc:
            panic(f"spool_in: the recovery callback failed for {len(messages)} messages "
                  f"({exc!r}); they stay in the spool", subsystem="spool", level="CRITICAL")

    def _bad_records(self, bad: list, where: str) -> None:
        keep = not self.opts.unlink_on_failure
        for msg_id, reason in bad:
            fate = ("left in place until the next start (unlink_on_spool_in_failure = false)"
                    if keep else "moved to quarantine")
            panic(f"{where}: message {msg_id} is unreadable ({reason}); {fate}", subsystem="spool")
        if not keep and self.ref is not None:
            self.ref.tell(SpoolQuarantine(tuple(bad)))

    # -- console ----------------------------------------------------------------------------
    def unlink_stats(self) -> dict:
        c = self.counters
        row = {"Submissions": c.msg_submitted, "Attempts": c.msg_attempts,
               "Failures": c.msg_failures, "Successes": c.msg_successes}
        return {"messages": row, "headers": dict(row),
                "bodies": {"Submissions": c.body_submitted, "Attempts": c.body_attempts,
                           "Failures": c.body_failures, "Successes": c.body_successes},
                "current_backlog": c.removes_pending,
                "batch_backlog": c.removes_in_flight + c.unlinks_in_flight}

    def stats(self) -> dict:
        c = self.counters
        return {"count": c.count, "transactions": c.transactions, "committed": c.committed,
                "refused": c.refused, "recovered": self.recovered, "unreadable": self.unreadable,
                "spoolbase": self.opts.base, "force_fsync": self.opts.sync}


def render_unlink_stats(s: dict) -> str:
    """The `unlink stats` table (console_commands.unlink_stats)."""
    cols = (s["messages"], s["headers"], s["bodies"])

    def rate(d):
        return 100.0 * d["Successes"] / d["Attempts"] if d["Attempts"] else 100.0
    lines = ["                   Messages    Headers    Bodies"]
    for label, key in (("Submissions    ", "Submissions"), ("Attempts       ", "Attempts"),
                       ("  Failures     ", "Failures"), ("  Successes    ", "Successes")):
        lines.append(f"{label}:{cols[0][key]:>12}{cols[1][key]:>10}{cols[2][key]:>10}")
    lines.append(f"  Success Rate :{rate(cols[0]):>12.2f}%{rate(cols[1]):>9.2f}%{rate(cols[2]):>9.2f}%")
    lines.append(f"Current Backlog:{s['current_backlog']:>7}")
    lines.append(f"Batch Backlog  :{s['batch_backlog']:>7}")
    return "\n".join(lines)
