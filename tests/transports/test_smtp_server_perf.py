"""Cost of one SMTP session through the sans-IO server (no sockets): a 5 KB message.

`python -m ecmta.tests.transports.test_smtp_server_perf` prints the numbers; the test only
guards against gross regressions (bound far above the measured cost).
"""
import time

from ecmta.transports.smtp_server import (
    CLOSED, NEED_DATA, DataChunk, Decision, ServerOptions, SMTPServer)

OPTS = ServerOptions(hostname="mx.example.test",
                     smtp_extensions=("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SIZE",
                                      "CHUNKING", "DSN"), max_message_size=10 << 20)


def _message(size: int = 5120) -> bytes:
    head = (b"From: Alice <alice@example.org>\r\nTo: bob@example.net\r\n"
            b"Subject: benchmark\r\nDate: Tue, 29 Sep 2009 06:11:56 -0400\r\n"
            b"Message-ID: <1@example.org>\r\n\r\n")
    line = b"The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmn\r\n"
    body = line * ((size - len(head)) // len(line) + 1)
    return head + body[:size - len(head) - 2] + b"\r\n"


MSG = _message()
PIPELINED = [b"EHLO client.example.org\r\n",
             b"MAIL FROM:<alice@example.org> SIZE=5120\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n",
             MSG + b".\r\nQUIT\r\n"]
SEQUENTIAL = [b"EHLO client.example.org\r\n", b"MAIL FROM:<alice@example.org>\r\n",
              b"RCPT TO:<bob@example.net>\r\n", b"DATA\r\n", MSG + b".\r\n", b"QUIT\r\n"]


def session(reads: list[bytes]) -> int:
    """A minimal driver: default answers, body bytes counted. Returns octets written."""
    srv = SMTPServer(OPTS, peer=("192.0.2.1", 4000), local=("198.51.100.1", 25))
    written = 0
    it = iter(reads)
    while True:
        ev = srv.next_event()
        if ev is NEED_DATA:
            written += len(srv.data_to_send())
            srv.receive_data(next(it))
        elif ev is CLOSED:
            return written + len(srv.data_to_send())
        elif isinstance(ev, Decision):
            srv.respond()
        elif isinstance(ev, DataChunk):
            pass


def measure(reads: list[bytes], n: int = 2000) -> float:
    session(reads)
    t0 = time.perf_counter()
    for _ in range(n):
        session(reads)
    return (time.perf_counter() - t0) / n


def test_session_cost_regression_guard():
    assert session(PIPELINED) == session(SEQUENTIAL) > 0
    assert measure(PIPELINED, 200) < 2e-3          # measured ~40 us; 50x headroom


if __name__ == "__main__":
    for name, reads in (("pipelined (3 reads)", PIPELINED), ("one command per read", SEQUENTIAL)):
        t = measure(reads)
        print(f"5 KB message session, {name}: {t * 1e6:.1f} us/session, {1 / t:,.0f} sessions/s")
