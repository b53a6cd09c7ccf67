"""Units on Docker Cloud service triggers (seeds/docker-cloud-service-triggers.md).

A trigger's id is its only credential (192 bits from `secrets`): whoever holds its call URL
may run its chain again, until the trigger is deleted.
"""

from __future__ import annotations

from relay import models
from relay.store.base import Row, Tx

REDEPLOY = "REDEPLOY"


async def create(tx: Tx, chain: str, name: str, operation: str, now: float) -> Row:
    created = await tx.fetchrow(
        "INSERT INTO triggers (id, chain, name, operation, created_at)"
        " VALUES ($1, $2, $3, $4, $5) RETURNING *",
        models.new_trigger_id(), chain, name, operation, now)
    assert created is not None
    return created


async def listing(tx: Tx, chain: str) -> list[Row]:
    return await tx.fetch("SELECT * FROM triggers WHERE chain = $1 ORDER BY created_at, id",
                          chain)


async def get(tx: Tx, chain: str, trigger_id: str) -> Row | None:
    return await tx.fetchrow("SELECT * FROM triggers WHERE id = $1 AND chain = $2",
                             trigger_id, chain)


async def delete(tx: Tx, chain: str, trigger_id: str) -> Row | None:
    """The trigger as it was, or None; its call URL stops working with this commit."""
    return await tx.fetchrow("DELETE FROM triggers WHERE id = $1 AND chain = $2 RETURNING *",
                             trigger_id, chain)
