"""Units of SQL that keep the history bounded: deliveries that ended before a cutoff are
deleted with their steps, notices, attempts and callbacks. A delivery still running or
pending, or with a notice still to send, is never deleted."""

from __future__ import annotations

from relay.store.base import Tx, placeholders

_ENDED_BEFORE = (
    " FROM deliveries d WHERE d.finished_at < $1"
    " AND d.state IN ('success', 'failure', 'error')"
    " AND NOT EXISTS (SELECT 1 FROM sends s WHERE s.delivery_id = d.id"
    " AND s.due_at IS NOT NULL)")


async def count_ended_before(tx: Tx, cutoff: float) -> int:
    return int(await tx.fetchval("SELECT count(*)" + _ENDED_BEFORE, cutoff))


async def delete_ended_before(tx: Tx, cutoff: float, limit: int) -> int:
    """Delete up to `limit` of the oldest deliveries that ended before `cutoff`; how many."""
    rows = await tx.fetch("SELECT d.id" + _ENDED_BEFORE + " ORDER BY d.finished_at"
                          f" LIMIT {int(limit)}", cutoff)
    ids = [row["id"] for row in rows]
    if not ids:
        return 0
    where = f"IN ({placeholders(1, len(ids))})"
    await tx.execute(f"DELETE FROM attempts WHERE send_id IN (SELECT id FROM sends WHERE"
                     f" delivery_id {where})", *ids)
    await tx.execute(f"DELETE FROM sends WHERE delivery_id {where}", *ids)
    return await tx.execute(f"DELETE FROM deliveries WHERE id {where}", *ids)
