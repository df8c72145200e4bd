"""The actor base every pipeline stage derives from.

Owns: the bookkeeping `threads actors` shows (kind, name, mailbox depth, messages
handled, restarts) and the restart rule. Under gevent's monkey patching a
pykka.ThreadingActor runs as a greenlet on the one hub.

Restart rule: when handling a message raises, the failure is written to the paniclog,
`on_restart()` rebuilds the actor's in-memory state from durable state, and the actor
goes on with the next message of the same mailbox. Nothing waiting in the mailbox is
dropped; a caller that asked gets the exception. A stage whose in-memory state matters
(queues) overrides `on_restart()` to reload it from the spool.
"""

from __future__ import annotations

import sys
import time
import traceback
from typing import Any

import pykka
from pykka.messages import ProxyCall

from ecmta.loggers.panic import panic


class EcActor(pykka.ThreadingActor):
    kind: str = "actor"
    # Daemon greenlets must not keep the process alive after the supervisor stops.
    use_daemon_thread = True

    def __init__(self, name: str | None = None) -> None:
        super().__init__()
        self.name = name or self.kind
        self.handled = 0
        self.restarts = 0
        self.started_at = time.time()
        self.last_failure: str | None = None

    # -- pykka internals: count messages, restart in place on failure -------------
    def _handle_receive(self, message: Any) -> Any:
        if not (isinstance(message, ProxyCall) and message.attr_path == ("ec_stats",)):
            self.handled += 1
        try:
            return super()._handle_receive(message)
        except Exception:
            self._record_failure(sys.exc_info())
            raise

    def _handle_failure(self, exception_type, exception_value, tb) -> None:
        # Already recorded and restarted by _handle_receive: stay alive, keep the mailbox.
        return None

    def on_failure(self, exception_type, exception_value, tb) -> None:
        return None

    def _record_failure(self, exc_info) -> None:
        self.restarts += 1
        etype, evalue, tb = exc_info
        where = traceback.extract_tb(tb)[-1] if tb else None
        loc = f" at {where.filename.rsplit('/', 1)[-1]}:{where.lineno}" if where else ""
        self.last_failure = f"{etype.__name__}: {evalue}{loc}"
        panic(f"actor {self.kind}/{self.name} failed ({self.last_failure}); restarted",
              subsystem="supervisor", level="CRITICAL")
        try:
            self.on_restart()
        except Exception as exc:  # a failing restart must not kill the pipeline either
            panic(f"actor {self.kind}/{self.name} restart failed: {exc!r}",
                  subsystem="supervisor", level="CRITICAL")

    def on_restart(self) -> None:
        """Rebuild in-memory state after a failure. Default: nothing to rebuild."""

    # -- introspection, asked by the console ------------------------------------------
    def ec_stats(self) -> dict:
        return {
            "kind": self.kind,
            "name": self.name,
            "mailbox": self.actor_inbox.qsize(),
            "handled": self.handled,
            "restarts": self.restarts,
            "uptime": time.time() - self.started_at,
            "last_failure": self.last_failure,
        }
