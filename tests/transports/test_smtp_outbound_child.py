"""Gevent child processes for the outbound driver tests (pytest's own process stays
unpatched). Holds no tests.

    python -m ecmta.tests.transports.test_smtp_outbound_child peer <spec.json>
        A scripted SMTP server built on ecmta's SMTPServer machine. Prints `PORT <n>`,
        then serves until killed; every event goes to the JSON-lines file spec["log"].
    python -m ecmta.tests.transports.test_smtp_outbound_child client <spec.json>
        Runs OutboundConnection against spec["host"]:spec["port"] and prints one JSON
        object with the outcomes and the connection's facts.

Every wait is bounded: the peer's scripted hangs last spec["hang_for"] seconds at most,
the client's by the timeouts it is given.
"""
import json
import sys

# Nothing that imports socket/ssl at module level: gevent patches first, in main().


def _peer(spec: dict) -> None:
    import time

    import gevent
    from gevent import ssl as gssl
    from gevent.server import StreamServer

    from ecmta.transports import smtp_server as S
    from ecmta.transports.smtp_replies import Reply

    log = open(spec["log"], "a", buffering=1)

    def note(**kw):
        log.write(json.dumps(kw) + "\n")

    rules = spec.get("rules", {})
    hang_for = spec.get("hang_for", 5)
    at = spec.get("at", {})          # stage -> "hang" | "close" | "garbage"

    def scripted(stage: str, sock) -> bool:
        """Play the scripted misbehaviour for a stage; True = stop the session."""
        act = at.get(stage)
        if act is None:
            return False
        if act == "hang":
            gevent.sleep(hang_for)
            return True
        if act == "close":
            return True
        if act == "garbage":
            sock.sendall(b"\x00\xffthis is not smtp\r\n")
            gevent.sleep(0.2)
            return True
        raise ValueError(f"unknown scripted action {act!r}")

    ctx = None
    if spec.get("cert"):
        ctx = gssl.SSLContext(gssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(spec["cert"], spec["key"])
        if spec.get("client_ca"):
            ctx.load_verify_locations(spec["client_ca"])
            ctx.verify_mode = gssl.CERT_OPTIONAL

    opts = S.ServerOptions(hostname="peer.test",
                           smtp_extensions=tuple(spec.get("extensions", S.DEFAULT_EXTENSIONS)),
                           tls_available=ctx is not None,
                           max_message_size=spec.get("max_message_size", 0))

    def reply_for(ev):
        name = type(ev).__name__
        rule = rules.get(name)
        if isinstance(rule, dict):                      # keyed by address
            key = str(getattr(ev, "address", ""))
            rule = rule.get(key)
        if rule is None:
            return None
        return Reply.parse(int(rule[0]), rule[1])

    def handle(sock, addr):
        note(event="connect", peer=list(addr[:2]))
        srv = S.SMTPServer(opts, peer=addr[:2], local=sock.getsockname()[:2])
        body = bytearray()
        sessions = 0
        try:
            if spec.get("banner"):
                sock.sendall(spec["banner"].encode() + b"\r\n")
                if spec["banner"].startswith(("4", "5")):
                    gevent.sleep(0.2)
                    return
            if scripted("banner", sock):
                return
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                ev = srv.next_event()
                if ev is S.NEED_DATA:
                    out = srv.data_to_send()
                    if out:
                        sock.sendall(out)
                    data = sock.recv(65536)
                    srv.receive_data(data)
                    if not data:
                        note(event="eof")
                elif ev is S.CLOSED:
                    out = srv.data_to_send()
                    if out:
                        sock.sendall(out)
                    return
                elif isinstance(ev, S.UpgradeTLS):
                    sock.sendall(srv.data_to_send())
                    if spec.get("tls_break"):
                        sock.sendall(b"this is not TLS\r\n")
                        gevent.sleep(0.2)
                        note(event="tls_broken")
                        return
                    try:
                        sock = ctx.wrap_socket(sock, server_side=True)
                    except Exception as exc:
                        note(event="tls_failed", error=repr(exc))
                        return
                    cert = sock.getpeercert() or {}
                    cn = ""
                    for rdn in cert.get("subject", ()):
                        for k, v in rdn:
                            if k == "commonName":
                                cn = v
                    note(event="tls", version=sock.version(), client_cn=cn)
                    srv.tls_started({"tls": "on"})
                elif isinstance(ev, S.DataChunk):
                    body.extend(ev.data)
                    if at.get("body_first_chunk"):
                        sock.sendall(at["body_first_chunk"].encode() + b"\r\n")
                        gevent.sleep(0.2)
                        note(event="abandoned_body", got=len(body))
                        return
                elif isinstance(ev, S.Decision):
                    stage = {"Helo": "ehlo", "MailFrom": "mail", "RcptTo": "rcpt",
                             "DataStart": "data", "DataEnd": "dot", "Rset": "rset",
                             "XClient": "xclient", "StartTLS": "starttls",
                             "Quit": "quit"}.get(type(ev).__name__, "")
                    if isinstance(ev, S.Helo):
                        note(event="helo", verb=ev.verb, domain=ev.domain)
                    elif isinstance(ev, S.MailFrom):
                        note(event="mail", addr=str(ev.address), raw=ev.raw)
                    elif isinstance(ev, S.RcptTo):
                        note(event="rcpt", addr=str(ev.address), raw=ev.raw)
                    elif isinstance(ev, S.XClient):
                        note(event="xclient", attrs=ev.attrs)
                    elif isinstance(ev, S.DataEnd):
                        note(event="body", data=bytes(body).decode("latin-1"))
                        body.clear()
                        sessions += 1
                    elif isinstance(ev, S.Rset):
                        note(event="rset")
                    if stage and stage in at:
                        out = srv.data_to_send()     # earlier pipelined replies go first
                        if out:
                            sock.sendall(out)
                        if scripted(stage, sock):
                            return
                    srv.respond(reply_for(ev))
                    if isinstance(ev, S.DataEnd) and spec.get("close_after_messages") \
                            and sessions >= spec["close_after_messages"]:
                        sock.sendall(srv.data_to_send())
                        if spec.get("idle_421"):
                            sock.sendall(b"421 4.4.2 peer.test idle timeout\r\n")
                        gevent.sleep(0.1)
                        return
        except OSError as exc:
            note(event="oserror", error=repr(exc))
        finally:
            try:
                sock.close()
            except OSError:
                pass

    server = StreamServer(("127.0.0.1", spec.get("port", 0)), handle)
    server.start()
    sys.stdout.write(f"PORT {server.server_port}\n")
    sys.stdout.flush()
    gevent.sleep(spec.get("lifetime", 120))


def _client(spec: dict) -> None:
    import time

    from ecmta.transports.smtp_client import ClientOptions, Transaction
    from ecmta.transports.smtp_outbound import OutboundConnection, OutboundOptions

    o = dict(spec.get("opts", {}))
    copts = ClientOptions(**o.pop("client", {}))
    opts = OutboundOptions(client=copts, **o)

    def loader(body, fails):
        def load():
            if fails:
                raise OSError("spool file vanished")
            return body.encode("latin-1")
        return load

    txns = [Transaction(t.get("mailfrom", "s@example.org"),
                        [(r, None) for r in t.get("rcpts", ["r@example.net"])],
                        loader(t.get("body", "Subject: t\r\n\r\nhello\r\n"),
                               t.get("loader_fails", False)),
                        xclient=t.get("xclient"))
            for t in spec.get("txns", [{}])]
    conn = OutboundConnection(spec["host"], spec["port"], opts,
                              mx_hostname=spec.get("mx_hostname", ""),
                              domain=spec.get("domain", ""))
    t0 = time.monotonic()
    if spec.get("many"):
        results = conn.deliver_many(txns)
    else:
        results = []
        for t in txns:
            results.append(conn.deliver(t))
            if spec.get("pause_between"):
                import gevent
                gevent.sleep(spec["pause_between"])
    elapsed = time.monotonic() - t0
    usable = conn.usable()
    facts = {
        "outcomes": [[{"rcpt": x.rcpt, "status": x.status, "code": x.code, "text": x.text,
                       "stage": x.stage, "bytes_sent": x.bytes_sent} for x in r]
                     for r in results],
        "tls_info": conn.tls_info, "capabilities": conn.capabilities,
        "tls_fallback": conn.tls_fallback, "deliveries": conn.deliveries,
        "transactions": conn.transactions, "usable": usable,
        "local": list(conn.local) if conn.local else None,
        "connect_time": conn.connect_time, "setup_time": conn.setup_time,
        "last_delivery_time": conn.last_delivery_time, "elapsed": elapsed,
        "last_error": conn.last_error, "closed_reason": conn.closed_reason,
    }
    conn.close()
    facts["closed"] = conn.closed
    sys.stdout.write(json.dumps(facts) + "\n")
    sys.stdout.flush()


def _bench(spec: dict) -> None:
    """Pipelined 5 KB messages over reused connections: prints messages per second."""
    import time

    import gevent

    from ecmta.transports.smtp_client import ClientOptions, Transaction
    from ecmta.transports.smtp_outbound import OutboundConnection, OutboundOptions

    head = b"Subject: bench\r\nFrom: a@example.org\r\nTo: r@example.net\r\n\r\n"
    body = head + (b"x" * 76 + b"\r\n") * ((spec.get("size", 5120) - len(head)) // 78)
    txn = Transaction("a@example.org", [("r@example.net", None)], lambda: body)
    results = {}

    def worker(n: int, batch: int) -> None:
        conn = OutboundConnection(spec["host"], spec["port"],
                                  OutboundOptions(client=ClientOptions(ehlo_hostname="bench")))
        for _ in range(n // batch):
            for outs in conn.deliver_many([txn] * batch):
                assert outs[0].status == "delivered", outs
        conn.close()

    for conns, batch in spec.get("runs", [[1, 1], [1, 10], [8, 10]]):
        n = spec.get("messages", 2000)
        t0 = time.perf_counter()
        gevent.joinall([gevent.spawn(worker, n, batch) for _ in range(conns)],
                       raise_error=True, timeout=120)
        results[f"{conns}x{batch}"] = round(conns * n / (time.perf_counter() - t0))
    results["body_size"] = len(body)
    sys.stdout.write(json.dumps(results) + "\n")
    sys.stdout.flush()


def main() -> None:
    from gevent import monkey
    monkey.patch_all()
    mode, path = sys.argv[1], sys.argv[2]
    with open(path) as f:
        spec = json.load(f)
    {"peer": _peer, "client": _client, "bench": _bench}[mode](spec)


if __name__ == "__main__":
    main()
