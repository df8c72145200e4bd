"""Delivery: the domain queues, their delivery workers, limits, outcomes and bounces.

Owns: one DomainQueueActor per (binding, routing domain), created on first use; the
delivery workers (one greenlet per outbound connection: pick a target, connect from the
binding's bind_address, take batches from its queue, deliver them, report outcomes); the
connection accounting behind max_outbound_connections (per queue, per Host stanza),
server_max_outbound_connections (global and per binding) and the outbound throttles (one
token bucket per scope that defines outbound_throttle_messages / _connections, shared by
reference); per-IP host_failure_retry; the DNS failure counters (dns_failures_to_purge,
mx_failures_fallback_to_a); the summary counters; bounces (RFC 3464 via actors/dsn.py,
rendered in the IO pool when async_bounce_rendering, injected with a null sender and
protocol `internal`).

Talks to: the spool (state updates, removals, body loads, bounce commits), the router
(transports/routing.py), outbound connections (transports/smtp_outbound.py), the log bus
(D/T/P and the R line of bounces), the console (through `queue(...)` lookups and asks).

Durability (at-least-once): before a transaction is sent its messages are marked
`delivering` in the spool and that mark is made durable; a message is removed from the
spool once the remote accepted it. A restart that finds a `delivering` mark delivers the
message again and says so in the paniclog (it may have been delivered already).
"""

from __future__ import annotations

import itertools
import socket
import time

import gevent
from gevent.event import AsyncResult, Event
from gevent.lock import Semaphore

from ecmta import pools
from ecmta.actors import dsn as dsnmod
from ecmta.actors import messages as Q
from ecmta.actors.domain_queue import DomainQueueActor, Entry
from ecmta.actors.esmtp_service import TokenBucket
from ecmta.actors.inbound import glob_match
from ecmta.actors.mail import Body, MailMessage, new_id
from ecmta.actors.queue_options import QueueOptionsCache
from ecmta.config import EvalContext
from ecmta.loggers import bus, records
from ecmta.loggers.panic import panic
from ecmta.transports import routing
from ecmta.transports.smtp_client import (NO_VALID_HOSTS, ClientOptions, Transaction)
from ecmta.transports.smtp_outbound import (OutboundConnection, OutboundOptions,
                                            TLSConfigError, client_tls_context)

STOP_GRACE = 10.0
RESIDENT_BODY_MAX = 256 * 1024
STAGE_NOT_CONNECTED = 0


class DeliveryStats:
    """Counters for `summary` (kept by the service on the hub)."""

    def __init__(self) -> None:
        self.reset()
        self.started = time.time()

    def reset(self) -> None:
        self.delivered = self.failed = self.received = self.rejected = 0
        self.reset_at = time.time()


class DeliveryService:
    name = "queue"

    def __init__(self, daemon) -> None:
        self.daemon = daemon
        self.queues: dict[tuple, object] = {}
        self._creating = Semaphore()
        self.qopts = QueueOptionsCache()
        self.stats = DeliveryStats()
        self.running = False
        self._wids = itertools.count(1)
        self._pending: list = []
        self.connections = 0
        self.per_binding: dict[str, int] = {}
        self.per_host: dict[str, int] = {}
        self.host_failed_until: dict[str, float] = {}
        self.host_failed_at: dict[str, float] = {}
        # For the console (show outbound, domain, count outbound): the open connections
        # (worker -> (conn, binding, group, domain, since)) and per-IP decayed averages
        # of the connect and delivery times in ms.
        self.outbound: dict[int, tuple] = {}
        self.host_times: dict[str, list] = {}
        self.dns_failures: dict[str, int] = {}
        self.mx_failures: dict[str, int] = {}
        self.throttles: dict = {}
        self.workers = set()
        self._helpers = set()
        self._idle = set()               # workers waiting on an idle connection
        self._host_freed = Event()       # set (and replaced) when a host connection closes
        self._starved: dict = {}         # queue name -> ref refused a server connection slot
        # For the D/T/P records: what a configured log format wants from each queued
        # message as received (records.NEEDS) and the facts of its last transaction.
        self._log_extras: dict[str, dict] = {}
        self._attempt: dict[str, tuple] = {}
        daemon.accepted_hooks.append(self.enqueue)
        daemon.recovered_hooks.append(self.recovered)
        bus.subscribe((records.Rejection,), self._count_rejection)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self.running = True
        pending, self._pending = self._pending, []
        self._enqueue_entries(pending)

    def stop(self) -> None:
        self.running = False
        gevent.killall(list(self._idle), timeout=5)     # idle cached connections: QUIT now
        deadline = time.time() + STOP_GRACE
        for g in list(self.workers) + list(self._helpers):
            g.join(timeout=max(0.0, deadline - time.time()))
        gevent.killall(list(self.workers) + list(self._helpers), timeout=5)
        for key, ref in list(self.queues.items()):
            self.daemon.supervisor.forget(self._actor_key(key))
            if ref.is_alive():
                ref.stop(timeout=5)
        self.queues.clear()

    def apply_config(self, cfg) -> None:
        for ref in list(self.queues.values()):
            ref.tell(Q.QueueMaintain())      # re-evaluate suspension, limits, blackhole

    # -- what queues use ---------------------------------------------------------------------
    def config(self):
        return self.daemon.config.current

    def queue_options(self, binding: str, group: str, domain: str):
        return self.qopts.get(self.config(), binding, group, domain)

    def scan_interval(self) -> float:
        return float(self.config().value("delayed_queue_scan_interval", default=15) or 15)

    def spool(self):
        return self.daemon.spool

    # -- intake ------------------------------------------------------------------------------
    def enqueue(self, messages) -> None:
        """Freshly accepted instances (the reception hook)."""
        self.stats.received += len(messages)
        keep = self.config().value("max_resident_active_queue", default=250)
        # Small bodies stay in memory for their first attempt; big ones are read back from
        # the spool when sent, so a queue of 1 MB messages does not hold 250 MB per domain.
        entries = [Entry(m, keep_body=keep != 0 and m.size <= RESIDENT_BODY_MAX) for m in messages]
        self._keep_log_extras(messages)
        if not self.running:
            self._pending.extend(entries)
            return
        self._enqueue_entries(entries)

    def recovered(self, messages) -> None:
        """Instances read back from the spool at start (bodies not loaded)."""
        entries = []
        for m in messages:
            e = Entry(m, keep_body=False)
            if m.state == "delivering":
                panic(f"message {m.id} to {m.rcptto} was being delivered when ecelerity stopped; "
                      "delivering it again (it may arrive twice)", subsystem="spool", level="ERROR")
            entries.append(e)
        self._keep_log_extras(messages)
        if not self.running:
            self._pending.extend(entries)
        else:
            self._enqueue_entries(entries)

    def _keep_log_extras(self, messages) -> None:
        for m in messages:
            extras = records.delivery_extras(m)
            if extras is not None:
                self._log_extras[m.id] = extras

    def _enqueue_entries(self, entries) -> None:
        groups: dict[tuple, list] = {}
        for e in entries:
            groups.setdefault((e.binding, e.binding_group, e.domain), []).append(e)
        for key, batch in groups.items():
            self.queue(*key, create=True).tell(Q.QueueEntriesAdd(tuple(batch)))

    @staticmethod
    def _actor_key(key) -> str:
        return "domain:" + "/".join(key)

    def queue(self, binding: str, group: str, domain: str, create: bool = False):
        key = (binding, group, domain)
        ref = self.queues.get(key)
        if ref is not None and not ref.is_alive():
            ref = self.daemon.supervisor.ref(self._actor_key(key))
            self.queues[key] = ref
        if ref is None and create:
            # Starting an actor yields (the thread start waits): without the lock two
            # greenlets (two bounces, say) could both create this queue, and the messages
            # given to the first one would sit in an actor nobody knows.
            with self._creating:
                ref = self.queues.get(key)
                if ref is None:
                    ref = self.daemon.supervisor.spawn(DomainQueueActor, self, binding, group,
                                                       domain, key=self._actor_key(key))
                    self.queues[key] = ref
        return ref

    def ask_all(self, make_msg, timeout: float = 10.0) -> list:
        """Ask every queue (console); each message carries its own reply future."""
        asks = []
        for ref in list(self.queues.values()):
            msg = make_msg()
            ref.tell(msg)
            asks.append(msg.reply)
        out = []
        deadline = time.time() + timeout
        for reply in asks:
            try:
                out.append(reply.get(timeout=max(0.01, deadline - time.time())))
            except gevent.Timeout:
                continue
        return out

    # -- connections -------------------------------------------------------------------------
    def may_open_connection(self, q: DomainQueueActor) -> bool:
        cfg = self.config()
        cap = int(cfg.value("server_max_outbound_connections", default=20000) or 0)
        if cap > 0 and self.connections >= cap:
            self._starved[q.name] = q.actor_ref      # told to try again when one closes
            return False
        if q.binding != "default":
            bcap = cfg.value("server_max_outbound_connections",
                             EvalContext(binding=q.binding, binding_group=q.group if q.group != "default" else None))
            scope = cfg.defining_scope("server_max_outbound_connections",
                                       EvalContext(binding=q.binding))
            if bcap and scope is not None and scope.lkind == "binding" and \
                    self.per_binding.get(q.binding, 0) >= int(bcap):
                self._starved[q.name] = q.actor_ref
                return False
        return True

    def start_worker(self, q: DomainQueueActor) -> int:
        wid = next(self._wids)
        self.connections += 1
        self.per_binding[q.binding] = self.per_binding.get(q.binding, 0) + 1
        g = gevent.spawn(self._worker, q.actor_ref, q.binding, q.group, q.domain, wid)
        self.workers.add(g)
        g.link(lambda _g: self.workers.discard(_g))
        return wid

    def _wake_host_waiters(self) -> None:
        freed, self._host_freed = self._host_freed, Event()
        freed.set()

    def _release(self, binding: str) -> None:
        self.connections -= 1
        left = self.per_binding.get(binding, 1) - 1
        if left > 0:
            self.per_binding[binding] = left
        else:
            self.per_binding.pop(binding, None)
        if self._starved and self.running:
            # Queues refused a connection by server_max_outbound_connections try again now
            # rather than at their next maintainer scan.
            starved, self._starved = self._starved, {}
            for ref in starved.values():
                if ref.is_alive():
                    ref.tell(Q.QueueMaintain())

    def _throttle(self, key, rate) -> None:
        if not rate:
            return
        bucket = self.throttles.get((key, tuple(rate)))
        if bucket is None:
            count, seconds = rate
            bucket = self.throttles[(key, tuple(rate))] = TokenBucket(int(count), float(seconds or 1))
        bucket.wait()

    # -- the worker ------------------------------------------------------------------------
    def _worker(self, ref, binding: str, group: str, domain: str, wid: int) -> None:
        conn = None
        try:
            opts = self.queue_options(binding, group, domain)
            batch = self._take(ref, wid, 0)
            if not batch:
                return
            conn, target = self._connect(ref, opts, domain, wid, batch)
            if conn is None:
                return
            ref.tell(Q.QueueConnected(wid, target.ip, target.host))
            self.outbound[wid] = (conn, binding, group, domain, time.time())
            self._serve(ref, conn, opts, wid, batch)
        except Exception as exc:
            panic(f"delivery worker for {group}/{binding}/{domain} failed: {exc!r}",
                  subsystem="delivery", level="CRITICAL")
        finally:
            self.outbound.pop(wid, None)
            if conn is not None:
                try:
                    conn.close()
                except Exception:
                    pass
                finally:        # counted until closed: Host limits hold at the remote
                    self.per_host[conn.remote[0]] = self.per_host.get(conn.remote[0], 1) - 1
                    self._wake_host_waiters()
            self._release(binding)
            if ref.is_alive():
                ref.tell(Q.QueueWorkerExit(wid))

    @staticmethod
    def _take(ref, wid: int, idle: float):
        """The next batch from the queue, waiting at most `idle` seconds for one."""
        reply = AsyncResult()
        ref.tell(Q.QueueWorkTake(wid, reply))
        try:
            return reply.get(timeout=idle if idle > 0 else None)
        except gevent.Timeout:
            ref.tell(Q.QueueWorkCancel(wid, reply))
            return None

    def _route(self, opts, domain: str):
        cfg = self.config()
        ctx = EvalContext(binding=opts.binding if opts.binding != "default" else None,
                          binding_group=opts.binding_group if opts.binding_group != "default" else None,
                          domain=domain)
        relay = glob_match(domain, tuple(cfg.value("relay_domains", default=()) or ()))
        ropts = routing.route_options(cfg, ctx, relay_domain=relay,
                                      lmtp=str(opts.delivery_method).upper() == "LMTP",
                                      mx_failures=self.mx_failures.get(domain, 0))
        result = self.daemon.router.route(domain, ropts)
        if result.mx_failure:
            self.mx_failures[domain] = self.mx_failures.get(domain, 0) + 1
        if result.dns_failure:
            n = self.dns_failures[domain] = self.dns_failures.get(domain, 0) + 1
            result = routing.escalate(result, n, int(opts.dns_failures_to_purge or 0))
        elif result.ok:
            self.dns_failures.pop(domain, None)
        return result

    def _connect(self, ref, opts, domain: str, wid: int, batch):
        result = self._route(opts, domain)
        if not result.ok:
            ref.tell(Q.QueueConnectFailed(wid, f"{result.error_code} {result.error_text}",
                                          permanent=result.permanent, batch=tuple(batch)))
            return None, None
        self._throttle(opts.throttle_connections_key, opts.outbound_throttle_connections)
        cfg = self.config()
        now = time.time()
        tried: set[str] = set()
        last, last_stage, last_ip = NO_VALID_HOSTS, STAGE_NOT_CONNECTED, ""
        while True:
            def reachable(t):
                return t.ip not in tried and self.host_failed_until.get(t.ip, 0) <= now

            def limit(t):
                v = cfg.value("max_outbound_connections", EvalContext(host=t.host))
                return -1 if v is None else int(v)
            target = routing.choose_target(result.groups, self.per_host, limit, reachable)
            if target is None and not tried and self.running and \
                    routing.choose_target(result.groups, {}, limit, reachable) is not None:
                # Every reachable host is at its Host max_outbound_connections: that is no
                # delivery failure; wait for a connection to one of them to close.
                freed = self._host_freed
                freed.wait(timeout=1.0)
                now = time.time()
                continue
            if target is None:
                if not self.running:
                    return None, None       # stopping: the batch goes back to its queue
                ref.tell(Q.QueueConnectFailed(wid, last, batch=tuple(batch), stage=last_stage,
                                              remote_ip=last_ip))
                return None, None
            tried.add(target.ip)
            conn = self._open(opts, domain, target, batch[0])
            self.per_host[target.ip] = self.per_host.get(target.ip, 0) + 1
            fail = conn.connect()
            if fail is None:
                self._time_host(target.ip, 0, conn.connect_time)
                return conn, target
            self.per_host[target.ip] -= 1
            self._wake_host_waiters()
            self.host_failed_until[target.ip] = time.time() + float(opts.host_failure_retry or 0)
            self.host_failed_at[target.ip] = time.time()
            last, last_stage = fail.text, fail.stage
            last_ip = target.ip if fail.stage != STAGE_NOT_CONNECTED else ""
            if fail.status == "permanent" or fail.stage not in (STAGE_NOT_CONNECTED, 12):
                ref.tell(Q.QueueConnectFailed(wid, fail.text, permanent=fail.status == "permanent",
                                              stage=fail.stage, batch=tuple(batch),
                                              remote_ip=target.ip))
                return None, None

    def _open(self, opts, domain: str, target, first: Entry) -> OutboundConnection:
        helo = self._ehlo_hostname(opts, first)
        client = ClientOptions(
            ehlo_hostname=helo, delivery_method=str(opts.delivery_method).upper(),
            tls=str(opts.tls).lower(), xclient=str(opts.xclient).lower(),
            send_8bitmime="ifavailable" if opts.send_8bitmime in (True, "true", "ifavailable") else "no",
            transform_8bitmime_content=str(opts.transform_8bitmime_content or "ifneeded").lower(),
            max_recipients_per_batch=int(opts.max_recipients_per_batch or 0))
        oo = OutboundOptions(
            client=client, bind_address="" if opts.bind_address in ("", "*") else str(opts.bind_address),
            connect_timeout=float(opts.connect_timeout), ehlo_timeout=float(opts.ehlo_timeout),
            mailfrom_timeout=float(opts.mailfrom_timeout), rcptto_timeout=float(opts.rcptto_timeout),
            body_timeout=float(opts.body_timeout), rset_timeout=float(opts.rset_timeout),
            tls_verify=str(opts.tls_verify).lower(), tls_ca=opts.tls_ca or "",
            tls_certificate=opts.tls_certificate or "", tls_key=opts.tls_key or "",
            tls_ciphers=opts.tls_ciphers or "", tls_protocols=opts.tls_protocols or "",
            tls_ifavailable_fallback=bool(opts.tls_ifavailable_fallback))
        ctx = None
        if client.tls != "no":
            try:
                ctx = pools.run("IO", client_tls_context, oo.tls_verify, oo.tls_ca, oo.tls_certificate,
                                oo.tls_key, oo.tls_ciphers, oo.tls_protocols)
            except TLSConfigError as exc:
                panic(f"outbound TLS options for {domain}: {exc}", subsystem="SSL")
        return OutboundConnection(target.ip, target.port, oo, mx_hostname=target.host,
                                  domain=domain, tls_context=ctx)

    def _ehlo_hostname(self, opts, first: Entry) -> str:
        name = str(opts.ehlo_hostname or "__hostname__")
        if name == "__message__" and first.sender_domain:
            return first.sender_domain        # the envelope sender's domain (conf.ref.ehlo_hostname)
        if name in ("__hostname__", "__message__"):
            return self.config().value("hostname", default="") or socket.gethostname()
        return name

    def _serve(self, ref, conn, opts, wid: int, batch) -> None:
        idle = float(opts.idle_timeout or 0)
        while True:
            for _ in batch:
                self._throttle(opts.throttle_messages_key, opts.outbound_throttle_messages)
            self._mark_delivering(batch)
            txn = self._transaction(batch, opts)
            outcomes = conn.deliver(txn)
            self._time_host(conn.remote[0], 1, conn.last_delivery_time)
            facts = (conn.mx_hostname, conn.remote[1], (conn.local or ("",))[0], conn.tls_info)
            for e, out in zip(batch, outcomes):
                self._attempt[e.id] = (out.text, *facts)
            ref.tell(Q.QueueOutcomes(wid, tuple(zip(batch, outcomes)), conn.remote[0]))
            if opts.max_deliveries_per_connection and conn.deliveries >= opts.max_deliveries_per_connection:
                return
            if not conn.usable() or not self.running:
                return
            me = gevent.getcurrent()
            self._idle.add(me)
            try:
                batch = self._take(ref, wid, idle)
            finally:
                self._idle.discard(me)
            if not batch:
                return

    def _time_host(self, ip: str, which: int, seconds: float) -> None:
        """Decayed average per IP: which 0 = connect, 1 = one transaction (MAIL FROM to
        the confirmation), in ms (the `domain` console command shows them)."""
        t = self.host_times.setdefault(ip, [0.0, 0.0])
        ms = seconds * 1000.0
        t[which] = ms if not t[which] else 0.75 * t[which] + 0.25 * ms

    def _mark_delivering(self, batch) -> None:
        spool = self.spool()
        for e in batch:
            spool.update(e.id, state="delivering", attempts=e.attempts)
        spool.flush().get()

    def _transaction(self, batch, opts) -> Transaction:
        first = batch[0]

        def load() -> bytes:
            body = first.body
            if body is not None:
                return body.data
            return self.spool().load_body(first.id)
        xclient = None
        if str(opts.xclient).lower() != "no":
            xclient = {"NAME": "[UNAVAILABLE]", "ADDR": first.peer_ip or "[UNAVAILABLE]",
                       "PORT": str(first.peer_port) if first.peer_port else "[UNAVAILABLE]",
                       "HELO": first.ehlo or "[UNAVAILABLE]",
                       "PROTO": "SMTP" if first.protocol == "smtp" else "ESMTP"}
        return Transaction(first.mailfrom, [(e.rcptto, e.dsn) for e in batch], load,
                           size=first.size, ret=first.dsn.ret, envid=first.dsn.envid, xclient=xclient)

    # -- outcomes (called by queue actors) ----------------------------------------------------
    def _log_fields(self, e: Entry, final: bool) -> tuple[str, dict]:
        """(the remote's reply, extra record fields) of a message's outcome."""
        reply, host, port, local_ip, tls = self._attempt.pop(e.id, ("", "", 0, "", None))
        extras = self._log_extras.pop(e.id, None) if final else self._log_extras.get(e.id)
        return reply, dict(protocol=e.protocol, peer_ip=e.peer_ip, mx_host=host, remote_port=port,
                           local_ip=local_ip, tls=tls, **(extras or {}))

    def delivered(self, e: Entry, remote_ip: str, now: float) -> None:
        self.stats.delivered += 1
        reply, extra = self._log_fields(e, final=True)
        bus.publish(records.Delivery(now, e.id, e.batch_id, e.conn_id, e.domain, e.size,
                                     e.binding_group, e.binding, e.attempts,
                                     now - e.received_at, remote_ip, rcpt_local=e.rcpt_local,
                                     rcpt_domain=e.rcptto.rpartition("@")[2].lower(),
                                     sender_local=e.sender_local, sender_domain=e.sender_domain,
                                     response=reply, **extra))
        # after the record: the spool's removal waits for the log lines published before it
        self.spool().remove([e.id])

    def transient(self, e: Entry, code: str, stage: int, nbytes: int, remote_ip: str, now: float) -> None:
        _, extra = self._log_fields(e, final=False)
        bus.publish(records.Failure(now, e.id, e.batch_id, e.conn_id, e.domain, nbytes,
                                    e.binding_group, e.binding, stage, e.attempts - 1,
                                    now - e.received_at, remote_ip, code, False,
                                    e.rcpt_local, e.domain, e.sender_local, e.sender_domain, e.size,
                                    **extra))

    def spool_update(self, e: Entry) -> None:
        self.spool().update(e.id, attempts=e.attempts, next_attempt=e.next_attempt, code=e.code,
                            state="delayed")

    def failed(self, e: Entry, reason: str, stage: int, nbytes: int, remote_ip: str, *, bounce: bool) -> None:
        now = time.time()
        self.stats.failed += 1
        _, extra = self._log_fields(e, final=True)
        bus.publish(records.Failure(now, e.id, e.batch_id, e.conn_id, e.domain, nbytes,
                                    e.binding_group, e.binding, stage, e.attempts,
                                    now - e.received_at, remote_ip, reason, True,
                                    e.rcpt_local, e.domain, e.sender_local, e.sender_domain, e.size,
                                    **extra))
        if bounce and e.mailfrom:
            g = gevent.spawn(self._bounce_then_remove, e, reason, remote_ip, now)
            self._helpers.add(g)
            g.link(lambda _g: self._helpers.discard(_g))
        else:
            self.spool().remove([e.id])

    def _count_rejection(self, rec) -> None:
        self.stats.rejected += 1

    # -- bounces ---------------------------------------------------------------------------
    def _bounce_then_remove(self, e: Entry, reason: str, remote_ip: str, now: float) -> None:
        """Generate and commit the DSN first, then drop the original: a crash between the
        two can only bounce twice, never lose the notice."""
        try:
            opts = self.queue_options(e.binding, e.binding_group, e.domain)
            to = dsnmod.bounce_recipient(e.mailfrom, e.dsn.notify, e.rcptto,
                                         generate_bounces=bool(opts.generate_bounces),
                                         mdn_failures_notify=self.config().value("mdn_failures_notify", default="") or "")
            if to:
                self._inject_bounce(e, reason, remote_ip, now, to, opts)
        except Exception as exc:
            panic(f"bounce for {e.id} ({e.rcptto}) could not be generated: {exc!r}",
                  subsystem="bounce", level="CRITICAL")
        self.spool().remove([e.id])

    def _inject_bounce(self, e: Entry, reason: str, remote_ip: str, now: float, to: str, opts) -> None:
        recipient = dsnmod.DsnRecipient(e.rcptto, reply=reason, dsn=e.dsn, remote_ip=remote_ip,
                                        last_attempt=now, log_id=e.id)
        self._inject_notice(_render_failure, e, recipient, to, opts,
                            inline_original=str(opts.bounces_inline_original or "headers"))

    def _inject_notice(self, render, e: Entry, recipient, to: str, opts, **extra) -> None:
        """Render a DSN about `e` (in the IO pool when async_bounce_rendering) and inject it
        with a null sender and protocol `internal`: spooled, logged (R), queued."""
        original = e.body.data if e.body is not None else self._load_body(e.id)
        hostname = self.config().value("hostname", default="") or socket.gethostname()
        kw = dict(mailfrom=e.mailfrom, recipients=[recipient], hostname=hostname,
                  original=original, ret=e.dsn.ret, envid=e.dsn.envid, arrival_date=e.received_at,
                  mailerdaemon=opts.mailerdaemon or "", to=to, **extra)
        if self.config().value("async_bounce_rendering", default=True):
            data = pools.run("IO", render, kw)
        else:
            data = render(kw)
        bid = new_id()
        m = MailMessage(id=bid, batch_id=bid, conn_id=e.conn_id, mailfrom="", rcptto=to,
                        body=Body(data), size=len(data), protocol="internal",
                        peer_ip="127.0.0.1", routing_domain=to.rpartition("@")[2].lower())
        self.spool().commit([m]).get()
        bus.publish(records.Reception(time.time(), m.id, m.batch_id, m.conn_id, m.rcpt_localpart,
                                      m.rcpt_domain, "", "", "127.0.0.1", m.size, "internal",
                                      m.binding_group, m.binding))
        self.enqueue([m])

    # -- delay DSNs ------------------------------------------------------------------------
    def delay_dsn_wanted(self, e: Entry, opts) -> bool:
        """The delay_dsn module is loaded, the scope turns delay DSNs on, and RFC 3461 lets us."""
        if not opts.generate_delay_dsn or not self.config().scopes("delay_dsn"):
            return False
        return dsnmod.should_bounce(e.mailfrom, e.dsn.notify, "delay", generate_delay_dsn=True)

    def send_delay_dsn(self, e: Entry, opts) -> None:
        """Called by the queue actor when a delay DSN is due; the work runs in a greenlet."""
        g = gevent.spawn(self._delay_dsn, e, opts)
        self._helpers.add(g)
        g.link(lambda _g: self._helpers.discard(_g))

    def _delay_dsn(self, e: Entry, opts) -> None:
        try:
            until = e.received_at + float(opts.message_expiration or 0) if opts.message_expiration else None
            recipient = dsnmod.DsnRecipient(e.rcptto, reply=e.code or "", dsn=e.dsn,
                                            last_attempt=time.time(), will_retry_until=until, log_id=e.id)
            self._inject_notice(_render_delay, e, recipient, e.mailfrom, opts, will_retry_until=until)
        except Exception as exc:
            panic(f"delay DSN for {e.id} ({e.rcptto}) could not be generated: {exc!r}",
                  subsystem="bounce", level="ERROR")

    def _load_body(self, msg_id: str) -> bytes | None:
        try:
            return self.spool().load_body(msg_id)
        except Exception as exc:
            panic(f"body of {msg_id} unreadable for its bounce: {exc!r}", subsystem="bounce")
            return None


def _render_failure(kw: dict) -> bytes:
    """Pool job: render one failure DSN (pure)."""
    return dsnmod.render_failure_dsn(**kw)


def _render_delay(kw: dict) -> bytes:
    """Pool job: render one delay DSN (pure)."""
    return dsnmod.render_delay_dsn(**kw)
