"""exim_logger, postfix_logger, sendmail_logger: Momentum's records in other MTAs' log lines.

Owns: one renderer per format, their logger actor, and the plans the logging service
builds them from (`plans()`, called by custom_logger.build_log_modules). Each stanza has
`mainlog` (receptions, deliveries, failures, rejections) and `paniclog` (the daemon's
paniclog lines), `mainlog_mode` / `paniclog_mode` (octal, default 0644) and
`log_transient_failures` (default on), as their pages say. The lines are what those MTAs
write, so their log tools read them: pflogsumm, logwatch's postfix, exim and sendmail
services, eximstats.

Message ids: Momentum gives every recipient its own instance and id, and each instance is
logged as one message of the other MTA with one recipient. Ids are mapped, reversibly,
to the other MTA's id syntax:
- Postfix queue id: the id's hex digits without separators ("10/00-10012-D88AED05" ->
  "100010012D88AED05", 17 characters of [0-9A-F], Postfix's short queue-id alphabet);
- Exim message id (16 characters, `tttttt-pppppp-ss`, base 62): the slot, then the pid and
  the 16-bit counter (pid * 65536 + counter), then "00";
- sendmail queue id (`\\w{9}\\d{6}`): the slot and counter (slot * 65536 + counter) in 9
  base-62 characters, then the pid in 6 digits.

Line shapes (times in local time, host = the first label of `hostname`):
Postfix (syslog lines `Mmm dd hh:mm:ss host postfix/<daemon>[pid]: `):
  reception  smtpd   QID: client=unknown[ip][, sasl_method=M, sasl_username=U]
             cleanup QID: message-id=<...>
             qmgr    QID: from=<sender>, size=N, nrcpt=1 (queue active)
  delivery   smtp    QID: to=<rcpt>, relay=mx[ip]:port, delay=D, delays=D/0/0/0,
                       dsn=2.0.0, status=sent (reply)
             qmgr    QID: removed
  transient  smtp    QID: to=<rcpt>, relay=..., delay=D, delays=..., dsn=4.x.x,
                       status=deferred (host mx[ip] said: reply (in reply to RCPT TO command))
  permanent  smtp    ... status=bounced (...), then qmgr QID: removed
  rejection  smtpd   NOQUEUE: reject: RCPT from unknown[ip]: 554 5.7.1 text;
                       from=<s> to=<r> proto=ESMTP helo=<h>
  (bounces Momentum generates are received with protocol `internal`: no smtpd line;
  failures before any host answered are postfix/error lines with relay=none)
Exim (`YYYY-MM-DD hh:mm:ss `):
  reception  ID <= sender H=(helo) [ip]:port P=esmtp[s][a] [X=proto:cipher:bits]
               [A=mech:user] S=N [id=msgid] for rcpt
  delivery   ID => rcpt R=dnslookup T=remote_smtp H=mx [ip][:port] [X=... CV=yes|no]
               C="reply", then ID Completed
  transient  ID == rcpt R=dnslookup T=remote_smtp defer (-44) H=mx [ip]: SMTP error from
               remote mail server after RCPT TO:<rcpt>: reply
  permanent  ID ** rcpt R=dnslookup T=remote_smtp H=mx [ip]: SMTP error from remote mail
               server after ...: reply, then ID Completed
  rejection  H=(helo) [ip]:port F=<sender> rejected RCPT <rcpt>: text
               (MAIL, EHLO, connection, after DATA likewise)
sendmail (syslog lines `Mmm dd hh:mm:ss host sm-mta[pid]: `):
  reception  QID: from=<sender>, size=N, class=0, nrcpts=1, msgid=<...>, proto=ESMTP,
               daemon=MTA, relay=[ip]
  delivery   QID: to=<rcpt>, delay=hh:mm:ss, xdelay=00:00:00, mailer=esmtp, pri=P,
               relay=mx. [ip], dsn=2.0.0, stat=Sent (reply text)
  transient  ... dsn=4.x.x, stat=Deferred: reply
  permanent  ... dsn=5.x.x, stat=reply text
  rejection  NOQUEUE|QID: ruleset=check_rcpt, arg1=<rcpt>, relay=[ip], reject=550 5.7.1 text

Data from outside never breaks a line or a field: control characters become `?`
(Postfix's and sendmail's rule) or octal escapes (Exim's); in addresses `<` `>` (Postfix),
`,` `<` `>` (sendmail) and spaces (Exim, as `\\040`) are replaced the same way.
"""

from __future__ import annotations

import os
import re
import socket
import time

from ecmta.loggers import records
from ecmta.loggers.base import LoggerActor

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ID = re.compile(r"([0-9A-Fa-f]{2})/([0-9A-Fa-f]{2})-(\d{5})-([0-9A-Fa-f]{8})")
_ENHANCED = re.compile(r"^\s*(\d{3})(?:[ -]+([245]\.\d{1,3}\.\d{1,3}))?\s*(.*)$", re.S)


# -- ids ----------------------------------------------------------------------------------------

def _parts(msg_id: str) -> tuple[int, int, int]:
    """(slot, pid, counter) of a Momentum id; a stable stand-in for anything else."""
    m = _ID.fullmatch(msg_id or "")
    if m:
        counter = int((m.group(1) + m.group(2))[::-1], 16)
        return int(m.group(4)[::-1], 16), int(m.group(3)), counter
    h = 0
    for ch in (msg_id or "").encode():
        h = (h * 131 + ch) & 0xFFFFFFFFFFFF
    return h >> 16, 0, h & 0xFFFF


def _b62(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(_B62[r])
    return "".join(reversed(out))


def postfix_qid(msg_id: str) -> str:
    m = _ID.fullmatch(msg_id or "")
    if m:
        return "".join(m.groups()).upper()
    slot, pid, counter = _parts(msg_id)
    return f"{counter:04X}{pid:05d}{slot & 0xFFFFFFFF:08X}"


def exim_id(msg_id: str) -> str:
    slot, pid, counter = _parts(msg_id)
    return f"{_b62(slot, 6)}-{_b62(pid * 65536 + counter, 6)}-00"


def sendmail_qid(msg_id: str) -> str:
    slot, pid, counter = _parts(msg_id)
    return f"{_b62((slot << 16) | counter, 9)}{pid:06d}"


# -- shared facts -------------------------------------------------------------------------------

def split_reply(text: str) -> tuple[str, str, str]:
    """(code, enhanced, rest) of an SMTP reply as logged ("550 5.1.1 no such user")."""
    flat = " ".join(str(text or "").replace("\r", "\n").split("\n"))
    m = _ENHANCED.match(flat)
    if not m:
        return "", "", flat.strip()
    return m.group(1), m.group(2) or "", m.group(3).strip()


def dsn_of(text: str, default: str) -> str:
    code, enh, _ = split_reply(text)
    if enh:
        return enh
    if code[:1] in "245" and code:
        return f"{code[0]}.0.0"
    return default


def address(local: str, domain: str) -> str:
    return f"{local}@{domain}" if domain else (local or "")


def _flat(text) -> str:
    return " ".join(str(text or "").replace("\r", "\n").split("\n")).strip()


_CTRL = re.compile(r"[\x00-\x1f\x7f]")


def _q(text) -> str:
    """Postfix/sendmail printable(): control characters become '?'."""
    text = "" if text is None else str(text)
    return _CTRL.sub("?", text) if _CTRL.search(text) else text


_COMMANDS = {
    "Connect": "CONNECT", "Helo": "EHLO", "AuthAttempt": "AUTH", "MailFrom": "MAIL",
    "RcptTo": "RCPT", "DataStart": "DATA", "DataEnd": "END-OF-MESSAGE", "Rset": "RSET",
    "Noop": "NOOP", "Quit": "QUIT", "Vrfy": "VRFY", "Expn": "EXPN", "Help": "HELP",
    "StartTLS": "STARTTLS", "XClient": "XCLIENT", "XRemoteIP": "XREMOTEIP",
    "XSetContext": "XSETCONTEXT", "XDumpContext": "XDUMPCONTEXT", "ProtocolError": "UNKNOWN",
    "BodyAborted": "END-OF-MESSAGE",
}


def verb_of(rec: records.Rejection) -> str:
    """The refused command as SMTP names it (CONNECT for the connection itself)."""
    cmd = (rec.command or "").strip()
    if cmd in _COMMANDS:
        verb = _COMMANDS[cmd]
    elif cmd and cmd.isupper():
        verb = cmd.split()[0]
    elif rec.phase == "data" or rec.msg_id:
        verb = "END-OF-MESSAGE"
    elif rec.phase == "connect":
        verb = "CONNECT"
    else:
        verb = "UNKNOWN"
    if verb == "EHLO":
        ehlo = str((rec.ctx_conn or {}).get("ehlo_string", ""))
        if ehlo[:4].upper() == "HELO":
            verb = "HELO"
    if verb == "MAIL FROM":
        verb = "MAIL"
    if verb == "RCPT TO":
        verb = "RCPT"
    return verb


# the command a failure at a connection stage answered (log_formats.connection.stages)
_STAGE_COMMAND = {2: "MAIL FROM", 3: "MAIL FROM", 4: "RCPT TO", 5: "RCPT TO", 6: "DATA", 7: "DATA",
                  8: "end of DATA", 9: "end of DATA", 10: "EHLO", 11: "EHLO", 13: "RSET", 14: "RSET",
                  15: "STARTTLS", 16: "STARTTLS", 19: "XCLIENT", 20: "XCLIENT"}


def _smtp_said(rec) -> bool:
    """A failure the remote answered (not an internal or connection failure)."""
    return (bool(rec.remote_ip) and "[internal]" not in rec.response
            and (rec.stage in _STAGE_COMMAND or rec.stage == 12))


def _helo(rec) -> str:
    return str(getattr(rec, "ctx_conn", None) and rec.ctx_conn.get("ehlo_domain", "") or "")


def _esmtp(rec) -> bool:
    ehlo = str((getattr(rec, "ctx_conn", None) or {}).get("ehlo_string", ""))
    return ehlo[:4].upper() != "HELO" if ehlo else False


def _tls_in(rec) -> bool:
    return (getattr(rec, "ctx_conn", None) or {}).get("tls") == "on"


def _auth(rec) -> tuple[str, str]:
    conn = getattr(rec, "ctx_conn", None) or {}
    user = conn.get("auth_user", "")
    return (conn.get("auth_name", "") if user else ""), user


def _sender(rec) -> str:
    if isinstance(rec, records.Rejection):
        return rec.mailfrom or ""
    return address(rec.sender_local, rec.sender_domain)


def _rcpt(rec) -> str:
    if isinstance(rec, records.Rejection):
        if rec.rcptto:
            return rec.rcptto
        mess = rec.ctx_mess or {}
        return address(mess.get("rcptto_localpart", ""), mess.get("rcptto_domain", ""))
    return address(rec.rcpt_local, rec.rcpt_domain)


def syslog_stamp(ts: float) -> str:
    t = time.localtime(ts)
    return f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"


def short_hostname(name: str = "") -> str:
    name = (name or socket.gethostname() or "localhost").strip()
    return name.split(".")[0] or "localhost"


# -- Postfix ---------------------------------------------------------------------------------------

def _pf_addr(addr: str) -> str:
    return _q(addr).replace("<", "?").replace(">", "?")


def _pf_host(name: str) -> str:
    return re.sub(r"[\s,\[\]<>()]", "?", _q(name))


def _pf_delay(x: float) -> str:
    """Postfix's delay precision: 0, 0.03, 1.2, 13."""
    x = max(0.0, float(x or 0))
    if x >= 10:
        return str(int(round(x)))
    if x >= 1:
        return f"{x:.1f}".rstrip("0").rstrip(".")
    text = f"{x:.2f}".rstrip("0").rstrip(".")
    return text or "0"


class PostfixFormat:
    """Records -> Postfix log lines (`postfix/<daemon>[pid]: ...`)."""

    def __init__(self, hostname: str = "", pid: int | None = None) -> None:
        self.host = short_hostname(hostname)
        self.pid = pid or os.getpid()

    def _line(self, ts: float, daemon: str, text: str) -> str:
        return f"{syslog_stamp(ts)} {self.host} postfix/{daemon}[{self.pid}]: {text}"

    def _relay(self, rec, final_ok: bool) -> str:
        if rec.remote_ip:
            return f"{_pf_host(rec.mx_host) or rec.remote_ip}[{rec.remote_ip}]:{rec.remote_port or 25}"
        return "local" if final_ok and not rec.response else "none"

    def render(self, rec) -> list[str]:
        if isinstance(rec, records.Reception):
            qid = postfix_qid(rec.msg_id)
            out = []
            if rec.protocol != "internal":
                client = f"unknown[{rec.peer_ip}]"
                mech, user = _auth(rec)
                if user:
                    client += f", sasl_method={_q(mech)}, sasl_username={_q(user)}"
                out.append(self._line(rec.ts, "smtpd", f"{qid}: client={client}"))
            mid = (rec.headers or {}).get("message-id", "")
            out.append(self._line(rec.ts, "cleanup", f"{qid}: message-id={_q(_flat(mid)) or '<>'}"))
            out.append(self._line(rec.ts, "qmgr", f"{qid}: from=<{_pf_addr(_sender(rec))}>, "
                                                  f"size={rec.size}, nrcpt=1 (queue active)"))
            return out
        if isinstance(rec, records.Delivery):
            qid = postfix_qid(rec.msg_id)
            reply = _q(_flat(rec.response)) or "delivered"
            d = _pf_delay(rec.seconds)
            return [self._line(rec.ts, "smtp" if rec.remote_ip else "local",
                               f"{qid}: to=<{_pf_addr(_rcpt(rec))}>, relay={self._relay(rec, True)}, "
                               f"delay={d}, delays={d}/0/0/0, dsn={dsn_of(rec.response, '2.0.0')}, "
                               f"status=sent ({reply})"),
                    self._line(rec.ts, "qmgr", f"{qid}: removed")]
        if isinstance(rec, records.Failure):
            qid = postfix_qid(rec.msg_id)
            reply = _q(_flat(rec.response))
            if _smtp_said(rec):
                host = f"{_pf_host(rec.mx_host) or rec.remote_ip}[{rec.remote_ip}]"
                if rec.stage == 12:
                    detail = f"host {host} refused to talk to me: {reply}"
                else:
                    detail = (f"host {host} said: {reply} "
                              f"(in reply to {_STAGE_COMMAND[rec.stage]} command)")
            else:
                detail = reply
            d = _pf_delay(rec.seconds)
            status = "bounced" if rec.permanent else "deferred"
            line = self._line(rec.ts, "smtp" if rec.remote_ip else "error",
                              f"{qid}: to=<{_pf_addr(_rcpt(rec))}>, relay={self._relay(rec, False)}, "
                              f"delay={d}, delays={d}/0/0/0, "
                              f"dsn={dsn_of(rec.response, '5.0.0' if rec.permanent else '4.0.0')}, "
                              f"status={status} ({detail})")
            return [line, self._line(rec.ts, "qmgr", f"{qid}: removed")] if rec.permanent else [line]
        if isinstance(rec, records.Rejection):
            qid = postfix_qid(rec.msg_id) if rec.msg_id else "NOQUEUE"
            text = f"{rec.code} {_q(_flat(rec.text))}".strip()
            tail = []
            if rec.batch_id:
                tail.append(f"from=<{_pf_addr(_sender(rec))}>")
            rcpt = _rcpt(rec)
            if rcpt:
                tail.append(f"to=<{_pf_addr(rcpt)}>")
            tail.append("proto=ESMTP" if _esmtp(rec) else "proto=SMTP")
            helo = _helo(rec)
            if helo:
                tail.append(f"helo=<{_pf_addr(helo)}>")
            return [self._line(rec.ts, "smtpd", f"{qid}: reject: {verb_of(rec)} from "
                                                f"unknown[{rec.peer_ip}]: {text}; {' '.join(tail)}")]
        return []


# -- Exim ------------------------------------------------------------------------------------------

def _ex(text, space: bool = False) -> str:
    """Exim's string_printing(): \\n \\r \\t, other control and 8-bit bytes as \\ooo."""
    text = "" if text is None else str(text)
    out = []
    for ch in text:
        o = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif space and ch == " ":
            out.append("\\040")
        elif o < 32 or o == 127:
            out.append(f"\\{o:03o}")
        elif o > 127:
            out.extend(f"\\{b:03o}" for b in ch.encode("utf-8", "surrogateescape"))
        else:
            out.append(ch)
    return "".join(out)


def _ex_addr(addr: str) -> str:
    return _ex(addr, space=True) or "<>"


def _ex_stamp(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _ex_quoted(text) -> str:
    return '"' + _ex(_flat(text)).replace('"', '\\"') + '"'


class EximFormat:
    """Records -> Exim main log lines."""

    def __init__(self, hostname: str = "", pid: int | None = None) -> None:
        pass

    @staticmethod
    def _host_in(rec) -> str:
        helo = _helo(rec)
        port = f":{rec.peer_port}" if getattr(rec, "peer_port", 0) else ""
        if isinstance(rec, records.Rejection):
            port = f":{rec.remote.rpartition(':')[2]}" if ":" in rec.remote else ""
        ip = f"[{rec.peer_ip}]{port}"
        return f"({_ex(helo, space=True)}) {ip}" if helo else ip

    @staticmethod
    def _host_out(rec) -> str:
        port = f":{rec.remote_port}" if rec.remote_port and rec.remote_port != 25 else ""
        return f"H={_ex(rec.mx_host, space=True) or rec.remote_ip} [{rec.remote_ip}]{port}"

    @staticmethod
    def _tls_out(rec) -> str:
        tls = rec.tls
        if not tls:
            return ""
        cv = "yes" if tls.get("outbound_tls_verified") == "verified" else "no"
        return (f" X={_ex(tls.get('outbound_tls_protocol', ''), True)}:"
                f"{_ex(tls.get('outbound_tls_cipher', ''), True)}:"
                f"{_ex(tls.get('outbound_tls_cipher_usebits', ''), True)} CV={cv}")

    def _after(self, rec) -> str:
        cmd = _STAGE_COMMAND.get(rec.stage, "")
        if cmd == "MAIL FROM":
            return f"MAIL FROM:<{_ex_addr(_sender(rec)) if _sender(rec) else ''}>"
        if cmd == "RCPT TO":
            return f"RCPT TO:<{_ex_addr(_rcpt(rec))}>"
        if cmd == "end of DATA":
            return "end of data"
        return cmd or "initial connection"

    def render(self, rec) -> list[str]:
        if isinstance(rec, records.Reception):
            eid = exim_id(rec.msg_id)
            sender = _sender(rec)
            parts = [f"{_ex_stamp(rec.ts)} {eid} <= {_ex_addr(sender) if sender else '<>'}"]
            if rec.protocol == "internal":
                parts.append("U=ecelerity P=local")
            else:
                proto = "esmtp" if _esmtp(rec) else "smtp"
                conn = rec.ctx_conn or {}
                if _tls_in(rec):
                    proto += "s"
                mech, user = _auth(rec)
                if user:
                    proto += "a"
                parts.append(f"H={self._host_in(rec)} P={proto}")
                if _tls_in(rec):
                    parts.append(f"X={_ex(conn.get('tls_protocol', ''), True)}:"
                                 f"{_ex(conn.get('tls_cipher', ''), True)}:"
                                 f"{_ex(conn.get('tls_cipher_usebits', ''), True)}")
                if user:
                    parts.append(f"A={_ex(mech.lower(), True)}:{_ex(user, True)}")
            parts.append(f"S={rec.size}")
            mid = _flat((rec.headers or {}).get("message-id", "")).strip().strip("<>")
            if mid:
                parts.append(f"id={_ex(mid, space=True)}")
            parts.append(f"for {_ex_addr(_rcpt(rec))}")
            return [" ".join(parts)]
        if isinstance(rec, records.Delivery):
            eid, stamp = exim_id(rec.msg_id), _ex_stamp(rec.ts)
            if rec.remote_ip:
                line = (f"{stamp} {eid} => {_ex_addr(_rcpt(rec))} R=dnslookup T=remote_smtp "
                        f"{self._host_out(rec)}{self._tls_out(rec)}")
                if rec.response:
                    line += f" C={_ex_quoted(rec.response)}"
            else:
                line = f"{stamp} {eid} => {_ex_addr(_rcpt(rec))} R=local_user T=local_delivery"
            return [line, f"{stamp} {eid} Completed"]
        if isinstance(rec, records.Failure):
            eid, stamp = exim_id(rec.msg_id), _ex_stamp(rec.ts)
            reply = _ex(_flat(rec.response))
            rcpt = _ex_addr(_rcpt(rec))
            if rec.permanent:
                if _smtp_said(rec):
                    line = (f"{stamp} {eid} ** {rcpt} R=dnslookup T=remote_smtp {self._host_out(rec)}: "
                            f"SMTP error from remote mail server after {self._after(rec)}: {reply}")
                elif rec.remote_ip:
                    line = f"{stamp} {eid} ** {rcpt} R=dnslookup T=remote_smtp {self._host_out(rec)}: {reply}"
                else:
                    line = f"{stamp} {eid} ** {rcpt} R=dnslookup T=remote_smtp: {reply}"
                return [line, f"{stamp} {eid} Completed"]
            if _smtp_said(rec):
                errno = {"MAIL FROM": -45, "RCPT TO": -44, "DATA": -46, "end of DATA": -46}.get(
                    _STAGE_COMMAND.get(rec.stage, ""), -18)
                line = (f"{stamp} {eid} == {rcpt} R=dnslookup T=remote_smtp defer ({errno}) "
                        f"{self._host_out(rec)}: SMTP error from remote mail server after "
                        f"{self._after(rec)}: {reply}")
            elif rec.remote_ip:
                line = (f"{stamp} {eid} == {rcpt} R=dnslookup T=remote_smtp defer (-1) "
                        f"{self._host_out(rec)}: {reply}")
            else:
                line = f"{stamp} {eid} == {rcpt} R=dnslookup T=remote_smtp defer (-1): {reply}"
            return [line]
        if isinstance(rec, records.Rejection):
            stamp = _ex_stamp(rec.ts)
            _, _, text = split_reply(f"{rec.code} {rec.text}")
            text = _ex(text)
            rejected = "temporarily rejected" if 400 <= rec.code < 500 else "rejected"
            host = self._host_in(rec)
            verb = verb_of(rec)
            sender = _sender(rec)
            f_part = f" F=<{_ex_addr(sender) if sender else ''}>" if rec.batch_id else ""
            if verb == "CONNECT":
                return [f"{stamp} H={host} {rejected} connection in \"connect\" ACL: {text}"]
            if verb in ("EHLO", "HELO"):
                return [f"{stamp} {rejected} {verb} from {host}: {text}"]
            if verb == "MAIL":
                return [f"{stamp} H={host} {rejected} MAIL <{_ex_addr(sender) if sender else ''}>: {text}"]
            if verb == "RCPT":
                return [f"{stamp} H={host}{f_part} {rejected} RCPT <{_ex_addr(_rcpt(rec))}>: {text}"]
            if verb in ("DATA", "END-OF-MESSAGE"):
                ident = rec.msg_id or rec.batch_id
                eid = f" {exim_id(ident)}" if ident and verb == "END-OF-MESSAGE" else ""
                what = "after DATA" if verb == "END-OF-MESSAGE" else "DATA"
                return [f"{stamp}{eid} H={host}{f_part} {rejected} {what}: {text}"]
            return [f"{stamp} H={host}{f_part} {rejected} {verb}: {text}"]
        return []


# -- sendmail --------------------------------------------------------------------------------------

def _sm_addr(addr: str) -> str:
    return _q(addr).replace(",", "?").replace("<", "?").replace(">", "?")


def _sm_delay(seconds: float) -> str:
    s = int(max(0, seconds or 0))
    days, s = divmod(s, 86400)
    hms = f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{days}+{hms}" if days else hms


class SendmailFormat:
    """Records -> sendmail log lines (`sm-mta[pid]: QID: ...`)."""

    def __init__(self, hostname: str = "", pid: int | None = None) -> None:
        self.host = short_hostname(hostname)
        self.pid = pid or os.getpid()

    def _line(self, ts: float, text: str) -> str:
        return f"{syslog_stamp(ts)} {self.host} sm-mta[{self.pid}]: {text}"

    @staticmethod
    def _relay_out(rec) -> str:
        if not rec.remote_ip:
            return "local"
        host = re.sub(r"[\s,\[\]<>]", "?", _q(rec.mx_host))
        return f"{host + '.' if host else ''} [{rec.remote_ip}]".lstrip()

    def _to(self, rec, dsn: str, stat: str) -> str:
        local = isinstance(rec, records.Delivery) and not rec.remote_ip
        pri = 30000 + int(getattr(rec, "size", 0) or 0) + 90000 * int(rec.retries or 0)
        # a failure before any host answered names no relay, as sendmail's do
        relay = f"relay={self._relay_out(rec)}, " if rec.remote_ip or local else ""
        return (f"{sendmail_qid(rec.msg_id)}: to=<{_sm_addr(_rcpt(rec))}>, delay={_sm_delay(rec.seconds)}, "
                f"xdelay=00:00:00, mailer={'local' if local else 'esmtp'}, pri={pri}, {relay}"
                f"dsn={dsn}, stat={stat}")

    def render(self, rec) -> list[str]:
        if isinstance(rec, records.Reception):
            qid = sendmail_qid(rec.msg_id)
            fields = [f"from=<{_sm_addr(_sender(rec))}>", f"size={rec.size}", "class=0", "nrcpts=1"]
            mid = _flat((rec.headers or {}).get("message-id", ""))
            if mid:
                fields.append(f"msgid={_sm_addr(mid.strip().strip('<>')).join('<>')}")
            if rec.protocol == "internal":
                fields.append("relay=localhost")
            else:
                proto = "ESMTP" if _esmtp(rec) else "SMTP"
                if _tls_in(rec):
                    proto += "S"
                if _auth(rec)[1]:
                    proto += "A"
                fields += [f"proto={proto}", "daemon=MTA", f"relay=[{rec.peer_ip}]"]
            return [self._line(rec.ts, f"{qid}: {', '.join(fields)}")]
        if isinstance(rec, records.Delivery):
            _, _, text = split_reply(rec.response)
            stat = f"Sent ({_q(text)})" if text else "Sent"
            return [self._line(rec.ts, self._to(rec, dsn_of(rec.response, "2.0.0"), stat))]
        if isinstance(rec, records.Failure):
            code, enh, text = split_reply(rec.response)
            if rec.permanent:
                stat = _q(text) or "Service unavailable"
                dsn = dsn_of(rec.response, "5.0.0")
            else:
                stat = f"Deferred: {_q(_flat(rec.response))}"
                dsn = dsn_of(rec.response, "4.0.0")
            return [self._line(rec.ts, self._to(rec, dsn, stat))]
        if isinstance(rec, records.Rejection):
            verb = verb_of(rec)
            ident = rec.msg_id or rec.batch_id
            qid = sendmail_qid(ident) if ident else "NOQUEUE"
            reject = f"{rec.code} {_q(_flat(rec.text))}".strip()
            relay = f"relay=[{rec.peer_ip}]"
            if verb == "RCPT":
                body = f"ruleset=check_rcpt, arg1=<{_sm_addr(_rcpt(rec))}>, {relay}, reject={reject}"
            elif verb == "MAIL":
                body = f"ruleset=check_mail, arg1=<{_sm_addr(_sender(rec))}>, {relay}, reject={reject}"
            elif verb in ("DATA", "END-OF-MESSAGE"):
                body = f"Milter: data, reject={reject}"
            else:
                body = (f"ruleset=check_relay, arg1=[{rec.peer_ip}], arg2={rec.peer_ip}, {relay}, "
                        f"reject={reject}")
            return [self._line(rec.ts, f"{qid}: {body}")]
        return []


FORMATS = {"exim_logger": EximFormat, "postfix_logger": PostfixFormat, "sendmail_logger": SendmailFormat}
KINDS = (records.Reception, records.Delivery, records.Failure, records.Rejection)


class MtaLoggerActor(LoggerActor):
    """One exim_logger / postfix_logger / sendmail_logger instance: lines to its mainlog."""

    def __init__(self, name: str, writers: dict, fmt, log_transient: bool) -> None:
        super().__init__(name, writers)
        self.fmt = fmt
        self.log_transient = log_transient

    def render(self, rec):
        if isinstance(rec, records.Failure) and not rec.permanent and not self.log_transient:
            return
        for line in self.fmt.render(rec):
            yield "mainlog", line


def _opt(scope, name, default=None):
    value = scope.options.get(name) if scope is not None else None
    return default if value is None else value.value


def plans(cfg, state: str, destination) -> list:
    """Validated plans (custom_logger.Plan) of the exim/postfix/sendmail_logger stanzas."""
    from ecmta.loggers.custom_logger import Plan
    hostname = cfg.value("hostname", default="") if hasattr(cfg, "value") else ""
    out = []
    for module, cls in FORMATS.items():
        for scope in cfg.scopes(module):
            if not bool(_opt(scope, "enabled", True)):
                continue
            name = scope.name or module
            files, by_dest = {}, {}
            for key in ("mainlog", "paniclog"):
                raw = _opt(scope, key)
                if not raw:
                    continue
                dest = destination(raw, key, state)
                if repr(dest) in by_dest:
                    continue
                by_dest[repr(dest)] = key
                files[key] = (dest, key, _opt(scope, f"{key}_mode", 0o644))
            fmt = cls(str(hostname or ""))
            p = Plan(module, name, files, MtaLoggerActor,
                     (fmt, bool(_opt(scope, "log_transient_failures", True))),
                     KINDS if "mainlog" in files else ())
            if "paniclog" in files:
                p.panic_key = "paniclog"
            elif _opt(scope, "paniclog") and "mainlog" in files:
                p.panic_key = "mainlog"          # the same file as the mainlog
            if "mainlog" in files:
                p.headers = {"message-id"}
            out.append(p)
    return out
