"""tls_macros (tls_macros page, Table 71.2): the `outbound_tls` macro namespace.

Owns: the macros a custom_logger format can print about the TLS session of a delivery or
a failure, once `tls_macros {}` is configured and the instance's `namespace` lists
`outbound_tls` ("Use of namespace is critical for the macros to work!"). Written bare
(`%outbound_tls_cipher`) or qualified (`%{outbound_tls:outbound_tls_cipher}`).

| macro | prints |
| outbound_tls | `TLS` when the delivery used TLS, `SMTP` when it went in clear, `unknown` when no
  connection was made (receptions, rejections, failures before connecting) |
| outbound_tls_type | the `tls` option of the delivery (ifavailable, required, ...) when TLS was
  used, `no` when it went in clear |
| local_ip | "IP address to which the message was sent" (the page's words): the address of
  the receiving server |
| outbound_tls_cipher | cipher suite (OpenSSL's name, e.g. ECDHE-RSA-AES256-GCM-SHA384) |
| outbound_tls_cipher_algbits / _usebits | the cipher's secret bits |
| outbound_tls_protocol | TLSv1.2, TLSv1.3 |
| outbound_tls_verified | verified / unverified |
| outbound_tls_issuer / _subject | the server certificate's issuer and subject |

The facts come from the outbound connection (transports/smtp_outbound.py `tls_info`),
carried by Delivery and Failure records in `tls`.
"""

from __future__ import annotations

from ecmta.loggers import records


def _connected(rec) -> bool:
    return isinstance(rec, (records.Delivery, records.Failure)) and bool(rec.mx_host or rec.remote_port)


def _tls(rec) -> dict | None:
    return getattr(rec, "tls", None) if isinstance(rec, (records.Delivery, records.Failure)) else None


def outbound_tls(rec) -> str:
    if _tls(rec):
        return "TLS"
    return "SMTP" if _connected(rec) else "unknown"


def outbound_tls_type(rec) -> str:
    tls = _tls(rec)
    if tls:
        return str(tls.get("outbound_tls_type", ""))
    return "no" if _connected(rec) else ""


def local_ip(rec) -> str:
    if isinstance(rec, (records.Delivery, records.Failure)):
        return rec.remote_ip
    return ""


def _field(name: str):
    def get(rec) -> str:
        tls = _tls(rec)
        return str(tls.get(name, "")) if tls else ""
    get.__name__ = name
    return get


MACROS = {
    "outbound_tls": outbound_tls,
    "outbound_tls_type": outbound_tls_type,
    "local_ip": local_ip,
    **{name: _field(name) for name in (
        "outbound_tls_cipher", "outbound_tls_cipher_algbits", "outbound_tls_cipher_usebits",
        "outbound_tls_protocol", "outbound_tls_verified", "outbound_tls_issuer",
        "outbound_tls_subject")},
}
