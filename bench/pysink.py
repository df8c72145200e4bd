#!/usr/bin/env python3
"""A counting SMTP sink with STARTTLS, for the bench's outbound-TLS runs (smtp-sink has no TLS).

    python bench/pysink.py --port P [--cert C --key K] [--host 127.0.0.1]

Accepts everything (PIPELINING, 8BITMIME, SIZE, STARTTLS when a certificate is given), keeps
nothing, and prints running counters on stdout in smtp-sink's `-c` style: `mesg=N tls=T` after
every change (at most every 20 ms), where T counts the messages received over TLS. The bench
reads the last `mesg=` of that output exactly as it reads smtp-sink's. Loopback only.
Its ceiling is measured by `python bench/run.py ceiling` (bench/loadgen.py --tls against it).
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import signal  # noqa: E402
import ssl  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
from gevent.server import StreamServer  # noqa: E402

COUNT = {"mesg": 0, "tls": 0}
EOM = b"\r\n.\r\n"


def handler_factory(ctx):
    ehlo_plain = (b"250-sink.perf.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                  + (b"250-STARTTLS\r\n" if ctx else b"") + b"250 SIZE 0\r\n")
    ehlo_tls = b"250-sink.perf.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 0\r\n"

    def handle(sock, _addr):
        tls = False
        buf = bytearray()
        in_data = False
        scan = 0                                  # where the end-of-data search resumes
        try:
            sock.sendall(b"220 sink.perf.test ESMTP\r\n")
            while True:
                chunk = sock.recv(262144)
                if not chunk:
                    return
                buf += chunk
                out = []
                while True:
                    if in_data:
                        if buf[:3] == b".\r\n":       # empty body
                            end = -2
                        else:
                            end = buf.find(EOM, scan)
                            if end < 0:
                                scan = max(0, len(buf) - 4)
                                break
                        del buf[:end + 5]
                        in_data, scan = False, 0
                        COUNT["mesg"] += 1
                        if tls:
                            COUNT["tls"] += 1
                        out.append(b"250 2.0.0 Ok: queued\r\n")
                        continue
                    nl = buf.find(b"\r\n")
                    if nl < 0:
                        break
                    line = bytes(buf[:nl])
                    del buf[:nl + 2]
                    verb = line[:4].upper()
                    if verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                        out.append(b"250 2.0.0 Ok\r\n")
                    elif verb == b"DATA":
                        out.append(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                        in_data, scan = True, 0
                    elif verb in (b"EHLO", b"HELO"):
                        out.append(ehlo_tls if tls else ehlo_plain)
                    elif verb == b"STAR" and ctx is not None and not tls:
                        sock.sendall(b"".join(out) + b"220 2.0.0 Ready to start TLS\r\n")
                        out = []
                        sock = ctx.wrap_socket(sock, server_side=True)
                        tls = True
                        buf.clear()
                    elif verb == b"QUIT":
                        sock.sendall(b"".join(out) + b"221 2.0.0 Bye\r\n")
                        return
                    else:
                        out.append(b"502 5.5.2 Error: command not recognized\r\n")
                if out:
                    sock.sendall(b"".join(out))
        except (OSError, ssl.SSLError):
            return
        finally:
            try:
                sock.close()
            except OSError:
                pass
    return handle


def reporter() -> None:
    last = None
    while True:
        now = (COUNT["mesg"], COUNT["tls"])
        if now != last:
            sys.stdout.write(f"mesg={now[0]} tls={now[1]}\n")
            sys.stdout.flush()
            last = now
        gevent.sleep(0.02)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    a = ap.parse_args()
    ctx = None
    if a.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
    server = StreamServer((a.host, a.port), handler_factory(ctx), backlog=1024)
    server.start()
    gevent.spawn(reporter)
    gevent.signal_handler(signal.SIGTERM, server.stop)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
