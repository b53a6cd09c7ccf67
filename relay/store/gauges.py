"""Read unit for /metrics: what is waiting right now, in index-only queries."""

from __future__ import annotations

from dataclasses import dataclass, field

from relay.store.base import Tx


@dataclass
class Waiting:
    deliveries: dict[tuple[str, str], int] = field(default_factory=dict)
    """(chain, state) -> deliveries pending (waiting for their turn) or running."""
    sends: dict[tuple[str, str], int] = field(default_factory=dict)
    """(kind, state) -> sends waiting to be sent or retried (`sending`), or waiting for
    their callback (`awaiting_callback`)."""
    earliest_due: float | None = None
    """The earliest time any send is due (to be sent, retried or given up on)."""
    paused_targets: int = 0
    paused_steps: int = 0


async def waiting(tx: Tx) -> Waiting:
    found = Waiting()
    for row in await tx.fetch(
            "SELECT chain, state, count(*) AS n FROM deliveries"
            " WHERE state IN ('pending', 'running') GROUP BY chain, state"):
        found.deliveries[(row["chain"], row["state"])] = int(row["n"])
    # Only unfinished sends have a due time, and sends_due indexes exactly those.
    for row in await tx.fetch(
            "SELECT kind, state, count(*) AS n, min(due_at) AS due FROM sends"
            " WHERE due_at IS NOT NULL GROUP BY kind, state"):
        found.sends[(row["kind"], row["state"])] = int(row["n"])
        if found.earliest_due is None or row["due"] < found.earliest_due:
            found.earliest_due = float(row["due"])
    found.paused_targets = int(await tx.fetchval(
        "SELECT count(*) FROM targets WHERE paused_by IS NOT NULL") or 0)
    found.paused_steps = int(await tx.fetchval(
        "SELECT count(*) FROM sends WHERE state = 'paused'") or 0)  # sends_paused
    return found
