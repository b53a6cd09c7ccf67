"""Units of SQL on deliveries: storing a push, admitting deliveries to run, ending them.

Every change that moves a delivery's sends (an answer, a callback, an expiry) first takes
`lock` on its row, so a callback and the answer to relay's own POST can never both move it;
a claim only takes sends that are due, with SKIP LOCKED.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from relay import errors, models
from relay.models import DeliveryState, Push, SendKind, StepState
from relay.store import idempotency, sends
from relay.store.base import Row, Tx

StepPlan = tuple[str, str]
"""A step to store with a delivery: the target's name and URL."""


async def accept(tx: Tx, push: Push, steps: Sequence[StepPlan], now: float, *,
                 delivery_id: str | None = None, hold_until: float | None = None) -> str:
    """Store a push as a pending delivery with one pending step per target; one with
    `hold_until` is not started before then."""
    delivery_id = delivery_id or models.new_delivery_id(now)
    row = (delivery_id, push.chain, DeliveryState.PENDING, push.source, now, push.text,
           push.repository, push.tag, push.revision, push.pusher, push.redelivery_of,
           hold_until)
    secrets = models.new_step_secrets(len(steps))
    rows = [(delivery_id, SendKind.STEP, index, name, url, StepState.PENDING, message_id,
             token)
            for index, ((name, url), (message_id, token)) in enumerate(
                zip(steps, secrets, strict=True))]
    if hold_until is None:
        # Appended, not executed: a group commit inserts all its deliveries in one statement.
        tx.append(_INSERT_DELIVERY, row)
        for step in rows:
            tx.append(_INSERT_STEP, step)
    else:
        # Executed at once: the next push of the same tag, in this very group commit,
        # must find the delivery to merge into.
        await tx.execute(_INSERT_DELIVERY, *row)
        await tx.executemany(_INSERT_STEP, rows)
    tx.wake()
    return delivery_id


_INSERT_DELIVERY = (
    "INSERT INTO deliveries (id, chain, state, source, received_at, payload, repository, tag,"
    " revision, pusher, redelivery_of, hold_until)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)")
_INSERT_STEP = (
    "INSERT INTO sends (delivery_id, kind, idx, name, url, state, message_id, token)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")


@dataclass(frozen=True)
class Stored:
    """What became of a push that `receive` took."""

    id: str
    duplicate: bool = False
    """The sender's event was accepted before: `id` is the delivery it became then."""
    merged: int = 1
    """How many pushes the delivery now stands for (more than 1 once coalesced)."""


@dataclass(frozen=True)
class Receipt:
    """How a chain takes pushes: its steps, coalescing window and idempotency window."""

    steps: Sequence[StepPlan]
    coalesce: float = 0.0
    idempotency_window: float = 24 * 3600.0

    def locks(self, key: str | None) -> bool:
        """Whether `receive` takes locks (a repeat's key, a coalescing window): such a
        write must run alone (see Store.write)."""
        return key is not None or self.coalesce > 0


async def receive(tx: Tx, push: Push, receipt: Receipt, now: float,
                  key: str | None = None) -> Stored:
    """Store a push the way its chain asks: a repeat of an event already accepted (same
    `key`) gives back the first delivery; within the chain's `coalesce` window a push of the
    same repository and tag merges into the delivery still held for it (the last payload
    wins)."""
    coalescing = receipt.coalesce > 0 and bool(push.tag)
    if key is None and not coalescing:
        return Stored(await accept(tx, push, receipt.steps, now))
    held = None
    if coalescing:
        # The lock admission takes: a held delivery cannot start while a push merges into
        # it, and of two processes only one holds a new delivery for the tag.
        await tx.lock(f"chain:{push.chain}")
        held = await tx.fetchrow(
            "SELECT id, merged FROM deliveries WHERE chain = $1 AND repository = $2"
            " AND tag = $3 AND hold_until > $4 AND state = 'pending'"
            " ORDER BY id DESC LIMIT 1 FOR UPDATE",
            push.chain, push.repository, push.tag, now)
    delivery_id = held["id"] if held is not None else models.new_delivery_id(now)
    if key is not None:
        first = await idempotency.claim(tx, push.chain, key, delivery_id, now,
                                        receipt.idempotency_window)
        if first is not None:
            return Stored(first, duplicate=True)
    if held is not None:
        await tx.execute(
            "UPDATE deliveries SET payload = $2, pusher = $3, revision = $4,"
            " merged = merged + 1 WHERE id = $1",
            delivery_id, push.text, push.pusher, push.revision)
        return Stored(delivery_id, merged=held["merged"] + 1)
    hold_until = now + receipt.coalesce if coalescing else None
    return Stored(await accept(tx, push, receipt.steps, now, delivery_id=delivery_id,
                               hold_until=hold_until))


async def find(tx: Tx, delivery_id: str) -> Row | None:
    """A delivery's id, chain and payload: what a redelivery needs."""
    return await tx.fetchrow("SELECT id, chain, payload FROM deliveries WHERE id = $1",
                             delivery_id)


async def latest(tx: Tx, chain: str) -> Row | None:
    """The chain's last accepted delivery (id, chain, payload)."""
    return await tx.fetchrow("SELECT id, chain, payload FROM deliveries WHERE chain = $1"
                             " ORDER BY id DESC LIMIT 1", chain)


async def lock(tx: Tx, delivery_id: str) -> Row:
    """Lock a delivery for a change to its sends (callbacks, answers, expiry, release).
    None of these units takes a named lock: those that do (admission, a coalescing or
    idempotent receive) run alone (see Store.write), so group commits cannot deadlock."""
    row = await tx.fetchrow("SELECT chain FROM deliveries WHERE id = $1 FOR UPDATE",
                            delivery_id)
    if row is None:
        raise errors.StoreError(f"delivery {delivery_id} vanished")
    return row


async def admit(tx: Tx, limits: Mapping[str, int], now: float) -> None:
    """Start pending deliveries, oldest first, while their chain (a key of `limits`) runs
    fewer than its limit. A delivery held for coalescing waits until its `hold_until` (and
    holds up later ones of its chain, which keeps their order).

    Costs a few index look-ups per chain, however long the backlog is.
    """
    for name, limit in limits.items():
        if await _running(tx, name) >= limit or not _may_start(await tx.fetchrow(
                "SELECT hold_until FROM deliveries WHERE state = 'pending' AND chain = $1"
                " ORDER BY id LIMIT 1", name), now):
            continue
        await tx.lock(f"chain:{name}")
        # Counted again under the lock: another process may have admitted meanwhile.
        free = limit - await _running(tx, name)
        if free <= 0:
            continue
        rows = await tx.fetch(
            "SELECT id, hold_until FROM deliveries WHERE state = 'pending' AND chain = $1"
            " ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED", name, free)
        for row in rows:
            if not _may_start(row, now):
                break
            await tx.execute("UPDATE deliveries SET state = 'running', started_at = $2,"
                             " hold_until = NULL WHERE id = $1", row["id"], now)
            await sends.start_step(tx, row["id"], 0, now)
            tx.wake()


def _may_start(pending: Row | None, now: float) -> bool:
    return pending is not None and (pending["hold_until"] is None
                                    or pending["hold_until"] <= now)


async def _running(tx: Tx, chain_name: str) -> int:
    return int(await tx.fetchval(
        "SELECT count(*) FROM deliveries WHERE state = 'running' AND chain = $1", chain_name))


async def chains_pending(tx: Tx) -> set[str]:
    """Every chain that has deliveries waiting to start."""
    rows = await tx.fetch("SELECT DISTINCT chain FROM deliveries WHERE state = 'pending'")
    return {row["chain"] for row in rows}


async def next_hold(tx: Tx, now: float) -> float | None:
    """When the next delivery held for coalescing may start."""
    due = await tx.fetchval("SELECT min(hold_until) FROM deliveries WHERE hold_until > $1",
                            now)
    return None if due is None else float(due)


async def finish(tx: Tx, delivery_id: str, state: DeliveryState, now: float,
                 summary: str) -> Row:
    """End a delivery: its steps not reached are skipped; the whole row as it is now."""
    await sends.skip_pending_steps(tx, delivery_id, "not sent: an earlier step did not succeed")
    delivery = await tx.fetchrow("UPDATE deliveries SET state = $2, finished_at = $3,"
                                 " summary = $4 WHERE id = $1 RETURNING *",
                                 delivery_id, state, now, summary)
    assert delivery is not None
    # The chain's next delivery is admitted by the next dispatch, which this wakes.
    tx.wake()
    return delivery
