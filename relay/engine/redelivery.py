"""New deliveries of payloads relay already holds: an operator's redelivery, and a Docker Cloud
trigger's REDEPLOY of a chain's last accepted payload. Each runs through its chain as it is
configured now."""

from __future__ import annotations

import json
from typing import Literal

from relay import config, errors
from relay.models import Push, StepState
from relay.store import deliveries, sends, triggers
from relay.store.base import Row, Tx

FromStep = int | Literal["failed"] | None
"""Where a redelivery starts: a step's index, the first step of the original that did not
succeed, or (None) the first step."""
BULK_MAX = 10_000


async def redeliver(tx: Tx, live: config.Live, delivery_id: str, now: float,
                    from_step: FromStep = None) -> str:
    """A new delivery of a stored delivery's payload, from its first step or `from_step`."""
    row = await deliveries.find(tx, delivery_id)
    if row is None:
        raise errors.NotFound(f"no delivery has id {delivery_id!r}")
    return await again(tx, live, row, "redeliver", now, await _start_index(tx, row, from_step))


async def redeliver_matching(tx: Tx, live: config.Live, matching: deliveries.Filter,
                             now: float, from_step: FromStep = None,
                             dry_run: bool = False) -> tuple[int, list[str]]:
    """Redeliver every ended delivery `matching` selects, oldest first, all or none: how
    many matched, and the new deliveries' ids (none for a dry run)."""
    count = await deliveries.count_matching(tx, matching)
    if count > BULK_MAX:
        raise errors.Invalid(f"{count} deliveries match; at most {BULK_MAX} are redelivered "
                             "in one call: narrow the filter (since, until, chain...)")
    if dry_run:
        return count, []
    ids = []
    for row in await deliveries.matching(tx, matching, BULK_MAX):
        start = await _start_index(tx, row, from_step)
        ids.append(await again(tx, live, row, "redeliver", now, start))
    return count, ids


async def _start_index(tx: Tx, original: Row, from_step: FromStep) -> int:
    if from_step is None:
        return 0
    states = await sends.step_states(tx, original["id"])
    if from_step == "failed":
        failed = next((i for i, state in enumerate(states)
                       if state not in (StepState.SUCCESS, StepState.SKIPPED)), None)
        if failed is None:
            raise errors.Invalid(f"delivery {original['id']} has no failed step: every step "
                                 "succeeded or was skipped")
        return failed
    if not 0 <= from_step < len(states):
        raise errors.Invalid(f"from_step {from_step} is out of range: delivery "
                             f"{original['id']} has steps 0 to {len(states) - 1}")
    return from_step


async def again(tx: Tx, live: config.Live, original: Row, source: str, now: float,
                start: int = 0) -> str:
    """A new delivery (`source` "redeliver" or "trigger") of `original`'s payload (a row
    with id, chain, payload, tag), its steps before `start` skipped; Conflict if its chain
    is no longer configured."""
    configured = live.current.chain(original["chain"])
    if configured is None:
        raise errors.Conflict(f"chain {original['chain']!r} is no longer configured")
    push = Push(original["chain"], json.loads(original["payload"]), original["payload"],
                source=source, redelivery_of=original["id"])
    steps = configured.steps_for(push.tag)
    if start >= len(steps):
        raise errors.Invalid(f"from_step {start} is out of range: chain {configured.name} "
                             f"has {len(steps)} steps now")
    reason = f"not sent: redelivered from step {start} of delivery {original['id']}"
    steps = [(name, url, reason if index < start else skipped)
             for index, (name, url, skipped) in enumerate(steps)]
    return await deliveries.accept(tx, push, steps, now, config=live.version)


def no_such_trigger() -> errors.NotFound:
    """The same answer for an unknown chain and an unknown id, so that neither can be probed.
    A new one each time: an exception raised again keeps every earlier traceback alive."""
    return errors.NotFound("no trigger at this URL")


async def redeploy(tx: Tx, live: config.Live, chain: str, trigger_id: str,
                   now: float) -> tuple[Row, str]:
    """Call a trigger: REDEPLOY stores a new delivery of the chain's last accepted payload.
    Returns the trigger and the new delivery's id."""
    trigger = await triggers.get(tx, chain, trigger_id)
    if trigger is None:
        raise no_such_trigger()
    last = await deliveries.latest(tx, chain)
    if last is None:
        raise errors.NotFound(f"chain {chain!r} has no accepted payload to redeploy yet; "
                              "push to it first")
    return trigger, await again(tx, live, last, "trigger", now)
