"""Rate limits of chains and of triggers: the bucket's arithmetic and the config (pure)."""

from __future__ import annotations

import pytest
from support import minimal_config

from relay import config, errors
from relay.http import ratelimit


def _bucket(per_second: float, burst: int) -> ratelimit.TokenBucket:
    return ratelimit.TokenBucket(config.RateLimit(per_second, burst), now=100.0)


def test_a_full_bucket_lets_a_burst_through_then_refuses() -> None:
    bucket = _bucket(per_second=2, burst=3)

    assert [bucket.take(100.0) for _ in range(3)] == [0, 0, 0]
    assert bucket.take(100.0) == pytest.approx(0.5)
    assert bucket.take(100.25) == pytest.approx(0.25)
    assert bucket.take(100.5) == 0
    assert bucket.take(100.5) == pytest.approx(0.5)


def test_a_bucket_never_holds_more_than_its_burst() -> None:
    bucket = _bucket(per_second=10, burst=2)
    bucket.take(100.0)

    waits = [bucket.take(1000.0) for _ in range(3)]

    assert waits[:2] == [0, 0]
    assert waits[2] == pytest.approx(0.1)


def test_refused_requests_take_nothing() -> None:
    bucket = _bucket(per_second=1, burst=1)
    assert bucket.take(100.0) == 0

    for _ in range(50):
        assert bucket.take(100.5) > 0
    assert bucket.take(101.0) == 0


def test_limits_only_watch_chains_that_have_one() -> None:
    target = config.Target("ci", "http://x/", config.SendPolicy())
    now = [0.0]
    limits = ratelimit.Limits([
        config.Chain("slow", "t" * 16, (target,), rate_limit=config.RateLimit(1, 1)),
        config.Chain("free", "t" * 16, (target,)),
    ], clock=lambda: now[0])

    assert limits.wait("slow") == 0
    assert limits.wait("slow") == 1
    assert all(limits.wait("free") == 0 for _ in range(1000))
    now[0] = 1.0
    assert limits.wait("slow") == 0


@pytest.mark.parametrize(("extra", "expected"), [
    ('rate_limit = "50/s"', config.RateLimit(50, 50)),
    ('rate_limit = "600/m"', config.RateLimit(10, 600)),
    ('rate_limit = "90 / h"\nrate_burst = 3', config.RateLimit(0.025, 3)),
    ('rate_limit = "0.5/s"', config.RateLimit(0.5, 1)),
    ("", None),
])
def test_the_rate_limit_config(extra: str, expected: config.RateLimit | None) -> None:
    assert config.parse(minimal_config(chain=extra)).chains[0].rate_limit == expected


@pytest.mark.parametrize(("extra", "message"), [
    ('rate_limit = "fast"', 'chain[0].rate_limit: must be a rate such as "50/s"'),
    ('rate_limit = "0/s"', "chain[0].rate_limit: must be a rate"),
    ('rate_limit = "5/d"', "chain[0].rate_limit: must be a rate"),
    ("rate_limit = 50", "chain[0].rate_limit: must be a string, got 50"),
    ('rate_limit = "5/s"\nrate_burst = 0', "chain[0].rate_burst: must be at least 1"),
    ("rate_burst = 5", "chain[0].rate_burst: needs a rate_limit beside it"),
])
def test_rate_limit_mistakes_name_their_key(extra: str, message: str) -> None:
    with pytest.raises(errors.ConfigError) as raised:
        config.parse(minimal_config(chain=extra))
    assert message in str(raised.value)


@pytest.mark.parametrize(("extra", "expected"), [
    ("", config.RateLimit(1, 60)),
    ('trigger_rate_limit = "10/h"', config.RateLimit(10 / 3600, 10)),
    ("trigger_rate_burst = 5", config.RateLimit(1, 5)),
    ('trigger_rate_limit = "2/s"\ntrigger_rate_burst = 1', config.RateLimit(2, 1)),
])
def test_the_trigger_rate_limit_config(extra: str, expected: config.RateLimit) -> None:
    assert config.parse(minimal_config(chain=extra)).chains[0].trigger_rate_limit == expected


@pytest.mark.parametrize(("extra", "message"), [
    ('trigger_rate_limit = "often"', 'chain[0].trigger_rate_limit: must be a rate such as'),
    ("trigger_rate_burst = 0", "chain[0].trigger_rate_burst: must be at least 1"),
])
def test_trigger_rate_limit_mistakes_name_their_key(extra: str, message: str) -> None:
    with pytest.raises(errors.ConfigError) as raised:
        config.parse(minimal_config(chain=extra))
    assert message in str(raised.value)


def test_each_trigger_has_its_own_bucket_and_a_full_one_may_be_forgotten() -> None:
    target = config.Target("ci", "http://x/", config.SendPolicy())
    now = [0.0]
    limits = ratelimit.Limits([config.Chain("main", "t" * 16, (target,),
                                            trigger_rate_limit=config.RateLimit(1, 2))],
                              clock=lambda: now[0])

    assert [limits.wait_trigger("main", "a") for _ in range(3)] == [0, 0, 1]
    assert limits.wait_trigger("main", "b") == 0
    assert limits.wait_trigger("elsewhere", "a") == 0  # a chain no longer configured
    for n in range(ratelimit.MAX_IDLE_TRIGGER_BUCKETS):
        limits.trigger_buckets[("main", f"idle-{n}")] = ratelimit.TokenBucket(
            config.RateLimit(1, 2), now[0])
    limits.wait_trigger("main", "c")
    assert set(limits.trigger_buckets) == {("main", "a"), ("main", "b"), ("main", "c")}
    limits.forget_trigger("main", "a")
    assert limits.wait_trigger("main", "a") == 0
