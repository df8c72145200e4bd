"""One domain queue: the active and delayed messages of a (binding, routing domain).

Owns: the queue entries (slim, slotted records; bodies only while resident), the active
queue (priority 1 first, then arrival order), the delayed heap ordered by next attempt,
the maintainer that sweeps due delayed messages into the active queue (at least every
delayed_queue_scan_interval while active messages exist, otherwise at the first delayed
message's next attempt), the number of delivery workers (connections) it runs, and the
whole-domain delay rules (mx_failures_to_delay consecutive connection failures,
connect_timeout_to_delay without contact).

Talks to: its delivery workers (they ask for batches with QueueWorkTake and report
QueueOutcomes / QueueConnectFailed), the DeliveryService (spool updates and removals,
bounces, log records, limits), the console (stats, flush, fail, retry, details). Logs
D/T/P records through the service. On restart after a failure its entries are still in
memory (they are rebuilt only if lost): the mailbox and the spool hold the truth.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections import deque

import gevent

from ecmta.actors import messages as Q
from ecmta.actors import dsn as dsnmod
from ecmta.actors import retry
from ecmta.actors.base import EcActor

STAGE_NOT_CONNECTED = 0
_seq = itertools.count()


class Entry:
    """A queued message instance, without its context dictionaries."""

    __slots__ = ("id", "batch_id", "conn_id", "mailfrom", "rcptto", "size", "received_at",
                 "attempts", "next_attempt", "priority", "dsn", "code", "binding",
                 "binding_group", "domain", "protocol", "peer_ip", "body", "state", "seq",
                 "transient_failures", "peer_port", "listener_addr", "ehlo",
                 "dsn_next", "dsn_sent")

    def __init__(self, m, keep_body: bool) -> None:
        self.id, self.batch_id, self.conn_id = m.id, m.batch_id, m.conn_id
        self.mailfrom, self.rcptto, self.size = m.mailfrom, m.rcptto, m.size
        self.received_at, self.attempts = m.received_at, m.attempts
        self.next_attempt, self.priority = m.next_attempt, m.priority
        self.dsn, self.code = m.dsn, m.code
        self.binding, self.binding_group = m.binding or "default", m.binding_group or "default"
        self.domain = m.routing_domain or m.rcpt_domain
        self.protocol, self.peer_ip = m.protocol, m.peer_ip
        self.peer_port, self.listener_addr = m.peer_port, m.listener_addr
        self.ehlo = (m.ctx_conn or {}).get("ehlo_domain", "") if m.ctx_conn else ""
        self.body = m.body if keep_body else None
        self.state = "active"
        self.seq = next(_seq)
        self.transient_failures = 0
        self.dsn_next = math.inf       # when the next delay DSN is due (delay_dsn module)
        self.dsn_sent = 0

    @property
    def rcpt_local(self) -> str:
        return self.rcptto.rpartition("@")[0] if "@" in self.rcptto else self.rcptto

    @property
    def sender_local(self) -> str:
        return self.mailfrom.rpartition("@")[0] if "@" in self.mailfrom else self.mailfrom

    @property
    def sender_domain(self) -> str:
        return self.mailfrom.rpartition("@")[2].lower() if "@" in self.mailfrom else ""


class DomainQueueActor(EcActor):
    kind = "domain"

    def __init__(self, svc, binding: str, group: str, domain: str) -> None:
        super().__init__(f"{group}/{binding}/{domain}")
        self.svc = svc
        self.binding, self.group, self.domain = binding, group, domain
        self.active_hi: deque = deque()
        self.active: deque = deque()
        self.delayed: list = []
        self.dsn_due: list = []                     # heap (due, seq, entry) of delay DSNs
        self.index: dict[str, Entry] = {}
        self.assigned: dict[int, list] = {}        # worker -> entries in flight
        self.waiting: dict[int, object] = {}       # worker -> parked AsyncResult
        self.workers: set[int] = set()
        self.connected: set[int] = set()           # workers with an open connection
        self.deliveries = 0
        self.failures = 0
        self.sent_total = 0
        self.consecutive_connect_failures = 0
        self.last_contact = time.time()
        self.last_failure_at = 0.0
        self.last_error = ""
        self._timer = None
        self._next_wake = math.inf

    # -- options ---------------------------------------------------------------------------
    def opts(self):
        return self.svc.queue_options(self.binding, self.group, self.domain)

    # -- mailbox ---------------------------------------------------------------------------
    def on_receive(self, msg):
        handler = _DISPATCH.get(type(msg))
        if handler is None:
            raise TypeError(f"domain queue {self.name}: unexpected message {type(msg).__name__}")
        return handler(self, msg)

    def on_stop(self) -> None:
        if self._timer is not None:
            self._timer.kill(block=False)
        for reply in self.waiting.values():
            if not reply.ready():
                reply.set(None)

    # -- adding ------------------------------------------------------------------------------
    def _add(self, msg: Q.QueueEntriesAdd) -> None:
        now = time.time()
        opts = self.opts()
        if str(opts.blackhole).lower() in ("internal", "true", "inline"):
            for e in msg.entries:
                self.index[e.id] = e
                self._fail(e, "554 5.7.0 [internal] Blackholed", STAGE_NOT_CONNECTED, 0, "",
                           bounce=bool(opts.generate_bounces))
            return
        resident = int(opts.max_resident_active_queue)
        for e in msg.entries:
            if e.id in self.index:
                continue
            if resident >= 0 and self.active_count() >= resident:
                e.body = None                 # destaged: read back from the spool when sent
            self.index[e.id] = e
            if e.next_attempt and e.next_attempt > now:
                self._delay(e)
            else:
                self._activate(e)
            self._plan_delay_dsn(e, opts, now)
        self._dispatch()
        self._schedule()

    # -- delay DSNs (delay_dsn module): a schedule of their own ------------------------------
    def _plan_delay_dsn(self, e: Entry, opts, now: float) -> None:
        if not self.svc.delay_dsn_wanted(e, opts):
            return
        # After a restart the notices whose time has passed are taken as sent: one missed
        # notice is better than a burst of stale ones.
        while True:
            due = dsnmod.next_delay_dsn(e.received_at, e.dsn_sent, opts.delay_dsn_retry_interval,
                                        opts.delay_dsn_max_retry_interval)
            if due > now or e.dsn_sent > 1000:
                break
            e.dsn_sent += 1
        e.dsn_next = due
        heapq.heappush(self.dsn_due, (due, e.seq, e))

    def _send_due_delay_dsns(self, opts, now: float) -> None:
        while self.dsn_due and self.dsn_due[0][0] <= now:
            _, _, e = heapq.heappop(self.dsn_due)
            if e.id not in self.index or e.state not in ("active", "delayed", "delivering"):
                continue
            self.svc.send_delay_dsn(e, opts)
            e.dsn_sent += 1
            e.dsn_next = dsnmod.next_delay_dsn(e.received_at, e.dsn_sent, opts.delay_dsn_retry_interval,
                                               opts.delay_dsn_max_retry_interval)
            heapq.heappush(self.dsn_due, (e.dsn_next, e.seq, e))

    def _activate(self, e: Entry, front: bool = False) -> None:
        e.state = "active"
        q = self.active_hi if e.priority else self.active
        (q.appendleft(e) if front else q.append(e))

    def _delay(self, e: Entry) -> None:
        e.state = "delayed"
        heapq.heappush(self.delayed, (e.next_attempt, e.seq, e))

    def active_count(self) -> int:
        return len(self.active_hi) + len(self.active)

    def delayed_count(self) -> int:
        return sum(1 for _, _, e in self.delayed if e.state == "delayed")

    # -- workers -----------------------------------------------------------------------------
    def _desired_workers(self, opts) -> int:
        if opts.suspend_delivery or not self.svc.running:
            return 0
        backlog = self.active_count() + sum(len(v) for v in self.assigned.values())
        if not backlog:
            return 0
        limit = max(0, int(opts.max_outbound_connections)) if opts.max_outbound_connections >= 0 else 10 ** 6
        if str(opts.connection_allocation_aggressiveness).lower() == "high":
            want = backlog
        else:
            # Ramp gradually: one connection per max_recipients_per_batch*2 queued messages.
            want = 1 + backlog // max(1, 2 * int(opts.max_recipients_per_batch or 1))
        return min(limit, want)

    def _dispatch(self) -> None:
        opts = self.opts()
        # Parked idle workers take work first: their connections are already open.
        for wid, reply in list(self.waiting.items()):
            if not self.active_count():
                break
            batch = self._take_batch(wid, opts)
            if batch:
                del self.waiting[wid]
                reply.set(batch)
        while len(self.workers) < self._desired_workers(opts) and self.active_count():
            if not self.svc.may_open_connection(self):
                break
            wid = self.svc.start_worker(self)
            self.workers.add(wid)

    def _take_batch(self, wid: int, opts) -> list:
        now = time.time()
        batch: list[Entry] = []
        limit = max(1, int(opts.max_recipients_per_batch or 1))
        while self.active_count() and len(batch) < limit:
            q = self.active_hi if self.active_hi else self.active
            e = q[0]
            if e.state != "active" or e.id not in self.index:
                q.popleft()
                continue
            if batch and (e.batch_id != batch[0].batch_id or e.mailfrom != batch[0].mailfrom):
                break
            q.popleft()
            if opts.never_attempt_expired_messages and retry.expired(e.received_at, now, opts.message_expiration):
                self._fail(e, retry.NOT_ATTEMPTED, STAGE_NOT_CONNECTED, 0, "", bounce=bool(opts.generate_bounces))
                continue
            e.state = "delivering"
            batch.append(e)
        if batch:
            self.assigned[wid] = batch
        return batch

    def _take(self, msg: Q.QueueWorkTake) -> None:
        opts = self.opts()
        if msg.worker not in self.workers or opts.suspend_delivery:
            msg.reply.set(None)
            return
        batch = self._take_batch(msg.worker, opts) if self.active_count() else []
        if batch:
            msg.reply.set(batch)
            return
        # Nothing to send: a worker that has no connection yet, one over the limit, or any
        # with idle_timeout 0 closes; an open connection waits idle_timeout for more mail
        # (its caller's timeout, conf.ref.idle_timeout).
        limit = int(opts.max_outbound_connections)
        if msg.worker not in self.connected or float(opts.idle_timeout or 0) <= 0 or \
                (limit >= 0 and len(self.workers) > limit):
            msg.reply.set(None)
        else:
            self.waiting[msg.worker] = msg.reply

    def _cancel(self, msg: Q.QueueWorkCancel) -> None:
        self.waiting.pop(msg.worker, None)
        if msg.reply.ready() and msg.reply.value:
            self._requeue(self.assigned.pop(msg.worker, []))

    def _requeue(self, entries, front: bool = True) -> None:
        for e in reversed(entries):
            if e.id in self.index and e.state == "delivering":
                self._activate(e, front=front)

    def _worker_exit(self, msg: Q.QueueWorkerExit) -> None:
        self.workers.discard(msg.worker)
        self.connected.discard(msg.worker)
        self.waiting.pop(msg.worker, None)
        self._requeue(self.assigned.pop(msg.worker, []))
        self._dispatch()
        self._schedule()

    # -- outcomes ----------------------------------------------------------------------------
    def _connected(self, msg: Q.QueueConnected) -> None:
        self.connected.add(msg.worker)
        self.consecutive_connect_failures = 0
        self.last_contact = time.time()

    def _outcomes(self, msg: Q.QueueOutcomes) -> None:
        self.assigned.pop(msg.worker, None)
        opts = self.opts()
        now = time.time()
        self.last_contact = now
        for e, out in msg.results:
            if e.id not in self.index:
                continue
            if out.status == "delivered":
                self._delivered(e, out, msg.remote_ip, now)
            elif out.status == "transient":
                self._transient(e, out.text, out.stage, out.bytes_sent, msg.remote_ip, opts, now)
            else:
                self._fail(e, out.text, out.stage, out.bytes_sent, msg.remote_ip,
                           bounce=bool(opts.generate_bounces))
        self._dispatch()
        self._schedule()

    def _delivered(self, e: Entry, out, remote_ip: str, now: float) -> None:
        del self.index[e.id]
        e.state = "done"
        self.deliveries += 1
        self.sent_total += 1
        self.svc.delivered(e, remote_ip, now)

    def _transient(self, e: Entry, code: str, stage: int, nbytes: int, remote_ip: str, opts, now) -> None:
        e.code = code
        self.last_error = code
        decision, value = retry.after_transient(
            e.attempts + 1, e.received_at, now, retry_interval=opts.retry_interval,
            max_retry_interval=opts.max_retry_interval, max_retries=opts.max_retries,
            expiration=opts.message_expiration, never_retry=opts.never_retry)
        if decision == "fail":
            # The P line's retries count the attempts before this one, as T and D lines do.
            self._fail(e, value, stage, nbytes, remote_ip, bounce=bool(opts.generate_bounces))
            return
        e.attempts += 1
        self.svc.transient(e, code, stage, nbytes, remote_ip, now)
        e.next_attempt = value
        e.transient_failures += 1
        drop_after = int(opts.drop_body_after_trans_fail)
        resident = int(opts.max_resident_active_queue)
        if (drop_after >= 0 and e.transient_failures >= drop_after) or \
                (resident >= 0 and len(self.delayed) >= resident):
            # conf.ref.drop_body_after_trans_fail (0: after any transient failure), and a
            # delayed queue as long as max_resident_active_queue holds no more bodies: a
            # large queue to a failing domain must not keep every body in memory.
            e.body = None
        self.svc.spool_update(e)
        self._delay(e)

    def _fail(self, e: Entry, reason: str, stage: int, nbytes: int, remote_ip: str, *,
              bounce: bool) -> None:
        self.index.pop(e.id, None)
        e.state = "done"
        e.code = reason
        self.failures += 1
        self.svc.failed(e, reason, stage, nbytes, remote_ip, bounce=bounce)

    def _connect_failed(self, msg: Q.QueueConnectFailed) -> None:
        opts = self.opts()
        now = time.time()
        self.consecutive_connect_failures += 1
        self.last_failure_at = now
        self.last_error = msg.code
        batch = list(msg.batch)
        if not batch:
            batch = self._take_batch(msg.worker, opts)
        self.assigned.pop(msg.worker, None)
        for e in batch:
            if e.id not in self.index:
                continue
            if msg.permanent:
                self._fail(e, msg.code, msg.stage, 0, msg.remote_ip, bounce=bool(opts.generate_bounces))
            else:
                self._transient(e, msg.code, msg.stage, 0, msg.remote_ip, opts, now)
        if msg.permanent:
            self._fail_all(Q.QueueFailAll(msg.code, bool(opts.generate_bounces)))
        elif self._domain_unreachable(opts, now):
            self._delay_all(msg.code, opts, now)
        self._schedule()

    def _domain_unreachable(self, opts, now: float) -> bool:
        if opts.mx_failures_to_delay and self.consecutive_connect_failures >= opts.mx_failures_to_delay:
            return True
        return bool(opts.connect_timeout_to_delay) and now - self.last_contact >= opts.connect_timeout_to_delay

    def _delay_all(self, code: str, opts, now: float) -> None:
        """Whole-domain delay: every active message becomes a transient failure."""
        pending = list(self.active_hi) + list(self.active)
        self.active_hi.clear()
        self.active.clear()
        for e in pending:
            if e.id in self.index and e.state == "active":
                self._transient(e, code, STAGE_NOT_CONNECTED, 0, "", opts, now)
        self.consecutive_connect_failures = 0

    # -- maintainer --------------------------------------------------------------------------
    def _schedule(self) -> None:
        """Wake the maintainer at the right time (see module docstring)."""
        self._prune_delayed()
        if self.active_count():
            wake = time.time() + float(self.svc.scan_interval())
        elif self.delayed:
            wake = self.delayed[0][0]
        else:
            wake = math.inf
        while self.dsn_due and self.dsn_due[0][2].id not in self.index:
            heapq.heappop(self.dsn_due)
        if self.dsn_due:
            wake = min(wake, self.dsn_due[0][0])
        if wake >= self._next_wake and self._timer is not None and not self._timer.dead:
            return
        if self._timer is not None:
            self._timer.kill(block=False)
            self._timer = None
        self._next_wake = wake
        if wake != math.inf:
            me = self.actor_ref
            self._timer = gevent.spawn_later(max(0.0, wake - time.time()),
                                             lambda: me.is_alive() and me.tell(Q.QueueMaintain()))

    def _prune_delayed(self) -> None:
        while self.delayed and self.delayed[0][2].state != "delayed":
            heapq.heappop(self.delayed)

    def _maintain(self, msg=None) -> None:
        self._next_wake = math.inf
        self._timer = None
        opts = self.opts()
        if str(opts.blackhole).lower() in ("internal", "true", "inline"):
            # Blackhole set in this scope at run time: fail everything queued (conf.ref.blackhole).
            self._fail_all(Q.QueueFailAll("554 5.7.0 [internal] Blackholed", bool(opts.generate_bounces)))
            return
        now = time.time()
        while self.delayed and self.delayed[0][0] <= now:
            _, _, e = heapq.heappop(self.delayed)
            if e.state == "delayed" and e.id in self.index:
                self._activate(e)
        self._send_due_delay_dsns(opts, now)
        self._dispatch()
        self._schedule()

    def _flush(self, msg: Q.QueueFlush) -> None:
        n = 0
        for _, _, e in self.delayed:
            if e.state == "delayed" and e.id in self.index:
                self._activate(e)
                n += 1
        self.delayed = []
        self._dispatch()
        self._schedule()
        msg.reply.set(n)

    def _fail_all(self, msg: Q.QueueFailAll) -> None:
        victims = [e for e in self.index.values() if e.state in ("active", "delayed")]
        for e in victims:
            self._fail(e, msg.reason, STAGE_NOT_CONNECTED, 0, "", bounce=msg.bounce)
        self.active_hi.clear()
        self.active.clear()
        self.delayed = []
        self._schedule()
        if not msg.reply.ready():
            msg.reply.set(len(victims))

    def _message_act(self, msg: Q.QueueMessageAct) -> None:
        e = self.index.get(msg.msg_id)
        if e is None:
            msg.reply.set(None)
            return
        if msg.action == "details":
            msg.reply.set(e)
        elif e.state == "delivering":
            msg.reply.set("busy")
        elif msg.action == "retry":
            if e.state == "delayed":
                self._activate(e)
            self._dispatch()
            self._schedule()
            msg.reply.set("requeued")
        elif msg.action in ("fail", "fail quiet"):
            self._fail(e, "554 5.0.0 [internal] manually failed.", STAGE_NOT_CONNECTED, 0, "",
                       bounce=msg.action == "fail")
            msg.reply.set("failed")
        else:
            msg.reply.set(None)

    def _entries_take(self, msg: Q.QueueEntriesTake) -> None:
        out = []
        for e in list(self.index.values()):
            if e.state in ("active", "delayed") and (msg.ids is None or e.id in msg.ids):
                del self.index[e.id]
                e.state = "moved"
                out.append(e)
        self._schedule()
        msg.reply.set(out)

    def _stats(self, msg: Q.QueueStatsGet) -> None:
        listing = []
        if msg.list_messages:
            rows = [e for e in self.index.values() if e.state in ("active", "delayed", "delivering")]
            rows.sort(key=lambda e: e.seq)
            listing = [(e.state if e.state != "delivering" else "active", e.id, e.received_at,
                        e.mailfrom, e.rcptto) for e in rows[msg.offset:msg.offset + msg.list_messages]]
        pending_dsns = []
        if msg.delay_dsns:
            pending_dsns = sorted((due, e.id, e.rcptto, e.dsn_sent) for due, _, e in self.dsn_due
                                  if e.id in self.index and due == e.dsn_next)
        msg.reply.set({
            "binding": self.binding, "group": self.group, "domain": self.domain,
            "active": self.active_count() + sum(len(v) for v in self.assigned.values()),
            "delayed": self.delayed_count(), "connections": len(self.workers),
            "deliveries": self.deliveries, "failures": self.failures, "sent": self.sent_total,
            "consecutive_failures": self.consecutive_connect_failures,
            "last_error": self.last_error, "messages": listing, "delay_dsns": pending_dsns,
            # bodies held in memory / active messages whose body is only on disk
            "resident": sum(1 for e in self.index.values() if e.body is not None),
            "destaged": sum(1 for e in self.index.values() if e.state == "active" and e.body is None),
        })

    def on_restart(self) -> None:
        # In-memory entries survive a failed message; rebuild the queue views from them.
        self.active_hi, self.active, self.delayed = deque(), deque(), []
        in_flight = {e.id for batch in self.assigned.values() for e in batch}
        retry_at = time.time() + float(self.opts().retry_interval or 0)
        for e in sorted(self.index.values(), key=lambda e: e.seq):
            if e.state == "delivering" and e.id not in in_flight:
                # Its outcome was being handled when the actor failed: try it again later
                # (not at once: a failure that repeats must not become a delivery loop).
                e.state, e.next_attempt = "delayed", retry_at
            if e.state == "delayed":
                self._delay(e)
            elif e.state == "active":
                self._activate(e)
        self._schedule()


_DISPATCH = {
    Q.QueueEntriesAdd: DomainQueueActor._add,
    Q.QueueWorkTake: DomainQueueActor._take,
    Q.QueueWorkCancel: DomainQueueActor._cancel,
    Q.QueueOutcomes: DomainQueueActor._outcomes,
    Q.QueueConnectFailed: DomainQueueActor._connect_failed,
    Q.QueueConnected: DomainQueueActor._connected,
    Q.QueueWorkerExit: DomainQueueActor._worker_exit,
    Q.QueueMaintain: DomainQueueActor._maintain,
    Q.QueueFlush: DomainQueueActor._flush,
    Q.QueueFailAll: DomainQueueActor._fail_all,
    Q.QueueMessageAct: DomainQueueActor._message_act,
    Q.QueueEntriesTake: DomainQueueActor._entries_take,
    Q.QueueStatsGet: DomainQueueActor._stats,
}
