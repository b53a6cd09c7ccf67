"""What a worker's dispatch pass reads first, in one statement: whether any target is
paused (none: no claimed step needs checking), when the next probe is due, and when the next
send or held delivery will be (how long the worker may sleep)."""

from __future__ import annotations

from dataclasses import dataclass

from relay.store.base import Tx


@dataclass(frozen=True)
class Outlook:
    paused_targets: int
    next_probe: float | None
    next_send: float | None
    """The first send due after now."""
    next_hold: float | None
    """The first delivery held for coalescing that may start after now."""


async def read(tx: Tx, now: float, steps_only: bool) -> Outlook:
    """`steps_only`: the next send among chain steps only (a worker with no room for
    notices is woken when a slot frees)."""
    only_steps = " AND kind = 'step'" if steps_only else ""
    row = await tx.fetchrow(
        "SELECT (SELECT count(*) FROM targets WHERE paused_by IS NOT NULL) AS paused,"
        " (SELECT min(probe_at) FROM targets WHERE paused_by = 'relay') AS probe_at,"
        f" (SELECT min(due_at) FROM sends WHERE due_at > $1{only_steps}) AS due_at,"
        " (SELECT min(hold_until) FROM deliveries WHERE hold_until > $1) AS hold_until", now)
    assert row is not None
    return Outlook(int(row["paused"]), _time(row["probe_at"]), _time(row["due_at"]),
                   _time(row["hold_until"]))


def _time(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]
