"""msys.expandMacro: Momentum's `%{...}` macros, expanded against the running callout.

Owns: `expand(text, vctx, msg, ac)`. Macros (lua.ref.msys.expandMacro, modules.alias,
modules.auth_radius, modules.spf):

  %{vctx_conn:key} %{vctx_mess:key}   validation context values ("" when unset)
  %{rcptto} %{localpart} %{domain}    the current recipient (msg, else the message ctx)
  %{username} %{username_localpart} %{username_domain}   the SMTP AUTH user
  %{s} %{l} %{o} %{d} %{i} %{h} %{v}  SPF letters: sender, its localpart, its domain (o, d),
                                      client IP, HELO domain, "in-addr"/"ip6"; with SPF
                                      transformers (%{d2}, %{ir}, %{l-}); also %{spfv1:x}
  %{a||b}                             b when a expands to the empty string

An unknown macro is left in the text unchanged, so a typo shows up in the output instead
of vanishing. Pure function: no I/O.
"""

from __future__ import annotations

import ipaddress
import re

from ecmta.actors.mail import split_address
from ecmta.policy.context import split_hostport

_MACRO = re.compile(r"%\{([^}]*)\}")
_SPF = re.compile(r"^([slodihvSLODIHV])(\d*)([rR]?)([.\-+,/_=]*)$")


def _sender(vctx, msg) -> str:
    if msg is not None:
        return msg.mailfrom or ""
    if vctx is not None:
        lp, dom = vctx.mess.get("mailfrom_localpart", ""), vctx.mess.get("mailfrom_domain", "")
        return f"{lp}@{dom}" if dom else lp
    return ""


def _recipient(vctx, msg) -> str:
    if msg is not None:
        return msg.rcptto or ""
    if vctx is not None:
        lp, dom = vctx.mess.get("rcptto_localpart", ""), vctx.mess.get("rcptto_domain", "")
        return f"{lp}@{dom}" if dom else lp
    return ""


def _client_ip(vctx, msg, ac) -> str:
    if msg is not None and msg.peer_ip:
        return msg.peer_ip
    if ac is not None:
        return split_hostport(ac.peer_addr)[0]
    return ""


def _spf_letter(letter: str, vctx, msg, ac) -> str:
    sender = _sender(vctx, msg)
    local, domain = split_address(sender)
    if letter == "s":
        return sender
    if letter == "l":
        return local or "postmaster"
    if letter in ("o", "d"):
        return domain
    if letter == "i":
        ip = _client_ip(vctx, msg, ac)
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return ip
        if addr.version == 6:
            return ".".join(addr.exploded.replace(":", ""))
        return ip
    if letter == "h":
        return (vctx.conn.get("ehlo_domain", "") if vctx is not None else "")
    if letter == "v":
        ip = _client_ip(vctx, msg, ac)
        return "ip6" if ":" in ip else "in-addr"
    return ""


def _spf(spec: str, vctx, msg, ac) -> str | None:
    m = _SPF.match(spec)
    if not m:
        return None
    letter, digits, reverse, delims = m.groups()
    value = _spf_letter(letter.lower(), vctx, msg, ac)
    if not digits and not reverse and not delims:
        return value
    parts = re.split("[" + re.escape(delims or ".") + "]", value)
    if reverse:
        parts.reverse()
    if digits:
        n = int(digits)
        parts = parts[-n:] if n else parts
    return ".".join(parts)


def _one(name: str, vctx, msg, ac) -> str | None:
    if name.startswith("vctx_conn:"):
        return vctx.conn.get(name[10:], "") if vctx is not None else ""
    if name.startswith("vctx_mess:"):
        if vctx is not None:
            return vctx.mess.get(name[10:], "")
        return msg.ctx_mess.get(name[10:], "") if msg is not None else ""
    if name == "rcptto":
        return _recipient(vctx, msg)
    if name in ("localpart", "domain"):
        local, domain = split_address(_recipient(vctx, msg))
        return local if name == "localpart" else domain
    if name.startswith("username"):
        user = vctx.conn.get("auth_user", "") if vctx is not None else ""
        if not user and msg is not None:
            user = msg.auth_user
        if name == "username":
            return user
        local, domain = split_address(user)
        if name == "username_localpart":
            return local
        if name == "username_domain":
            return domain if "@" in user else ""
        return None
    if name.startswith("spfv1:"):
        return _spf(name[6:], vctx, msg, ac)
    return _spf(name, vctx, msg, ac)


def expand(text: str, vctx=None, msg=None, ac=None) -> str:
    """Expand every `%{...}` macro of `text`."""
    if "%{" not in text:
        return text

    def sub(m: re.Match) -> str:
        body = m.group(1)
        name, sep, default = body.partition("||")
        value = _one(name.strip(), vctx, msg, ac)
        if value is None:
            return m.group(0)
        if sep and value == "":
            return default
        return value

    return _MACRO.sub(sub, text)
