"""What one (binding, routing domain) queue needs from the configuration, evaluated once.

Owns: `QueueOptions`, the snapshot of every sending-side option a domain queue and its
delivery workers consult, evaluated through the fallback chain binding_group::binding::
domain > binding::domain > binding_group::domain > binding > binding_group > domain >
global > default (`Config.value` with an EvalContext), and `QueueOptionsCache` which
keeps one snapshot per (generation, binding, group, domain) so a busy queue does not
re-evaluate ~50 options per message. Throttles carry the scope that defines them
(`throttle_key`): one throttle object per defining scope, shared by reference.
"""

from __future__ import annotations

from dataclasses import dataclass

from ecmta.config import EvalContext


@dataclass(frozen=True)
class QueueOptions:
    generation: int
    binding: str
    binding_group: str
    domain: str
    retry_interval: float = 1200
    max_retry_interval: float = 43200
    max_retries: object = "auto"
    message_expiration: float = 86400
    never_retry: bool = False
    never_attempt_expired_messages: bool = False
    max_outbound_connections: int = 32
    max_recipients_per_batch: int = 100
    max_deliveries_per_connection: int = 0
    idle_timeout: float = 5
    suspend_delivery: bool = False
    blackhole: str = "false"
    generate_bounces: bool = True
    bounces_inline_original: str = "headers"
    mailerdaemon: str = ""
    delivery_method: str = "ESMTP"
    remote_smtp_port: int = 25
    lmtp_port: int = 2003
    connect_timeout: float = 300
    ehlo_timeout: float = 300
    mailfrom_timeout: float = 300
    rcptto_timeout: float = 300
    body_timeout: float = 600
    rset_timeout: float = 30
    tls: str = "no"
    tls_verify: str = "no"
    tls_ca: str = ""
    tls_certificate: str = ""
    tls_key: str = ""
    tls_ciphers: str = ""
    tls_protocols: str = ""
    tls_ifavailable_fallback: bool = True
    xclient: str = "no"
    bind_address: str = ""
    ehlo_hostname: str = "__hostname__"
    gateway: str = ""
    routes: tuple = ()
    mx_failures_to_delay: int = 50
    connect_timeout_to_delay: float = 900
    host_failure_retry: float = 120
    dns_failures_to_purge: int = 10
    mx_failures_fallback_to_a: int = 3
    use_ipv6: bool = False
    fully_resolve_before_smtp: bool = True
    prohibited_hosts: tuple = ()
    skip_hosts: tuple = ()
    send_8bitmime: bool = False
    transform_8bitmime_content: str = ""
    connection_allocation_aggressiveness: str = "normal"
    outbound_throttle_messages: object = None
    outbound_throttle_connections: object = None
    throttle_messages_key: object = None
    throttle_connections_key: object = None
    generate_delay_dsn: bool = False
    delay_dsn_retry_interval: float = 3600
    delay_dsn_max_retry_interval: float = 43200
    max_resident_active_queue: int = 250
    drop_body_after_trans_fail: int = 3


_FIELDS = [f for f in QueueOptions.__dataclass_fields__
           if f not in ("generation", "binding", "binding_group", "domain",
                        "throttle_messages_key", "throttle_connections_key")]


def _scope_key(scope):
    # The defining scope's place in the tree names the shared throttle (global = ()).
    return None if scope is None else scope.key_path()


def build(cfg, binding: str, group: str, domain: str) -> QueueOptions:
    ctx = EvalContext(binding_group=group if group != "default" else None,
                      binding=binding if binding != "default" else None, domain=domain or None)
    values = {}
    registry = getattr(cfg, "registry", None)
    for name in _FIELDS:
        if registry is not None and registry.option(name) is None:
            continue
        v = cfg.value(name, ctx)
        if v is not None:
            values[name] = tuple(v) if isinstance(v, list) else v
    keys = {
        "throttle_messages_key": _scope_key(cfg.defining_scope("outbound_throttle_messages", ctx)),
        "throttle_connections_key": _scope_key(cfg.defining_scope("outbound_throttle_connections", ctx)),
    }
    if binding == "default" and str(cfg.value("default_binding", default="normal")).lower() == "suspended":
        values["suspend_delivery"] = True      # default_binding = suspended (conf.ref.default_binding)
    return QueueOptions(cfg.generation, binding, group, domain, **values, **keys)


class QueueOptionsCache:
    MAX = 65536

    def __init__(self) -> None:
        self._gen = None
        self._items: dict = {}

    def get(self, cfg, binding: str, group: str, domain: str) -> QueueOptions:
        if cfg.generation != self._gen:
            self._gen, self._items = cfg.generation, {}
        key = (binding, group, domain)
        opts = self._items.get(key)
        if opts is None:
            if len(self._items) >= self.MAX:
                self._items.clear()
            opts = self._items[key] = build(cfg, binding, group, domain)
        return opts
