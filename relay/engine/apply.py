"""The engine's units: an event on a send (an answer, a callback, an overdue callback) ->
`chain.decide` -> the store operations that carry the decision out, in one transaction.

Every unit here first locks the send and its delivery (store/deliveries.lock_send), so that
a callback and the answer to relay's own POST can never both move one step. A unit that starts the
next step may lease it at once to the caller's worker (`handoff`), which then POSTs it
without another transaction or wake-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import assert_never

import orjson

from relay import config, errors, models
from relay.engine import chain, notices, pausing
from relay.engine.chain import Decision
from relay.models import DeliveryState, SendKind, StepState
from relay.store import deliveries, sends, targets
from relay.store.base import Row, Tx
from relay.store.sends import Claimed

POLL_SECONDS = 5.0
"""The longest a worker sleeps without looking at the store (writes that make work due
sooner wake it). A send due later than this needs no wake-up: on PostgreSQL a wake-up is a
NOTIFY, and a dispatch pass in every relay process sharing the store."""


def _wake_for(tx: Tx, due: float, now: float) -> None:
    if due - now < POLL_SECONDS:
        tx.wake()


@dataclass(frozen=True)
class Applied:
    """What a unit did to a send, for the caller's log line and metrics."""

    delivery_id: str
    chain: str
    idx: int
    name: str
    decision: Decision
    finished: DeliveryState | None = None
    handoff: tuple[Claimed, ...] = ()
    """Sends this unit started and leased at once to the caller's worker (the next step of
    the chain)."""


async def record_attempt(tx: Tx, live: config.Live, claimed: Claimed,
                         answer: chain.Answer, now: float, handoff: str | None = None
                         ) -> Applied:
    """Complete the attempt's record with its answer and move the send (and its chain) on."""
    settings = live.of(claimed.config)
    response = _response_text(answer, settings)
    awaited = await _awaited(tx, settings, claimed, answer, response, now)
    if awaited is not None:
        return awaited
    send, lost = await _held(tx, claimed)
    sends.record_answer(tx, claimed.id, claimed.attempt, answer.status, answer.duration_ms,
                        answer.error, response)
    if lost is not None:
        return _applied(send, claimed.chain, chain.Ignore(lost))
    paused = False
    if send["kind"] != SendKind.STEP:
        await sends.set_status(tx, claimed.id, answer.status)
        send["status"] = answer.status
    else:
        policy, _ = _policy(settings, claimed.chain, send["kind"], send["name"])
        known = pausing.Known(send["target_failures"] or 0, send["target_paused_by"])
        paused = await pausing.counted(tx, policy, claimed.chain, claimed.name, answer, now,
                                       known)
    return await _apply(tx, settings, send, claimed.chain, chain.Attempted(answer), now,
                        handoff, paused)


async def _awaited(tx: Tx, settings: config.Settings, claimed: Claimed,
                   answer: chain.Answer, response: str | None, now: float) -> Applied | None:
    """The most common answer in one statement: a success of a step that waits for its
    callback, from a target with nothing to forget (sends.await_callback_if_held). None
    when that is not the case: the unit then reads the send and decides in full (the
    answer recorded twice is the same answer)."""
    if claimed.kind is not SendKind.STEP or answer.permanent:
        return None
    policy, await_callback = _policy(settings, claimed.chain, claimed.kind, claimed.name)
    decision = chain.decide(chain.StepView(StepState.SENDING, claimed.attempt, await_callback,
                                           policy), chain.Attempted(answer), now)
    if not isinstance(decision, chain.Await):
        return None
    sends.record_answer(tx, claimed.id, claimed.attempt, answer.status, answer.duration_ms,
                        answer.error, response)
    if not await sends.await_callback_if_held(tx, claimed, decision.deadline):
        return None
    _wake_for(tx, decision.deadline, now)
    return Applied(delivery_id=claimed.delivery_id, chain=claimed.chain, idx=claimed.idx,
                   name=claimed.name, decision=decision)


async def expire(tx: Tx, live: config.Live, claimed: Claimed, now: float) -> Applied:
    """A step's callback deadline passed: it is an error, which ends the chain."""
    send, lost = await _held(tx, claimed)
    if lost is not None:
        return _applied(send, claimed.chain, chain.Ignore(lost))
    return await _apply(tx, live.of(claimed.config), send, claimed.chain,
                        chain.CallbackOverdue(), now)


async def release(tx: Tx, claimed: Claimed, now: float) -> None:
    """Give back an unfinished send at shutdown so that the next start sends it at once."""
    send, lost = await _held(tx, claimed)
    if lost is not None:
        return
    if send["state"] == StepState.SENDING:
        await sends.abandon_attempt(tx, claimed.id, claimed.attempt,
                                    "no answer recorded: relay stopped before the target "
                                    "answered")
    await sends.release(tx, claimed.id, now)


async def callback(tx: Tx, live: config.Live, token: str, verdict: models.Callback,
                   now: float, handoff: str | None = None) -> Applied:
    """A target's callback: NotFound for an unknown token, Conflict once its step was
    answered."""
    send = await deliveries.lock_by_token(tx, token)
    if send is None:
        raise errors.NotFound("no step has this callback URL")
    delivery = {"chain": send.pop("delivery_chain"), "config": send.pop("delivery_config")}
    # A stored callback settles its step in the same transaction: an open step has none.
    if StepState(send["state"]) not in chain.OPEN:
        raise errors.Conflict(f"step {send['idx']} ({send['name']}) was already answered: "
                              f"it is {send['state']}")
    send["cb_state"], send["cb_description"] = verdict.state, verdict.description
    return await _apply(tx, live.of(delivery["config"]), send, delivery["chain"],
                        chain.CallbackArrived(verdict.state), now, handoff, verdict=verdict)


async def _held(tx: Tx, claimed: Claimed) -> tuple[Row, str | None]:
    """The claimed send as it is now, its delivery locked, and why it is no longer the
    claimer's (None while it is): settled by a callback meanwhile, or taken over by another
    worker after the lease ran out."""
    send = await deliveries.lock_send(tx, claimed.delivery_id, claimed.id)
    del send["delivery_chain"], send["delivery_config"]
    if send["lease"] == claimed.lease:
        return send, None
    if StepState(send["state"]) in models.FINAL_STEP_STATES:
        return send, f"already {send['state']}"
    return send, "taken over by another worker"


async def _apply(tx: Tx, settings: config.Settings, send: Row, chain_name: str,
                 event: chain.Event, now: float, handoff: str | None = None,
                 paused: bool = False, verdict: models.Callback | None = None) -> Applied:
    """`verdict`: the callback that is the event, stored with the step it settles."""
    policy, await_callback = _policy(settings, chain_name, send["kind"], send["name"])
    view = chain.StepView(state=StepState(send["state"]), attempts=send["attempts"],
                          await_callback=await_callback, policy=policy,
                          started_at=send["started_at"], paused=paused)
    decision = chain.decide(view, event, now)
    finished: DeliveryState | None = None
    started: list[Claimed] = []
    match decision:
        case chain.Retry(at=at, reason=reason):
            await sends.retry_at(tx, send["id"], at, reason)
            _wake_for(tx, at, now)
        case chain.Hold(reason=reason):
            await targets.hold(tx, [send["id"]], f"its target is paused; {reason}")
        case chain.Await(deadline=deadline):
            await sends.await_callback(tx, send["id"], deadline)
            _wake_for(tx, deadline, now)
        case chain.Settle(state=state, reason=reason):
            finished, started = await _settle(tx, settings, send, chain_name, state, reason,
                                              now, handoff, verdict)
        case chain.Ignore():
            pass
        case _:
            assert_never(decision)
    return _applied(send, chain_name, decision, finished, started)


async def _settle(tx: Tx, settings: config.Settings, send: Row, chain_name: str,
                  state: StepState, reason: str | None, now: float, handoff: str | None,
                  verdict: models.Callback | None
                  ) -> tuple[DeliveryState | None, list[Claimed]]:
    sends.settle(tx, send["id"], state, now, reason, verdict)
    if send["kind"] != SendKind.STEP:
        await notices.settled(tx, send, state, reason, now)
        return None, []
    next_index: int | None = None
    handed: list[Claimed] = []
    if state is StepState.SUCCESS and send["next_step"] is not None:
        next_index, handed = await _start_next(tx, settings, send, now, handoff)
    move = chain.follow(state, next_index)
    match move:
        case chain.Next():
            return None, handed
        case chain.Finish(state=outcome):
            await _finish(tx, settings, send["delivery_id"], outcome,
                          _summary(send, state, reason), now)
            return outcome, []
        case _:
            assert_never(move)


async def _start_next(tx: Tx, settings: config.Settings, send: Row, now: float,
                      handoff: str | None) -> tuple[int | None, list[Claimed]]:
    """Make the delivery's next step due now; its index (None: no step is left), and, with
    a `handoff` lease, the step claimed for the caller at once."""
    delivery_id, after = send["delivery_id"], send["idx"]
    lease_until = now + settings.lease_seconds
    if handoff is not None and not send["paused_targets"]:
        claimed = await sends.start_next_leased(tx, delivery_id, after, now, handoff,
                                                lease_until)
        return (None, []) if claimed is None else (claimed.idx, [claimed])
    started = await sends.start_next(tx, delivery_id, after, now)
    if started is None:
        return None, []
    if handoff is None:
        tx.wake()
        return started["idx"], []
    return started["idx"], await sends.take(tx, handoff, lease_until, now, [started])


async def _finish(tx: Tx, settings: config.Settings, delivery_id: str, state: DeliveryState,
                  summary: str, now: float) -> None:
    delivery = await deliveries.finish(tx, delivery_id, state, now, summary)
    for index, notice in enumerate(await notices.plan(tx, settings, delivery)):
        send = await sends.add_notice(
            tx, delivery_id, index, kind=notice.kind, name=notice.name, url=notice.url,
            body=notice.body, insecure=notice.insecure, refused=notice.refused,
            ref=notice.ref, now=now)
        if notice.refused:
            await notices.settled(tx, send, StepState.SKIPPED, notice.refused, now)


async def finish_unstarted(tx: Tx, live: config.Live, delivery_ids: Sequence[str],
                           now: float) -> None:
    """End deliveries that admission started with no step to run: no target of the chain
    takes the push's tag."""
    for delivery_id in delivery_ids:
        found = await deliveries.find(tx, delivery_id)
        assert found is not None
        count = len(await sends.step_states(tx, delivery_id))
        tag = found["tag"] or "no tag"
        summary = f"no target takes this push ({tag}): all {count} steps skipped"
        await _finish(tx, live.of(found["config"]), delivery_id, DeliveryState.SUCCESS,
                      summary, now)


def _summary(send: Row, state: StepState, reason: str | None) -> str:
    """`send`: the step that ended its delivery, with `step_count` and `skipped_steps`."""
    count, skipped = send["step_count"], send["skipped_steps"]
    if state is StepState.SUCCESS:
        if skipped:
            return (f"all {count - skipped} steps that take this push succeeded "
                    f"({skipped} skipped)")
        return f"all {count} steps succeeded"
    where = f"step {send['idx'] + 1} of {count} ({send['name']})"
    if send.get("cb_state") is not None:
        detail = send.get("cb_description") or "no description"
        return f"{where} answered {send['cb_state']}: {detail}"
    return f"{where} failed: {reason or state}"


def _policy(settings: config.Settings, chain_name: str, kind: str,
            name: str) -> tuple[config.SendPolicy, bool]:
    """A send's policy, and whether it waits for a callback (only a chain step may)."""
    if kind == SendKind.STEP:
        configured = settings.chain(chain_name)
        target = configured.target(name) if configured else None
        if target is not None:
            return target.policy, target.await_callback
    return settings.delivery.policy, False


def _response_text(answer: chain.Answer, settings: config.Settings) -> str | None:
    """The target's answer as stored: relay's own secrets (tokens, signing secrets, header
    values) scrubbed out, should the target echo them back."""
    if answer.response is None:
        return None
    scrub = settings.redactor.scrub
    shown = {**answer.response, "body": scrub(answer.response["body"]),
             "headers": {k: scrub(v) for k, v in answer.response["headers"].items()}}
    return orjson.dumps(shown).decode()


def _applied(send: Row, chain_name: str, decision: chain.Decision,
             finished: DeliveryState | None = None,
             handoff: Sequence[Claimed] = ()) -> Applied:
    return Applied(delivery_id=send["delivery_id"], chain=chain_name,
                   idx=send["idx"], name=send["name"],
                   decision=decision, finished=finished, handoff=tuple(handoff))
