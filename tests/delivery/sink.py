"""A scripted, recording SMTP server for the delivery tests (run in a subprocess).

    python -m ecmta.tests.delivery.sink <config.json>

It is built on ecmta.transports.smtp_server (the sans-IO machine) under gevent and writes
one JSON line per event to `record` (flushed at once), so a test can read what arrived
and when: `connect` (peer ip/port, `concurrent` = open sessions including this one),
`tls`, `helo`, `rcpt` (address and the reply given), `message` (sender, accepted
recipients, size, `file` = the stored body, arrival time), `close`. Times are time.time().

Config (JSON):
    host, port          where to listen (port 0: any; the bound port is written to `ready`)
    ready               file written with the port once listening
    record              the JSON-lines event file
    dump                directory for message bodies (one file per message)
    hostname            the banner/EHLO name
    extensions          EHLO keywords (STARTTLS is added when `tls` is given)
    tls                 {"cert": path, "key": path} to offer STARTTLS
    rcpt                {address: [reply, reply, ...]}: the reply to the n-th RCPT of that
                        address (the last one repeats); a reply is "451 4.3.0 text" or "250"
    banner              [reply, ...]: the greeting of the n-th connection (the last repeats);
                        default 220
    data                [reply, ...]: the reply to the n-th message (the last repeats);
                        default "250 2.0.0 OK"; "drop" closes the connection instead
    hold                seconds to wait before answering each end of data (keeps the
                        session busy, so concurrency can be measured); a list gives the
                        wait for the n-th message (the last repeats). A `data_end` event is
                        written before the wait.
"""

from __future__ import annotations

import gevent.monkey

gevent.monkey.patch_all()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
from gevent import ssl as gssl  # noqa: E402
from gevent.server import StreamServer  # noqa: E402

from ecmta.transports import smtp_server as S  # noqa: E402
from ecmta.transports.smtp_replies import Reply  # noqa: E402

MAX_SESSION = 300.0       # no test session lasts longer: the sink never hangs a test


def parse_reply(text: str) -> Reply:
    code, _, rest = str(text).partition(" ")
    return Reply.parse(int(code), rest or "OK")


class Sink:
    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg
        self.out = open(cfg["record"], "a", buffering=1)
        self.dump = cfg.get("dump") or ""
        if self.dump:
            os.makedirs(self.dump, exist_ok=True)
        self.open = 0
        self.conns = 0
        self.messages = 0
        self.rcpt_seen: dict[str, int] = {}
        self.data_seen = 0
        self.ends = 0
        self.ctx = None
        if cfg.get("tls"):
            ctx = gssl.SSLContext(gssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cfg["tls"]["cert"], cfg["tls"]["key"])
            self.ctx = ctx

    def event(self, **kw) -> None:
        kw.setdefault("t", time.time())
        self.out.write(json.dumps(kw) + "\n")

    def options(self) -> S.ServerOptions:
        ext = list(self.cfg.get("extensions") or ["PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"])
        if self.ctx is not None and "STARTTLS" not in ext:
            ext.append("STARTTLS")
        return S.ServerOptions(hostname=self.cfg.get("hostname", "sink.test"),
                               smtp_extensions=tuple(ext), tls_available=self.ctx is not None)

    def rcpt_reply(self, addr: str) -> Reply | None:
        script = (self.cfg.get("rcpt") or {}).get(addr.lower())
        n = self.rcpt_seen.get(addr.lower(), 0)
        self.rcpt_seen[addr.lower()] = n + 1
        if not script:
            return None
        return parse_reply(script[min(n, len(script) - 1)])

    def data_reply(self) -> Reply:
        script = self.cfg.get("data") or ["250 2.0.0 OK"]
        n, self.data_seen = self.data_seen, self.data_seen + 1
        text = script[min(n, len(script) - 1)]
        return None if text == "drop" else parse_reply(text)

    def handle(self, sock, addr) -> None:
        self.conns += 1
        conn = self.conns
        self.open += 1
        self.event(ev="connect", conn=conn, peer=addr[0], port=addr[1], concurrent=self.open)
        try:
            with gevent.Timeout(MAX_SESSION, False):
                self.session(sock, addr, conn)
        except Exception as exc:          # a test server: say it, keep serving
            self.event(ev="error", conn=conn, error=repr(exc))
        finally:
            self.open -= 1
            self.event(ev="close", conn=conn, concurrent=self.open)
            try:
                sock.close()
            except OSError:
                pass

    def session(self, sock, addr, conn: int) -> None:
        srv = S.SMTPServer(self.options(), peer=addr, local=sock.getsockname())
        body: list[bytes] = []
        rcpts: list[str] = []
        while True:
            ev = srv.next_event()
            if ev is S.NEED_DATA:
                sock.sendall(srv.data_to_send())
                data = sock.recv(65536)
                srv.receive_data(data)
            elif ev is S.CLOSED:
                out = srv.data_to_send()
                if out:
                    try:
                        sock.sendall(out)
                    except OSError:
                        pass
                return
            elif isinstance(ev, S.UpgradeTLS):
                sock.sendall(srv.data_to_send())
                try:
                    sock = self.ctx.wrap_socket(sock, server_side=True)
                except (OSError, gssl.SSLError) as exc:
                    self.event(ev="tls_failed", conn=conn, error=repr(exc))
                    return
                self.event(ev="tls", conn=conn, version=sock.version())
                srv.tls_started({"protocol": sock.version()})
            elif isinstance(ev, S.Connect):
                script = self.cfg.get("banner")
                if script:
                    reply = parse_reply(script[min(conn - 1, len(script) - 1)])
                    self.event(ev="banner", conn=conn, reply=str(reply))
                    srv.respond(reply)
                else:
                    srv.respond()
            elif isinstance(ev, S.Helo):
                self.event(ev="helo", conn=conn, domain=ev.domain)
                srv.respond()
            elif isinstance(ev, S.MailFrom):
                body, rcpts = [], []
                self.event(ev="mail", conn=conn, mailfrom=str(ev.raw))
                srv.respond()
            elif isinstance(ev, S.RcptTo):
                a = ev.address
                text = f"{a.localpart}@{a.domain}" if a.domain else a.localpart
                reply = self.rcpt_reply(text) or ev.default
                self.event(ev="rcpt", conn=conn, addr=text, reply=str(reply), raw=ev.raw)
                if reply.code < 400:
                    rcpts.append(text)
                srv.respond(reply)
            elif isinstance(ev, S.DataChunk):
                body.append(ev.data)
            elif isinstance(ev, S.DataEnd):
                hold = self.cfg.get("hold") or 0
                if isinstance(hold, list):      # per message, the last one repeats
                    hold = hold[min(self.ends, len(hold) - 1)]
                self.ends += 1
                self.event(ev="data_end", conn=conn, rcpts=list(rcpts), size=len(b"".join(body)))
                if hold:
                    gevent.sleep(float(hold))
                reply = self.data_reply()
                if reply is None:               # "drop": hang up without answering
                    self.event(ev="dropped", conn=conn, rcpts=list(rcpts))
                    return
                data = b"".join(body)
                self.messages += 1
                path = ""
                if self.dump and reply.code < 400:
                    path = os.path.join(self.dump, f"{conn:05d}-{self.messages:06d}.eml")
                    with open(path, "wb") as fh:
                        fh.write(data)
                self.event(ev="message", conn=conn, n=self.messages, rcpts=rcpts,
                           mailfrom=str(srv.transaction.raw) if srv.transaction else "",
                           size=len(data), reply=str(reply), file=path)
                body, rcpts = [], []
                srv.respond(reply)
            elif isinstance(ev, S.Decision):
                srv.respond()


def main() -> None:
    with open(sys.argv[1]) as fh:
        cfg = json.load(fh)
    sink = Sink(cfg)
    server = StreamServer((cfg.get("host", "127.0.0.1"), int(cfg.get("port", 0))), sink.handle,
                          backlog=256)
    server.start()
    port = server.server_port
    tmp = cfg["ready"] + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(str(port))
    os.replace(tmp, cfg["ready"])
    server.serve_forever()


if __name__ == "__main__":
    main()
