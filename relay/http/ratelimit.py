"""Rate limits: one token bucket per chain that has a `rate_limit` (pushes and trigger calls),
and one per Docker Cloud trigger (its chain's `trigger_rate_limit`).

A bucket holds up to `burst` tokens and gains `per_second` of them each second; a request
takes one or is refused with the time until one is there. Buckets live in one process: with
N processes sharing a PostgreSQL store, a chain may be sent up to N times its limit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable

from relay import config, errors

MAX_IDLE_TRIGGER_BUCKETS = 1024
"""Past this many trigger buckets, those that are full again are dropped: a full bucket is
the same as a new one, so nothing is forgotten that matters."""


class TokenBucket:
    __slots__ = ("burst", "per_second", "tokens", "updated")

    def __init__(self, rate: config.RateLimit, now: float) -> None:
        self.per_second = rate.per_second
        self.burst = float(rate.burst)
        self.tokens = self.burst
        self.updated = now

    def take(self, now: float) -> float:
        """0 when a token was taken, else the seconds until one will be there."""
        tokens = min(self.burst, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return 0.0
        self.tokens = tokens
        return (1.0 - tokens) / self.per_second

    def full(self, now: float) -> bool:
        return self.tokens + (now - self.updated) * self.per_second >= self.burst


class Limits:
    """The buckets of every chain with a rate limit; chains without one cost a dict miss."""

    def __init__(self, chains: Iterable[config.Chain],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        chains = tuple(chains)
        now = clock()
        self.buckets = {chain.name: TokenBucket(chain.rate_limit, now)
                        for chain in chains if chain.rate_limit is not None}
        self.rates = {chain.name: chain.rate_limit for chain in chains
                      if chain.rate_limit is not None}
        self.trigger_rates = {chain.name: chain.trigger_rate_limit for chain in chains}
        self.trigger_buckets: dict[tuple[str, str], TokenBucket] = {}

    def configured(self, settings: config.Settings) -> None:
        """After a reload: a bucket for each chain with a rate limit; one whose limit did not
        change keeps what it has used."""
        now = self.clock()
        self.buckets = {
            chain.name: (self.buckets[chain.name] if chain.name in self.buckets
                         and self.rates.get(chain.name) == chain.rate_limit
                         else TokenBucket(chain.rate_limit, now))
            for chain in settings.chains if chain.rate_limit is not None}
        self.rates = {chain.name: chain.rate_limit for chain in settings.chains
                      if chain.rate_limit is not None}
        fresh = {chain.name: chain.trigger_rate_limit for chain in settings.chains}
        self.trigger_buckets = {key: bucket for key, bucket in self.trigger_buckets.items()
                                if fresh.get(key[0]) == self.trigger_rates.get(key[0])}
        self.trigger_rates = fresh

    def wait(self, chain_name: str) -> float:
        """0 when chain `chain_name` may take one more request now, else seconds to wait."""
        bucket = self.buckets.get(chain_name)
        if bucket is None:
            return 0.0
        return bucket.take(self.clock())

    def wait_trigger(self, chain_name: str, trigger_id: str) -> float:
        """0 when the trigger may be called now, else seconds to wait."""
        rate = self.trigger_rates.get(chain_name)
        if rate is None:
            return 0.0
        now = self.clock()
        key = (chain_name, trigger_id)
        bucket = self.trigger_buckets.get(key)
        if bucket is None:
            if len(self.trigger_buckets) >= MAX_IDLE_TRIGGER_BUCKETS:
                self.trigger_buckets = {k: b for k, b in self.trigger_buckets.items()
                                        if not b.full(now)}
            bucket = self.trigger_buckets[key] = TokenBucket(rate, now)
        return bucket.take(now)

    def forget_trigger(self, chain_name: str, trigger_id: str) -> None:
        """A deleted trigger's bucket is of no use any more."""
        self.trigger_buckets.pop((chain_name, trigger_id), None)


def too_many(wait: float, what: str) -> errors.HTTPError:
    """429 saying `what` was refused and when to try again (whole seconds, at least 1)."""
    seconds = max(1, math.ceil(wait))
    return errors.HTTPError(429, f"{what}; try again in {seconds} s",
                            headers={"Retry-After": str(seconds)})
