"""Throughput of ecmta.pools for trivial jobs (a script, not a test).

    python tests/pools/bench_roundtrip.py [seconds]

Prints round trips per second for: sequential `run` from one greenlet; `submit` bursts
(many jobs in flight, results collected with rawlink); and `run` from many greenlets.
"""
from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
from gevent.event import Event  # noqa: E402

from ecmta import pools  # noqa: E402


def noop(x):
    return x


def seq_run(seconds):
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for i in range(200):
            pools.run("IO", noop, i)
        n += 200
    return n / (time.perf_counter() - t0)


def burst_submit(seconds, burst=1000):
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        done, left = Event(), [burst]

        def cb(_r):
            left[0] -= 1
            if not left[0]:
                done.set()
        for i in range(burst):
            pools.submit("IO", noop, i).rawlink(cb)
        done.wait(30)
        n += burst
    return n / (time.perf_counter() - t0)


def many_greenlets(seconds, workers=50):
    count = [0]
    stop = time.perf_counter() + seconds

    def loop():
        while time.perf_counter() < stop:
            pools.run("IO", noop, 1)
            count[0] += 1
    t0 = time.perf_counter()
    gevent.joinall([gevent.spawn(loop) for _ in range(workers)], timeout=seconds + 30)
    return count[0] / (time.perf_counter() - t0)


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    pools.run("IO", noop, 0)  # start the registry and a thread
    print(f"sequential run, 1 greenlet:     {seq_run(seconds):9.0f} jobs/s")
    print(f"submit bursts of 1000 +rawlink: {burst_submit(seconds):9.0f} jobs/s")
    print(f"run from 50 greenlets:          {many_greenlets(seconds):9.0f} jobs/s")
    pools.current().stop()


if __name__ == "__main__":
    main()
