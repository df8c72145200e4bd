#!/usr/bin/env python3
"""SMTP load generator for what smtp-source cannot do: STARTTLS, and recipients spread over
many domains on the same sessions.

    python bench/loadgen.py --port P --count N --conc C [--size S] [--tls] [--domains D]
                            [--rcpt-domain example.test] [--subject S]

Like `smtp-source -d -N`: C persistent sessions share N messages; each message has one
recipient `<n>rcpt@<domain>` (n = message number, so no two are alike); with `--domains D` the
domain of message n is `d<n % D>.test`, so consecutive messages on one session go to different
domains. Commands are pipelined (MAIL, RCPT, DATA in one write) when the server offers
PIPELINING. The payload is S bytes of 80-character lines after From/To/Date/Message-Id(/Subject)
headers, as smtp-source writes it. With `--tls` every session does STARTTLS (fails if it is not
offered; the certificate is not verified). Any reply other than the expected one stops that
session and is reported. Prints one JSON line: sent, failed, seconds, errors (first few);
exit status 0 only when all N were accepted. Its ceiling against smtp-sink (plain) and
bench/pysink.py (TLS) is what `python bench/run.py ceiling` measures.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import ssl  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402


class SmtpError(Exception):
    pass


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def line(self) -> bytes:
        while True:
            nl = self.buf.find(b"\r\n")
            if nl >= 0:
                out = bytes(self.buf[:nl])
                del self.buf[:nl + 2]
                return out
            chunk = self.sock.recv(65536)
            if not chunk:
                raise SmtpError("connection closed by the server")
            self.buf += chunk

    def reply(self, expect: int) -> list[bytes]:
        lines = []
        while True:
            ln = self.line()
            lines.append(ln)
            if len(ln) < 4 or ln[3:4] != b"-":
                break
        code = int(lines[-1][:3] or 0)
        if code != expect:
            raise SmtpError(b" | ".join(lines).decode(errors="replace")[:200])
        return lines


def payload(size: int) -> bytes:
    lines, left, n = [], size, 1
    while left > 0:
        text = (str(n) + "X" * 80)[:min(80, left)]
        lines.append(text)
        left -= len(text)
        n += 1
    return ("\r\n".join(lines) + "\r\n").encode()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--conc", type=int, default=10)
    ap.add_argument("--size", type=int, default=5000)
    ap.add_argument("--tls", action="store_true")
    ap.add_argument("--domains", type=int, default=0)
    ap.add_argument("--rcpt-domain", default="example.test")
    ap.add_argument("--sender", default="sender@perf.test")
    ap.add_argument("--ehlo", default="perf.test")
    ap.add_argument("--subject", default="")
    ap.add_argument("--timeout", type=float, default=600)
    a = ap.parse_args()

    body = payload(a.size)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    state = {"next": 0, "sent": 0, "failed": 0}
    errors: list[str] = []
    stamp = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
    subject = f"Subject: {a.subject}\r\n" if a.subject else ""
    mail_cmd = f"MAIL FROM:<{a.sender}>\r\n".encode()

    def rcpt_of(n: int) -> str:
        dom = f"d{n % a.domains}.test" if a.domains else a.rcpt_domain
        return f"{n}rcpt@{dom}"

    def session(idx: int) -> None:
        sock = None
        try:
            sock = socket.create_connection((a.host, a.port), timeout=a.timeout)
            c = Conn(sock)
            c.reply(220)
            sock.sendall(f"EHLO {a.ehlo}\r\n".encode())
            caps = {ln[4:].split(b" ")[0].upper() for ln in c.reply(250)[1:]}
            if a.tls:
                if b"STARTTLS" not in caps:
                    raise SmtpError("STARTTLS not offered")
                sock.sendall(b"STARTTLS\r\n")
                c.reply(220)
                sock = ctx.wrap_socket(sock, server_hostname=None)
                c = Conn(sock)
                sock.sendall(f"EHLO {a.ehlo}\r\n".encode())
                caps = {ln[4:].split(b" ")[0].upper() for ln in c.reply(250)[1:]}
            pipelining = b"PIPELINING" in caps
            while state["next"] < a.count:
                n = state["next"]
                state["next"] += 1
                rcpt = rcpt_of(n)
                rcpt_cmd = f"RCPT TO:<{rcpt}>\r\n".encode()
                head = (f"From: <{a.sender}>\r\nTo: <{rcpt}>\r\nDate: {stamp}\r\n"
                        f"Message-Id: <{n}.{idx}@perf.test>\r\n{subject}\r\n").encode()
                try:
                    if pipelining:
                        sock.sendall(mail_cmd + rcpt_cmd + b"DATA\r\n")
                        c.reply(250)
                        c.reply(250)
                        c.reply(354)
                    else:
                        for cmd, code in ((mail_cmd, 250), (rcpt_cmd, 250), (b"DATA\r\n", 354)):
                            sock.sendall(cmd)
                            c.reply(code)
                    sock.sendall(head + body + b".\r\n")
                    c.reply(250)
                except Exception:
                    state["failed"] += 1
                    raise
                state["sent"] += 1
            sock.sendall(b"QUIT\r\n")
            try:
                c.reply(221)
            except (SmtpError, OSError):
                pass
        except Exception as exc:
            if len(errors) < 5:
                errors.append(f"session {idx}: {exc}")
        finally:
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass

    t0 = time.monotonic()
    jobs = [gevent.spawn(session, i) for i in range(max(1, min(a.conc, a.count)))]
    gevent.joinall(jobs, timeout=a.timeout)
    secs = time.monotonic() - t0
    gevent.killall(jobs, block=False)
    out = {"sent": state["sent"], "failed": state["failed"], "seconds": round(secs, 3), "errors": errors}
    print(json.dumps(out), flush=True)
    return 0 if state["sent"] == a.count else 1


if __name__ == "__main__":
    raise SystemExit(main())
