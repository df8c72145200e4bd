"""The delay-DSN schedule (modules.delay_dsn, conf.ref.delay_dsn_*)."""

from __future__ import annotations

import math

import pytest

from ecmta.actors.dsn import next_delay_dsn

H = 3600
Q = 1_700_000_000.0


def schedule(n, retry, cap):
    return [next_delay_dsn(Q, k, retry, cap) - Q for k in range(n)]


def test_documented_example():
    # "send a delay dsn on 3 hours, then 9 hours, 21 hours, 45 hours, then every 24 hours"
    assert schedule(7, 10800, 86400) == [3 * H, 9 * H, 21 * H, 45 * H, 69 * H, 93 * H, 117 * H]


def test_defaults_doubling_then_capped():
    # delay_dsn_retry_interval 3600, the summary table's cap 43200.
    assert schedule(6, 3600, 43200) == [1 * H, 3 * H, 7 * H, 15 * H, 27 * H, 39 * H]


def test_no_cap():
    # The option page's default cap is 0: the interval keeps doubling.
    assert schedule(5, 3600, 0) == [1 * H, 3 * H, 7 * H, 15 * H, 31 * H]
    assert next_delay_dsn(Q, 10_000, 3600, 0) == math.inf


def test_cap_below_the_first_interval():
    assert schedule(3, 7200, 3600) == [1 * H, 2 * H, 3 * H]


def test_large_counts_are_cheap_and_exact():
    assert next_delay_dsn(Q, 1_000_000, 10800, 86400) - Q == 75600 + 86400 * (1_000_000 - 2)


@pytest.mark.parametrize("retry,count", [(0, 0), (-1, 0), (3600, -1)])
def test_bad_arguments(retry, count):
    with pytest.raises(ValueError):
        next_delay_dsn(Q, count, retry, 0)
