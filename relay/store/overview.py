"""Read units for the web UI's overview: deliveries per hour by outcome, and the latest
attempts per target. Both start from the deliveries' primary key (ids sort by time), so
they cost what the last day holds, however long the history is."""

from __future__ import annotations

from relay.store.base import Row, Tx

ATTEMPTS_SAMPLE = 5000
"""The overview's attempt statistics are over at most this many of the latest attempts."""


async def per_hour(tx: Tx, since_id: str) -> list[Row]:
    """(hour as epoch seconds / 3600, state, count) of deliveries from `since_id` on."""
    hour = ("floor(received_at / 3600)" if tx.dialect == "postgres"
            else "CAST(received_at / 3600 AS INTEGER)")  # SQLite's CAST truncates
    return await tx.fetch(f"SELECT {hour} AS hour, state, count(*) AS n FROM deliveries"
                          f" WHERE id >= $1 GROUP BY {hour}, state", since_id)


async def latest_attempts(tx: Tx, since_id: str) -> list[Row]:
    """The latest step attempts with an outcome (chain, target, status, duration_ms,
    error), newest first."""
    return await tx.fetch(
        "SELECT d.chain, s.name, a.status, a.duration_ms, a.error FROM deliveries d"
        " JOIN sends s ON s.delivery_id = d.id JOIN attempts a ON a.send_id = s.id"
        " WHERE d.id >= $1 AND s.kind = 'step'"
        " AND (a.status IS NOT NULL OR a.error IS NOT NULL)"
        f" ORDER BY d.id DESC, a.n DESC LIMIT {ATTEMPTS_SAMPLE}", since_id)
