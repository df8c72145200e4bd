"""Shared pieces of the bounce tests: the reply tables, sample notices, a scripted SMTP
server for the daemon tests, bouncelog readers."""

from __future__ import annotations

import os
import socket
import threading

HERE = os.path.dirname(os.path.abspath(__file__))


def reply_table(name: str) -> list[tuple[int, str, str]]:
    """(expected class, source, reply) rows of a tests/bounce/*.tsv table."""
    rows = []
    with open(os.path.join(HERE, name), encoding="utf-8") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            exp, src, text = line.split("\t", 2)
            rows.append((int(exp), src, text))
    return rows


def notice(name: str) -> bytes:
    with open(os.path.join(HERE, "notices", name), "rb") as fh:
        return fh.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


class ScriptedSMTP:
    """A tiny SMTP server on 127.0.0.1 answering RCPT (or DATA) with a fixed reply; records
    what it was sent. Runs in a thread of the test process."""

    def __init__(self, rcpt_reply: str = "250 2.1.5 ok", data_reply: str = "250 2.0.0 ok") -> None:
        self.rcpt_reply, self.data_reply = rcpt_reply, data_reply
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.rcpts: list[str] = []
        self.messages = 0
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn) -> None:
        f = conn.makefile("rb")

        def send(text: str) -> None:
            conn.sendall(text.encode() + b"\r\n")
        try:
            send("220 scripted.test ESMTP")
            in_data = False
            for raw in f:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if in_data:
                    if line == ".":
                        in_data = False
                        self.messages += 1
                        send(self.data_reply)
                    continue
                verb = line.split(" ", 1)[0].split(":", 1)[0].upper()
                if verb == "EHLO":
                    send("250-scripted.test\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES")
                elif verb == "HELO":
                    send("250 scripted.test")
                elif verb == "MAIL":
                    send("250 2.1.0 ok")
                elif verb == "RCPT":
                    self.rcpts.append(line)
                    send(self.rcpt_reply)
                elif verb == "DATA":
                    in_data = True
                    send("354 go ahead")
                elif verb == "QUIT":
                    send("221 2.0.0 bye")
                    return
                elif verb == "RSET":
                    send("250 2.0.0 ok")
                else:
                    send("250 2.0.0 ok")
        except OSError:
            pass
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop = True
        try:
            self.sock.close()
        except OSError:
            pass


def bouncelog_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            return fh.read().splitlines()
    except OSError:
        return []
