"""New deliveries of payloads relay already holds: an operator's redelivery, and a Docker Cloud
trigger's REDEPLOY of a chain's last accepted payload. Each runs through its chain as it is
configured now."""

from __future__ import annotations

import json

from relay import config, errors
from relay.models import Push
from relay.store import deliveries, triggers
from relay.store.base import Row, Tx


async def redeliver(tx: Tx, live: config.Live, delivery_id: str, now: float) -> str:
    """A new delivery of a stored delivery's payload."""
    row = await deliveries.find(tx, delivery_id)
    if row is None:
        raise errors.NotFound(f"no delivery has id {delivery_id!r}")
    return await again(tx, live, row, "redeliver", now)


async def again(tx: Tx, live: config.Live, original: Row, source: str, now: float) -> str:
    """A new delivery (`source` "redeliver" or "trigger") of `original`'s payload (a row
    with id, chain, payload, tag); Conflict if its chain is no longer configured."""
    configured = live.current.chain(original["chain"])
    if configured is None:
        raise errors.Conflict(f"chain {original['chain']!r} is no longer configured")
    push = Push(original["chain"], json.loads(original["payload"]), original["payload"],
                source=source, redelivery_of=original["id"])
    return await deliveries.accept(tx, push, configured.steps_for(push.tag), now,
                                   config=live.version)


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
