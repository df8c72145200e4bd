"""The `msys` library's Python half: constants, callout names, and the pure helpers.

Owns: the `msys.core` constants, the callout and hook names `msys.registerModule` accepts
(implementing.policy.scriptlets 62.2.2), the namespaces ecmta does not provide yet (their
functions raise "msys.X is not available in this version"), and the helpers the Lua side
calls: base64 and quoted-printable, PCRE-style regexes (Python `re`), the DNS answer
shape of msys.dnsLookup, and msys.threadpool's views of `ecmta.pools`.

Every function here is called from Lua through lupa with `encoding=None`: Lua strings
arrive as bytes and strings go back as bytes. None of them waits or switches greenlets.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import quopri
import re

# -- msys.core constants ----------------------------------------------------------------
VALIDATE_CONT, VALIDATE_DONE, VALIDATE_AGAIN = 0, 1, 2
VCTX_MESS, VCTX_CONN = 0, 1

CONSTANTS: dict[str, int] = {
    "VALIDATE_CONT": VALIDATE_CONT, "VALIDATE_DONE": VALIDATE_DONE,
    "VALIDATE_AGAIN": VALIDATE_AGAIN,
    "VCTX_MESS": VCTX_MESS, "VCTX_CONN": VCTX_CONN,
    "ECMESS_CTX_MESS": VCTX_MESS, "ECMESS_CTX_CONN": VCTX_CONN,
    "EC_MSG_ENV_FROM": 1, "EC_MSG_ENV_TO": 2, "EC_MSG_ENV_COMPLETE": 4,
    "EC_AUTH_OK": 0, "EC_AUTH_FAIL": 1, "EC_AUTH_ERROR": 2,
    "ECTP_COMPLETE_CALLBACK": 0, "ECTP_COMPLETE_CALLBACK_SCHED": 1,
    # message dispositions
    "DELIVERED": 0, "FAILED": 1, "DELAYED": 2, "RELAYED": 3, "EXPANDED": 4,
    # reception protocols
    "P_SMTP": 0, "P_ESMTP": 1, "P_LMTP": 2, "P_HTTP": 3, "P_INTERNAL": 4,
    # MIME transfer encodings
    "EC_MIME_TE_7BIT": 0, "EC_MIME_TE_8BIT": 1, "EC_MIME_TE_BINARY": 2,
    "EC_MIME_TE_QUOTED_PRINTABLE": 3, "EC_MIME_TE_BASE64": 4,
}
for _name in ("O_RDONLY", "O_WRONLY", "O_RDWR", "O_CREAT", "O_APPEND", "O_TRUNC", "O_EXCL",
              "O_NONBLOCK", "O_SYNC"):
    CONSTANTS[_name] = getattr(os, _name, 0)
CONSTANTS["O_BINARY"] = getattr(os, "O_BINARY", 0)
CONSTANTS["O_RDRW"] = os.O_RDWR          # the spelling io_wrapper_open's page uses

ENV_FROM, ENV_TO, ENV_COMPLETE = 1, 2, 4

# -- callouts ----------------------------------------------------------------------------
# phase -> argument shape (policy/lua/ecmta/bootstrap.lua SHAPES)
PHASE_SHAPES: dict[str, int] = {
    "validate_connect": 1,
    "validate_ehlo": 2,
    "validate_mailfrom": 2,
    "validate_rcptto": 3,
    "validate_rcptto_list": 4,
    "validate_rcptto_list_final": 4,
    "validate_data": 5,
    "validate_data_spool": 5,
    "validate_data_spool_each_rcpt": 5,
    "validate_set_binding": 6,
    "core_final_validation": 5,
    "validate_dealloc": 7,
}
LIFECYCLE = ("init", "deinit")
# Hooks and module-specific callouts a module may define (registered, dispatched later).
MODULE_HOOKS = frozenset({
    "ac_auth_perform_auth", "ac_auth_log_auth_failure", "outbound_smtp_auth_config",
    "seedlist_generate_seed", "http_request_eval", "http_response_eval", "msg_dispose",
    "gcm_response_eval", "apn_response_eval", "msg_gen_data_spool",
})


def usable_method(name: str) -> bool:
    """Whether msys.registerModule accepts a function of this name."""
    return (name in PHASE_SHAPES or name in LIFECYCLE or name in MODULE_HOOKS
            or name.startswith("core_"))


# -- what ecmta does not provide yet ------------------------------------------------------
# Namespaces (under msys.) whose every function raises "msys.<ns>.<fn> is not available".
UNAVAILABLE_NAMESPACES = (
    "db", "datasource", "http.client", "httpclnt", "httpsrv", "cloudmark", "brightmail",
    "av", "audit", "counter", "gauge_cache", "cidr", "timer",
    "validate.opendkim", "validate.dk", "rfc3464", "apn", "gcm", "commtouch",
    "expurgate", "symantec_beik", "os", "idn", "delivery",
)
UNAVAILABLE_FUNCTIONS = (
    "lock", "unlock", "registerControl", "registerAuth", "snmpTrap", "config", "cast",
    "readfile", "parseRFC2822Addresses",
)
MSG_UNAVAILABLE = (
    "address_header", "body_match", "body_replace", "build", "forward", "inject",
    "get_delivery_method", "is_mcmt", "makeBoundary", "makeContainer", "makePart", "mime",
    "raw_match", "raw_replace", "text_match", "text_replace",
)
# require() names that resolve to (part of) the built-in msys table.
PROVIDED_MODULES = (
    "msys.core", "msys.extended.message", "msys.extended.message_routing",
    "msys.extended.vctx", "msys.extended.ac", "msys.threadpool", "msys.base64", "msys.qp",
    "msys.pcre", "msys.dumper", "msys.bounce",
    "msys.beta.chunk_logger_int", "msys.ts.chunk_logger",      # loggers/chunk_logger.py
    "msys.audit_series",                                         # policy/audit_series.py
) + tuple("msys." + ns for ns in UNAVAILABLE_NAMESPACES)


# -- bytes helpers -----------------------------------------------------------------------
def s(value) -> str:
    """A Lua string (bytes) as Python text; undecodable bytes survive (surrogateescape)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return "" if value is None else str(value)


def b(value) -> bytes | None:
    """Python text as a Lua string."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogateescape")


def lua_number_text(value) -> str:
    """How Momentum's Lua 5.1 prints a number: integral values without ".0"."""
    if isinstance(value, float):
        return "%.14g" % value
    return str(value)


# -- base64 / quoted-printable -----------------------------------------------------------
def _recode(data: bytes, charset, to_charset: bool) -> bytes:
    if not charset:
        return data
    cs = s(charset)
    if to_charset:   # UTF-8 text -> charset
        return data.decode("utf-8", "surrogateescape").encode(cs, "replace")
    return data.decode(cs, "replace").encode("utf-8")


def b64encode(data: bytes, fold: bool, charset) -> bytes:
    out = base64.b64encode(_recode(data, charset, True))
    if fold:
        out = b"\r\n".join(out[i:i + 76] for i in range(0, len(out), 76))
    return out


def b64decode(data: bytes, charset) -> bytes:
    try:
        raw = base64.b64decode(re.sub(rb"\s+", b"", data), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("msys.base64.decode: the input is not valid base64") from None
    return _recode(raw, charset, False)


def qpencode(data: bytes, charset, dotstuff: bool) -> bytes:
    out = quopri.encodestring(_recode(data, charset, True)).replace(b"\r\n", b"\n")
    out = out.replace(b"\n", b"\r\n")
    if dotstuff:
        out = re.sub(rb"(^|\r\n)\.", rb"\1..", out)
    return out


def qpdecode(data: bytes, charset) -> bytes:
    return _recode(quopri.decodestring(data), charset, False)


# -- PCRE (Python re: the common PCRE syntax, (?P<name>...) named groups) -----------------
_RE_CACHE: dict[tuple[bytes, int], re.Pattern] = {}


def _compile(pattern: bytes):
    rx = _RE_CACHE.get((pattern, 0))
    if rx is None:
        rx = re.compile(pattern)
        if len(_RE_CACHE) > 512:
            _RE_CACHE.clear()
        _RE_CACHE[(pattern, 0)] = rx
    return rx


def pcre_match(subject: bytes, pattern: bytes):
    """() no match | (False, errstr, errnum) | (True, ngroups, g0..gn, name, value, ...)."""
    try:
        rx = _compile(pattern)
    except re.error as exc:
        return False, b(str(exc)), 1
    m = rx.search(subject)
    if m is None:
        return ()
    out = [True, rx.groups, m.group(0), *m.groups()]
    for name, value in m.groupdict().items():
        out += [b(name), value]
    return tuple(out)


def _pcre_template(replacement: bytes) -> bytes:
    # PCRE replacements reference captures as $1 / ${1}; Python wants \g<1>.
    rep = replacement.replace(b"\\", b"\\\\")
    rep = re.sub(rb"\$\{(\w+)\}", rb"\\g<\1>", rep)
    return re.sub(rb"\$(\d+)", rb"\\g<\1>", rep)


def pcre_replace(subject: bytes, pattern: bytes, replacement: bytes) -> bytes:
    try:
        return _compile(pattern).sub(_pcre_template(replacement), subject)
    except re.error as exc:
        raise ValueError(f"msys.pcre.replace: {exc}") from None


def pcre_split(subject: bytes, pattern: bytes) -> tuple:
    try:
        rx = _compile(pattern)
    except re.error as exc:
        raise ValueError(f"msys.pcre.split: {exc}") from None
    return tuple(p for p in rx.split(subject) if p is not None)


# -- DNS ---------------------------------------------------------------------------------
PREFERENCE_TYPES = frozenset({"MX"})


def reverse_name(name: str) -> str:
    """PTR lookups accept an IP address and ask for its reverse name."""
    try:
        return ipaddress.ip_address(name).reverse_pointer
    except ValueError:
        return name


def dns_answer(rtype: str, answer, priority: bool) -> tuple:
    """msys.dnsLookup's result as (1, value...) or (2, pref, value, ...); best first."""
    if answer is None:
        return (1,)
    if rtype == "MX":
        rows = sorted(((r.preference, r.exchange.to_text(omit_final_dot=True)) for r in answer),
                      key=lambda row: row[0])
        if priority:
            return (2, *(x for row in rows for x in (row[0], b(row[1]))))
        return (1, *(b(row[1]) for row in rows))
    if rtype == "TXT":
        return (1, *(b"".join(r.strings) for r in answer))
    if rtype in ("PTR", "NS"):
        return (1, *(b(r.target.to_text(omit_final_dot=True)) for r in answer))
    return (1, *(b(r.address) for r in answer))


def dns_error(exc) -> tuple:
    """A failed lookup: (0, message), message naming the DNS condition."""
    import dns.exception
    import dns.resolver
    if isinstance(exc, dns.resolver.NXDOMAIN):
        msg = "NXDOMAIN"
    elif isinstance(exc, dns.resolver.NoAnswer):
        msg = "NODATA"
    elif isinstance(exc, (dns.resolver.LifetimeTimeout, dns.exception.Timeout)):
        msg = "TIMEOUT"
    elif isinstance(exc, dns.resolver.NoNameservers):
        msg = "SERVFAIL"
    else:
        msg = str(exc) or exc.__class__.__name__
    return (0, b(msg))


def dns_lookup(resolver, name: str, rtype: str, priority: bool) -> tuple:
    """Resolve with a dnspython Resolver (cooperative under gevent); never raises for DNS."""
    import dns.exception
    if rtype == "PTR":
        name = reverse_name(name)
    try:
        answer = resolver.resolve(name, rtype, search=False)
    except dns.exception.DNSException as exc:
        return dns_error(exc)
    return dns_answer(rtype, answer, priority)


# -- thread pools ------------------------------------------------------------------------
STAT_FIELDS = ("name", "invocations", "avg_concurrency", "saturation",
               "avg_wallclock_time_per_op", "queue_sz", "num_threads", "num_active_threads",
               "num_inactive_threads", "job_num_queued", "job_num_running")


def pool_key(value):
    """A pool name (bytes from Lua) or job class id (number) as ecmta.pools takes it."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    return s(value)


def threadpool_count() -> int:
    from ecmta import pools
    return len(pools.current())


def threadpool_find(value):
    from ecmta import pools
    try:
        pool = pools.current().get(pool_key(value))
    except KeyError:
        return None
    return b(pool.name) if isinstance(pool_key(value), int) else pool.id


def threadpool_stat_flat(value) -> tuple:
    """(name, value, ...) of msys.threadpool.stat, () if there is no such pool. Asks the
    pool actor (a cooperative wait), so only the driver calls it, outside Lua."""
    from ecmta import pools
    reg = pools.current()
    try:
        pool = reg.get(pool_key(value))
    except KeyError:
        return ()
    stats = pool.stats()
    out = []
    for key in STAT_FIELDS:
        v = stats.get(key, pool.name if key == "name" else 0)
        out += [b(key), b(v) if isinstance(v, str) else v]
    return tuple(out)
