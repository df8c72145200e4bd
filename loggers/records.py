"""Typed log records: what the pipeline publishes, what every logger renders.

One frozen dataclass per event kind. They carry ids, addresses and small metadata, never
bodies. Producers build them and call `loggers.bus.publish(record)`; each log module
subscribes to the kinds it renders. Field names follow the mainlog/rejectlog/bouncelog
field tables (log_formats.*).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Reception:                     # mainlog R
    ts: float
    msg_id: str
    batch_id: str
    conn_id: str
    rcpt_local: str
    rcpt_domain: str
    sender_local: str
    sender_domain: str
    peer_ip: str
    size: int
    protocol: str
    binding_group: str
    binding: str
    ctx_conn: dict = field(default_factory=dict, compare=False)
    ctx_mess: dict = field(default_factory=dict, compare=False)
    peer_port: int = 0
    local: str = ""                  # the listener's "ip:port"
    routing_domain: str = ""
    headers: dict = field(default_factory=dict, compare=False)   # see NEEDS.headers


@dataclass(frozen=True, slots=True)
class Delivery:                      # mainlog D (X for a cluster transfer)
    ts: float
    msg_id: str
    batch_id: str
    conn_id: str
    domain: str
    size: int
    binding_group: str
    binding: str
    retries: int
    seconds: float
    remote_ip: str
    kind: str = "D"
    rcpt_local: str = ""
    rcpt_domain: str = ""
    sender_local: str = ""
    sender_domain: str = ""
    protocol: str = ""               # how the message was received (esmtp, internal, ...)
    peer_ip: str = ""                # where it was received from
    response: str = ""               # the remote's final reply, code included
    mx_host: str = ""                # the name of the host delivered to (MX or gateway)
    remote_port: int = 0
    local_ip: str = ""               # our end of the outbound connection
    tls: dict | None = field(default=None, compare=False)   # outbound_tls* facts; None: clear
    ctx_conn: dict = field(default_factory=dict, compare=False)   # see NEEDS.delivery_ctx
    ctx_mess: dict = field(default_factory=dict, compare=False)
    headers: dict = field(default_factory=dict, compare=False)    # see NEEDS.delivery_headers


@dataclass(frozen=True, slots=True)
class Failure:                       # mainlog T (transient) / P (permanent)
    ts: float
    msg_id: str
    batch_id: str
    conn_id: str
    domain: str
    bytes_sent: int
    binding_group: str
    binding: str
    stage: int
    retries: int
    seconds: float
    remote_ip: str
    response: str
    permanent: bool
    rcpt_local: str = ""
    rcpt_domain: str = ""
    sender_local: str = ""
    sender_domain: str = ""
    size: int = 0
    protocol: str = ""
    peer_ip: str = ""
    mx_host: str = ""
    remote_port: int = 0
    local_ip: str = ""
    tls: dict | None = field(default=None, compare=False)
    ctx_conn: dict = field(default_factory=dict, compare=False)
    ctx_mess: dict = field(default_factory=dict, compare=False)
    headers: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class Rejection:                     # rejectlog
    ts: float
    remote: str                      # "ip:port"
    local: str                       # "ip:port"
    conn_id: str
    pathway: str
    pathway_group: str
    phase: str                       # "awaiting mailfrom", ...
    code: int
    module: str                      # last module run, e.g. "scriptlet", "core"
    ctx_conn: dict
    ctx_mess: dict
    text: str
    peer_ip: str = ""
    msg_id: str = ""
    batch_id: str = ""
    rcptto: str = ""
    mailfrom: str = ""
    command: str = ""                # the refused command (MAIL, RCPT, DATA, EHLO, ...) if known


@dataclass(frozen=True, slots=True)
class Auth:                          # acctlog N / T
    ts: float
    listener: str
    peer: str
    user: str
    ok: bool
    timeout: bool = False


# -- what the configured loggers read beyond the fixed fields ----------------------------------

class LogNeeds:
    """Set by the logging service from the configured formats; read by the producers so a
    record carries headers or contexts only when some log line will print them.

    headers: lower-cased header names a Reception record should carry (custom_logger
    `%h{X}` of reception formats, Message-ID for the exim/postfix/sendmail formats).
    delivery_headers / delivery_ctx: what Delivery and Failure records need from the
    message as it was received (`%h{X}`, `%vctx_*`, `%A`, `%U`, `%P`, `%PG` of delivery,
    transfer and failure formats); the delivery service keeps these per queued message.
    """

    __slots__ = ("headers", "delivery_headers", "delivery_ctx")

    def __init__(self) -> None:
        self.headers: frozenset = frozenset()
        self.delivery_headers: frozenset = frozenset()
        self.delivery_ctx = False

    def set(self, headers=(), delivery_headers=(), delivery_ctx=False) -> None:
        self.headers = frozenset(h.lower() for h in headers)
        self.delivery_headers = frozenset(h.lower() for h in delivery_headers)
        self.delivery_ctx = bool(delivery_ctx)


NEEDS = LogNeeds()


def pick_headers(body, names) -> dict:
    """{lower name: first value} of the wanted headers of a Body (unfolded); {} for none."""
    if not names or body is None:
        return {}
    out = {}
    try:
        for name, value in body.headers():
            key = name.lower()
            if key in names and key not in out:
                out[key] = value.replace("\r\n", "").strip()
    except Exception:
        return out
    return out


def delivery_extras(m) -> dict | None:
    """What a queued message keeps for its D/T/P records (None: nothing is wanted)."""
    if not NEEDS.delivery_ctx and not NEEDS.delivery_headers:
        return None
    extras = {}
    if NEEDS.delivery_ctx:
        extras["ctx_conn"] = m.ctx_conn or {}
        extras["ctx_mess"] = m.ctx_mess or {}
    if NEEDS.delivery_headers:
        extras["headers"] = pick_headers(m.body, NEEDS.delivery_headers)
    return extras
