"""TLS for listeners: server contexts from the TLS_* options and the ctx variables a
finished handshake gives policy.

Owns: `server_context()` (cached per option set, rebuilt when a file changes) and
`session_info()` (tls, tls_cipher, tls_cipher_algbits, tls_cipher_usebits, tls_protocol,
tls_client_cert_subject(_cn), tls_client_cert_issuer(_cn), tls_client_verified).

TLS_Verify_Mode (config.tls_verify_mode): `none` asks for no client certificate;
`require` demands one signed by TLS_Client_CA; unset asks for an optional certificate and
verifies it when TLS_Client_CA is set. Python's ssl module ends the handshake when a
presented client certificate fails verification, so with ecmta an invalid client
certificate fails the TLS handshake (the client may reconnect without STARTTLS) instead of
being left to policy as Momentum does; a missing certificate under the optional mode is
left to policy (tls_client_verified unset).

TLS_Protocols uses Momentum's `+ALL:-SSLv2:-SSLv3` style; ecmta maps it onto a minimum and
maximum version (SSLv2/SSLv3 do not exist in this OpenSSL). Reading the key and
certificate files is start-up/reload work done once per option set.
"""

from __future__ import annotations

import os
import ssl
from functools import lru_cache

_VERSIONS = [("TLSv1", ssl.TLSVersion.TLSv1), ("TLSv1.1", ssl.TLSVersion.TLSv1_1),
             ("TLSv1.2", ssl.TLSVersion.TLSv1_2), ("TLSv1.3", ssl.TLSVersion.TLSv1_3)]


class TLSConfigError(ValueError):
    pass


def _protocol_range(spec: str):
    """(min, max) TLSVersion from a `+ALL:-SSLv3:-TLSv1` list; None for no restriction."""
    if not spec:
        return None
    allowed = {name: False for name, _ in _VERSIONS}
    for item in spec.replace(",", ":").split(":"):
        item = item.strip()
        if not item:
            continue
        sign, name = (item[0], item[1:]) if item[0] in "+-" else ("+", item)
        on = sign == "+"
        if name.upper() == "ALL":
            for k in allowed:
                allowed[k] = on
        elif name in ("SSLv2", "SSLv3"):
            continue
        elif name in allowed:
            allowed[name] = on
        else:
            raise TLSConfigError(f"TLS_Protocols: unknown protocol '{name}'")
    on = [v for name, v in _VERSIONS if allowed[name]]
    if not on:
        raise TLSConfigError(f"TLS_Protocols = \"{spec}\" leaves no protocol enabled")
    return min(on), max(on)


def _stamp(path: str):
    try:
        st = os.stat(path)
        return (path, st.st_mtime_ns, st.st_size)
    except OSError:
        return (path, None, None)


def server_context(cert: str, key: str, client_ca: str = "", verify_mode: str = "",
                   ciphers: str = "", protocols: str = "") -> ssl.SSLContext:
    return _server_context(_stamp(cert), _stamp(key), _stamp(client_ca) if client_ca else None,
                           verify_mode, ciphers, protocols)


@lru_cache(maxsize=64)
def _server_context(cert, key, client_ca, verify_mode, ciphers, protocols) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(cert[0], key[0])
    except (OSError, ssl.SSLError) as exc:
        raise TLSConfigError(f"cannot load TLS_Certificate {cert[0]} / TLS_Key {key[0]}: {exc}") from exc
    if client_ca:
        try:
            ctx.load_verify_locations(client_ca[0])
        except (OSError, ssl.SSLError) as exc:
            raise TLSConfigError(f"cannot load TLS_Client_CA {client_ca[0]}: {exc}") from exc
    mode = (verify_mode or "").lower()
    if mode == "none":
        ctx.verify_mode = ssl.CERT_NONE
    elif mode == "require":
        if not client_ca:
            raise TLSConfigError("TLS_Verify_Mode = require needs TLS_Client_CA")
        ctx.verify_mode = ssl.CERT_REQUIRED
    elif client_ca:
        ctx.verify_mode = ssl.CERT_OPTIONAL
    if ciphers:
        try:
            ctx.set_ciphers(ciphers)
        except ssl.SSLError as exc:
            raise TLSConfigError(f"TLS_Ciphers \"{ciphers}\": {exc}") from exc
    rng = _protocol_range(protocols)
    if rng:
        ctx.minimum_version, ctx.maximum_version = rng
    return ctx


def _name_fields(name) -> tuple[str, str]:
    parts, cn = [], ""
    for rdn in name or ():
        for key, value in rdn:
            parts.append(f"{key}={value}")
            if key == "commonName":
                cn = value
    return "/" + "/".join(parts) if parts else "", cn


def session_info(sslsock) -> dict:
    """Ctx variables of an established TLS session (policy.context.variables)."""
    info = {"tls": "on"}
    cipher = sslsock.cipher()
    if cipher:
        name, proto, bits = cipher
        info.update(tls_cipher=name, tls_cipher_algbits=str(bits), tls_cipher_usebits=str(bits),
                    tls_protocol=str(proto or sslsock.version() or ""))
    try:
        cert = sslsock.getpeercert()
    except (ValueError, ssl.SSLError):
        cert = None
    if cert:
        subj, subj_cn = _name_fields(cert.get("subject"))
        issuer, issuer_cn = _name_fields(cert.get("issuer"))
        info.update(tls_client_cert_subject=subj, tls_client_cert_subject_cn=subj_cn,
                    tls_client_cert_issuer=issuer, tls_client_cert_issuer_cn=issuer_cn,
                    tls_client_verified="yes")
    return info
