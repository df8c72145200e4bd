"""Outbound SMTP/LMTP connection: the gevent driver of the sans-IO client (smtp_client.py).

Owns: one TCP connection from a binding's bind_address to one remote ip:port, its
per-stage timeouts, STARTTLS (gevent's ssl, never blocking the hub) with Momentum's
outbound TLS options, and the delivery of transactions over it, one after the other.
`deliver(transaction) -> list[RecipientOutcome]` (one per recipient, Transaction order).

Who talks to it: the binding / domain-queue actors. They pick the MX and the address,
enforce max_outbound_connections, max_deliveries_per_connection (`deliveries` counts
delivered recipients) and idle_timeout (connection caching: call `deliver()` again while
`usable()`, else `close()`), split batches by max_recipients_per_batch, and log the
outcomes (mainlog D/T/P, custom_logger, tls_macros from `tls_info`). Nothing here reads
the config or the disk: option values arrive in `OutboundOptions`, the body through
`Transaction.body_loader` (the caller may load it from the spool in a pool), the TLS
context from `client_tls_context()` (reads certificate files: built once per option set,
in the IO pool when the driver has to build it itself).

    conn = OutboundConnection("192.0.2.25", 25, opts, mx_hostname="mx.example.com",
                              domain="example.com", tls_context=ctx_or_None)
    outcomes = conn.deliver(Transaction.for_messages(msgs, loader))
    results = conn.deliver_many([t1, t2, t3])     # pipelined: one round trip per message
    ... conn.deliver(next_transaction) while conn.usable() ...
    conn.close()                                  # QUIT

Timeouts (seconds, Momentum option names): connect_timeout for connect(); ehlo_timeout
for the banner, EHLO, STARTTLS, the TLS handshake and XCLIENT; mailfrom_timeout,
rcptto_timeout, data_timeout (the 354), body_timeout (the reply after CRLF.CRLF; also
bounds writing the body); rset_timeout for RSET and QUIT. Each bounds one wait for one
reply.

TLS (config.ref.tls, config.tls_*): `tls = no|ifavailable|required` (in ClientOptions);
`tls_verify = no` (anything), `ca` (signed by a CA of tls_ca, or the system store when
unset), `host` (ca + a certificate name (SAN dNSName or CN, `*.` wildcard for one label)
equal to the MX host name or the domain given to the connection, else `4.7.5 [internal]
SSL certificate subject does not match host`), `optional` (as host, but delivery goes on unverified: after a CA
failure the connection is made again without verification). A failed negotiation with
`tls = ifavailable` and `tls_ifavailable_fallback = true` reconnects in clear and goes on;
otherwise it is `451 4.7.5 [internal] TLS negotiation failed`. A certificate failure never
falls back to clear text.

Fails: every network failure becomes outcomes (Momentum's texts, see smtp_client); a
connect that times out is `450 4.4.1 [internal] Connection Timed Out`, one that is refused
or unreachable `451 4.4.1 [internal] No valid hosts (unable to make any connections)` at
stage 0 (the caller tries the next MX and decides what the domain's outcome is). A body
loader that raises or returns None gives `550 5.3.0 [internal] message body missing` and
leaves the connection usable. Bad TLS options raise `TLSConfigError` from
`client_tls_context()`.
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from functools import lru_cache

import select as _select

import gevent
from gevent import monkey as _monkey
from gevent import socket as gsocket
from gevent import ssl as gssl

from ecmta.transports.smtp_client import (
    BODY_MISSING, CLOSED, CONNECT_TIMED_OUT, CONNECTION_CLOSED, DELIVERED, IDLE, NEED_DATA,
    NO_VALID_HOSTS, PAUSED, ST_BODY, ST_IDLE, ST_NOT_CONNECTED, ST_TLS, TLS_FAILED,
    TLS_NOT_CA_SIGNED, TLS_SUBJECT_MISMATCH, ClientOptions, Failure, RecipientOutcome,
    SessionFailed, SMTPClient, Transaction, TransactionDone, UpgradeTLS, failure)
from ecmta.transports.tls import TLSConfigError, _protocol_range

_original_poll = _monkey.get_original("select", "poll")      # a non-blocking syscall with timeout 0

READ_SIZE = 65536
_MAX_STEPS = 1_000_000       # machine steps per pump: a runaway guard, never reached
_SALVAGE_WAIT = 1.0          # after a write error, how long to look for a last reply

__all__ = ["OutboundConnection", "OutboundOptions", "Transaction", "RecipientOutcome",
           "client_tls_context", "TLSConfigError"]


@dataclass(slots=True)
class OutboundOptions:
    """Option values for one connection (binding/domain scope, Momentum names)."""

    client: ClientOptions = field(default_factory=ClientOptions)
    bind_address: str = ""                 # "" or "*" = the system's choice
    connect_timeout: float = 300
    ehlo_timeout: float = 300
    mailfrom_timeout: float = 300
    rcptto_timeout: float = 300
    data_timeout: float = 300              # (ecmta) the wait for 354
    body_timeout: float = 600
    rset_timeout: float = 30
    tls_verify: str = "no"                 # no | ca | host | optional
    tls_ca: str = ""
    tls_certificate: str = ""              # client certificate; "none" = none
    tls_key: str = ""
    tls_ciphers: str = ""
    tls_protocols: str = ""                # "+ALL:-SSLv3" style
    tls_ifavailable_fallback: bool = True


_TIMEOUT_OPTION = {
    "banner": "ehlo_timeout", "ehlo": "ehlo_timeout", "starttls": "ehlo_timeout",
    "xclient": "ehlo_timeout", "mailfrom": "mailfrom_timeout", "rcptto": "rcptto_timeout",
    "data": "data_timeout", "body": "body_timeout", "rset": "rset_timeout",
    "quit": "rset_timeout", "idle": "rset_timeout",
}


class _Timeout(Exception):
    """Our own gevent.Timeout exception, so no other timeout is ever swallowed."""


# --- TLS context -----------------------------------------------------------------------------


def _stamp(path: str):
    try:
        st = os.stat(path)
        return (path, st.st_mtime_ns, st.st_size)
    except OSError:
        return (path, None, None)


def client_tls_context(verify: str = "no", ca: str = "", certificate: str = "", key: str = "",
                       ciphers: str = "", protocols: str = "") -> gssl.SSLContext:
    """A gevent SSLContext for outbound STARTTLS, cached per option set and file stamp.
    Reads files: call it at start-up/reload or in a pool, not on a hot path."""
    cert = certificate if certificate and certificate.lower() != "none" else ""
    return _client_context((verify or "no").lower(), _stamp(ca) if ca else None,
                           _stamp(cert) if cert else None, _stamp(key) if key and cert else None,
                           ciphers or "", protocols or "")


@lru_cache(maxsize=64)
def _client_context(verify, ca, cert, key, ciphers, protocols) -> gssl.SSLContext:
    if verify not in ("no", "ca", "host", "optional"):
        raise TLSConfigError(f'TLS_Verify = "{verify}": use no, ca, host or optional')
    ctx = gssl.SSLContext(gssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False             # the name check is ours (MX host or domain)
    if verify == "no":
        ctx.verify_mode = gssl.CERT_NONE
    else:
        ctx.verify_mode = gssl.CERT_REQUIRED
        try:
            if ca:
                ctx.load_verify_locations(ca[0])
            else:
                ctx.load_default_certs()
        except (OSError, gssl.SSLError) as exc:
            raise TLSConfigError(f"cannot load TLS_CA {ca[0] if ca else ''}: {exc}") from exc
    if cert:
        try:
            ctx.load_cert_chain(cert[0], key[0] if key else None)
        except (OSError, gssl.SSLError) as exc:
            raise TLSConfigError(f"cannot load TLS_Certificate {cert[0]}"
                                 f"{' / TLS_Key ' + key[0] if key else ''}: {exc}") from exc
    if ciphers:
        try:
            ctx.set_ciphers(ciphers)
        except gssl.SSLError as exc:
            raise TLSConfigError(f'TLS_Ciphers "{ciphers}": {exc}') from exc
    rng = _protocol_range(protocols)
    if rng:
        ctx.minimum_version, ctx.maximum_version = rng
    return ctx


_CTX_TTL = 300.0
_ctx_cache: dict = {}


def _shared_context(args: tuple) -> gssl.SSLContext:
    """client_tls_context() for an option set, built in the IO pool (it reads files) and
    kept for _CTX_TTL seconds so that a busy binding pays no pool round trip."""
    now = time.monotonic()
    hit = _ctx_cache.get(args)
    if hit is not None and hit[1] > now:
        return hit[0]
    from ecmta import pools
    try:
        ctx = pools.run("IO", client_tls_context, *args)
    except RuntimeError:                   # called on the hub itself: build inline
        ctx = client_tls_context(*args)
    if len(_ctx_cache) > 256:
        _ctx_cache.clear()
    _ctx_cache[args] = (ctx, now + _CTX_TTL)
    return ctx


def _cert_facts(der: bytes | None) -> tuple[list[str], str, str]:
    """(DNS names: SANs then CN, subject CN, issuer CN) of a DER certificate."""
    if not der:
        return [], "", ""
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return [], "", ""

    def cn(name) -> str:
        attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(attrs[0].value) if attrs else ""

    names: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = [str(n) for n in san.value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        pass
    subject = cn(cert.subject)
    if subject:
        names.append(subject)
    return names, subject, cn(cert.issuer)


def name_matches(pattern: str, host: str) -> bool:
    """A certificate name against a host: exact (case-insensitive), or `*.rest` for
    exactly one left-most label."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if not pattern or not host:
        return False
    if pattern.startswith("*."):
        first, _, rest = host.partition(".")
        return bool(first) and rest == pattern[2:]
    return pattern == host


def _is_timeout(exc: OSError) -> bool:
    # gevent's SSL sockets report a timeout as SSLError("The read operation timed out").
    return isinstance(exc, TimeoutError) or "timed out" in str(exc)


def _is_ip(text: str) -> bool:
    try:
        gsocket.inet_pton(gsocket.AF_INET6 if ":" in text else gsocket.AF_INET, text)
        return True
    except OSError:
        return False


# --- the connection ------------------------------------------------------------------------------


class OutboundConnection:
    """One outbound SMTP/LMTP connection (see the module docstring).

    Attributes the caller reads: `remote` (ip, port), `local` (ip, port) once connected,
    `capabilities`, `tls_info` (None without TLS), `deliveries` (delivered recipients),
    `transactions`, `connect_time` (TCP connect, s), `setup_time` (connect to ready, s),
    `last_delivery_time` (s, last deliver()), `closed_reason`, `tls_fallback` (True when
    TLS failed and the session went on in clear).
    """

    def __init__(self, host: str, port: int, opts: OutboundOptions | None = None, *,
                 mx_hostname: str = "", domain: str = "",
                 tls_context: gssl.SSLContext | None = None) -> None:
        self.remote = (host, int(port))
        self.opts = opts or OutboundOptions()
        self.mx_hostname = mx_hostname
        self.domain = domain
        self.local: tuple | None = None
        self.tls_info: dict | None = None
        self.tls_fallback = False
        self.deliveries = 0
        self.transactions = 0
        self.connect_time = 0.0
        self.setup_time = 0.0
        self.last_delivery_time = 0.0
        self.closed_reason = ""
        self.last_error = ""               # the exception behind the last internal failure
        self._tls_context = tls_context
        self._sock = None
        self._cli: SMTPClient | None = None
        self._failure: Failure | None = None
        self._done: list = []              # TransactionDone events of this pump
        self._timeout_now: float | None = -1.0
        self._tls_problem = ""             # "negotiation" | "ca" | "name" after a failure
        self._unverified = False
        self._dead = False

    # ----- public API -------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """Connected and between transactions."""
        return self._cli is not None and self._cli.idle and self._sock is not None

    @property
    def closed(self) -> bool:
        return self._dead

    @property
    def capabilities(self) -> dict:
        return dict(self._cli.capabilities) if self._cli is not None else {}

    def connect(self) -> Failure | None:
        """Open the connection and set the session up (banner, EHLO, STARTTLS).
        None when ready, else the Failure that applies to the recipients waiting."""
        if self._cli is not None or self._dead:
            raise RuntimeError("connect() on a connection already used")
        t0 = time.monotonic()
        fail = self._open(self.opts.client)
        if fail is not None and self._tls_problem:
            retry = self._tls_retry()
            if retry is not None:
                fail = self._open(retry)
        self.setup_time = time.monotonic() - t0
        if fail is not None:
            self._dead = True
            self.closed_reason = fail.text
        return fail

    def deliver(self, txn: Transaction) -> list[RecipientOutcome]:
        """Deliver one transaction (connecting first if needed)."""
        return self.deliver_many([txn])[0]

    def deliver_many(self, txns: list) -> list[list[RecipientOutcome]]:
        """Deliver several transactions down this connection, in order; one outcome
        list per transaction. With PIPELINING each envelope goes out with the previous
        body (one round trip per message instead of two)."""
        t0 = time.monotonic()
        try:
            return self._deliver(txns)
        finally:
            self.last_delivery_time = time.monotonic() - t0

    def usable(self) -> bool:
        """Idle and still open: the peer has not hung up (an idle-timeout 421 or EOF
        waiting on the socket is read now, without blocking)."""
        if not self.idle:
            return False
        try:
            # poll(), not select(): select() refuses descriptors >= 1024 (ValueError), and
            # treating that as "readable" blocked here for rset_timeout on every reuse of a
            # connection once a busy daemon had 1 000 sockets open.
            poller = _original_poll()
            poller.register(self._sock.fileno(), _select.POLLIN | _select.POLLPRI)
            readable = bool(poller.poll(0))
        except (OSError, ValueError):
            readable = True
        pending = getattr(self._sock, "pending", lambda: 0)()
        if readable or pending:
            self._read("idle", self.opts.rset_timeout)
            self._pump()
        return self.idle

    def close(self, quit: bool = True) -> None:
        """QUIT (waiting at most rset_timeout for the reply) and close the socket."""
        cli = self._cli
        if quit and cli is not None and cli.idle and self._sock is not None:
            cli.quit()
            try:
                self._pump()
            except Exception:                   # closing: nothing left to report
                pass
        self._drop()

    # ----- delivery ---------------------------------------------------------------------

    def _deliver(self, txns: list) -> list[list[RecipientOutcome]]:
        results: list = [None] * len(txns)
        if self._cli is None and not self._dead:
            fail = self.connect()
            if fail is not None:
                return [self._all(t, fail) for t in txns]
        if not self.idle:                  # a dead cached connection: try another one
            fail = failure(CONNECTION_CLOSED, ST_IDLE)
            return [self._all(t, fail) for t in txns]
        slots: dict[int, list[int]] = {}
        for i, t in enumerate(txns):
            body = self._load(t)
            if body is None:
                results[i] = self._all(t, failure(BODY_MISSING, ST_BODY))
                continue
            slots.setdefault(id(t), []).append(i)
            self._cli.send_mail(t, body)
        self._done = []
        if slots:
            self._pump()
        for ev in self._done:
            i = slots[id(ev.transaction)].pop(0)
            results[i] = ev.outcomes
            self.transactions += 1
            self.deliveries += sum(1 for o in ev.outcomes if o.status == DELIVERED)
        self._done = []
        for i, r in enumerate(results):                # the machine always reports;
            if r is None:                              # defensive
                results[i] = self._all(txns[i], failure(CONNECTION_CLOSED, ST_IDLE))
        return results

    def _load(self, txn: Transaction) -> bytes | None:
        if txn.body_loader is None:
            return None
        try:
            body = txn.body_loader()
        except Exception as exc:           # the spool's problem, reported per recipient
            self.last_error = f"body loader: {exc!r}"
            return None
        if body is None:
            return None
        return bytes(body)

    def _all(self, txn: Transaction, fail: Failure) -> list[RecipientOutcome]:
        sent = self._cli.bytes_out if self._cli is not None and not self.transactions else 0
        return [fail.outcome(r, sent) for r, _ in txn.recipients]

    # ----- session set-up ---------------------------------------------------------------------

    def _open(self, copts: ClientOptions) -> Failure | None:
        self._drop()
        self._failure = None
        self._tls_problem = ""
        self._dead = False
        fail = self._dial()
        if fail is not None:
            return fail
        self._cli = SMTPClient(copts)
        self._pump()
        if self._failure is not None:
            return self._failure
        if not self.idle:
            return failure(self.closed_reason or CONNECTION_CLOSED, ST_IDLE)
        return None

    def _tls_retry(self) -> ClientOptions | None:
        """After a TLS failure: the options of a second attempt, or None."""
        copts = self.opts.client
        if self._tls_problem == "ca" and self.opts.tls_verify.lower() == "optional":
            self._unverified = True                   # deliver anyway, unverified
            return copts
        if self._tls_problem == "negotiation" and copts.tls.lower() == "ifavailable" \
                and self.opts.tls_ifavailable_fallback:
            self.tls_fallback = True
            return dataclasses.replace(copts, tls="no")
        return None

    def _dial(self) -> Failure | None:
        o = self.opts
        src = (o.bind_address, 0) if o.bind_address and o.bind_address != "*" else None
        t0 = time.monotonic()
        try:
            sock = gsocket.create_connection(self.remote, timeout=o.connect_timeout or None,
                                             source_address=src)
        except TimeoutError as exc:
            self.last_error = f"connect: {exc!r}"
            return failure(CONNECT_TIMED_OUT, ST_NOT_CONNECTED)
        except OSError as exc:
            self.last_error = f"connect: {exc!r}"
            return failure(NO_VALID_HOSTS, ST_NOT_CONNECTED)
        self.connect_time = time.monotonic() - t0
        sock.settimeout(None)                  # waits are bounded per stage (_arm)
        self._timeout_now = None
        try:
            # Pipelined groups and bodies go out in one write each; Nagle would only add
            # a delayed-ACK stall before the last segment of a body.
            sock.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1)
        except OSError:
            pass
        self._sock = sock
        try:
            self.local = sock.getsockname()[:2]
        except OSError:
            self.local = None
        return None

    # ----- the pump ---------------------------------------------------------------------------

    def _pump(self) -> None:
        """Drive the machine until it is idle or closed."""
        cli = self._cli
        for _ in range(_MAX_STEPS):
            ev = cli.next_event()
            if ev is NEED_DATA:
                if self._flush():
                    self._read(cli.waiting_for)
            elif ev is IDLE:
                self._flush()
                return
            elif ev is CLOSED:
                self._flush(final=True)
                self.closed_reason = self.closed_reason or cli.closed_reason
                self._drop()
                return
            elif isinstance(ev, TransactionDone):
                self._done.append(ev)
            elif isinstance(ev, SessionFailed):
                self._failure = ev.failure
            elif isinstance(ev, UpgradeTLS):
                if self._flush():
                    self._handshake()
            elif ev is PAUSED:
                raise RuntimeError("SMTP client paused outside a TLS handshake")
        raise RuntimeError("outbound SMTP session does not settle")

    def _timeout(self, what: str) -> float | None:
        value = getattr(self.opts, _TIMEOUT_OPTION.get(what, "rset_timeout"))
        return value if value and value > 0 else None

    def _arm(self, timeout: float | None) -> None:
        """The socket's own timeout bounds the next wait (cheaper than a gevent.Timeout
        per read and write on the hot path)."""
        if timeout != self._timeout_now:
            self._sock.settimeout(timeout)
            self._timeout_now = timeout

    def _flush(self, final: bool = False) -> bool:
        data = self._cli.data_to_send()
        if not data or self._sock is None:
            return True
        try:
            self._arm(self._timeout(self._cli.waiting_for))
            self._sock.sendall(data)
            return True
        except OSError as exc:
            if final:
                return False
            self.last_error = f"send: {exc!r}"
            self._salvage()
            self._cli.send_failed()
            return False

    def _read(self, what: str, timeout: float | None = -1) -> None:
        try:
            self._arm(self._timeout(what) if timeout == -1 else timeout)
            data = self._sock.recv(READ_SIZE)
        except OSError as exc:
            if _is_timeout(exc):
                self._cli.timed_out()
                return
            self.last_error = f"recv: {exc!r}"     # reset, TLS alert: the peer is gone
            data = b""
        self._cli.receive_data(data)

    def _salvage(self) -> None:
        """After a write error, read what the server said before it hung up."""
        deadline = time.monotonic() + _SALVAGE_WAIT
        for _ in range(16):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                self._arm(left)
                data = self._sock.recv(READ_SIZE)
            except OSError:
                return
            if not data:
                return
            self._cli.receive_data(data)

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        self._timeout_now = -1.0
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
        self._dead = self._cli is not None

    # ----- TLS ----------------------------------------------------------------------------------

    def _context(self) -> gssl.SSLContext:
        o = self.opts
        if self._tls_context is not None and not self._unverified:
            return self._tls_context
        verify = "no" if self._unverified else o.tls_verify
        return _shared_context((verify, o.tls_ca, o.tls_certificate, o.tls_key,
                                o.tls_ciphers, o.tls_protocols))

    def _handshake(self) -> None:
        cli = self._cli
        sni = self.mx_hostname if self.mx_hostname and not _is_ip(self.mx_hostname) else None
        try:
            ctx = self._context()
        except TLSConfigError as exc:
            self.last_error = f"TLS options: {exc}"
            self._tls_problem = "config"
            return cli.tls_failed(failure(TLS_FAILED, ST_TLS))
        raw = self._sock
        try:
            with gevent.Timeout(self._timeout("starttls"), _Timeout):
                ssock = ctx.wrap_socket(raw, server_hostname=sni, do_handshake_on_connect=False)
                self._sock = ssock
                self._timeout_now = -1.0       # a new socket object: arm it afresh
                ssock.do_handshake()
        except gssl.SSLCertVerificationError as exc:
            self.last_error = f"TLS: {exc!r}"
            self._tls_problem = "ca"
            return cli.tls_failed(failure(TLS_NOT_CA_SIGNED, ST_TLS))
        except (OSError, _Timeout, ValueError) as exc:
            self.last_error = f"TLS: {exc!r}"
            self._tls_problem = "negotiation"
            return cli.tls_failed(failure(TLS_FAILED, ST_TLS))
        info, names = self._tls_facts(ssock, ctx)
        verify = self.opts.tls_verify.lower()
        if verify in ("host", "optional") and not self._unverified:
            hosts = [h for h in (self.mx_hostname, self.domain) if h]
            if not any(name_matches(n, h) for n in names for h in hosts):
                if verify == "host":
                    self._tls_problem = "name"
                    self.last_error = f"TLS: certificate names {names} do not match {hosts}"
                    return cli.tls_failed(failure(TLS_SUBJECT_MISMATCH, ST_TLS))
                info["outbound_tls_verified"] = "unverified"
        self.tls_info = info
        cli.tls_started(info)

    def _tls_facts(self, ssock, ctx) -> tuple[dict, list]:
        cipher = ssock.cipher() or ("", "", 0)
        try:
            der = ssock.getpeercert(binary_form=True)
        except (ValueError, OSError):
            der = None
        names, subject, issuer = _cert_facts(der)
        verified = ctx.verify_mode == gssl.CERT_REQUIRED and not self._unverified
        bits = str(cipher[2] or "")
        info = {
            "protocol": ssock.version() or "", "cipher": cipher[0] or "", "bits": cipher[2] or 0,
            "outbound_tls": "TLS", "outbound_tls_type": self.opts.client.tls,
            "outbound_tls_cipher": cipher[0] or "", "outbound_tls_cipher_algbits": bits,
            "outbound_tls_cipher_usebits": bits, "outbound_tls_protocol": ssock.version() or "",
            "outbound_tls_verified": "verified" if verified else "unverified",
            "outbound_tls_issuer": issuer, "outbound_tls_subject": subject,
        }
        return info, names
