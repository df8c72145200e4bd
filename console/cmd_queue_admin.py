"""Console commands that change the queues: `message details|retry|fail|fail quiet`,
`fail domain [quiet]`, `flush domain`, `binding fail domain [quiet]`, `binding flush
domain`, `rebind`, `reroute queue`, `spool_in`, `spool import` and `unlink stats`.

Owns: the wording of those pages ("X flushed.  N messages requeued.", "X purged, N
messages failed.", "All domains purged.  N messages failed.", "Message requeued for
delivery", "Rebound N messages.", "Moved N messages from 'a' to 'b'") and the rebind and
reroute procedures. Talks to: the domain queue actors (QueueMessageAct, QueueFlush,
QueueFailAll, QueueStatsGet, QueueEntriesTake, QueueEntriesAdd; each carries its own
reply, waited for with a timeout), the spool (load, load_body in the SwapIn pool, state
updates, unlink statistics), the policy engine (validate_set_binding, for rebind). Fails
by raising ConsoleError: wrong arguments, unknown binding, domain or message, a message
being delivered.

Rules and decisions:
- `message details` refuses a message that is being delivered ("cannot show details for a
  message that is in the process of being delivered"); `message retry|fail` refuse it too.
  Labels are right-aligned to 22 columns as on the page; Created / Next Attempt are local
  times (a message never tried shows its arrival as its next attempt); Received Via is
  `SMTP <ip> (IPv4)` for (E)SMTP, the protocol name otherwise. `body` prints the stored
  content (CRLF shown as LF), `full` the details followed by the content.
- `message fail` answers `Message <id> failed.`; the reason is the queue's ("554 5.0.0
  [internal] manually failed."); `message fail` bounces, `message fail quiet` does not.
- `fail domain X` fails every queued (not in-flight) message of X on every binding with
  `554 5.7.0 [internal] Message manually purged`, with a bounce when generate_bounces is
  on for that queue; `quiet` never bounces. `binding fail domain B X [reason...]` takes
  an optional reason (the words after the domain) and `all` for every domain of B.
- `flush domain X|all` and `binding flush domain B X|all` move delayed messages to the
  active queue now ("All domains flushed.  N messages requeued." for all).
- `rebind <binding> [<domain>]` / `rebind all`: every queued message of those queues is
  assigned a binding again as at reception: binding and group start as default, the
  validate_set_binding policy phase runs on the message read back from the spool (body
  included), then the group rules of msg:binding / msg:binding_group apply. Messages whose
  binding changes move to the new binding's queue (and the spool records the change);
  messages in flight are left alone. The count is the number of messages re-evaluated.
  Without a validate_set_binding policy every message goes back to the default binding.
- `reroute queue a b` moves every queued (not in-flight) message of domain a, on every
  binding, to domain b's queue of the same binding; the spool records the new routing
  domain.
- `spool_in <id>` reads one message from the spool into its queue; a message already
  queued is left alone with a notice: `Message <id> is already in the queue.`
- `spool import` / `spool import_poll`: not available in this version (clear error).
- Unknown things: `Domain 'x' not found.`, `Binding 'b' not found.`, `Message <id> not
  found in the queue.`
"""

from __future__ import annotations

import time

from ecmta.actors import messages as Q
from ecmta.console.cmd_queue_base import (
    DEFAULT, ask_queues, delivery, group_of, known_domain, missing_note, queue_keys,
    queue_stats, resolve_binding)
from ecmta.console.registry import ConsoleError, command

PURGE_REASON = "554 5.7.0 [internal] Message manually purged"
LABEL = 22


# -- helpers ---------------------------------------------------------------------------------------

def _spool(ctx):
    spool = getattr(ctx.daemon, "spool", None)
    if spool is None or getattr(spool, "store", None) is None:
        raise ConsoleError("The spool is not running.")
    return spool


def _message_id(text: str, usage: str) -> str:
    from ecmta.actors.mail import parse_id
    try:
        parse_id(text)
    except ValueError:
        raise ConsoleError(f"'{text}' is not a message id (usage: {usage})") from None
    return text.upper()


def find_message(svc, action: str, msg_id: str):
    """(key, reply) of the queue that holds msg_id after asking every queue to do
    `action` with it; (None, None) when no queue has it."""
    replies, _ = ask_queues(svc, queue_keys(svc), lambda _k: Q.QueueMessageAct(action, msg_id))
    for key, reply in replies:
        if reply is not None:
            return key, reply
    return None, None


def _not_found(msg_id: str) -> ConsoleError:
    return ConsoleError(f"Message {msg_id} not found in the queue.")


def _busy(msg_id: str) -> ConsoleError:
    return ConsoleError(f"Message {msg_id} is in the process of being delivered; "
                        "try again when the attempt is over.")


# -- message details -----------------------------------------------------------------------------

DETAILS_USAGE = "message details [full|body] <message_id>"


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _via(e) -> str:
    proto = (e.protocol or "").lower()
    name = "SMTP" if proto in ("esmtp", "smtp", "") else proto.upper()
    ip = e.peer_ip or ""
    fam = "IPv6" if ":" in ip else "IPv4"
    return f"{name} {ip} ({fam})" if ip else name


def details_lines(e) -> list[str]:
    def row(label: str, value) -> str:
        text = str(value)
        return f"{label:>{LABEL}}:" + (f" {text}" if text else "")
    return [
        f"Message: {e.id}",
        "Message Type: full message",
        row("Created", _when(e.received_at)),
        row("Next Attempt", _when(e.next_attempt or e.received_at)),
        row("Retries", e.attempts),
        row("Received Via", _via(e)),
        row("Sender", e.mailfrom),
        row("Recipient", e.rcptto),
        row("Code", e.code or ""),
        row("Size", e.size),
    ]


def _content(ctx, e) -> str:
    body = e.body
    if body is not None:
        data = body.data
    else:
        from ecmta.actors.spool_store import SpoolError
        try:
            data = _spool(ctx).load_body(e.id)     # runs in the SwapIn pool
        except SpoolError as exc:
            raise ConsoleError(f"The content of message {e.id} cannot be read: {exc}") from None
    return data.decode("utf-8", "replace").replace("\r\n", "\n").rstrip("\n")


@command("message details", help="show detailed message information", usage=DETAILS_USAGE)
def message_details(ctx, args):
    mode = "details"
    if len(args) == 2 and args[0].lower() in ("full", "body"):
        mode, args = args[0].lower(), args[1:]
    if len(args) != 1:
        raise ConsoleError(f"usage: {DETAILS_USAGE}")
    msg_id = _message_id(args[0], DETAILS_USAGE)
    _key, e = find_message(delivery(ctx), "details", msg_id)
    if e is None:
        raise _not_found(msg_id)
    if e.state == "delivering":
        raise ConsoleError(f"Cannot show details for message {msg_id}: it is in the process "
                           "of being delivered.")
    if mode == "body":
        return _content(ctx, e)
    lines = details_lines(e)
    if mode == "full":
        lines.append(_content(ctx, e))
    return "\n".join(lines)


# -- message retry / fail --------------------------------------------------------------------------

def _message_act(ctx, args, action: str, usage: str) -> str:
    if len(args) != 1:
        raise ConsoleError(f"usage: {usage}")
    msg_id = _message_id(args[0], usage)
    _key, reply = find_message(delivery(ctx), action, msg_id)
    if reply is None:
        raise _not_found(msg_id)
    if reply == "busy":
        raise _busy(msg_id)
    return reply


@command("message retry", help="perform an immediate delivery attempt on a message",
         usage="message retry <message_id>")
def message_retry(ctx, args):
    _message_act(ctx, args, "retry", "message retry <message_id>")
    return "Message requeued for delivery"


@command("message fail", help="fail a message", usage="message fail <message_id>")
def message_fail(ctx, args):
    msg_id = args[0].upper() if args else ""
    _message_act(ctx, args, "fail", "message fail <message_id>")
    return f"Message {msg_id} failed."


@command("message fail quiet", help="fail a message and do not create a non-delivery receipt",
         usage="message fail quiet <message_id>")
def message_fail_quiet(ctx, args):
    msg_id = args[0].upper() if args else ""
    _message_act(ctx, args, "fail quiet", "message fail quiet <message_id>")
    return f"Message {msg_id} failed."


# -- fail / flush domain -------------------------------------------------------------------------

def _fail_keys(svc, keys, reason: str, quiet: bool) -> tuple[int, int]:
    def make(key):
        bounce = False if quiet else bool(svc.queue_options(*key).generate_bounces)
        return Q.QueueFailAll(reason, bounce)
    replies, missing = ask_queues(svc, keys, make)
    return sum(int(r or 0) for _k, r in replies), missing


def _flush_keys(svc, keys) -> tuple[int, int]:
    replies, missing = ask_queues(svc, keys, lambda _k: Q.QueueFlush())
    return sum(int(r or 0) for _k, r in replies), missing


def _fail_domain(ctx, args, quiet: bool, usage: str) -> str:
    if len(args) != 1:
        raise ConsoleError(f"usage: {usage}")
    svc = delivery(ctx)
    domain = args[0].lower()
    keys = queue_keys(svc, domain=domain)
    known_domain(svc, args[0], keys)
    n, missing = _fail_keys(svc, keys, PURGE_REASON, quiet)
    return "\n".join([f"{args[0]} purged, {n} messages failed."] + missing_note(missing))


@command("fail domain", help="fail messages for a domain with a bounce message",
         usage="fail domain <domain_name>")
def fail_domain(ctx, args):
    return _fail_domain(ctx, args, False, "fail domain <domain_name>")


@command("fail domain quiet", help="fail messages for a domain without generating bounces",
         usage="fail domain quiet <domain_name>")
def fail_domain_quiet(ctx, args):
    return _fail_domain(ctx, args, True, "fail domain quiet <domain_name>")


def _flush(ctx, svc, binding: str | None, name: str) -> str:
    if name.lower() == "all":
        n, missing = _flush_keys(svc, queue_keys(svc, binding=binding))
        return "\n".join([f"All domains flushed.  {n} messages requeued."] + missing_note(missing))
    keys = queue_keys(svc, binding=binding, domain=name)
    if not keys:
        where = "" if binding is None else f" on binding '{binding}'"
        raise ConsoleError(f"Domain '{name}' not found{where}.")
    n, missing = _flush_keys(svc, keys)
    return "\n".join([f"{name} flushed.  {n} messages requeued."] + missing_note(missing))


@command("flush domain", help="perform delivery attempt on delayed queue of a domain",
         usage="flush domain <domain_name>|all")
def flush_domain(ctx, args):
    if len(args) != 1:
        raise ConsoleError("usage: flush domain <domain_name>|all")
    return _flush(ctx, delivery(ctx), None, args[0])


@command("binding flush domain", usage="binding flush domain <binding_name> <domain_name>|all",
         help="perform delivery attempt on delayed queue of a domain on a binding")
def binding_flush_domain(ctx, args):
    if len(args) != 2:
        raise ConsoleError("usage: binding flush domain <binding_name> <domain_name>|all")
    svc = delivery(ctx)
    return _flush(ctx, svc, resolve_binding(ctx, svc, args[0]), args[1])


def _binding_fail(ctx, args, quiet: bool, usage: str) -> str:
    if len(args) < 2 or (quiet and len(args) != 2):
        raise ConsoleError(f"usage: {usage}")
    svc = delivery(ctx)
    binding = resolve_binding(ctx, svc, args[0])
    name = args[1]
    reason = " ".join(args[2:]) or PURGE_REASON
    if name.lower() == "all":
        n, missing = _fail_keys(svc, queue_keys(svc, binding=binding), reason, quiet)
        return "\n".join([f"All domains purged.  {n} messages failed."] + missing_note(missing))
    keys = queue_keys(svc, binding=binding, domain=name)
    if not keys:
        raise ConsoleError(f"Domain '{name}' not found on binding '{binding}'.")
    n, missing = _fail_keys(svc, keys, reason, quiet)
    return "\n".join([f"{name} purged, {n} messages failed."] + missing_note(missing))


@command("binding fail domain", usage="binding fail domain <binding_name> <domain_name>|all [message]",
         help="fail messages for a domain on a binding with a bounce message")
def binding_fail_domain(ctx, args):
    return _binding_fail(ctx, args, False,
                         "binding fail domain <binding_name> <domain_name>|all [message]")


@command("binding fail domain quiet", usage="binding fail domain quiet <binding_name> <domain_name>|all",
         help="fail messages for a domain on a binding without generating bounces")
def binding_fail_domain_quiet(ctx, args):
    return _binding_fail(ctx, args, True,
                         "binding fail domain quiet <binding_name> <domain_name>|all")


# -- moving entries between queues ------------------------------------------------------------

def _take(svc, keys, ids_for=None) -> list:
    """Entries taken out of the queues (those not in flight)."""
    def make(key):
        return Q.QueueEntriesTake(ids_for(key) if ids_for is not None else None)
    replies, _ = ask_queues(svc, keys, make)
    return [e for _k, entries in replies for e in (entries or ())]


def _add(svc, entries) -> None:
    """Hand entries to the queues of their (binding, group, domain), as delivery does."""
    groups: dict[tuple, list] = {}
    for e in entries:
        groups.setdefault((e.binding, e.binding_group, e.domain), []).append(e)
    for key, batch in groups.items():
        svc.queue(*key, create=True).tell(Q.QueueEntriesAdd(tuple(batch)))


# -- rebind ----------------------------------------------------------------------------------------

REBIND_USAGE = "rebind all | rebind <binding_name> [<domain_name>]"


class _Binder:
    """Assigns a binding to one queued message as reception does (validate_set_binding,
    then the binding-group rules)."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.spool = _spool(ctx)
        self.esmtp = getattr(ctx.daemon, "esmtp", None)
        engine = self.esmtp.engine() if self.esmtp is not None else None
        from ecmta.policy.engine import SET_BINDING
        self.phase = SET_BINDING
        self.engine = engine if engine is not None and engine.has_phase(SET_BINDING) else None

    def _group_of(self, binding: str) -> str:
        if self.esmtp is not None:
            return self.esmtp.group_of(binding)
        return group_of(self.ctx, binding)

    def assign(self, msg_id: str, current: tuple[str, str]) -> tuple[str, str]:
        binding, group = DEFAULT, DEFAULT
        if self.engine is not None:
            from ecmta.actors.mail import Body
            from ecmta.actors.spool_store import SpoolError
            from ecmta.policy.context import ValidationContext
            try:
                m = self.spool.load(msg_id)
                m.body = Body(self.spool.load_body(msg_id))
            except SpoolError:
                return current                     # unreadable: leave it where it is
            m.binding, m.binding_group = DEFAULT, DEFAULT
            vctx = ValidationContext(m.ctx_conn, conn_id=m.conn_id)
            vctx.mess.update(m.ctx_mess)
            try:
                result = self.engine.run_settled(self.phase, vctx, None, m)
            finally:
                self.engine.end_session(vctx)
            if result.error:
                return current
            binding, group = m.binding or DEFAULT, m.binding_group or DEFAULT
        if binding != DEFAULT and group == DEFAULT:
            group = self._group_of(binding)
        elif group != DEFAULT and self._group_of(binding) != group:
            picked = self.esmtp.pick_binding(group) if self.esmtp is not None else None
            binding = picked or binding
        return binding, group


def rebind_keys(ctx, svc, keys) -> int:
    binder = _Binder(ctx)
    listing = queue_stats(svc, keys, list_messages=10 ** 9)
    moves: dict[tuple, dict[str, tuple]] = {}
    n = 0
    for s in listing:
        key = (s["binding"], s["group"], s["domain"])
        for _state, msg_id, *_rest in s["messages"]:
            n += 1
            new = binder.assign(msg_id, (s["binding"], s["group"]))
            if new != (s["binding"], s["group"]):
                moves.setdefault(key, {})[msg_id] = new
    if not moves:
        return n
    taken = _take(svc, list(moves), lambda key: tuple(moves[key]))
    spool = _spool(ctx)
    try:
        for e in taken:
            new = moves.get((e.binding, e.binding_group, e.domain), {}).get(e.id)
            if new is None:
                continue
            e.binding, e.binding_group = new
            spool.update(e.id, binding=e.binding, binding_group=e.binding_group)
    finally:
        _add(svc, taken)
    return n


@command("rebind", help="rebind the messages in a binding or domain", usage=REBIND_USAGE)
def rebind(ctx, args):
    svc = delivery(ctx)
    if len(args) == 1 and args[0].lower() == "all":
        keys = queue_keys(svc)
    elif 1 <= len(args) <= 2:
        binding = resolve_binding(ctx, svc, args[0])
        keys = queue_keys(svc, binding=binding, domain=args[1] if len(args) == 2 else None)
        if len(args) == 2 and not keys:
            raise ConsoleError(f"Domain '{args[1]}' not found on binding '{binding}'.")
    else:
        raise ConsoleError(f"usage: {REBIND_USAGE}")
    return f"Rebound {rebind_keys(ctx, svc, keys)} messages."


# -- reroute queue -------------------------------------------------------------------------------

@command("reroute queue", help="move messages from queues of one domain to queues of the other",
         usage="reroute queue <domain_name1> <domain_name2>")
def reroute_queue(ctx, args):
    if len(args) != 2:
        raise ConsoleError("usage: reroute queue <domain_name1> <domain_name2>")
    src, dst = args[0].lower(), args[1].lower()
    svc = delivery(ctx)
    keys = queue_keys(svc, domain=src)
    known_domain(svc, args[0], keys)
    if src == dst:
        return f"Moved 0 messages from '{args[0]}' to '{args[1]}'"
    spool = _spool(ctx)
    taken = _take(svc, keys)
    try:
        for e in taken:
            e.domain = dst
            spool.update(e.id, routing_domain=dst)
    finally:
        _add(svc, taken)
    return f"Moved {len(taken)} messages from '{args[0]}' to '{args[1]}'"


# -- spool_in / spool import / unlink stats ---------------------------------------------------

@command("spool_in", help="read a message from the spool to the mail queue",
         usage="spool_in <message_id>")
def spool_in(ctx, args):
    if len(args) != 1:
        raise ConsoleError("usage: spool_in <message_id>")
    msg_id = _message_id(args[0], "spool_in <message_id>")
    svc = delivery(ctx)
    spool = _spool(ctx)
    _key, e = find_message(svc, "details", msg_id)
    if e is not None:
        return f"Message {msg_id} is already in the queue."
    from ecmta.actors.spool_store import SpoolError, SpoolNotFoundError
    try:
        m = spool.load(msg_id)
    except SpoolNotFoundError:
        raise ConsoleError(f"Message {msg_id} is not in the spool.") from None
    except SpoolError as exc:
        raise ConsoleError(f"Message {msg_id} cannot be read from the spool: {exc}") from None
    svc.recovered([m])
    return f"Message {msg_id} read from the spool into the queue of " \
           f"{m.routing_domain or m.rcpt_domain}."


@command("spool import", help="import an alternative spool (not available in this version)",
         usage="spool import /path/to/spoolbase [concurrency] [suppress_trace_headers]")
def spool_import(ctx, args):
    raise ConsoleError("spool import: importing another spool is not available in this version")


@command("spool import_poll", help="status of a spool import (not available in this version)",
         usage="spool import_poll /path/to/spool")
def spool_import_poll(ctx, args):
    raise ConsoleError("spool import_poll: importing another spool is not available in this version")


@command("unlink stats", help="show statistics of removing messages from the disk",
         usage="unlink stats")
def unlink_stats(ctx, args):
    if args:
        raise ConsoleError("usage: unlink stats")
    from ecmta.actors.spool import render_unlink_stats
    return render_unlink_stats(_spool(ctx).unlink_stats())

