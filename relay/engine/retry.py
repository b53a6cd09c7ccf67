"""When to try a target again: a pure policy over tenacity's stop and wait strategies.

Retries are values, not sleeping tasks: the engine stores the time of the next attempt, so a
thousand steps waiting to retry hold no connection and no coroutine.
"""

from __future__ import annotations

import functools
import math
import time
from email.utils import parsedate_to_datetime

import tenacity

from relay import config

RETRYABLE_STATUSES = frozenset({408, 429})


def is_success(status: int | None) -> bool:
    return status is not None and 200 <= status < 300


def is_retryable(status: int | None) -> bool:
    """No answer at all (refused, reset, timed out), 5xx, 408 and 429 are worth another try."""
    return status is None or status >= 500 or status in RETRYABLE_STATUSES


class Backoff:
    """The policy's schedule of waits, each shortened by up to a fifth at random (so that
    sends failing together do not come back together), bounded by `attempts` and
    `retry_for`: tenacity's strategies, asked about a send that is a row, not a loop."""

    JITTER = 0.2

    def __init__(self, policy: config.SendPolicy) -> None:
        self.policy = policy
        stop: tenacity.stop.stop_base = tenacity.stop_never
        if policy.attempts:
            stop = tenacity.stop_after_attempt(policy.attempts)
        if policy.retry_for:
            stop = stop | tenacity.stop_after_delay(policy.retry_for)
        waits = [tenacity.wait_fixed(w * (1 - self.JITTER))
                 + tenacity.wait_random(0, w * self.JITTER) for w in policy.schedule]
        self._retrying = tenacity.Retrying(stop=stop, wait=tenacity.wait_chain(*waits))

    def delay_after(self, attempt_number: int, elapsed: float = 0.0,
                    retry_after: float | None = None) -> float | None:
        """Seconds to wait after attempt `attempt_number` failed, `elapsed` seconds after the
        first one, or None: the send has had its attempts or its time."""
        state = tenacity.RetryCallState(self._retrying, None, (), {})
        state.attempt_number = attempt_number
        state.start_time, state.outcome_timestamp = 0.0, max(elapsed, 0.0)
        if self._retrying.stop(state):
            return None
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.policy.retry_after_max)
        return float(self._retrying.wait(state))


@functools.lru_cache(maxsize=256)
def backoff_for(policy: config.SendPolicy) -> Backoff:
    return Backoff(policy)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a `Retry-After` header: delay-seconds or an HTTP-date; None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    seconds = moment.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None
