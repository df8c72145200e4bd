"""Misbehaving SMTP servers for the remote-fault tests (threads in the test process).

`FaultServer(mode)` listens on 127.0.0.1:<port> and treats every connection per `mode`:

  hang-banner       accepts, never says anything
  reset             accepts and resets the connection at once (RST)
  close-banner      accepts and closes (EOF) before any banner
  garbage-banner    "HELLO THERE" (no reply code), then waits
  binary-banner     2 KB of random octets (NUL, 8-bit, CR, LF), then closes
  multiline-junk    "220-" continuation lines without end (bounded: 20 000 lines)
  longline-banner   a 100 000-octet line without CRLF, then waits
  banner-421        "421 4.3.2 go away" and closes
  mixed-ehlo        a good banner, then "250-ok" / "550 no" (mixed codes) to EHLO
  hang-ehlo         a good banner, then silence after EHLO
  reset-rcpt        well-behaved until RCPT, then RST
  perm-mail         "550 5.7.1 sender refused" to MAIL FROM
  inject-mail       a MAIL FROM refusal whose text holds a bare LF, a bare CR, "@" and a
                    forged mainlog line (log injection)
  hang-body         well-behaved until the end of data, then silence
  hang-354          well-behaved until DATA, then silence
  tls-garbage       offers STARTTLS, answers "220 go ahead", then sends garbage
  tls-refused       offers STARTTLS, answers "454 4.7.0 TLS not available"
  no-starttls       does not offer STARTTLS
  full-backlog      listen(0) with its queue filled: connect() never completes
  ok                a plain server that accepts everything (counts messages)

`messages` counts the ends of data answered 250. Every thread and wait is bounded
(HOLD seconds at most per connection, unless `hold` says); `stop()` closes everything.
"""

from __future__ import annotations

import os
import socket
import threading
import time

HOLD = 60.0
# the domains whose MX (mx.<domain> -> 127.0.0.1) the fault tests' dnsmasq serves
FAULT_DOMAINS = ("hang.test", "reset.test", "eof.test", "garbage.test", "binary.test",
                 "multijunk.test", "longline.test", "c421.test", "mixed.test", "hangehlo.test",
                 "resetrcpt.test", "permmail.test", "inject.test", "hangbody.test", "hang354.test",
                 "tlsgarbage.test", "tlsrefused.test", "notls.test", "tlsfallback.test",
                 "backlog.test", "dead.test", "fine.test")
BANNER = b"220 fault.test ESMTP\r\n"


class FaultServer:
    def __init__(self, mode: str, hold: float = HOLD) -> None:
        self.mode = mode
        self.hold = hold
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.messages = 0
        self.connections = 0
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._fillers: list[socket.socket] = []
        if mode == "full-backlog":
            self.sock.listen(0)
            for _ in range(4):
                s = socket.socket()
                s.settimeout(0.5)
                try:
                    s.connect(("127.0.0.1", self.port))
                except OSError:
                    s.close()
                    break
                self._fillers.append(s)
            return
        self.sock.listen(64)
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        for s in self._conns + self._fillers + [self.sock]:
            try:
                s.close()
            except OSError:
                pass

    # -- plumbing --------------------------------------------------------------------------
    def _accept(self) -> None:
        self.sock.settimeout(0.5)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections += 1
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(self.hold)
        try:
            getattr(self, "_m_" + self.mode.replace("-", "_"))(conn)
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _hold(self, conn) -> None:
        """Say nothing more until the client goes away (or `hold` seconds)."""
        end = time.monotonic() + self.hold
        while not self._stop.is_set() and time.monotonic() < end:
            try:
                if not conn.recv(4096):
                    return
            except socket.timeout:
                return

    def _lines(self, conn):
        buf = b""
        end = time.monotonic() + self.hold
        while time.monotonic() < end:
            while b"\r\n" in buf:
                line, buf = buf.split(b"\r\n", 1)
                yield line
            data = conn.recv(65536)
            if not data:
                return
            buf += data

    @staticmethod
    def _reset(conn) -> None:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        conn.close()

    def _smtp(self, conn, *, ehlo=b"250-fault.test\r\n250 PIPELINING\r\n", on=None) -> None:
        """A small SMTP server; `on(verb, line)` may return bytes to send instead, or
        "hold" / "reset" to stop there."""
        conn.sendall(BANNER)
        in_data = False
        body = b""
        lines = self._lines(conn)
        for line in lines:
            if in_data:
                if line == b".":
                    in_data = False
                    act = on("BODY", body) if on else None
                    if act == "hold":
                        return self._hold(conn)
                    self.messages += 1
                    conn.sendall(b"250 2.0.0 ok\r\n")
                    body = b""
                else:
                    body += line + b"\r\n"
                continue
            verb = line.split(b" ", 1)[0].upper()
            act = on(verb.decode("latin-1"), line) if on else None
            if act == "hold":
                return self._hold(conn)
            if act == "reset":
                return self._reset(conn)
            if isinstance(act, bytes):
                conn.sendall(act)
                continue
            if verb in (b"EHLO", b"LHLO"):
                conn.sendall(ehlo)
            elif verb == b"DATA":
                in_data = True
                conn.sendall(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"250 ok\r\n")

    # -- modes -----------------------------------------------------------------------------
    def _m_hang_banner(self, conn):
        self._hold(conn)

    def _m_reset(self, conn):
        self._reset(conn)

    def _m_close_banner(self, conn):
        conn.close()

    def _m_garbage_banner(self, conn):
        conn.sendall(b"HELLO THERE\r\n")
        self._hold(conn)

    def _m_binary_banner(self, conn):
        conn.sendall(os.urandom(2048) + b"\x00\r\n\xff\r\r\n")

    def _m_multiline_junk(self, conn):
        for i in range(20000):
            if self._stop.is_set():
                return
            conn.sendall(b"220-junk line %d \x01\x02\xff\r\n" % i)

    def _m_longline_banner(self, conn):
        conn.sendall(b"220 " + b"x" * 100000)
        self._hold(conn)

    def _m_banner_421(self, conn):
        conn.sendall(b"421 4.3.2 go away\r\n")

    def _m_mixed_ehlo(self, conn):
        self._smtp(conn, ehlo=b"250-fault.test\r\n550 no\r\n")

    def _m_hang_ehlo(self, conn):
        self._smtp(conn, on=lambda verb, line: "hold" if verb in ("EHLO", "HELO") else None)

    def _m_reset_rcpt(self, conn):
        self._smtp(conn, on=lambda verb, line: "reset" if verb == "RCPT" else None)

    def _m_perm_mail(self, conn):
        self._smtp(conn, on=lambda verb, line: b"550 5.7.1 sender refused\r\n" if verb == "MAIL" else None)

    def _m_inject_mail(self, conn):
        forged = b"1795533187@00/00-00000-00000000@00/00-00000-00000000@00/00-00000-00000000@D@forged"
        self._smtp(conn, on=lambda verb, line: (b"550 5.7.1 no\n" + forged + b"\rmore@x\x00\x1b[2J\r\n")
                   if verb == "MAIL" else None)

    def _m_hang_body(self, conn):
        self._smtp(conn, on=lambda verb, line: "hold" if verb == "BODY" else None)

    def _m_hang_354(self, conn):
        self._smtp(conn, on=lambda verb, line: "hold" if verb == "DATA" else None)

    def _m_tls_garbage(self, conn):
        def on(verb, line):
            if verb == "STARTTLS":
                conn.sendall(b"220 2.0.0 go ahead\r\n" + b"\x15\x03\x03\x00\x02garbage" * 10)
                return "hold"
            return None
        self._smtp(conn, ehlo=b"250-fault.test\r\n250 STARTTLS\r\n", on=on)

    def _m_tls_refused(self, conn):
        self._smtp(conn, ehlo=b"250-fault.test\r\n250 STARTTLS\r\n",
                   on=lambda verb, line: b"454 4.7.0 TLS not available\r\n" if verb == "STARTTLS" else None)

    def _m_no_starttls(self, conn):
        self._smtp(conn)

    def _m_ok(self, conn):
        self._smtp(conn)
