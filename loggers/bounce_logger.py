"""bounce_logger and custom_bounce_logger (modules.bounce_logger, modules.custom_bounce_logger):
the bouncelog, and the out-of-band bounce path at reception.

Owns: the bouncelog line format (log_formats.bouncelog):

    ts@msgid@batchid@connid@B|T@rcpt_local@rcpt_domain@sender_local@sender_domain@
    binding_group@binding@stage@classification@size@remote_ip@raw_response

and the heartbeat `ts@@@@M1`; one `BounceLoggerActor` per stanza (records in by tell from
the log bus, lines out to its writer); the `OutOfBandBounce` record; `InboundBounces`,
what reception does with a message accepted for a `bounce_domains` domain.

In-band bounces are the permanent failures of delivery (`records.Failure`, stage from the
failure: B lines) and, with `log_transient_failures` (default on), its transient failures
(T lines). Out-of-band bounces (stage 21) are messages received for a bounce domain whose
envelope recipient matches `bounce_pattern` (all of them when it is unset) and whose
content reads as a bounce (a DSN, a mailer-daemon text, an auto-reply, a challenge-response
probe, a (un)subscribe request; loggers/bounce_classifier.py): the original recipient
comes from the notice (bounce_suppress_list honoured), the sender fields are the bounce's
envelope recipient (the "original sending" address), the remote IP is the peer that sent
it. `bounce_behavior = blackhole` (domain or global) disposes of such a message after it
is logged: the client gets 250, the rejectlog says "550 5.7.1 [internal] discarded by
policy", nothing is queued. Messages classified BC_SUBSCRIBE are never logged.
`bounce_pattern` also qualifies in-band bounces: when set for the recipient's domain (or
globally), only failures whose envelope sender matches it are logged (conf.ref.bounce_pattern:
"for in-band bounces, the 'original sending' email address is the envelope sender").

Fields are escaped as the mainlog's (formats.esc: `\\@`, `\\\\`, `\\n`, `\\r`, `\\t`, `\\xHH`), so a
line is always one line with 16 `@`-separated fields (17 with custom_bounce_logger's
`user_string`, whose macros expand to escaped values); `parse_line` undoes it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import gevent

from ecmta.loggers import bounce_classifier as BC
from ecmta.loggers import bus, formats, records
from ecmta.loggers.base import LoggerActor, attach

MODULES = ("bounce_logger", "custom_bounce_logger")
STAGE_OUT_OF_BAND = 21
HEARTBEAT_DEFAULT = 60
BLACKHOLE_REPLY = "550 5.7.1 [internal] discarded by policy"
SWITCH_DEFAULTS = {"log_inband_bounces": True, "log_outofband_bounces": True,
                   "log_transient_failures": True}


# -- the line format ----------------------------------------------------------------------------
def render_fields(ts, msg_id, batch_id, conn_id, kind, rcpt_local, rcpt_domain, sender_local,
                  sender_domain, binding_group, binding, stage, classification, size, remote_ip,
                  response, user_string: str | None = None) -> str:
    esc = formats.esc
    fields = [str(int(ts)), esc(msg_id), esc(batch_id), esc(conn_id), kind, esc(rcpt_local),
              esc(rcpt_domain), esc(sender_local), esc(sender_domain), esc(binding_group),
              esc(binding), str(int(stage)), str(int(classification)), str(int(size)),
              esc(remote_ip), esc(response)]
    if user_string is not None:
        fields.append(user_string)
    return "@".join(fields)


def heartbeat_line(ts: float) -> str:
    return f"{int(ts)}@@@@M1"


_UNESC = re.compile(r"\\(x[0-9a-fA-F]{2}|.)", re.S)
_UNESC_MAP = {"n": "\n", "r": "\r", "t": "\t"}


def unescape(field_text: str) -> str:
    def sub(m: re.Match) -> str:
        s = m.group(1)
        if len(s) == 3 and s[0] == "x":
            return chr(int(s[1:], 16))
        return _UNESC_MAP.get(s, s)
    return _UNESC.sub(sub, field_text)


_SPLIT = re.compile(r"((?:[^@\\]|\\.|\\$)*)(@|$)", re.S)


def parse_line(line: str) -> list[str]:
    """The fields of a bouncelog line, unescaped (what a log parser does)."""
    out, pos = [], 0
    while True:
        m = _SPLIT.match(line, pos)
        out.append(unescape(m.group(1)))
        if not m.group(2):
            return out
        pos = m.end()


def _split_addr(addr: str) -> tuple[str, str]:
    local, at, domain = (addr or "").rpartition("@")
    if not at:
        return addr or "", ""
    return local, domain.lower()


# -- the out-of-band record ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class OutOfBandBounce:
    """A bounce received out of band (stage 21), published by reception."""
    ts: float
    msg_id: str
    batch_id: str
    conn_id: str
    orig_rcpt: str                   # "" when none could be determined (class 30)
    bounce_rcpt: str                 # the bounce's envelope recipient: the original sender
    binding_group: str
    binding: str
    classification: int
    size: int
    remote_ip: str
    response: str
    mailfrom: str = ""               # the bounce's envelope sender (usually <>)
    ctx_conn: dict = field(default_factory=dict, compare=False)
    ctx_mess: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class _Heartbeat:
    ts: float


# -- user_string (custom_bounce_logger) ---------------------------------------------------------
_MACRO = re.compile(r"%\{[^}]*\}")
_CTRL = re.compile(r"[\\\x00-\x1f\x7f]")


def uses_contexts(user_string: str | None) -> bool:
    return bool(user_string) and bool(re.search(r"%\{\s*(vctx_|username|h\b)", user_string))


def expand_user_string(template: str, *, ctx_conn=None, ctx_mess=None, mailfrom="", rcptto="",
                       peer_ip="") -> str:
    """Macros (policy/macros.py) expanded to escaped values; the literal text is kept
    with its backslashes and control characters escaped (an `@` in it separates fields),
    so the result stays on the line."""
    from ecmta.policy.macros import expand
    conn, mess = dict(ctx_conn or {}), dict(ctx_mess or {})
    vctx = SimpleNamespace(conn=conn, mess=mess)
    msg = SimpleNamespace(mailfrom=mailfrom or "", rcptto=rcptto or "", peer_ip=peer_ip or "",
                          auth_user=conn.get("auth_user", ""), ctx_mess=mess)
    text = _CTRL.sub(lambda m: formats.esc(m.group(0)), template)
    return _MACRO.sub(lambda m: formats.esc(expand(m.group(0), vctx, msg)), text)


# -- the logger actor ---------------------------------------------------------------------------
class BounceLoggerActor(LoggerActor):
    """One bounce_logger / custom_bounce_logger instance: the bouncelog."""

    def __init__(self, name: str, writers: dict, switches: dict, heartbeat: float = HEARTBEAT_DEFAULT,
                 user_string: str | None = None, config=None) -> None:
        super().__init__(name, writers)
        self.switches = dict(SWITCH_DEFAULTS, **switches)
        self.heartbeat = float(heartbeat or 0)
        self.user_string = user_string
        self.config = config                 # a ConfigManager (bounce_pattern), or None
        self._beat = None
        self._patterns: dict = {}
        self._generation = None
        self.classified = 0

    def on_start(self) -> None:
        if self.heartbeat > 0 and "bouncelog" in self.writers:
            self._beat = gevent.spawn(self._beat_loop, self.actor_ref, self.heartbeat)

    def on_stop(self) -> None:
        if self._beat is not None:
            self._beat.kill(block=False)

    @staticmethod
    def _beat_loop(ref, every: float) -> None:
        while True:
            gevent.sleep(every)
            if not ref.is_alive():
                return
            ref.tell(_Heartbeat(time.time()))

    # -- rendering -----------------------------------------------------------------------------
    def render(self, rec):
        if isinstance(rec, records.Failure):
            line = self.inband(rec)
        elif isinstance(rec, OutOfBandBounce):
            line = self.out_of_band(rec)
        elif isinstance(rec, _Heartbeat):
            line = heartbeat_line(rec.ts)
        else:
            line = None
        if line is not None:
            yield "bouncelog", line

    def inband(self, rec: records.Failure) -> str | None:
        if not self.switches["log_inband_bounces" if rec.permanent else "log_transient_failures"]:
            return None
        sender = f"{rec.sender_local}@{rec.sender_domain}" if rec.sender_domain else rec.sender_local
        if not self._pattern_ok(rec.domain or rec.rcpt_domain, sender):
            return None
        result = BC.current().classify_smtp(rec.response, rec.domain)
        if result.code == BC.SUBSCRIBE:
            return None
        self.classified += 1
        user = None
        if self.user_string is not None:
            rcpt = f"{rec.rcpt_local}@{rec.rcpt_domain}" if rec.rcpt_domain else rec.rcpt_local
            user = expand_user_string(self.user_string, ctx_conn=rec.ctx_conn, ctx_mess=rec.ctx_mess,
                                      mailfrom=sender, rcptto=rcpt, peer_ip=rec.peer_ip)
        return render_fields(rec.ts, rec.msg_id, rec.batch_id, rec.conn_id,
                             "B" if rec.permanent else "T", rec.rcpt_local, rec.rcpt_domain,
                             rec.sender_local, rec.sender_domain, rec.binding_group, rec.binding,
                             rec.stage, result.code, rec.size, rec.remote_ip, rec.response, user)

    def out_of_band(self, rec: OutOfBandBounce) -> str | None:
        if not self.switches["log_outofband_bounces"] or rec.classification == BC.SUBSCRIBE:
            return None
        self.classified += 1
        rl, rd = _split_addr(rec.orig_rcpt)
        sl, sd = _split_addr(rec.bounce_rcpt)
        user = None
        if self.user_string is not None:
            user = expand_user_string(self.user_string, ctx_conn=rec.ctx_conn, ctx_mess=rec.ctx_mess,
                                      mailfrom=rec.mailfrom, rcptto=rec.bounce_rcpt,
                                      peer_ip=rec.remote_ip)
        return render_fields(rec.ts, rec.msg_id, rec.batch_id, rec.conn_id, "B", rl, rd, sl, sd,
                             rec.binding_group, rec.binding, STAGE_OUT_OF_BAND, rec.classification,
                             rec.size, rec.remote_ip, rec.response, user)

    def _pattern_ok(self, domain: str, sender: str) -> bool:
        if self.config is None:
            return True
        cfg = self.config.current
        if cfg.generation != self._generation:
            self._generation, self._patterns = cfg.generation, {}
        rx = self._patterns.get(domain, False)
        if rx is False:
            rx = bounce_pattern(cfg, domain)
            self._patterns[domain] = rx
        return rx is None or rx.search(sender) is not None


# -- configuration ------------------------------------------------------------------------------
def bounce_pattern(cfg, domain: str | None):
    """The compiled bounce_pattern for a domain (domain scope, else global), None if unset."""
    from ecmta.config import EvalContext
    raw = cfg.value("bounce_pattern", EvalContext(domain=domain or None))
    if not raw:
        return None
    try:
        return re.compile(str(raw))
    except re.error:
        return None          # refused when the configuration was applied (check_patterns)


def check_patterns(cfg) -> None:
    """Every bounce_pattern of a configuration must compile (raises LogConfigError)."""
    from ecmta.loggers.ec_logger import LogConfigError
    scopes = [cfg.root, *cfg.scopes("domain")]
    for scope in scopes:
        value = scope.options.get("bounce_pattern")
        if value is None or not value.value:
            continue
        try:
            re.compile(str(value.value))
        except re.error as exc:
            raise LogConfigError(f"bounce_pattern = \"{value.value}\": not a valid regular "
                                 f"expression ({exc})") from None


def _opt(scope, name, default=None):
    value = scope.options.get(name) if scope is not None else None
    return default if value is None else value.value


_refresher = None


def _start_refresh(clf, files) -> None:
    global _refresher
    if _refresher is not None:
        _refresher.kill(block=False)
        _refresher = None
    if files is None or files.refresh <= 0:
        return

    def loop():
        from ecmta.loggers.panic import panic
        while True:
            gevent.sleep(files.refresh)
            try:
                for problem in BC.refresh(clf, files):
                    panic(problem, subsystem=BC.MODULE, level="WARNING")
            except Exception as exc:      # a failed refresh keeps the rules it had
                panic(f"{BC.MODULE}: refresh failed: {exc!r}", subsystem=BC.MODULE)
    _refresher = gevent.spawn(loop)


def build_instances(service, cfg, state_dir: str) -> list:
    """The bounce loggers of a configuration, as ec_logger instances of the logging service
    (loggers/ec_logger.py LoggingService: reopen, flush and teardown treat them alike).
    Also installs the configuration's classifier. Raises LogConfigError."""
    from ecmta.loggers.ec_logger import LogConfigError, _Instance, destination
    from ecmta.loggers.panic import panic
    check_patterns(cfg)
    try:
        clf, files, problems = BC.configure(cfg, state_dir)
    except BC.ClassifierConfigError as exc:
        raise LogConfigError(str(exc)) from None
    out = []
    for module in MODULES:
        for scope in cfg.scopes(module):
            if _opt(scope, "enabled", True) is False:
                continue
            writers = {}
            raw = _opt(scope, "bouncelog")
            if raw:
                mode = _opt(scope, "bouncelog_mode", 0o644)
                writers["bouncelog"] = service._writer(destination(str(raw), "bouncelog", state_dir),
                                                       "bouncelog", mode)
            switches = {name: bool(_opt(scope, name, default))
                        for name, default in SWITCH_DEFAULTS.items()}
            user_string = None
            if module == "custom_bounce_logger":
                user_string = str(_opt(scope, "user_string", "") or "")
                if uses_contexts(user_string):
                    # the delivery service keeps each message's contexts for its T/P records
                    records.NEEDS.delivery_ctx = True
            inst = _Instance(scope.name or module, writers, switches, [])
            if writers:
                heartbeat = float(_opt(scope, "heartbeat", HEARTBEAT_DEFAULT) or 0)
                ref = service.spawn_logger(BounceLoggerActor, inst.name, writers, switches,
                                           heartbeat, user_string, service.daemon.config,
                                           kind=module)
                inst.actor = ref
                inst.handles.append(attach(ref, _kinds(switches)))
            out.append(inst)
    for problem in problems:
        panic(problem, subsystem=BC.MODULE, level="WARNING")
    BC.install(clf)
    _start_refresh(clf, files)
    return out


def _kinds(switches: dict) -> tuple:
    kinds = []
    if switches["log_inband_bounces"] or switches["log_transient_failures"]:
        kinds.append(records.Failure)
    if switches["log_outofband_bounces"]:
        kinds.append(OutOfBandBounce)
    return tuple(kinds)


# -- the out-of-band path at reception ----------------------------------------------------------
class InboundBounces:
    """What reception does with the instances of one message before committing them
    (actors/reception.py `_commit`): bounces for a bounce domain are classified;
    `blackholed` ones are logged now and must not be committed, `kept` ones are committed
    as usual and logged by `log()` once they are."""

    def __init__(self, cfg, bounce_domains, instances) -> None:
        self.kept = list(instances)
        self.blackholed: list = []
        self._pending: list[OutOfBandBounce] = []
        if not bounce_domains:
            return
        from ecmta import pools
        from ecmta.actors.inbound import glob_match
        from ecmta.config import EvalContext
        from ecmta.loggers.panic import panic
        suppress = BC.parse_suppress_list(cfg.value("bounce_suppress_list", default="") or "")
        clf = BC.current()
        kept, notices = [], {}
        for m in instances:
            if m.body is None or not glob_match(m.rcpt_domain, bounce_domains):
                kept.append(m)
                continue
            ctx = EvalContext(domain=m.rcpt_domain)
            rx = bounce_pattern(cfg, m.rcpt_domain)
            if rx is not None and rx.search(m.rcptto) is None:
                kept.append(m)
                continue
            key = (id(m.body), m.rcptto.lower())
            if key not in notices:
                try:
                    notices[key] = pools.run("CPU", BC.analyze_message, m.body.data, m.rcptto,
                                             m.mailfrom, suppress)
                except Exception as exc:      # never refuse a message over its reading
                    panic(f"bounce: reading {m.id} as a bounce failed: {exc!r}", subsystem="bounce")
                    notices[key] = None
            notice = notices[key]
            if notice is None:
                kept.append(m)
                continue
            result = clf.classify_mdn(notice)
            rec = OutOfBandBounce(time.time(), m.id, m.batch_id, m.conn_id, notice.orig_rcpt,
                                  m.rcptto, m.binding_group, m.binding, result.code, m.size,
                                  m.peer_ip, notice.text, m.mailfrom, m.ctx_conn, m.ctx_mess)
            if str(cfg.value("bounce_behavior", ctx, default="pass") or "pass").lower() == "blackhole":
                self.blackholed.append(m)
                bus.publish(rec)
            else:
                kept.append(m)
                self._pending.append(rec)
        self.kept = kept

    def log(self) -> None:
        """The bouncelog records of the bounces kept, once they are committed."""
        pending, self._pending = self._pending, []
        for rec in pending:
            bus.publish(rec)
