"""Per-chain intake rate limits: one token bucket per chain that has a `rate_limit`.

A bucket holds up to `burst` tokens and gains `per_second` of them each second; a request
takes one or is refused with the time until one is there. Buckets live in one process: with
N processes sharing a PostgreSQL store, a chain may be sent up to N times its limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from relay import config


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

    def wait(self, chain_name: str) -> float:
        """0 when chain `chain_name` may take one more request now, else seconds to wait."""
        bucket = self.buckets.get(chain_name)
        if bucket is None:
            return 0.0
        return bucket.take(self.clock())
