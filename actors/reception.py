"""Reception: one SMTP session from banner to QUIT, and the per-listener session registry.

Owns: `SmtpSession`, the driver of one connection. It feeds the socket's bytes to the
sans-IO machine (transports/smtp_server.py), runs every validation phase through the
policy engine and the core checks (relay control, blackhole, AUTH, rfc2822 header rules),
builds the message (trace headers, Message-ID, Date), splits it per recipient, commits the
instances to the spool and answers 250 only once they are on disk. `ReceptionActor` (one
per ESMTP listener service) admits sessions against listener_sessions / service_sessions
and keeps the registry `show inbound` and `ac:inbound_session_count` read.

Logs: mainlog R lines (one per recipient instance, after the commit) and a rejectlog line
for every refused command or message, through the log bus. Fails: a spool error answers
the spool's 452/451 and the session goes on; a policy failure answers the engine's 4xx;
an unexpected exception in the driver is written to the paniclog and answered
`421 4.3.0` before the connection closes. Nothing is acknowledged before it is durable.
"""

from __future__ import annotations

import email.utils
import time
import traceback
from dataclasses import dataclass

import gevent
from gevent import select as gselect
from gevent import socket as gsocket

from ecmta import pools
from ecmta.actors import local_delivery, smtp_auth
from ecmta.actors.base import EcActor
from ecmta.actors.mail import Body, DsnParams, MailMessage, message_id_header, new_id
from ecmta.loggers import bounce_logger, bus, records
from ecmta.loggers.panic import panic
from ecmta.policy.context import AcceptConstruct, ValidationContext
from ecmta.transports import smtp_server as S
from ecmta.transports import tls as tlsmod
from ecmta.transports.smtp_replies import Reply
from ecmta.version import BANNER_VERSION

READ_SIZE = 65536
INTERNAL_ERROR = Reply(421, "4.3.0", "Temporary internal error, closing connection")
# Momentum documents no limit on failed AUTH in a session; ecmta answers the MAX_AUTH_FAILURES-th
# failed credential check with `421 4.7.0 Too many failed authentication attempts, closing
# connection` and disconnects (brute force costs a new connection per guesses-per-session).
MAX_AUTH_FAILURES = 3
DEFAULT_BINDING = "default"
NO_DEFAULT_BINDING = Reply(451, "4.3.0", "no binding for this message (default_binding = none)")


@dataclass
class SessionInfo:
    """What the registry knows of a live session (for `show inbound`)."""
    sid: int
    fd: int
    peer_ip: str
    peer_port: int
    local: str
    started: float
    session: "SmtpSession"
    listen: str = ""             # the Listen stanza's address (the Listener_Sessions count)

    @property
    def listen_key(self) -> str:
        return self.listen or self.local


class SessionTable:
    """The live sessions of a listener service. Only the ReceptionActor changes it; the
    Lua `ac:inbound_session_count` reads it directly because a Lua callback must not wait
    on an ask (all on the one hub thread, so a read never sees a half-made change)."""

    def __init__(self) -> None:
        self.sessions: dict[int, SessionInfo] = {}
        self.per_listen: dict[str, int] = {}


class ReceptionActor(EcActor):
    """Session accounting of one ESMTP listener service."""

    kind = "reception"

    def __init__(self, name: str = "esmtp", table: SessionTable | None = None) -> None:
        super().__init__(name)
        table = table if table is not None else SessionTable()
        self.table = table
        self.sessions = table.sessions
        self.per_listen = table.per_listen
        self.accepted = 0
        self.refused = 0

    def on_restart(self) -> None:
        # Sessions keep running after a failure; the table is their registry, keep it.
        return None

    def admit(self, info: SessionInfo, listener_cap: int, service_cap: int) -> bool:
        if service_cap and len(self.sessions) >= service_cap or \
                listener_cap and self.per_listen.get(info.listen_key, 0) >= listener_cap:
            self.refused += 1
            return False
        self.sessions[info.sid] = info
        self.per_listen[info.listen_key] = self.per_listen.get(info.listen_key, 0) + 1
        self.accepted += 1
        return True

    def closed(self, sid: int) -> None:
        info = self.sessions.pop(sid, None)
        if info is not None:
            left = self.per_listen.get(info.listen_key, 1) - 1
            if left > 0:
                self.per_listen[info.listen_key] = left
            else:
                self.per_listen.pop(info.listen_key, None)

    def count(self, ip: str | None = None) -> int:
        if ip is None:
            return len(self.sessions)
        return sum(1 for s in self.sessions.values() if s.peer_ip == ip)

    def show(self) -> list[dict]:
        now = time.time()
        return [{"fd": s.fd, "peer": f"{s.peer_ip}:{s.peer_port}", "local": s.local,
                 "state": s.session.state_text(), "for": now - s.started}
                for s in sorted(self.sessions.values(), key=lambda s: s.fd)]


def _fmt_addr(addr) -> str:
    """Envelope form of a parsed address (localpart@domain; "" for <>)."""
    if addr is None or addr.is_null:
        return ""
    return f"{addr.localpart}@{addr.domain}" if addr.domain else addr.localpart


def _reply_of(result, default: Reply) -> Reply:
    if result.reply is None:
        return default
    code, enhanced, text = result.reply
    return Reply(int(code), enhanced or "", text)


class Rejected(Exception):
    def __init__(self, reply: Reply, module: str = "core", close: bool = False) -> None:
        super().__init__(reply.text)
        self.reply, self.module, self.close = reply, module, close


class SmtpSession:
    """The driver of one inbound SMTP connection (runs in its own greenlet)."""

    def __init__(self, service, sock, peer, local: str, listen_opts, sid: int) -> None:
        self.svc = service
        self.sock = sock
        self.peer_ip, self.peer_port = peer[0], int(peer[1]) if len(peer) > 1 else 0
        self.local = local
        self.endpoint = listen_opts
        self.sid = sid
        self.opts = None                  # InboundOptions, set in run()
        self.srv: S.SMTPServer | None = None
        self.vctx: ValidationContext | None = None
        self.ac: AcceptConstruct | None = None
        self.conn_id = new_id()
        self.generation = None
        self.last_module = "core"
        self.auth_failures = 0
        self._reset_transaction()

    # -- transaction state -------------------------------------------------------------
    def _reset_transaction(self) -> None:
        self.mailfrom = None
        self.mailfrom_sent = ""               # as the client wrote it (trace headers)
        self.mail_params = None
        self.batch_id = ""
        self.rcpts: list[tuple[str, DsnParams]] = []
        self.chunks: list[bytes] = []
        self.batch_msg: MailMessage | None = None

    def state_text(self) -> str:
        return self.srv.state_label if self.srv is not None else "connect"

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> None:
        cfg = self.svc.config()
        self.generation = cfg.generation
        self.opts = self.svc.inbound(cfg, self.endpoint.address, self.peer_ip)
        self._tune_socket()
        if self.opts.server.use_ssl and not self._wrap_tls(initial=True):
            return
        local_ip, _, local_port = self.local.rpartition(":")
        self.srv = S.SMTPServer(self.opts.server, peer=(self.peer_ip, self.peer_port),
                                local=(local_ip, int(local_port or 0)),
                                tls_info=self._tls_info if self.opts.server.use_ssl else None)
        self._new_context()
        try:
            self._loop()
        except OSError:
            pass                          # the client went away or timed out: nothing to answer
        except Exception as exc:
            panic(f"SMTP session {self.conn_id} from {self.peer_ip} failed: {exc!r} "
                  f"{traceback.format_exc()}", subsystem="smtp", level="CRITICAL")
            self._send_final(INTERNAL_ERROR)
        finally:
            self._teardown()

    def _tune_socket(self) -> None:
        o = self.opts
        try:
            if o.tcp_recv_buffer_size:
                self.sock.setsockopt(gsocket.SOL_SOCKET, gsocket.SO_RCVBUF, o.tcp_recv_buffer_size)
            if o.tcp_send_buffer_size:
                self.sock.setsockopt(gsocket.SOL_SOCKET, gsocket.SO_SNDBUF, o.tcp_send_buffer_size)
        except OSError:
            pass

    def _new_context(self) -> None:
        o = self.opts
        conn = dict(o.context)
        conn["pathway"] = o.pathway
        if o.pathway_group != "default":
            conn["pathway_group"] = o.pathway_group
        if self.opts.server.use_ssl:
            conn.update(self._tls_info)
        if o.peer_can_relay(self.peer_ip):
            conn["can_relay"] = "true"
        conn["connection_message_count"] = "0"
        conn["connection_rcpt_count"] = "0"
        self.vctx = ValidationContext(conn, conn_id=self.conn_id)
        self.ac = AcceptConstruct(self.local, f"{self.peer_ip}:{self.peer_port}",
                                  None, self._session_count)
        # The same list the machine advertises: ac:esmtp_capability_add/remove edit it in
        # place (the constructor would copy it, and the EHLO reply would never change).
        self.ac.capabilities = self.srv.capabilities

    def _session_count(self, cidr=None, service=None) -> int:
        """ac:inbound_session_count (lua.ref.ac_inbound_session_count): no cidr = the
        connecting IP, "/24" = the connecting IP's /24, else an address or addr/mask.
        Only SMTP sessions are counted here; other service types have none."""
        if service not in (None, "", "SMTP"):
            return 0
        spec = (cidr or "").strip()
        if not spec:
            spec = self.peer_ip
        elif spec.startswith("/"):
            spec = self.peer_ip + spec
        return self.svc.session_counter(spec)

    def _loop(self) -> None:
        srv = self.srv
        idle = self.opts.idle_time or None
        while True:
            ev = srv.next_event()
            if ev is S.NEED_DATA:
                self._flush()
                data = self._recv(idle)
                # before the machine reads the new commands: the MAIL FROM or RSET that
                # follows a `config reload` is the one answered 421 (Reconfig_Message)
                if not srv.reconfig_pending:
                    self._check_reconfig()
                srv.receive_data(data)
            elif ev is S.CLOSED:
                self._flush()
                return
            elif ev is S.PAUSED:
                raise S.SMTPServerError("machine paused without a pending decision")
            elif isinstance(ev, S.Decision):
                self._decide(ev)
            else:
                self._inform(ev)

    def _recv(self, idle) -> bytes:
        if idle:
            with gevent.Timeout(idle, False):
                return self.sock.recv(READ_SIZE)
            self._send_final(Reply(421, "4.4.2", f"{self.opts.hostname} timeout exceeded"))
            raise OSError("idle timeout")
        return self.sock.recv(READ_SIZE)

    def _flush(self) -> None:
        out = self.srv.data_to_send()
        if out:
            self.sock.sendall(out)

    def _send_final(self, reply: Reply) -> None:
        try:
            if self.srv is not None:
                self.srv.close(reply)
                self._flush()
            else:
                self.sock.sendall(reply.render(True))
        except (OSError, S.SMTPServerError):
            pass

    def _teardown(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
        try:
            # validate_dealloc runs for the modules that ran in this session, then the
            # engine forgets the session (run() ends it; end_session alone skipped dealloc)
            if self.vctx is not None:
                self.svc.engine().run("validate_dealloc", self.vctx)
        except Exception as exc:
            panic(f"policy teardown failed for {self.conn_id}: {exc!r}", subsystem="smtp")
            self.svc.engine().end_session(self.vctx)

    # -- decisions ----------------------------------------------------------------------
    def _decide(self, ev) -> None:
        handler = _HANDLERS.get(type(ev))
        try:
            reply, close = handler(self, ev) if handler else (None, False)
        except Rejected as rej:
            reply, close = rej.reply, rej.close
            self.last_module = rej.module
        said = reply if reply is not None else ev.default
        if said.code >= 400:              # a refusal, even when it is the default (AUTH 535)
            self._reject_log(ev.state, said, ev)
        self.srv.respond(reply, close=close)

    def _phase(self, phase: str, msg=None, arg=None, *, ac=True):
        engine = self.svc.engine()
        result = engine.run_settled(phase, self.vctx, self.ac if ac else None, msg, arg)
        if result.module:
            self.last_module = result.module
        if result.tarpit:
            gevent.sleep(result.tarpit)
        return result

    def _policy_reply(self, result, default=None):
        """(reply, close) a phase result asks for; None reply means the default."""
        if result.reply is None and not result.disconnect:
            if result.msg_code and result.msg_code[:1] in "45":
                return _code_reply(result.msg_code), False     # msg:code(4xx/5xx, ...)
            return None, False
        reply = _reply_of(result, default or INTERNAL_ERROR)
        return reply, result.disconnect

    def on_connect(self, ev):
        r = self._phase("validate_connect")
        # Nothing reads the socket before the banner, so the machine cannot see a client
        # that talks first: look for pending input once the connect phase (and its tarpit,
        # the pre-banner pause) is over.
        if self.srv.early_talker or self._input_pending():
            self.vctx.conn["early_talker"] = "yes"
        return self._policy_reply(r)

    def _input_pending(self) -> bool:
        # poll(), not select(): select() refuses descriptors >= 1024 (busy daemons have more).
        try:
            poller = gselect.poll()
            poller.register(self.sock, gselect.POLLIN)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return False

    def on_helo(self, ev):
        self.vctx.conn["ehlo_domain"] = ev.domain
        self.vctx.conn["ehlo_string"] = ev.raw
        r = self._phase("validate_ehlo", arg=ev.raw)
        return self._policy_reply(r)

    def on_auth(self, ev):
        source = self.opts.auth.get(ev.mechanism)
        ok = smtp_auth.verify(source, ev, self.svc.state_dir)
        conn = self.vctx.conn
        conn["auth_name"] = ev.mechanism
        conn["auth_status"] = "pass" if ok else "fail"
        if source is not None and source.log_authentication:
            bus.publish(records.Auth(time.time(), self.endpoint.address,
                                     f"{self.peer_ip}:{self.peer_port}", ev.authcid, ok))
        if not ok:
            self.auth_failures += 1
            if self.auth_failures >= MAX_AUTH_FAILURES:
                return S.R.AUTH_TOO_MANY, True
            return None, False                       # the machine's 535 default
        conn["auth_user"] = ev.authcid
        conn["can_relay"] = "true"
        return S.R.AUTH_OK, False

    def on_mail(self, ev):
        self._reset_transaction()
        self._check_reconfig()
        self.vctx.new_message()
        self._throttle()
        sender = _fmt_addr(ev.qualified)
        mess = self.vctx.mess
        mess["mailfrom_string"] = ev.raw
        mess["mailfrom_localpart"] = ev.qualified.localpart if not ev.qualified.is_null else ""
        mess["mailfrom_domain"] = ev.qualified.domain
        self.batch_id = new_id()
        self.mailfrom = sender
        self.mailfrom_sent = _fmt_addr(ev.address)
        self.mail_params = ev.params
        self.batch_msg = self._message(self.batch_id, "")
        r = self._phase("validate_mailfrom", arg=ev.raw)
        reply, close = self._policy_reply(r)
        if reply is not None and reply.code >= 400:
            self._reset_transaction()
        return reply, close

    def on_rcpt(self, ev):
        rcpt = _fmt_addr(ev.qualified)
        domain = ev.qualified.domain
        conn, mess = self.vctx.conn, self.vctx.mess
        mess["rcptto_string"] = ev.raw
        mess["rcptto_localpart"] = ev.qualified.localpart
        mess["rcptto_domain"] = domain
        if not self._relay_ok(domain):
            raise Rejected(S.R.RELAYING_DENIED)
        if self.svc.blackholed(domain):
            raise Rejected(S.R.RECIPIENT_BLACKHOLED)
        msg = self.batch_msg
        msg.rcptto = rcpt
        r = self._phase("validate_rcptto", msg=msg, arg=ev.raw)
        reply, close = self._policy_reply(r)
        if reply is not None and reply.code >= 400:
            return reply, close
        dsn = DsnParams(notify=tuple(ev.notify or ()), orcpt=_orcpt(ev.orcpt),
                        ret=self.mail_params.ret, envid=self.mail_params.envid)
        self.rcpts.append((msg.rcptto or rcpt, dsn))
        self.vctx.recipients.append(msg.rcptto or rcpt)
        n = int(conn.get("connection_rcpt_count", "0")) + 1
        conn["connection_rcpt_count"] = str(n)
        conn["message_rcpt_count"] = str(len(self.rcpts))
        return reply, close

    def _relay_ok(self, domain: str) -> bool:
        conn = self.vctx.conn
        if conn.get("can_relay") == "true" or self.opts.accepts_domain(domain):
            return True
        if self.opts.tls_verified_peer_can_relay and conn.get("tls_client_verified") == "yes":
            return True
        return self.opts.sender_can_relay(self.vctx.mess.get("mailfrom_domain", ""))

    def _rcpt_list_phases(self):
        r = self._phase("validate_rcptto_list", arg=list(self.vctx.recipients), ac=False)
        reply, close = self._policy_reply(r)
        if reply is None:
            r = self._phase("validate_rcptto_list_final", arg=list(self.vctx.recipients), ac=False)
            reply, close = self._policy_reply(r)
        return reply, close

    def on_data_start(self, ev):
        self.chunks = []
        reply, close = self._rcpt_list_phases()
        if not self.vctx.recipients and reply is None:
            reply = S.R.DATA_NO_RCPT
        return reply, close

    def on_data_end(self, ev):
        chunks, self.chunks = self.chunks, []
        try:
            if ev.facts.bdat:
                # BDAT has no DataStart decision: the recipient list phases run here.
                reply, close = self._rcpt_list_phases()
                if reply is not None and reply.code >= 400:
                    raise Rejected(reply, self.last_module, close)
                if not self.vctx.recipients:
                    raise Rejected(S.R.DATA_NO_RCPT)
            return self._accept(b"".join(chunks), ev.facts)
        finally:
            self._reset_transaction()

    def on_rset(self, ev):
        self._check_reconfig()
        self._reset_transaction()
        self.vctx.new_message()
        return None, False

    def on_xsetcontext(self, ev):
        for k, v in ev.pairs.items():
            self.vctx.conn[str(k)] = str(v)
        return None, False

    def on_xdumpcontext(self, ev):
        # esmtp_listener.extensions: "250-[connection] ehlo_domain there"
        lines = [f"[connection] {k} {v}" for k, v in self.vctx.conn.items()]
        lines += [f"[message] {k} {v}" for k, v in self.vctx.mess.items()]
        return Reply(250, "", "\n".join(lines + ["XDUMPCONTEXT complete"])), False

    def on_xclient(self, ev):
        # Trust is the operator's: XCLIENT is offered only where SMTP_Extensions lists it,
        # typically in a Peer scope for the relays allowed to use it (esmtp_listener.extensions).
        addr = ev.attrs.get("ADDR")
        if addr and addr not in ("[UNAVAILABLE]", "[TEMPUNAVAIL]"):
            self.peer_ip = addr.removeprefix("IPV6:")
        if ev.attrs.get("PORT", "").isdigit():
            self.peer_port = int(ev.attrs["PORT"])
        self.opts = self.svc.inbound(self.svc.config(), self.endpoint.address, self.peer_ip)
        self._new_context()
        return None, False

    def on_xremoteip(self, ev):
        # Offered only where SMTP_Extensions lists it (a trusted extension, like XCLIENT).
        # "as if the client originally connected from the provided IP address": the
        # Peer-scoped options and the relay decision follow the new address.
        self.peer_ip = ev.addr
        self.opts = self.svc.inbound(self.svc.config(), self.endpoint.address, self.peer_ip)
        self.ac.peer_addr = f"{self.peer_ip}:{self.peer_port}"
        conn = self.vctx.conn
        if self.opts.peer_can_relay(self.peer_ip) or conn.get("auth_status") == "pass":
            conn["can_relay"] = "true"
        else:
            conn.pop("can_relay", None)
        return None, False

    def on_starttls(self, ev):
        if not self.opts.server.tls_available:
            return Reply(454, "4.7.0", "TLS not available"), False
        return None, False

    # -- body, split, spool ------------------------------------------------------------------
    def _accept(self, data: bytes, facts):
        body = Body(data)
        o = self.opts
        if not body.headers() and o.rfc2822_missing_headers != "allow":
            raise Rejected(S.R.REQUIRED_HEADERS)
        now = time.time()
        self._header_rules(body, now)
        msg = self.batch_msg
        msg.body, msg.size, msg.received_at = body, len(body.data), now
        msg.rcptto = self.rcpts[0][0] if self.rcpts else ""
        for phase in ("validate_data", "validate_data_spool"):
            r = self._phase(phase, msg=msg)
            reply, close = self._policy_reply(r)
            if reply is not None and reply.code >= 400:
                raise Rejected(reply, r.module or "core", close)
            if r.discard:
                return self._discard_all(r.discard)
        self.vctx.finalize_recipients()
        instances, rejected = self._split(msg)
        if not instances:
            if rejected:
                raise Rejected(rejected[-1][1], rejected[-1][2])
            return self._discarded_reply(), False
        return self._commit(instances)

    def _header_rules(self, body: Body, now: float) -> None:
        o = self.opts
        if not body.has_header("Date"):
            self.vctx.mess["rfc2822_date_missing"] = "true"
            if o.rfc2822_date_header == "pedantic":
                raise Rejected(S.R.MISSING_DATE)
            if o.rfc2822_date_header == "ifneeded":
                body.add_header("Date", email.utils.formatdate(now, localtime=True))
        if o.rfc2822_messageid_header == "ifneeded" and not body.has_header("Message-ID"):
            body.add_header("Message-ID", message_id_header(self.batch_id, o.hostname))
        if o.rfc2822_trace_headers:
            body.remove_header("Return-Path")
            body.add_header("Received", self._received(now), prepend=True)
            # domain_for_unqualified_sender_address: "The trace headers, however, will
            # reflect the original MAIL FROM string."
            body.add_header("Return-Path", f"<{self.mailfrom_sent}>", prepend=True)

    def _received(self, now: float) -> str:
        o, conn = self.opts, self.vctx.conn
        helo = conn.get("ehlo_domain", "")
        proto = "ESMTP" if self.srv.esmtp else "SMTP"
        if conn.get("tls") == "on":
            proto += "S"
        if conn.get("auth_status") == "pass":
            proto += "A"
        return (f"from [{self.peer_ip}] ([{self.peer_ip}:{self.peer_port}]"
                + (f" helo={helo})" if helo else ")")
                + f"\r\n\tby {o.received_hostname} (envelope-from <{self.mailfrom_sent}>)"
                + f"\r\n\t({BANNER_VERSION}) with {proto}"
                + f"\r\n\tid {self.batch_id}; {email.utils.formatdate(now, localtime=True)}")

    def _message(self, msg_id: str, rcpt: str, dsn: DsnParams | None = None) -> MailMessage:
        return MailMessage(
            id=msg_id, batch_id=self.batch_id, conn_id=self.conn_id, mailfrom=self.mailfrom or "",
            rcptto=rcpt, protocol="esmtp", peer_ip=self.peer_ip, peer_port=self.peer_port,
            listener_addr=self.local, ctx_conn=self.vctx.conn, ctx_mess=self.vctx.mess,
            dsn=dsn or DsnParams(), auth_user=self.vctx.conn.get("auth_user", ""))

    def _split(self, batch: MailMessage):
        """One instance per recipient, through each_rcpt, set_binding and final validation."""
        instances, rejected = [], []
        for i, (rcpt, dsn) in enumerate(self.rcpts):
            if rcpt not in self.vctx.recipients:
                continue                  # removed by policy before the split
            m = self._message(self.batch_id if i == 0 else new_id(), rcpt, dsn)
            self._from_batch(m, batch)
            outcome = self._each_rcpt(m)
            if outcome is None:
                instances.append(m)
            elif outcome[0] == "reject":
                rejected.append((m, outcome[1], outcome[2]))
                self._reject_log("data", outcome[1], None, m)
        for rcpt in self.vctx.recipients:       # added by policy during data phases
            if all(rcpt != r for r, _ in self.rcpts):
                m = self._message(new_id(), rcpt)
                self._from_batch(m, batch)
                if self._each_rcpt(m) is None:
                    instances.append(m)
        return instances, rejected

    def _from_batch(self, m: MailMessage, batch: MailMessage) -> None:
        """What the batch phases decided for every recipient: content, sender
        (msg:mailfrom), routing domain (msg:routing_domain in validate_rcptto), contexts."""
        m.body, m.size, m.received_at = batch.body, batch.size, batch.received_at
        m.mailfrom = batch.mailfrom
        m.ctx_conn, m.ctx_mess = dict(self.vctx.conn), dict(self.vctx.mess)
        m.routing_domain = batch.routing_domain or m.rcpt_domain

    def _each_rcpt(self, m: MailMessage):
        r = self._phase("validate_data_spool_each_rcpt", msg=m)
        reply, _ = self._policy_reply(r)
        if reply is not None and reply.code >= 400:
            return ("reject", reply, r.module or "core")
        if r.discard:
            self._discard_log(m, r.discard)
            return ("discard",)
        self._phase("validate_set_binding", msg=m, ac=False)
        self._assign_binding(m)
        if m.binding == DEFAULT_BINDING and self.svc.default_binding() == "none":
            # default_binding = none: mail that falls into the default binding is refused
            # with a transient failure to the injector (conf.ref.default_binding).
            return ("reject", NO_DEFAULT_BINDING, "core")
        r = self._phase("core_final_validation", msg=m)
        reply, _ = self._policy_reply(r)
        if reply is not None and reply.code >= 400:
            return ("reject", reply, r.module or "core")
        return None

    def _assign_binding(self, m: MailMessage) -> None:
        m.binding = m.binding or DEFAULT_BINDING
        if m.binding_group in ("", None):
            m.binding_group = "default"
        if m.binding != DEFAULT_BINDING and m.binding_group == "default":
            m.binding_group = self.svc.group_of(m.binding)
        elif m.binding_group != "default" and self.svc.group_of(m.binding) != m.binding_group:
            # msg:binding_group("g") "sets the binding to one in the named binding_group"
            m.binding = self.svc.pick_binding(m.binding_group) or m.binding

    def _commit(self, instances):
        for m in instances:
            m.size = len(m.body.data)     # policy may have edited the content since DATA
        # out-of-band bounces for bounce_domains: classified and logged (stage 21);
        # bounce_behavior = blackhole disposes of them here (loggers/bounce_logger.py)
        oob = bounce_logger.InboundBounces(self.svc.config(), self.opts.bounce_domains, instances)
        for m in oob.blackholed:
            self._discard_log(m, bounce_logger.BLACKHOLE_REPLY)
        instances = oob.kept
        if not instances:
            return self._discarded_reply(), False
        # maildir / pipe_transport domains are delivered now instead of spooled; every one
        # must succeed before the 250, else its failure answers the message (nothing spooled)
        local = local_delivery.LocalDeliveries(self.svc.config(), self.svc.state_dir, instances)
        failure = local.run()
        if failure is not None:
            raise Rejected(failure, local.module)
        try:
            if local.spooled:
                self.svc.spool().commit(local.spooled).get()
        except Exception as exc:
            reply = getattr(exc, "reply", None)
            if reply is None:
                panic(f"spool commit failed for {self.batch_id}: {exc!r}", subsystem="spool")
                reply = "451 4.3.0 Requested action aborted: error in processing"
            code, _, text = str(reply).partition(" ")
            raise Rejected(Reply.parse(int(code), text), "spool")
        now = time.time()
        for m in instances:
            bus.publish(records.Reception(
                now, m.id, m.batch_id, m.conn_id, m.rcpt_localpart, m.rcpt_domain,
                m.sender_localpart, m.sender_domain, m.peer_ip, m.size, m.protocol,
                m.binding_group, m.binding, m.ctx_conn, m.ctx_mess, peer_port=m.peer_port,
                local=m.listener_addr, routing_domain=m.routing_domain,
                headers=records.pick_headers(m.body, records.NEEDS.headers)))
        local.log()
        oob.log()
        conn = self.vctx.conn
        conn["connection_message_count"] = str(int(conn.get("connection_message_count", "0")) + 1)
        self.svc.accepted(local.spooled)
        return local.reply or Reply(250, "2.0.0", f"OK queued as {self.batch_id}"), False

    def _discard_all(self, reason: str):
        for rcpt, dsn in self.rcpts:
            self._discard_log(self._message(self.batch_id, rcpt, dsn), reason)
        return self._discarded_reply(), False

    def _discarded_reply(self) -> Reply:
        # msg:discard: the sender sees an acceptance (lua.ref.msg_discard).
        return Reply(250, "2.0.0", f"OK queued as {self.batch_id}")

    def _discard_log(self, m: MailMessage, reason: str) -> None:
        code, _, text = str(reason).partition(" ")
        reply = Reply.parse(int(code) if code.isdigit() else 550, text if code.isdigit() else reason)
        self._reject_log("data", reply, None, m)

    # -- information events -------------------------------------------------------------------
    def _inform(self, ev) -> None:
        if isinstance(ev, S.DataChunk):
            self.chunks.append(ev.data)
        elif isinstance(ev, S.BodyAborted):
            self.chunks = []
        elif isinstance(ev, S.ProtocolError):
            self._reject_log(ev.state, ev.reply, ev)
        elif isinstance(ev, S.UpgradeTLS):
            self._flush()
            if not self._wrap_tls(initial=False):
                raise OSError("TLS handshake failed")
        elif isinstance(ev, S.EarlyTalker):
            self.vctx.conn["early_talker"] = "yes"
        elif isinstance(ev, S.StartTLSInjection) and ev.policy == "ignore":
            # reject: the ProtocolError that follows writes the one rejectlog line
            self._reject_log(ev.state, S.R.STARTTLS_INJECTION, ev,
                             text=f"STARTTLS command injection ({ev.nbytes} bytes, policy {ev.policy})")

    def _wrap_tls(self, initial: bool) -> bool:
        o = self.opts
        try:
            # Reading key and certificate files is disk work: the IO pool does it (cached after).
            ctx = pools.run("IO", tlsmod.server_context, o.tls_certificate, o.tls_key,
                            o.tls_client_ca, o.tls_verify_mode, o.tls_ciphers, o.tls_protocols)
            # A client that never finishes the handshake must not hold the session forever.
            self.sock.settimeout(o.idle_time or None)
            self.sock = ctx.wrap_socket(self.sock, server_side=True)
            self.sock.settimeout(None)
        except (OSError, tlsmod.TLSConfigError) as exc:
            # ssl.SSLError is an OSError: the client's side of a failed handshake.
            level = "ERROR" if isinstance(exc, tlsmod.TLSConfigError) else "WARNING"
            panic(f"TLS handshake with {self.peer_ip}:{self.peer_port} failed: {exc}",
                  subsystem="SSL", level=level)
            return False
        except Exception as exc:
            panic(f"TLS set-up for {self.peer_ip}:{self.peer_port} failed: {exc!r}",
                  subsystem="SSL", level="CRITICAL")
            return False
        self._tls_info = tlsmod.session_info(self.sock)
        if not initial:
            self.vctx.conn.update(self._tls_info)
            self.srv.tls_started(self._tls_info)
        return True

    # -- helpers --------------------------------------------------------------------------
    def _check_reconfig(self) -> None:
        cfg = self.svc.config()
        if cfg.generation != self.generation and self.svc.reconfig_pending(self.generation, cfg):
            self.srv.reconfig_pending = True

    def _throttle(self) -> None:
        rate = self.opts.inbound_throttle
        if rate:
            self.svc.throttle_wait(rate, self.opts.inbound_throttle_scope)

    def _reject_log(self, state: str, reply: Reply, ev=None, m: MailMessage | None = None,
                    text: str | None = None) -> None:
        if not bus.has_subscribers(records.Rejection):
            return
        o = self.opts
        mess = dict(self.vctx.mess) if self.vctx else {}
        conn = dict(self.vctx.conn) if self.vctx else {}
        full = text or (f"{reply.enhanced} {reply.text}".strip() if reply.enhanced else reply.text)
        bus.publish(records.Rejection(
            time.time(), f"{self.peer_ip}:{self.peer_port}", self.local, self.conn_id,
            o.pathway if o else "default", o.pathway_group if o else "default", state,
            reply.code, self.last_module, conn, mess, full, peer_ip=self.peer_ip,
            msg_id=m.id if m else "", batch_id=self.batch_id, rcptto=m.rcptto if m else "",
            mailfrom=self.mailfrom or "",
            command=getattr(ev, "command", "") or (type(ev).__name__ if ev is not None else "")))


def _code_reply(code: str) -> Reply:
    """The Reply of a normalised msg:code ("550 text" or "550-a\r\n550 b")."""
    lines = code.split("\r\n")
    texts = [ln[4:] for ln in lines]
    first = Reply.parse(int(lines[0][:3]), texts[0])
    if first.enhanced:
        texts = [first.text] + [t[len(first.enhanced) + 1:] if t.startswith(first.enhanced + " ")
                                else t for t in texts[1:]]
    else:
        texts[0] = first.text
    return Reply(first.code, first.enhanced, "\n".join(texts))


def _orcpt(value):
    if not value:
        return None
    if isinstance(value, tuple):
        return ";".join(str(v) for v in value)
    return str(value)


_HANDLERS = {
    S.Connect: SmtpSession.on_connect,
    S.Helo: SmtpSession.on_helo,
    S.AuthAttempt: SmtpSession.on_auth,
    S.MailFrom: SmtpSession.on_mail,
    S.RcptTo: SmtpSession.on_rcpt,
    S.DataStart: SmtpSession.on_data_start,
    S.DataEnd: SmtpSession.on_data_end,
    S.Rset: SmtpSession.on_rset,
    S.XSetContext: SmtpSession.on_xsetcontext,
    S.XDumpContext: SmtpSession.on_xdumpcontext,
    S.XClient: SmtpSession.on_xclient,
    S.XRemoteIP: SmtpSession.on_xremoteip,
    S.StartTLS: SmtpSession.on_starttls,
}
