"""The Python half of the Lua objects `vctx`, `ac` and `msg`.

Owns: `CalloutCtx` (what one phase run exposes as `msg`: the MailMessage plus the phase,
the discard reason and message code policy set) and the functions the Lua proxies of
policy/lua/ecmta/bootstrap.lua call, one per method, named `<object>_<method>`.

Conventions: called from Lua through lupa (`encoding=None`): strings arrive as bytes and go
back as bytes (policy.msys.s/b). A misuse raises an exception whose text names the Lua
function; lupa turns it into a Lua error in the calling script, which the engine logs to
the paniclog and answers with a 4xx. Nothing here waits or switches greenlets.

Message content: `Body` instances are shared by every recipient of a batch. In the
per-recipient phases (each_rcpt, set_binding, final validation) the first edit of a
message gives it its own copy; in batch phases (data, data_spool) edits apply to the batch.
Header injection is refused by `Body` (bare CR/LF), and reported as a Lua error.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import quopri
import re

from ecmta.actors.mail import Body, split_address
from ecmta.policy.context import POST_SPLIT_PHASES, PolicyUsageError, split_hostport
from ecmta.policy.msys import (ENV_COMPLETE, ENV_FROM, ENV_TO, VCTX_CONN, VCTX_MESS, b,
                               lua_number_text, s)

DISCARD_DEFAULT = "550 5.7.0 discarded by policy"
DISCARD_NOT_SMTP = "550 5.7.1 [internal] discarded by policy"
_SMTP_CODE = re.compile(r"^[2-5]\d\d(?:[ -]|$)")


class CalloutCtx:
    """One phase run as the Lua `msg` sees it (also the runtime's `current`)."""

    __slots__ = ("vctx", "ac", "msg", "phase", "discard", "msg_code", "engine", "owned",
                 "async_jobs", "module")

    def __init__(self, engine, phase, vctx, ac, msg, owned) -> None:
        self.engine = engine
        self.phase = phase
        self.vctx = vctx
        self.ac = ac
        self.msg = msg
        self.discard: str | None = None
        self.msg_code: str | None = None
        self.owned = owned            # id(msg) -> Body this message owns (copy-on-write)
        self.async_jobs: list = []    # msys.runInPool(pool, fn, true|completion)
        self.module: str | None = None


# -- values ------------------------------------------------------------------------------
def ctx_value(value, fn: str) -> str | None:
    """A Lua value stored in a context dictionary: strings, numbers, booleans."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return s(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return lua_number_text(value)
    raise PolicyUsageError(f"{fn}: the value must be a string or a number")


def _dict(mess: dict, conn: dict, which, fn: str) -> dict:
    if which == VCTX_MESS:
        return mess
    if which == VCTX_CONN:
        return conn
    raise PolicyUsageError(f"{fn}: type must be msys.core.VCTX_MESS or msys.core.VCTX_CONN")


def _key(key, fn: str) -> str:
    if key is None:
        raise PolicyUsageError(f"{fn}: a key is required")
    return s(key)


# -- vctx --------------------------------------------------------------------------------
def vctx_get(v, which, key):
    d = _dict(v.mess, v.conn, which, "vctx:get")
    return b(d.get(_key(key, "vctx:get")))


def vctx_set(v, which, key, value):
    d = _dict(v.mess, v.conn, which, "vctx:set")
    k = _key(key, "vctx:set")
    text = ctx_value(value, "vctx:set")
    if text is None:
        d.pop(k, None)
    else:
        d[k] = text


def vctx_set_code(v, code, message):
    v.set_code(s(code), s(message) if message is not None else "")


def vctx_disconnect(v, code, message):
    v.disconnect(s(code), s(message) if message is not None else "")


def vctx_tarpit(v, seconds):
    if seconds is None:
        raise PolicyUsageError("vctx:tarpit: the interval must be a number")
    v.set_tarpit(seconds)


def _addrs(values, fn: str) -> list[str]:
    out = [s(a) for a in values if a is not None]
    if not out:
        raise PolicyUsageError(f"{fn}: an address or a table of addresses is required")
    return out


def vctx_add_recipient(v, *addrs):
    v.add_recipient(_addrs(addrs, "vctx:add_recipient"))


def vctx_remove_recipient(v, *addrs):
    v.remove_recipient(_addrs(addrs, "vctx:remove_recipient"))


def _no_list_in_rcptto(v, fn: str):
    if v.phase == "validate_rcptto":
        raise PolicyUsageError(f"vctx:{fn} must not be called in validate_rcptto")


def vctx_recipient_list(v):
    _no_list_in_rcptto(v, "recipient_list")
    return tuple(b(r) for r in v.recipients)


def vctx_set_recipients(v, *addrs):
    _no_list_in_rcptto(v, "recipient_list")
    v.set_recipients([s(a) for a in addrs if a is not None])


# -- ac ----------------------------------------------------------------------------------
def ac_cap_add(a, name):
    if name is None:
        raise PolicyUsageError("ac:esmtp_capability_add: a capability name is required")
    a.add_capability(s(name))


def ac_cap_remove(a, name):
    if name is None:
        raise PolicyUsageError("ac:esmtp_capability_remove: a capability name is required")
    a.remove_capability(s(name))


def ac_session_count(a, cidr, service):
    if a.session_count is None:
        raise PolicyUsageError("ac:inbound_session_count: this listener keeps no session count")
    return int(a.session_count(s(cidr) if cidr is not None else None,
                               s(service) if service is not None else "SMTP"))


# -- msg: helpers ------------------------------------------------------------------------
def _content(c: CalloutCtx, fn: str) -> Body:
    body = c.msg.body
    if body is None:
        raise PolicyUsageError(f"msg:{fn}: the message content is not available in {c.phase}")
    return body


def _writable(c: CalloutCtx, fn: str) -> Body:
    """The Body to edit: per-recipient phases copy a shared body on first write."""
    body = _content(c, fn)
    if c.phase in POST_SPLIT_PHASES and c.owned.get(id(c.msg)) is not body:
        body = body.copy()
        c.msg.body = body
        c.owned[id(c.msg)] = body
    return body


def _forbid_in_set_binding(c: CalloutCtx, fn: str):
    if c.phase == "validate_set_binding":
        raise PolicyUsageError(f"msg:{fn} must not be called from validate_set_binding")


def _crlf(data: bytes) -> bytes:
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


# -- msg: headers ------------------------------------------------------------------------
def _decode_header(value: str) -> str:
    unfolded = re.sub(r"\r?\n(?=[ \t])", "", value)
    if "=?" not in unfolded:
        return unfolded
    try:
        return str(email.header.make_header(email.header.decode_header(unfolded)))
    except (ValueError, LookupError, UnicodeError):
        return unfolded


def _encode_header(name: str, value: str) -> str:
    if value.isascii():
        return value
    return email.header.Header(value, "utf-8", header_name=name).encode(linesep="\r\n")


def msg_header_get(c, name):
    if not name:
        raise PolicyUsageError("msg:header: a header name is required")
    return tuple(b(_decode_header(v)) for v in _content(c, "header").get_header(s(name)))


def msg_header_set(c, name, mode, *values):
    if not name:
        raise PolicyUsageError("msg:header: a header name is required")
    hname = s(name)
    how = s(mode).lower() if mode is not None else "replace"
    if how not in ("replace", "append", "prepend"):
        raise PolicyUsageError(f"msg:header: unknown mode {how!r} (replace, append or prepend)")
    texts = [s(v) for v in values if v is not None]
    body = _writable(c, "header")
    try:
        if texts == [""]:                  # msg:header(name, "") deletes
            body.remove_header(hname)
            return True
        encoded = [_encode_header(hname, t) for t in texts]
        if how == "replace":
            body.remove_header(hname)
        for text in (reversed(encoded) if how == "prepend" else encoded):
            body.add_header(hname, text, prepend=(how == "prepend"))
    except ValueError as exc:
        raise PolicyUsageError(f"msg:header: {exc}") from None
    return True


# -- msg: envelope -----------------------------------------------------------------------
def msg_mailfrom(c, value):
    if value is not None:
        c.msg.mailfrom = s(value)
    return b(c.msg.mailfrom)


def msg_rcptto(c, value):
    if value is not None:
        if c.phase not in POST_SPLIT_PHASES:
            raise PolicyUsageError("msg:rcptto: the recipient can only be changed in "
                                   "validate_data_spool_each_rcpt or later")
        c.msg.rcptto = s(value)
    return b(c.msg.rcptto)


def msg_envelope(c, flags):
    flags = int(flags or 0)
    if (flags & ENV_FROM) and (flags & ENV_TO):
        raise PolicyUsageError("msg:get_envelope2: EC_MSG_ENV_FROM | EC_MSG_ENV_TO is not valid")
    if not flags & (ENV_FROM | ENV_TO):
        raise PolicyUsageError("msg:get_envelope2: flags need EC_MSG_ENV_FROM or EC_MSG_ENV_TO")
    addr = c.msg.mailfrom if flags & ENV_FROM else c.msg.rcptto
    if flags & ENV_COMPLETE:
        return b(addr), None
    local, domain = split_address(addr)
    return b(local), b(domain)


# -- msg: context ------------------------------------------------------------------------
def _mdict(c, which, fn):
    return _dict(c.msg.ctx_mess, c.msg.ctx_conn, which, fn)


def msg_ctx_get(c, which, key):
    return b(_mdict(c, which, "msg:context_get").get(_key(key, "msg:context_get"), ""))


def msg_ctx_set(c, which, key, value):
    d = _mdict(c, which, "msg:context_set")
    k = _key(key, "msg:context_set")
    text = ctx_value(value, "msg:context_set")
    if text is None:
        d.pop(k, None)
    else:
        d[k] = text


def msg_ctx_exists(c, which, key):
    return 1 if _key(key, "msg:context_exists") in _mdict(c, which, "msg:context_exists") else 0


def msg_ctx_delete(c, which, key):
    d = _mdict(c, which, "msg:context_delete")
    return 1 if d.pop(_key(key, "msg:context_delete"), None) is not None else 0


def msg_ctx_exists_and_get(c, which, key):
    d = _mdict(c, which, "msg:context_exists_and_get")
    k = _key(key, "msg:context_exists_and_get")
    return (1, b(d[k])) if k in d else (0, None)


# -- msg: content ------------------------------------------------------------------------
def msg_body(c, value):
    if value is None:
        return _content(c, "body").body
    data = _crlf(value)
    if data.endswith(b"\r\n.\r\n"):        # callers append the end-of-data marker
        data = data[:-3]
    elif data == b".\r\n":
        data = b""
    _writable(c, "body").set_body(data)
    return data


def msg_raw(c, value):
    if value is None:
        return _content(c, "raw").data
    _content(c, "raw")
    body = Body(_crlf(value))
    c.msg.body = body
    if c.phase in POST_SPLIT_PHASES:
        c.owned[id(c.msg)] = body
    return body.data


def msg_text_get(c):
    parsed = email.message_from_bytes(_content(c, "text").data, policy=email.policy.compat32)
    out = []
    for part in parsed.walk():
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        payload = part.get_payload(decode=True) or b""
        charset = part.get_content_charset() or "us-ascii"
        try:
            text = payload.decode(charset, "replace")
        except (LookupError, ValueError):    # unknown, or a codec without "replace" (idna)
            text = payload.decode("utf-8", "replace")
        out.append(text.encode("utf-8"))
    return tuple(out)


def msg_text_set(c, value, ctype, charset):
    ctype_s = s(ctype) if ctype else "text/plain"
    cs = s(charset) if charset else "utf-8"
    try:
        encoded = s(value).encode(cs)
    except (LookupError, UnicodeError) as exc:
        raise PolicyUsageError(f"msg:text: cannot encode the text as {cs}: {exc}") from None
    qp = quopri.encodestring(_crlf(encoded).replace(b"\r\n", b"\n")).replace(b"\n", b"\r\n")
    body = _writable(c, "text")
    try:
        body.set_header("Content-Type", f"{ctype_s}; charset=\"{cs}\"")
        body.set_header("Content-Transfer-Encoding", "quoted-printable")
        if not body.has_header("MIME-Version"):
            body.add_header("MIME-Version", "1.0")
    except ValueError as exc:
        raise PolicyUsageError(f"msg:text: {exc}") from None
    body.set_body(qp if qp.endswith(b"\r\n") else qp + b"\r\n")
    return True


def msg_size(c):
    return len(c.msg.body) if c.msg.body is not None else int(c.msg.size)


# -- msg: disposition --------------------------------------------------------------------
def msg_discard(c, reason):
    _forbid_in_set_binding(c, "discard")
    text = s(reason).strip() if reason is not None else ""
    if not text:
        text = DISCARD_DEFAULT
    elif not _SMTP_CODE.match(text):
        text = DISCARD_NOT_SMTP
    c.discard = text


def normalize_code(number, text) -> str:
    """msg:code's setter: `number` 0 takes the code from `text`; lines become a valid
    (multi-line) SMTP response "550-a\\r\\n550 b"."""
    lines = (text or "").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    while len(lines) > 1 and lines[-1] == "":
        lines.pop()
    num = number
    if not num:
        m = re.match(r"^([2-5]\d\d)(?:[ -]|$)", lines[0])
        if not m:
            raise PolicyUsageError(f"msg:code: no SMTP code at the start of {text!r}")
        num = int(m.group(1))
    if not 200 <= num <= 599:
        raise PolicyUsageError(f"msg:code: invalid SMTP code {num}")
    code = str(num)
    body = [ln[4:] if ln[:3] == code and ln[3:4] in (" ", "-") else
            (ln[3:] if ln == code else ln) for ln in lines]
    return "\r\n".join(f"{code}-{ln}" for ln in body[:-1]) + \
        ("\r\n" if len(body) > 1 else "") + f"{code} {body[-1]}".rstrip()


def msg_code(c, number, text):
    _forbid_in_set_binding(c, "code")
    if number is None and text is None:
        return b(c.msg.code)
    try:
        num = int(s(number)) if number is not None and s(number).strip() else 0
    except ValueError:
        raise PolicyUsageError(f"msg:code: invalid SMTP code {s(number)!r}") from None
    code = normalize_code(num, s(text) if text is not None else "")
    c.msg.code = code
    c.msg_code = code
    return b(code)


# -- msg: routing ------------------------------------------------------------------------
def msg_routing_domain(c, value):
    if value is not None:
        c.msg.routing_domain = s(value).lower()
    return b(c.msg.routing_domain or c.msg.rcpt_domain)


def _set_binding_only(c, fn: str):
    if c.phase != "validate_set_binding":
        raise PolicyUsageError(f"msg:{fn} can only set a binding in validate_set_binding")


def msg_binding(c, value):
    if value is None:
        return b(c.msg.binding) if c.msg.binding else None
    _set_binding_only(c, "binding")
    name = s(value)
    if not c.engine.binding_exists(name):
        return None
    c.msg.binding = name
    return b(name)


def msg_binding_group(c, value):
    if value is None:
        return b(c.msg.binding_group) if c.msg.binding_group else None
    _set_binding_only(c, "binding_group")
    name = s(value)
    if not c.engine.binding_group_exists(name):
        return None
    c.msg.binding_group = name
    return b(name)


# -- msg: addresses and fields -----------------------------------------------------------
def _addr_part(ip: str, port, flag, fn: str):
    which = s(flag).lower() if flag is not None else "all"
    if which == "ip":
        return b(ip)
    if which == "port":
        return b(str(port))
    if which == "all":
        return b(f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}")
    raise PolicyUsageError(f"msg:{fn}: flag must be 'ip', 'port' or 'all'")


def msg_listener_addr(c, flag):
    ip, port = split_hostport(c.msg.listener_addr)
    return _addr_part(ip, port, flag, "listener_addr")


def msg_reception_peer(c, flag):
    return _addr_part(c.msg.peer_ip, c.msg.peer_port, flag, "reception_peer")


def msg_field(c, key):
    name = s(key)
    if name == "priority":
        return int(c.msg.priority)
    return b(getattr(c.msg, name))


def msg_set_priority(c, value):
    if value not in (0, 1) or isinstance(value, bool):
        raise PolicyUsageError("msg.priority must be 0 or 1")
    c.msg.priority = int(value)


API = {name: fn for name, fn in globals().items()
       if name.startswith(("vctx_", "ac_", "msg_")) and callable(fn)}
