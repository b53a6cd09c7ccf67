"""Units of SQL on what relay knows of each target: its run of failed attempts, and whether
it is paused. A target with no row is active and has not failed since it last succeeded.

A step held back for a paused target is a send in state 'paused' with no due time: nobody
claims it until the target is resumed, or until it is the one let through as a probe.
"""

from __future__ import annotations

from relay.store.base import Row, Tx, placeholders

PausedTargets = dict[tuple[str, str], int | None]
"""(chain, target) of every paused target -> the send let through to probe it, if any."""


async def all_rows(tx: Tx) -> list[Row]:
    return await tx.fetch("SELECT * FROM targets ORDER BY chain, target")


async def get(tx: Tx, chain: str, target: str) -> Row | None:
    return await tx.fetchrow("SELECT * FROM targets WHERE chain = $1 AND target = $2",
                             chain, target)


async def paused(tx: Tx) -> PausedTargets:
    rows = await tx.fetch(
        "SELECT chain, target, probe FROM targets WHERE paused_by IS NOT NULL")
    return {(row["chain"], row["target"]): None if row["probe"] is None else int(row["probe"])
            for row in rows}


async def failed(tx: Tx, chain: str, target: str, error: str) -> Row:
    """Count a failed attempt; the target's row as it is now."""
    row = await tx.fetchrow(
        "INSERT INTO targets (chain, target, failures, last_error) VALUES ($1, $2, 1, $3)"
        " ON CONFLICT (chain, target) DO UPDATE SET failures = targets.failures + 1,"
        " last_error = $3 RETURNING *", chain, target, error)
    assert row is not None
    return row


async def succeeded(tx: Tx, chain: str, target: str) -> Row | None:
    """Forget the target's failures; its row if it had one (None: nothing to forget)."""
    return await tx.fetchrow(
        "UPDATE targets SET failures = 0 WHERE chain = $1 AND target = $2"
        " AND (failures > 0 OR paused_by IS NOT NULL) RETURNING *", chain, target)


async def pause(tx: Tx, chain: str, target: str, by: str, now: float,
                probe_at: float | None) -> None:
    await tx.execute(
        "INSERT INTO targets (chain, target, paused_by, since, probe_at) VALUES ($1, $2, $3,"
        " $4, $5) ON CONFLICT (chain, target) DO UPDATE SET paused_by = $3, since = $4,"
        " probe_at = $5, probe = NULL", chain, target, by, now, probe_at)


async def resume(tx: Tx, chain: str, target: str, now: float) -> None:
    await tx.execute(
        "INSERT INTO targets (chain, target, since) VALUES ($1, $2, $3)"
        " ON CONFLICT (chain, target) DO UPDATE SET paused_by = NULL, since = $3,"
        " failures = 0, probe_at = NULL, probe = NULL", chain, target, now)


async def due_probes(tx: Tx, now: float) -> list[Row]:
    """Targets paused by relay whose next probe is due."""
    return await tx.fetch("SELECT chain, target, probe_at FROM targets"
                          " WHERE paused_by = 'relay' AND probe_at <= $1", now)


async def next_probe(tx: Tx) -> float | None:
    due = await tx.fetchval("SELECT min(probe_at) FROM targets WHERE paused_by = 'relay'")
    return None if due is None else float(due)


async def probing(tx: Tx, chain: str, target: str, send_id: int | None,
                  next_at: float) -> None:
    await tx.execute("UPDATE targets SET probe = $3, probe_at = $4 WHERE chain = $1"
                     " AND target = $2", chain, target, send_id, next_at)


async def hold_steps(tx: Tx, chain: str, target: str) -> int:
    """Steps of `target` waiting to be sent or retried (not out right now) wait paused."""
    return await tx.execute(
        "UPDATE sends SET state = 'paused', due_at = NULL WHERE kind = 'step'"
        " AND state = 'sending' AND lease IS NULL AND name = $2 AND delivery_id IN"
        " (SELECT id FROM deliveries WHERE chain = $1 AND state = 'running')",
        chain, target)


async def oldest_held(tx: Tx, chain: str, target: str) -> int | None:
    found = await tx.fetchval(
        "SELECT s.id FROM sends s JOIN deliveries d ON d.id = s.delivery_id"
        " WHERE s.state = 'paused' AND s.name = $2 AND d.chain = $1 ORDER BY s.id LIMIT 1",
        chain, target)
    return None if found is None else int(found)


async def release_held(tx: Tx, chain: str, target: str, now: float,
                       only: int | None = None) -> int:
    """Make held steps due now (one, the probe, if `only`); they are claimed in their
    deliveries' order. `started_at` starts their `retry_for` again."""
    one = "" if only is None else " AND id = $4"
    args: tuple[object, ...] = (chain, target, now) if only is None else (chain, target, now,
                                                                           only)
    return await tx.execute(
        "UPDATE sends SET state = 'sending', due_at = $3, started_at = $3"
        " WHERE kind = 'step' AND state = 'paused' AND name = $2 AND delivery_id IN"
        f" (SELECT id FROM deliveries WHERE chain = $1){one}", *args)


async def hold(tx: Tx, send_ids: list[int], reason: str) -> None:
    """These steps were about to go (or go again) to a paused target: they wait instead."""
    if send_ids:
        await tx.execute("UPDATE sends SET state = 'paused', due_at = NULL, lease = NULL,"
                         f" reason = $1 WHERE id IN ({placeholders(2, len(send_ids))})",
                         reason, *send_ids)


async def held_counts(tx: Tx) -> dict[tuple[str, str], int]:
    rows = await tx.fetch(
        "SELECT d.chain, s.name, count(*) AS n FROM sends s JOIN deliveries d"
        " ON d.id = s.delivery_id WHERE s.state = 'paused' GROUP BY d.chain, s.name")
    return {(row["chain"], row["name"]): int(row["n"]) for row in rows}
