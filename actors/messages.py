"""The catalogue of messages between delivery actors.

Frozen dataclasses named <Receiver><Object><Verb>; they carry ids, small metadata and the
reply futures of asks, never message bodies (a queued Entry may hold a resident body
reference, which is shared, not copied). The spool's and the log writers' messages live
beside their actors (actors/spool.py, loggers/writer.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gevent.event import AsyncResult


@dataclass(frozen=True, slots=True)
class QueueEntriesAdd:
    """New or recovered instances for this (binding, domain) queue."""
    entries: tuple


@dataclass(frozen=True, slots=True)
class QueueWorkTake:
    """A delivery worker asks for its next batch; `reply` gets a list of entries, or
    None when the worker should close its connection."""
    worker: int
    reply: AsyncResult = field(default_factory=AsyncResult)


@dataclass(frozen=True, slots=True)
class QueueWorkCancel:
    """The worker stopped waiting for `reply`; anything assigned to it goes back."""
    worker: int
    reply: AsyncResult


@dataclass(frozen=True, slots=True)
class QueueOutcomes:
    """Results of one transaction: pairs (entry, RecipientOutcome)."""
    worker: int
    results: tuple
    remote_ip: str = ""


@dataclass(frozen=True, slots=True)
class QueueConnectFailed:
    """A worker could not reach any host; `batch` (possibly empty) fails transiently."""
    worker: int
    code: str
    permanent: bool = False
    batch: tuple = ()
    stage: int = 0
    remote_ip: str = ""          # the host that failed after the connection was made


@dataclass(frozen=True, slots=True)
class QueueConnected:
    worker: int
    remote_ip: str
    host: str


@dataclass(frozen=True, slots=True)
class QueueWorkerExit:
    worker: int


@dataclass(frozen=True, slots=True)
class QueueMaintain:
    pass


@dataclass(frozen=True, slots=True)
class QueueFlush:
    """Delayed messages go to the active queue now (`flush domain`)."""
    reply: AsyncResult = field(default_factory=AsyncResult)


@dataclass(frozen=True, slots=True)
class QueueFailAll:
    """Fail every queued message (`fail domain [quiet]`, blackhole in scope)."""
    reason: str
    bounce: bool
    reply: AsyncResult = field(default_factory=AsyncResult)


@dataclass(frozen=True, slots=True)
class QueueMessageAct:
    """`message retry|fail|fail quiet|details` on one id; reply gets the result."""
    action: str
    msg_id: str
    reply: AsyncResult = field(default_factory=AsyncResult)


@dataclass(frozen=True, slots=True)
class QueueEntriesTake:
    """Remove entries matching `ids` (or all) from this queue and hand them over
    (`rebind`, `reroute queue`)."""
    ids: tuple | None
    reply: AsyncResult = field(default_factory=AsyncResult)


@dataclass(frozen=True, slots=True)
class QueueStatsGet:
    reply: AsyncResult = field(default_factory=AsyncResult)
    list_messages: int = 0
    offset: int = 0
    delay_dsns: bool = False        # also list the pending delay DSNs (id, rcpt, due, sent)
