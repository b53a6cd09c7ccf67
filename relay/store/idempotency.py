"""Units on `event_keys`: which delivery a sender's event id (or Idempotency-Key) became.

A registry sends an event again while relay answers slowly or with an error; the first
acceptance of a key within the chain's `idempotency_window` is the one that counts, and every
repeat gives back its delivery. The table's primary key (chain, event_key) is what makes that
hold between processes: of two concurrent inserts of one key, PostgreSQL lets the second wait
for the first to commit and then finds the conflict.
"""

from __future__ import annotations

from collections.abc import Mapping

from relay.store.base import Tx


async def claim(tx: Tx, chain: str, key: str, delivery_id: str, now: float,
                window: float) -> str | None:
    """Record that `key` became `delivery_id`; or, when it was already accepted within the
    `window` (seconds), the delivery it became then (and record nothing)."""
    # A key older than the window is the sender's new event that happens to reuse an id:
    # it takes the row over.
    taken = await tx.execute(
        "INSERT INTO event_keys (chain, event_key, delivery_id, received_at)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (chain, event_key) DO UPDATE"
        " SET delivery_id = excluded.delivery_id, received_at = excluded.received_at"
        " WHERE event_keys.received_at < $5",
        chain, key, delivery_id, now, now - window)
    if taken:
        return None
    first: str = await tx.fetchval(
        "SELECT delivery_id FROM event_keys WHERE chain = $1 AND event_key = $2",
        chain, key)
    return first


async def prune(tx: Tx, windows: Mapping[str, float], longest: float, now: float) -> int:
    """Forget keys past their chain's window (`windows`; `longest` for chains not in it):
    repeats come within seconds or minutes, keys need not live for ever."""
    forgotten = 0
    for chain, window in windows.items():
        forgotten += await tx.execute(
            "DELETE FROM event_keys WHERE chain = $1 AND received_at < $2",
            chain, now - window)
    forgotten += await tx.execute("DELETE FROM event_keys WHERE received_at < $1",
                                  now - longest)
    return forgotten
