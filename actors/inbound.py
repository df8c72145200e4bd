"""What one inbound SMTP session needs from the configuration, evaluated once.

Owns: `InboundOptions`, the snapshot of every listener/peer/pathway/global option a
session consults (fallback Listen::Peer > Listen > listener Peer > listener > pathway >
global, through `Config.eval`), and its cache: options are evaluated once per (config
generation, Listen address, peer address) and shared by every session that matches, so
a busy listener does not pay ~20 evals per connection.

Also: the relay rules (relay_domains / bounce_domains left-globs, relay_hosts CIDRs,
open_relay, relay_for_sending_domains) as pure functions. Nothing here does I/O.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from functools import lru_cache

from ecmta.config import EvalContext
from ecmta.transports.smtp_server import ServerOptions
from ecmta.version import VERSION

LISTENER = "esmtp_listener"


def _v(cfg, option, ctx, default=None):
    value = cfg.eval(option, ctx)
    if value is None:
        return default
    return value.value


def _raw_defined(cfg, option, ctx) -> bool:
    """True when the option is set in some scope on the path (not just its default)."""
    res = cfg.resolve(option, ctx)
    return res is not None and res.scope is not None


@lru_cache(maxsize=4096)
def _networks(cidrs: tuple) -> tuple:
    nets = []
    for c in cidrs:
        try:
            nets.append(ipaddress.ip_network(str(c).strip(), strict=False))
        except ValueError:
            continue          # validated at config load; a bad entry matches nothing
    return tuple(nets)


def ip_in(ip: str, cidrs: tuple) -> bool:
    if not cidrs or not ip:
        return False
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in net for net in _networks(tuple(cidrs)) if net.version == addr.version)


def glob_match(domain: str, patterns) -> bool:
    """Momentum's left-glob domain lists: `*.example.com` needs the dot, `*example.com`
    also matches badexample.com; otherwise an exact, case-insensitive match."""
    if not domain or not patterns:
        return False
    domain = domain.lower().rstrip(".")
    for pat in patterns:
        pat = str(pat).lower().rstrip(".")
        if pat.startswith("*"):
            if domain.endswith(pat[1:]):
                return True
        elif domain == pat:
            return True
    return False


@dataclass(frozen=True)
class AuthSource:
    mechanism: str                  # LOGIN | PLAIN | CRAM-MD5
    uri: str
    log_authentication: bool


@dataclass
class InboundOptions:
    generation: int
    listen: str
    server: ServerOptions
    hostname: str
    received_hostname: str
    idle_time: float
    context: dict = field(default_factory=dict)
    pathway: str = "default"
    pathway_group: str = "default"
    relay_domains: tuple = ()
    bounce_domains: tuple = ()
    relay_hosts: tuple = ()
    open_relay: bool = False
    relay_for_sending_domains: tuple | None = None   # None = not configured; () = anyone
    listener_sessions: int = 0
    service_sessions: int = 0
    inbound_throttle: tuple | None = None
    inbound_throttle_scope: tuple = ()               # the defining scope: throttles are by reference
    rfc2822_date_header: str = "ifneeded"
    rfc2822_messageid_header: str = "ifneeded"
    rfc2822_missing_headers: str = "reject"
    rfc2822_trace_headers: bool = True
    tls_certificate: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    tls_verify_mode: str = ""
    tls_ciphers: str = ""
    tls_protocols: str = ""
    tls_verified_peer_can_relay: bool = False
    auth: dict = field(default_factory=dict)         # mechanism -> AuthSource
    tcp_recv_buffer_size: int = 0
    tcp_send_buffer_size: int = 0

    def peer_can_relay(self, peer_ip: str) -> bool:
        return self.open_relay or ip_in(peer_ip, self.relay_hosts)

    def sender_can_relay(self, sender_domain: str) -> bool:
        rfsd = self.relay_for_sending_domains
        if rfsd is None:
            return False
        return not rfsd or glob_match(sender_domain, rfsd)

    def accepts_domain(self, rcpt_domain: str) -> bool:
        return glob_match(rcpt_domain, self.relay_domains) or glob_match(rcpt_domain, self.bounce_domains)


def system_hostname() -> str:
    return socket.gethostname() or "localhost"


def _auth_sources(cfg, ctx, extensions) -> dict:
    out = {}
    for opt, mech in (("authloginparameters", "LOGIN"), ("authplainparameters", "PLAIN"),
                      ("authcrammd5parameters", "CRAM-MD5")):
        params = _v(cfg, opt, ctx)
        if params is None:
            continue
        params = dict(params)
        out[mech] = AuthSource(mech, str(params.get("uri", "")),
                               str(params.get("log_authentication", "false")).lower() in ("true", "1", "on", "yes"))
    return out


def _server_options(cfg, ctx, hostname, tls_ready, auth) -> ServerOptions:
    g = lambda opt, default=None: _v(cfg, opt, ctx, default)  # noqa: E731
    exts = tuple(g("smtp_extensions", None) or ("ENHANCEDSTATUSCODES", "PIPELINING", "8BITMIME"))
    banner_host = g("banner_hostname", "") or hostname
    static = g("static_banner", "") or ""
    if static.startswith("220"):
        static = static[3:].lstrip(" -")
    return ServerOptions(
        hostname=hostname,
        banner=static or f"{banner_host} ESMTP ecmta {VERSION}",
        smtp_extensions=exts,
        max_message_size=int(g("max_message_size", 0) or 0),
        max_recipients_per_message=int(g("max_recipients_per_message", 0) or 0),
        max_recipients_per_connection=int(g("max_recipients_per_connection", 0) or 0),
        max_receptions_per_connection=int(g("max_receptions_per_connection", 0) or 0),
        require_ehlo=bool(g("require_ehlo", False)),
        allow_null_envelope_sender=bool(g("allow_null_envelope_sender", True)),
        allow_ip_literal=bool(g("allow_ip_literal", True)),
        allow_trailing_whitespace_in_commands=bool(g("allow_trailing_whitespace_in_commands", False)),
        rfc2821_allow_whitespace_in_envelope=bool(g("rfc2821_allow_whitespace_in_envelope", False)),
        rfc2821_pedantic_address_rules=bool(g("rfc2821_pedantic_address_rules", True)),
        rfc2822_lone_lf_in_headers=str(g("rfc2822_lone_lf_in_headers", "pedantic")).lower(),
        rfc2822_lone_lf_in_body=str(g("rfc2822_lone_lf_in_body", "ignore")).lower(),
        rfc2822_max_line_length=g("rfc2822_max_line_length", "ignore"),
        rfc2822_max_line_length_policy=str(g("rfc2822_max_line_length_policy", "none")).lower(),
        domain_for_unqualified_sender_address=g("domain_for_unqualified_sender_address", "") or "",
        domain_for_unqualified_recipient_addresses=g("domain_for_unqualified_recipient_addresses", "") or "",
        starttls_injection_policy=str(g("starttls_injection_policy", "reject")).lower(),
        tls_available=tls_ready,
        use_ssl=bool(g("use_ssl", False)),
        reconfig_message=str(g("reconfig_message", "4.3.2 Reconfiguration in progress")),
    )


def build(cfg, listen: str, peer_ip: str) -> InboundOptions:
    ctx = EvalContext(listener=LISTENER, listen=listen, peer=peer_ip or None)
    g = lambda opt, default=None: _v(cfg, opt, ctx, default)  # noqa: E731
    hostname = g("hostname", "") or system_hostname()
    cert, key = g("tls_certificate", "") or "", g("tls_key", "") or ""
    auth = _auth_sources(cfg, ctx, None)
    server = _server_options(cfg, ctx, hostname, bool(cert and key), auth)
    rfsd = g("relay_for_sending_domains", None) if _raw_defined(cfg, "relay_for_sending_domains", ctx) else None
    pathway = g("pathway", "") or "default"
    return InboundOptions(
        generation=cfg.generation, listen=listen, server=server, hostname=hostname,
        received_hostname=g("received_hostname", "") or hostname,
        idle_time=float(g("idle_time", 300) or 0),
        context={str(k): str(v) for k, v in dict(g("context", None) or {}).items()},
        pathway=pathway,
        pathway_group=_pathway_group(cfg, pathway),
        relay_domains=tuple(g("relay_domains", ()) or ()),
        bounce_domains=tuple(g("bounce_domains", ()) or ()),
        relay_hosts=tuple(g("relay_hosts", ()) or ()),
        open_relay=bool(g("open_relay", False)),
        relay_for_sending_domains=tuple(rfsd or ()) if rfsd is not None else None,
        listener_sessions=int(g("listener_sessions", 0) or 0),
        service_sessions=int(g("service_sessions", 0) or 0),
        inbound_throttle=g("inbound_throttle_messages", None),
        inbound_throttle_scope=_scope_key(cfg, "inbound_throttle_messages", ctx),
        rfc2822_date_header=str(g("rfc2822_date_header", "ifneeded")).lower(),
        rfc2822_messageid_header=str(g("rfc2822_messageid_header", "ifneeded")).lower(),
        rfc2822_missing_headers=str(g("rfc2822_missing_headers", "reject")).lower(),
        rfc2822_trace_headers=bool(g("rfc2822_trace_headers", True)),
        tls_certificate=cert, tls_key=key,
        tls_client_ca=g("tls_client_ca", "") or "",
        tls_verify_mode=str(g("tls_verify_mode", "") or "").lower(),
        tls_ciphers=g("tls_ciphers", "") or "",
        tls_protocols=g("tls_protocols", "") or "",
        tls_verified_peer_can_relay=bool(g("tls_verified_peer_can_relay", False)),
        auth=auth,
        # Only when configured: the documented 4096 default would throttle DATA to a crawl on
        # loopback, and the page says 0 (unset) leaves the size to the operating system.
        tcp_recv_buffer_size=int(g("tcp_recv_buffer_size", 0) or 0)
        if _raw_defined(cfg, "tcp_recv_buffer_size", ctx) else 0,
        tcp_send_buffer_size=int(g("tcp_send_buffer_size", 0) or 0)
        if _raw_defined(cfg, "tcp_send_buffer_size", ctx) else 0,
    )


def _scope_key(cfg, option, ctx) -> tuple:
    """Where an option is defined, as ((kind, name), ...) from the root: every session whose
    value comes from the same stanza shares one throttle (conf.ref.outbound_throttle_messages,
    "Throttles and Fallback": by reference, not by value)."""
    res = cfg.resolve(option, ctx)
    scope = res.scope if res is not None else None
    key = []
    while scope is not None:
        key.append((str(scope.kind).lower(), scope.name))
        scope = scope.parent
    return tuple(reversed(key))


def _pathway_group(cfg, pathway: str) -> str:
    for group in cfg.scopes("Pathway_Group"):
        for child in group.children:
            if child.kind.lower() == "pathway" and child.name == pathway:
                return group.name
    return "default"


class InboundCache:
    """InboundOptions per (generation, listen, peer); a new generation empties it."""

    MAX = 4096

    def __init__(self) -> None:
        self._gen = None
        self._items: dict = {}

    def get(self, cfg, listen: str, peer_ip: str) -> InboundOptions:
        if cfg.generation != self._gen:
            self._gen, self._items = cfg.generation, {}
        key = (listen, peer_ip)
        opts = self._items.get(key)
        if opts is None:
            if len(self._items) >= self.MAX:
                self._items.clear()
            opts = self._items[key] = build(cfg, listen, peer_ip)
        return opts
