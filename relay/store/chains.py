"""Read units about a chain as a whole: its revisions and its last outcome.

What Dockership calls a revision is `deliveries.revision` (the pushed tag, else the digest).
Every query here walks the (state, chain, id) index, so it costs the same however long the
history is.
"""

from __future__ import annotations

from dataclasses import dataclass

from relay.models import FINAL_DELIVERY_STATES, DeliveryState, iso
from relay.store.base import Row, Tx

_FINAL = sorted(FINAL_DELIVERY_STATES)  # a fixed order: one query per state


async def previous_revision(tx: Tx, chain: str, delivery_id: str) -> str | None:
    """The revision of the chain's last successful delivery received before this one."""
    value = await tx.fetchval(
        "SELECT revision FROM deliveries WHERE state = 'success' AND chain = $1 AND id < $2"
        " ORDER BY id DESC LIMIT 1", chain, delivery_id)
    return None if value is None else str(value)


@dataclass(frozen=True)
class Status:
    last_revision: str | None
    last_repository: str | None
    """The repository of the last successful delivery (what `last_revision` is of)."""
    last_success_at: str | None
    last_delivery: str | None
    last_outcome: str | None
    last_finished_at: str | None
    running: int
    pending: int
    running_since: str | None
    """When the oldest running delivery started."""


async def status(tx: Tx, chain: str) -> Status:
    latest: dict[str, Row] = {}
    for state in _FINAL:
        row = await tx.fetchrow(
            "SELECT id, state, finished_at, revision, repository FROM deliveries"
            " WHERE state = $1 AND chain = $2 ORDER BY id DESC LIMIT 1", state, chain)
        if row is not None:
            latest[state] = row
    success = latest.get(DeliveryState.SUCCESS)
    last = max(latest.values(), key=lambda r: (r["finished_at"] or 0.0, r["id"]), default=None)
    return Status(
        last_revision=success["revision"] if success else None,
        last_repository=success["repository"] if success else None,
        last_success_at=iso(success["finished_at"]) if success else None,
        last_delivery=last["id"] if last else None,
        last_outcome=last["state"] if last else None,
        last_finished_at=iso(last["finished_at"]) if last else None,
        running=await _count(tx, DeliveryState.RUNNING, chain),
        pending=await _count(tx, DeliveryState.PENDING, chain),
        running_since=iso(await tx.fetchval(
            "SELECT min(started_at) FROM deliveries WHERE state = 'running' AND chain = $1",
            chain)),
    )


async def _count(tx: Tx, state: DeliveryState, chain: str) -> int:
    return int(await tx.fetchval(
        "SELECT count(*) FROM deliveries WHERE state = $1 AND chain = $2", state, chain))
