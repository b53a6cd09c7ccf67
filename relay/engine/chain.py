"""The chain engine's decisions: pure functions from (step, event, now) to what happens next.

The worker and the callback handler both feed events here and apply the answer in one
transaction, so there is one engine whichever way an outcome arrives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from relay import config
from relay.engine import retry
from relay.models import CallbackState, DeliveryState, StepState


@dataclass(frozen=True)
class Answer:
    """What one HTTP attempt got: a status, or an error text when there was no answer."""

    status: int | None
    error: str | None
    duration_ms: float
    retry_after: float | None = None
    permanent: bool = False
    """No point in trying again (the target is no longer configured, say)."""
    response: dict[str, Any] | None = None
    """What the target answered, as the history shows it (delivery.shown_response)."""


@dataclass(frozen=True)
class Attempted:
    answer: Answer


@dataclass(frozen=True)
class CallbackArrived:
    state: CallbackState


@dataclass(frozen=True)
class CallbackOverdue:
    pass


Event = Attempted | CallbackArrived | CallbackOverdue


@dataclass(frozen=True)
class StepView:
    """What decide needs to know of a step. `attempts` counts the attempt being decided on."""

    state: StepState
    attempts: int
    await_callback: bool
    policy: config.SendPolicy
    started_at: float | None = None
    """When the step's first attempt was made: `retry_for` runs from here."""
    paused: bool = False
    """Its target is paused: a failed attempt waits for the target instead of a retry."""


@dataclass(frozen=True)
class Retry:
    at: float
    reason: str


@dataclass(frozen=True)
class Hold:
    """Wait, without spending attempts, until the paused target is resumed or probed."""

    reason: str


@dataclass(frozen=True)
class Await:
    deadline: float


@dataclass(frozen=True)
class Settle:
    state: StepState
    reason: str | None = None


@dataclass(frozen=True)
class Ignore:
    """The event changes nothing: the step was settled already (a late answer or callback)."""

    reason: str


Decision = Retry | Hold | Await | Settle | Ignore

_CALLBACK_STEP_STATE = {
    CallbackState.SUCCESS: StepState.SUCCESS,
    CallbackState.FAILURE: StepState.FAILURE,
    CallbackState.ERROR: StepState.ERROR,
}
OPEN = frozenset({StepState.SENDING, StepState.AWAITING_CALLBACK, StepState.PAUSED})
"""The states in which a step still takes an answer or a callback."""


def decide(step: StepView, event: Event, now: float) -> Decision:
    if step.state not in OPEN:
        return Ignore(f"step is already {step.state}")
    match event:
        case CallbackArrived(state=state):
            # Counts even while relay's POST is still in flight or waiting to be retried:
            # the target has plainly received the payload.
            return Settle(_CALLBACK_STEP_STATE[state])
        case CallbackOverdue():
            if step.state is not StepState.AWAITING_CALLBACK:
                return Ignore("step is not waiting for a callback")
            return Settle(StepState.ERROR,
                          f"no callback within {_seconds(step.policy.callback_timeout)} s")
        case Attempted(answer=answer):
            if step.state is not StepState.SENDING:
                return Ignore("step was answered already")
            return _after_attempt(step, answer, now)


def _after_attempt(step: StepView, answer: Answer, now: float) -> Decision:
    if answer.permanent:
        return Settle(StepState.ERROR, describe(answer))
    if retry.is_success(answer.status):
        if step.await_callback:
            return Await(now + step.policy.callback_timeout)
        return Settle(StepState.SUCCESS)
    reason = describe(answer)
    if not retry.is_retryable(answer.status):
        return Settle(StepState.ERROR, reason)
    if step.paused:
        return Hold(reason)
    elapsed = 0.0 if step.started_at is None else now - step.started_at
    delay = retry.backoff_for(step.policy).delay_after(step.attempts, elapsed,
                                                       answer.retry_after)
    if delay is None:
        return Settle(StepState.ERROR, f"gave up after {step.attempts} attempts"
                                       f"{_over(elapsed)}: {reason}")
    return Retry(now + delay, reason)


@dataclass(frozen=True)
class Next:
    index: int


@dataclass(frozen=True)
class Finish:
    state: DeliveryState


def follow(outcome: StepState, next_index: int | None) -> Next | Finish:
    """Where the chain goes once a step settled with `outcome`; `next_index` is the next
    step still to be sent, if any (steps whose target does not take the tag are skipped)."""
    if outcome is StepState.SUCCESS:
        if next_index is not None:
            return Next(next_index)
        return Finish(DeliveryState.SUCCESS)
    if outcome is StepState.FAILURE:
        return Finish(DeliveryState.FAILURE)
    return Finish(DeliveryState.ERROR)


def describe(answer: Answer) -> str:
    if answer.error:
        return answer.error
    return f"target answered HTTP {answer.status}"


def _over(elapsed: float) -> str:
    if elapsed < 60:
        return ""
    hours, minutes = divmod(int(elapsed // 60), 60)
    return f" over {hours} h {minutes} min" if hours else f" over {minutes} min"


def _seconds(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"
