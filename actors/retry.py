"""Momentum's retry and expiry rules as pure functions (conf.ref.retry_interval,
max_retry_interval, max_retries, message_expiration, never_retry,
never_attempt_expired_messages).

The wait after the n-th transient failure is `min(retry_interval * 2**(n-1),
max_retry_interval)`. A message fails permanently when it is older than
message_expiration, or has been retried max_retries times (`auto` derives that number
from message_expiration and the schedule, so manual flushes can use it up early; `none`
means expiration only), or on its first transient failure when never_retry is set.
"""

from __future__ import annotations

EXPIRED = "554 5.4.7 [internal] exceeded max time without delivery"
MAX_RETRIES = "554 5.4.7 [internal] exceeded max retries without delivery"
NOT_ATTEMPTED = "554 5.4.5 [internal] Delivery not attempted (message expired)"


def retry_wait(failures: int, retry_interval: float, max_retry_interval: float) -> float:
    """Seconds to wait after the `failures`-th transient failure (1-based)."""
    n = max(1, failures)
    wait = float(retry_interval) * (2 ** min(n - 1, 62))
    if max_retry_interval and max_retry_interval > 0:
        wait = min(wait, float(max_retry_interval))
    return max(wait, 0.0)


def auto_max_retries(expiration: float, retry_interval: float, max_retry_interval: float) -> int:
    """How many retries the schedule fits into message_expiration (`max_retries = auto`)."""
    if retry_interval <= 0 or expiration <= 0:
        return 0
    total, n = 0.0, 0
    while n < 10000:
        nxt = retry_wait(n + 1, retry_interval, max_retry_interval)
        if total + nxt > expiration:
            break
        total += nxt
        n += 1
    return n


def retry_limit(max_retries, expiration, retry_interval, max_retry_interval) -> int | None:
    """The retry count limit, or None for `none` (expiration only)."""
    text = str(max_retries).strip().lower() if max_retries is not None else "auto"
    if text == "none":
        return None
    if text == "auto":
        return auto_max_retries(expiration, retry_interval, max_retry_interval)
    try:
        return max(0, int(text))
    except ValueError:
        return auto_max_retries(expiration, retry_interval, max_retry_interval)


def expired(received_at: float, now: float, expiration: float) -> bool:
    return expiration > 0 and now - received_at >= expiration


def after_transient(attempts: int, received_at: float, now: float, *, retry_interval,
                    max_retry_interval, max_retries, expiration, never_retry) -> tuple[str, float | str]:
    """What to do after a transient failure; `attempts` already counts this failure.

    Returns ("delay", next_attempt_timestamp) or ("fail", permanent_reason)."""
    if never_retry:
        return "fail", MAX_RETRIES
    if expired(received_at, now, expiration):
        return "fail", EXPIRED
    limit = retry_limit(max_retries, expiration, retry_interval, max_retry_interval)
    if limit is not None and attempts > limit:
        return "fail", MAX_RETRIES
    nxt = now + retry_wait(attempts, retry_interval, max_retry_interval)
    if expiration > 0 and nxt - received_at > expiration:
        # The next try would come after expiry: try once more at the expiry time.
        nxt = received_at + expiration
    return "delay", nxt
