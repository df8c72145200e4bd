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


@dataclass(frozen=True, slots=True)
class Auth:                          # acctlog N / T
    ts: float
    listener: str
    peer: str
    user: str
    ok: bool
    timeout: bool = False
