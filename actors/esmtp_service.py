"""The ESMTP_Listener service: sockets, admission, and what sessions share.

Owns: one listening socket and gevent StreamServer per enabled `Listen` of every
`ESMTP_Listener` stanza (TCP; IPv4 `*:25`/`:25`, IPv6 `[*]:25`/`[::]:25`), the
ReceptionActor that admits sessions (listener_sessions / service_sessions, answering
`421 4.4.5 Service unavailable, concurrency limit reached` over the cap), the cache of
per-(Listen, peer) options, the inbound throttles (one token bucket per defining scope),
and the policy engine's life across reloads.

Talks to: the daemon (config manager, spool service, delivery hook), the policy engine,
SmtpSession (one greenlet per connection). Start fails with a clear error when a socket
cannot be bound; a reload adds and removes listeners and swaps the policy scripts (a
failed script load keeps the running scripts and raises, so `config reload` reports it).
Stop: close the listening sockets, let sessions finish for up to STOP_GRACE seconds, then
end the rest (nothing is acknowledged before the spool has it, so nothing is lost).
"""

from __future__ import annotations

import itertools
import socket
import time
from dataclasses import dataclass

import gevent
from gevent.pool import Pool
from gevent.server import StreamServer

from ecmta.actors.inbound import InboundCache, ip_in
from ecmta.actors.reception import ReceptionActor, SessionInfo, SessionTable, SmtpSession
from ecmta.config import EvalContext
from ecmta.loggers.panic import panic
from ecmta.policy.engine import PolicyEngine
from ecmta.transports.smtp_replies import Reply

STOP_GRACE = 10.0
MAX_SESSIONS = 20000          # greenlets per listener when no cap is configured
CONCURRENCY_LIMIT = Reply(421, "4.4.5", "Service unavailable, concurrency limit reached")


class ListenerError(RuntimeError):
    pass


@dataclass(frozen=True)
class ListenEndpoint:
    address: str
    backlog: int = 500
    sessions: int = 0


def parse_tcp_address(address: str) -> tuple[int, str, int]:
    """(family, host, port) of `*:25`, `:25`, `127.0.0.1:25`, `[*]:25`, `[::1]:25`."""
    text = address.strip()
    if "/" in text or ":" not in text:
        raise ListenerError(f"ESMTP_Listener Listen \"{address}\": Unix sockets are not available "
                            "in this version for SMTP (use ip:port)")
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ListenerError(f"ESMTP_Listener Listen \"{address}\": invalid port")
    if host.startswith("["):
        inner = host[1:-1]
        return socket.AF_INET6, ("::" if inner in ("*", "") else inner), int(port)
    return socket.AF_INET, ("0.0.0.0" if host in ("*", "") else host), int(port)


def _opt(scope, name, default=None):
    v = scope.options.get(name) if scope is not None else None
    return default if v is None else v.value


def endpoints_from_config(cfg) -> list[ListenEndpoint]:
    out = []
    for listener in cfg.scopes("ESMTP_Listener"):
        if _opt(listener, "enable", True) is False:
            continue
        for child in listener.children:
            if child.kind.lower() != "listen" or _opt(child, "enable", True) is False:
                continue
            backlog = _opt(child, "listen_backlog", _opt(listener, "listen_backlog", 500))
            out.append(ListenEndpoint(child.name, int(backlog or 500)))
    return out


class TokenBucket:
    """N per S seconds; `wait()` sleeps cooperatively until a token is free."""

    def __init__(self, count: int, seconds: float) -> None:
        self.rate = count / seconds if seconds else float(count)
        self.capacity = max(1.0, float(count))
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def wait(self) -> None:
        while True:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return
            gevent.sleep((1.0 - self.tokens) / self.rate)


class ESMTPService:
    name = "esmtp"

    def __init__(self, daemon) -> None:
        self.daemon = daemon
        self.state_dir = daemon.state_dir
        self.servers: dict[str, StreamServer] = {}
        self.sessions = Pool(None)
        self.cache = InboundCache()
        self.actor = None
        self.table = SessionTable()
        self._engine: PolicyEngine | None = None
        self._sids = itertools.count(1)
        self._buckets: dict = {}
        self._blackhole_cache: tuple = (None, {})
        self._groups: tuple = (None, {})
        self._scriptlets = ()
        self._members: dict = {}
        self._rr: dict = {}

    # -- what sessions use -------------------------------------------------------------
    def config(self):
        return self.daemon.config.current

    def engine(self) -> PolicyEngine:
        return self._engine

    def spool(self):
        return self.daemon.spool

    def inbound(self, cfg, listen: str, peer_ip: str):
        return self.cache.get(cfg, listen, peer_ip)

    def accepted(self, instances) -> None:
        for hook in self.daemon.accepted_hooks:
            hook(instances)

    def blackholed(self, domain: str) -> bool:
        cfg = self.config()
        gen, cache = self._blackhole_cache
        if gen != cfg.generation:
            cache = {}
            self._blackhole_cache = (cfg.generation, cache)
        hit = cache.get(domain)
        if hit is None:
            v = cfg.eval("blackhole", EvalContext(domain=domain))
            hit = cache[domain] = str(v.value if v is not None else "false").lower() in ("true", "inline", "1", "on", "yes", "enabled")
            if len(cache) > 100000:
                cache.clear()
        return hit

    def _binding_groups(self) -> dict:
        cfg = self.config()
        gen, groups = self._groups
        if gen != cfg.generation:
            groups = {}
            for g in cfg.scopes("Binding_Group"):
                for child in g.children:
                    if child.kind.lower() == "binding":
                        groups[child.name] = g.name
            self._groups = (cfg.generation, groups)
            self._members = {}
            for binding, group in groups.items():
                self._members.setdefault(group, []).append(binding)
        return groups

    def default_binding(self) -> str:
        return str(self.config().value("default_binding", default="normal")).lower()

    def group_of(self, binding: str) -> str:
        return self._binding_groups().get(binding, "default")

    def pick_binding(self, group: str) -> str | None:
        """A binding of `group` for msg:binding_group (round robin), None if it has none."""
        self._binding_groups()
        members = self._members.get(group)
        if not members:
            return None
        n = self._rr.get(group, 0)
        self._rr[group] = n + 1
        return members[n % len(members)]

    def session_counter(self, cidr=None, service=None) -> int:
        # Read directly: a Lua callback must not wait on an ask (docs/design.md §5).
        sessions = self.table.sessions
        if cidr is None:
            return len(sessions)
        return sum(1 for s in sessions.values() if ip_in(s.peer_ip, (cidr,)))

    def throttle_wait(self, rate, scope) -> None:
        """Wait for a token of the bucket of `scope` (the stanza defining the throttle)."""
        key = (scope, tuple(rate) if isinstance(rate, (list, tuple)) else rate)
        bucket = self._buckets.get(key)
        if bucket is None:
            count, seconds = (rate if isinstance(rate, (list, tuple)) else (rate, 1))
            bucket = self._buckets[key] = TokenBucket(int(count), float(seconds or 1))
        bucket.wait()

    def reconfig_pending(self, generation: int, cfg) -> bool:
        last = getattr(self.daemon.config, "last_reload", None)
        return last is not None and last.config.generation > generation

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        cfg = self.config()
        self._engine = PolicyEngine.from_config(cfg)
        self._scriptlets = self._scriptlet_signature(cfg)
        self.actor = self.daemon.supervisor.spawn(ReceptionActor, "esmtp", self.table,
                                                  key="reception:esmtp")
        self._proxy = self.actor.proxy()
        for ep in endpoints_from_config(cfg):
            self._open(ep)

    def _open(self, ep: ListenEndpoint) -> None:
        family, host, port = parse_tcp_address(ep.address)
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(ep.backlog)
        except OSError as exc:
            sock.close()
            raise ListenerError(f"ESMTP_Listener cannot listen on {ep.address}: {exc.strerror or exc}") from None
        server = StreamServer(sock, lambda s, a, ep=ep: self._handle(s, a, ep), spawn=self.sessions)
        server.start()
        self.servers[ep.address] = server

    def _handle(self, sock, addr, ep: ListenEndpoint) -> None:
        local = "%s:%s" % sock.getsockname()[:2]
        sid = next(self._sids)
        cfg = self.config()
        session = SmtpSession(self, sock, addr, local, ep, sid)
        opts = self.inbound(cfg, ep.address, addr[0])
        info = SessionInfo(sid, sock.fileno(), addr[0], int(addr[1]), local, time.time(), session,
                           listen=ep.address)
        try:
            admitted = self._proxy.admit(info, opts.listener_sessions, opts.service_sessions).get(timeout=10)
        except Exception:
            admitted = False
        if not admitted:
            try:
                sock.sendall(CONCURRENCY_LIMIT.render(True))
            finally:
                sock.close()
            return
        try:
            session.run()
        finally:
            if self.actor.is_alive():
                self._proxy.closed(sid)

    def stop(self) -> None:
        for server in self.servers.values():
            server.close()
        self.servers.clear()
        self.sessions.join(timeout=STOP_GRACE)
        self.sessions.kill(block=True, timeout=5)
        if self._engine is not None:
            self._engine.close()
        if self.actor is not None and self.actor.is_alive():
            self.daemon.supervisor.forget("reception:esmtp")
            self.actor.stop(timeout=5)

    def apply_config(self, cfg) -> None:
        wanted = {ep.address: ep for ep in endpoints_from_config(cfg)}
        for address in list(self.servers):
            if address not in wanted:
                self.servers.pop(address).close()
        for address, ep in wanted.items():
            if address not in self.servers:
                self._open(ep)
        # Scripts are read again on every reload from disk (operators edit them and run
        # `config reload`) and whenever a console change touched the scriptlet stanza.
        signature = self._scriptlet_signature(cfg)
        if self._engine is not None and (getattr(self.daemon, "reloading", False)
                                         or signature != self._scriptlets):
            self._engine.reload(cfg)
        self._scriptlets = signature

    @staticmethod
    def _scriptlet_signature(cfg):
        return tuple(scope.structure() for scope in cfg.scopes("scriptlet"))

    def show_inbound(self) -> list[dict]:
        return self._proxy.show().get(timeout=5)

    def listening(self) -> list[str]:
        return ["%s:%s" % s.address[:2] for s in self.servers.values()]
