"""The pure parts of the engine: decide, follow, backoff and Retry-After, table-driven."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from relay.config import SendPolicy
from relay.config.schedule import expected_attempts
from relay.engine import chain, retry
from relay.models import CallbackState, DeliveryState, StepState

POLICY = SendPolicy(timeout=10, attempts=3, callback_timeout=60, schedule=(2, 4, 8, 16, 30),
                    retry_after_max=120)
NOW = 1_000.0


def view(state: StepState = StepState.SENDING, attempts: int = 1,
         await_callback: bool = True) -> chain.StepView:
    return chain.StepView(state=state, attempts=attempts, await_callback=await_callback,
                          policy=POLICY)


def answered(status: int | None, error: str | None = None,
             retry_after: float | None = None) -> chain.Attempted:
    return chain.Attempted(chain.Answer(status, error, 5.0, retry_after))


@pytest.mark.parametrize(("step", "event", "expected"), [
    (view(), answered(200), chain.Await(NOW + 60)),
    (view(), answered(204), chain.Await(NOW + 60)),
    (view(await_callback=False), answered(202), chain.Settle(StepState.SUCCESS)),
    (view(), answered(400), chain.Settle(StepState.ERROR, "target answered HTTP 400")),
    (view(), answered(404), chain.Settle(StepState.ERROR, "target answered HTTP 404")),
    (view(), answered(301, "target answered HTTP 301; redirects are not followed"),
     chain.Settle(StepState.ERROR, "target answered HTTP 301; redirects are not followed")),
    (view(attempts=3), answered(503),
     chain.Settle(StepState.ERROR, "gave up after 3 attempts: target answered HTTP 503")),
    (view(attempts=3), answered(None, "connection refused"),
     chain.Settle(StepState.ERROR, "gave up after 3 attempts: connection refused")),
    (view(), answered(429, retry_after=7), chain.Retry(NOW + 7, "target answered HTTP 429")),
    (view(), answered(503, retry_after=100_000),
     chain.Retry(NOW + 120, "target answered HTTP 503")),
    (view(), chain.CallbackArrived(CallbackState.SUCCESS), chain.Settle(StepState.SUCCESS)),
    (view(), chain.CallbackArrived(CallbackState.FAILURE), chain.Settle(StepState.FAILURE)),
    (view(StepState.AWAITING_CALLBACK), chain.CallbackArrived(CallbackState.ERROR),
     chain.Settle(StepState.ERROR)),
    (view(StepState.AWAITING_CALLBACK), chain.CallbackOverdue(),
     chain.Settle(StepState.ERROR, "no callback within 60 s")),
    (view(StepState.SENDING), chain.CallbackOverdue(),
     chain.Ignore("step is not waiting for a callback")),
    (view(StepState.AWAITING_CALLBACK), answered(200),
     chain.Ignore("step was answered already")),
    (view(StepState.SUCCESS), chain.CallbackArrived(CallbackState.FAILURE),
     chain.Ignore("step is already success")),
    (view(StepState.SKIPPED), answered(200), chain.Ignore("step is already skipped")),
])
def test_decide(step: chain.StepView, event: chain.Event, expected: chain.Decision) -> None:
    assert chain.decide(step, event, NOW) == expected


@pytest.mark.parametrize("status", [None, 408, 429, 500, 502, 503, 504])
def test_retryable_answers_are_retried_within_the_backoff_window(status: int | None) -> None:
    for attempt, ceiling in ((1, 2), (2, 4)):
        decision = chain.decide(view(attempts=attempt), answered(status, "x"), NOW)
        assert isinstance(decision, chain.Retry)
        assert NOW <= decision.at <= NOW + ceiling


def test_a_permanent_answer_is_not_retried() -> None:
    event = chain.Attempted(chain.Answer(None, "target t is no longer in chain c", 0.0,
                                         permanent=True))
    assert chain.decide(view(), event, NOW) == chain.Settle(
        StepState.ERROR, "target t is no longer in chain c")


@pytest.mark.parametrize(("outcome", "next_index", "expected"), [
    (StepState.SUCCESS, 1, chain.Next(1)),
    (StepState.SUCCESS, 3, chain.Next(3)),  # steps 1 and 2 skipped: their targets' tags
    (StepState.SUCCESS, None, chain.Finish(DeliveryState.SUCCESS)),
    (StepState.FAILURE, 1, chain.Finish(DeliveryState.FAILURE)),
    (StepState.ERROR, 2, chain.Finish(DeliveryState.ERROR)),
    (StepState.FAILURE, None, chain.Finish(DeliveryState.FAILURE)),
])
def test_follow(outcome: StepState, next_index: int | None,
                expected: chain.Next | chain.Finish) -> None:
    assert chain.follow(outcome, next_index) == expected


def _waits(policy: SendPolicy) -> list[float]:
    """The waits a send failing at every attempt gets, until the policy gives up."""
    backoff, elapsed = retry.Backoff(policy), 0.0
    waits: list[float] = []
    while (wait := backoff.delay_after(len(waits) + 1, elapsed)) is not None:
        waits.append(wait)
        elapsed += wait
    return waits


def test_the_default_schedule_retries_for_a_day_starting_within_seconds() -> None:
    waits = _waits(SendPolicy())

    assert sum(waits) >= 24 * 3600  # a target down for a day loses nothing
    assert sum(waits[:3]) < 30  # a blip costs seconds
    assert max(waits) <= 3600  # never more than an hour between two attempts
    assert all(later >= earlier * 0.8 for earlier, later in itertools.pairwise(waits))
    # A target back after a one-minute outage gets its next attempt within a few minutes.
    elapsed = list(itertools.accumulate(waits))
    assert next(t for t in elapsed if t >= 60) < 60 + 3 * 60
    # What check-config says it makes; jitter only shortens waits, so a few more.
    assert expected_attempts(SendPolicy()) <= len(waits) + 1 <= expected_attempts(SendPolicy()) + 6


def test_attempts_bound_the_schedule_too() -> None:
    assert len(_waits(SendPolicy(attempts=4, schedule=(1.0,)))) == 3
    assert retry.Backoff(SendPolicy(retry_for=60)).delay_after(2, elapsed=61) is None


def test_jitter_only_shortens_a_wait() -> None:
    backoff = retry.Backoff(SendPolicy(schedule=(10.0, 100.0)))
    draws = [backoff.delay_after(n) for n in (1, 2, 3) for _ in range(200)]

    assert all(d is not None for d in draws)
    first, later = draws[:200], draws[200:]
    assert all(8 <= d <= 10 for d in first if d is not None)
    assert all(80 <= d <= 100 for d in later if d is not None)  # the last wait repeats
    assert len(set(first)) > 100


@pytest.mark.parametrize(("header", "expected"), [
    ("120", 120.0), (" 5 ", 5.0), ("0", 0.0), ("", None), (None, None), ("soon", None),
    ("-3", None), ("1.5", None), ("\u00b2", None), ("\u0665", None),  # digits, not ASCII
])
def test_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert retry.parse_retry_after(header, now=NOW) == expected


def test_retry_after_http_date() -> None:
    now = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC).timestamp()
    later = format_datetime(datetime(2026, 11, 24, 12, 0, 30, tzinfo=UTC), usegmt=True)
    earlier = format_datetime(datetime(2026, 11, 24, 11, 0, 0, tzinfo=UTC), usegmt=True)

    assert retry.parse_retry_after(later, now=now) == 30.0
    assert retry.parse_retry_after(earlier, now=now) == 0.0
