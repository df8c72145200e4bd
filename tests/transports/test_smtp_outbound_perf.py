"""Throughput of the outbound path: pipelined 5 KB messages over reused connections to
Postfix's smtp-sink, and the machine's own cost per transaction (no sockets).

`python -m ecmta.tests.transports.test_smtp_outbound_perf` prints the numbers; the tests
only guard against gross regressions (bounds far below what is measured).
"""
import json
import sys
import time

from ecmta.tests.transports.test_smtp_outbound_helpers import Sink, run_child  # noqa: F401
from ecmta.tests.transports.test_smtp_outbound_helpers import sink_factory  # noqa: F401
from ecmta.transports.smtp_client import (
    IDLE, NEED_DATA, ClientOptions, SMTPClient, Transaction, TransactionDone)

HEAD = b"Subject: bench\r\nFrom: a@example.org\r\nTo: r@example.net\r\n\r\n"
BODY = HEAD + (b"x" * 76 + b"\r\n") * ((5120 - len(HEAD)) // 78)
EHLO = b"250-mx.example.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 10000000\r\n"
CONFIRM_AND_NEXT = b"250 2.0.0 Ok: queued\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n"


def machine_cost(n: int = 5000) -> float:
    """Microseconds of machine work per pipelined 5 KB transaction (body + next
    envelope in one write, four replies per read), server replies precomputed."""
    cli = SMTPClient(ClientOptions(ehlo_hostname="bench"))
    cli.receive_data(b"220 mx ESMTP\r\n")
    cli.next_event()
    cli.data_to_send()
    cli.receive_data(EHLO)
    assert cli.next_event() is IDLE
    txn = Transaction("a@example.org", [("r@example.net", None)])
    for _ in range(n):
        cli.send_mail(txn, BODY)
    cli.next_event()
    cli.data_to_send()
    cli.receive_data(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n")
    done = 0
    t0 = time.perf_counter()
    while done < n:
        ev = cli.next_event()
        if ev is NEED_DATA:
            cli.data_to_send()
            cli.receive_data(CONFIRM_AND_NEXT)
        elif isinstance(ev, TransactionDone):
            done += 1
    return (time.perf_counter() - t0) / n * 1e6


def sink_throughput(tmp_path, runs=((1, 1), (1, 10), (8, 10)), messages=2000) -> dict:
    sink = Sink()
    try:
        return run_child("bench", {"host": "127.0.0.1", "port": sink.port,
                                   "runs": [list(r) for r in runs], "messages": messages},
                         tmp_path, timeout=300)
    finally:
        sink.stop()


def test_machine_cost_per_transaction():
    assert machine_cost(2000) < 500          # measured ~40 us


def test_sink_throughput(tmp_path):
    res = sink_throughput(tmp_path, runs=((1, 10), (4, 10)), messages=1000)
    print(json.dumps(res))
    assert res["body_size"] >= 5000
    assert res["1x10"] > 300 and res["4x10"] > 300   # measured several thousand per second


if __name__ == "__main__":
    import pathlib
    import tempfile

    print(f"machine: {machine_cost():.1f} us per pipelined 5 KB transaction")
    with tempfile.TemporaryDirectory() as d:
        res = sink_throughput(pathlib.Path(d), messages=int(sys.argv[1]) if len(sys.argv) > 1
                              else 5000)
    print("smtp-sink, messages/s by connections x transactions per deliver_many():")
    print(json.dumps(res, indent=1))
