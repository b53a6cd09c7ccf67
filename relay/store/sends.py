"""Units of SQL on sends and their attempts: the only statements that change them.

A send is one outbound POST with its own retries: a chain step, or a notice sent when the
chain ends (the upstream report, Kudu and Dockership hooks). `sends.due_at` is the next time
anyone must look at a send (send it, retry it, give up waiting for its callback); a claim
moves it to the end of the claimer's lease, so work of a process that died becomes due again
by itself. What to do with a send is decided by the engine (relay/engine/apply.py), which
locks the delivery row first (deliveries.lock) and then calls the operations here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from relay import models
from relay.models import SendKind, StepState
from relay.store import targets
from relay.store.base import Row, Tx, placeholders


@dataclass(frozen=True)
class Claimed:
    """A send this process holds the lease of, with what it needs to act on it."""

    id: int
    delivery_id: str
    chain: str
    kind: SendKind
    idx: int
    name: str
    url: str
    state: StepState
    message_id: str
    token: str | None
    body: str | None
    payload: str | None
    insecure: bool
    attempt: int
    lease: str
    config: str | None = None
    """The configuration version its delivery runs with."""


def worker_of(lease: str) -> str:
    """The process a lease `worker#n` belongs to."""
    return lease.rsplit("#", 1)[0]


async def claim(tx: Tx, lease: str, lease_until: float, now: float, steps: int,
                notices: int = 0, any_paused: bool = True) -> list[Claimed]:
    """Take up to `steps` due chain steps and `notices` due notices under `lease` until
    `lease_until` (`any_paused`: whether a target may be paused, see `take`)."""
    if steps <= 0 and notices <= 0:
        return []
    due = await tx.fetch(
        f"WITH steps AS ({_DUE} AND kind = 'step' {_DUE_ORDER} LIMIT $2 FOR UPDATE SKIP LOCKED),"
        f" notices AS ({_DUE} AND kind <> 'step' {_DUE_ORDER} LIMIT $3"
        " FOR UPDATE SKIP LOCKED) SELECT * FROM steps UNION ALL SELECT * FROM notices",
        now, max(steps, 0), max(notices, 0))
    return await take(tx, lease, lease_until, now, due, any_paused=any_paused)


_DUE = ("SELECT id, delivery_id, name, kind, state, lease, attempts FROM sends"
        " WHERE due_at <= $1")
_DUE_ORDER = "ORDER BY due_at, id"

_CLAIMED = ("id, delivery_id, kind, idx, name, url, state, message_id, token, body, insecure,"
            " attempts")
_CLAIMED_WITH_DELIVERY = (
    f"{_CLAIMED}, (SELECT chain FROM deliveries WHERE id = sends.delivery_id) AS chain,"
    " (SELECT config FROM deliveries WHERE id = sends.delivery_id) AS config,"
    " CASE WHEN kind = 'step' THEN (SELECT payload FROM deliveries"
    " WHERE id = sends.delivery_id) END AS payload")
"""What a claim returns of a send, with its delivery's chain, config and (for a step)
payload: on PostgreSQL in the same statement. SQLite's planner scans the whole table for a
subquery in RETURNING, so there they are read after (see _with_delivery)."""


def _returning(tx: Tx) -> str:
    return _CLAIMED_WITH_DELIVERY if tx.dialect == "postgres" else _CLAIMED


async def _with_delivery(tx: Tx, rows: list[Row]) -> list[Row]:
    """`rows` (returned with `_returning(tx)`) with their delivery's chain, config and
    payload."""
    if tx.dialect == "postgres" or not rows:
        return rows
    delivery_ids = sorted({row["delivery_id"] for row in rows})
    found = {d["id"]: d for d in await tx.fetch(
        f"SELECT id, chain, config, payload FROM deliveries"
        f" WHERE id IN ({placeholders(1, len(delivery_ids))})", *delivery_ids)}
    return [{**row, "chain": found[row["delivery_id"]]["chain"],
             "config": found[row["delivery_id"]]["config"],
             "payload": found[row["delivery_id"]]["payload"]
             if row["kind"] == SendKind.STEP else None} for row in rows]


async def take(tx: Tx, lease: str, lease_until: float, now: float,
               due: list[Row], *, any_paused: bool = True) -> list[Claimed]:
    """Lease the sends of `due` (rows with id, delivery_id, name, kind, state, lease,
    attempts), but for steps of a paused target, which wait instead. With `any_paused`
    False the caller knows that no target is paused (it counted them in this transaction).

    Each send to be POSTed gets its attempt recorded now, before it goes out, so that the
    history shows every send, even one whose process dies before the answer comes.
    """
    if not due:
        return []
    worker = worker_of(lease)
    for row in due:
        if row["state"] == StepState.SENDING and row["lease"] is not None:
            await abandon_attempt(
                tx, row["id"], row["attempts"],
                f"no answer recorded: {worker_of(row['lease'])} stopped during this attempt"
                " (its lease ran out)")
    if any_paused:
        due = await _not_paused(tx, due)
        if not due:
            return []
    for row in due:
        if row["state"] != StepState.SENDING:
            continue
        tx.append(_INSERT_ATTEMPT, (row["id"], row["attempts"] + 1, now, worker))
    ids = [row["id"] for row in due]
    rows = await tx.fetch(
        f"UPDATE sends SET lease = $1, due_at = $2, attempts = CASE WHEN state = 'sending'"
        f" THEN attempts + 1 ELSE attempts END WHERE id IN ({placeholders(3, len(ids))})"
        f" RETURNING {_returning(tx)}", lease, lease_until, *ids)
    return [_claimed(row, lease) for row in sorted(await _with_delivery(tx, rows),
                                                    key=lambda r: r["id"])]


_INSERT_ATTEMPT = "INSERT INTO attempts (send_id, n, at, worker) VALUES ($1, $2, $3, $4)"


def _claimed(row: Row, lease: str) -> Claimed:
    return Claimed(id=row["id"], delivery_id=row["delivery_id"], chain=row["chain"],
                   kind=SendKind(row["kind"]), idx=row["idx"], name=row["name"],
                   url=row["url"], state=StepState(row["state"]),
                   message_id=row["message_id"], token=row["token"], body=row["body"],
                   payload=row["payload"], insecure=bool(row["insecure"]),
                   attempt=row["attempts"], lease=lease, config=row["config"])


async def _not_paused(tx: Tx, due: list[Row]) -> list[Row]:
    """`due` without the steps to be POSTed to a paused target (but its probe), which are
    held instead."""
    paused = await targets.paused(tx)
    if not paused:
        return due
    delivery_ids = sorted({row["delivery_id"] for row in due})
    chains = {
        d["id"]: d["chain"] for d in await tx.fetch(
            f"SELECT id, chain FROM deliveries"
            f" WHERE id IN ({placeholders(1, len(delivery_ids))})", *delivery_ids)}
    held = {row["id"] for row in due
            if row["kind"] == SendKind.STEP and row["state"] == StepState.SENDING
            and (key := (chains[row["delivery_id"]], row["name"])) in paused
            and paused[key] != row["id"]}
    await targets.hold(tx, sorted(held), "its target is paused")
    return [row for row in due if row["id"] not in held]




def record_answer(tx: Tx, send_id: int, attempt: int, status: int | None,
                  duration_ms: float, error: str | None, response: str | None = None) -> None:
    """`response`: what the target answered, as JSON text (None: no answer). Deferred (see
    Tx.defer): nothing in a unit reads an attempt back."""
    tx.defer(
        "UPDATE attempts SET status = $3, duration_ms = $4, error = $5, response = $6"
        " WHERE send_id = $1 AND n = $2",
        send_id, attempt, status, round(duration_ms, 3), error, response)


async def abandon_attempt(tx: Tx, send_id: int, attempt: int, why: str) -> None:
    """Say why an attempt got no answer recorded, unless it has one."""
    await tx.execute(
        "UPDATE attempts SET error = $3 WHERE send_id = $1 AND n = $2"
        " AND status IS NULL AND error IS NULL", send_id, attempt, why)


async def set_status(tx: Tx, send_id: int, status: int | None) -> None:
    """A notice's last status: what its history entry and a Kudu hook's last_* show."""
    await tx.execute("UPDATE sends SET status = $2 WHERE id = $1", send_id, status)


async def retry_at(tx: Tx, send_id: int, at: float, reason: str) -> None:
    await tx.execute("UPDATE sends SET due_at = $2, lease = NULL, reason = $3 WHERE id = $1",
                     send_id, at, reason)


async def await_callback(tx: Tx, send_id: int, deadline: float) -> None:
    await tx.execute("UPDATE sends SET state = 'awaiting_callback', due_at = $2,"
                     " lease = NULL, reason = NULL WHERE id = $1", send_id, deadline)


async def await_callback_if_held(tx: Tx, claimed: Claimed, deadline: float) -> bool:
    """`await_callback` for a step still being sent under `claimed`'s lease whose target has
    no failures to forget and is not paused: the whole outcome of its successful attempt,
    in one statement, without its delivery's lock (the send's own row lock keeps its
    callback out). False, changing nothing, when any of that does not hold or another
    transaction holds the send."""
    return await tx.fetchval(
        "UPDATE sends SET state = 'awaiting_callback', due_at = $3, lease = NULL,"
        " reason = NULL WHERE id = (SELECT id FROM sends WHERE id = $1 AND lease = $2"
        " AND state = 'sending' AND NOT EXISTS (SELECT 1 FROM targets WHERE chain = $4"
        " AND target = $5 AND (failures > 0 OR paused_by IS NOT NULL))"
        " FOR UPDATE SKIP LOCKED) RETURNING id",
        claimed.id, claimed.lease, deadline, claimed.chain, claimed.name) is not None


def settle(tx: Tx, send_id: int, state: StepState, now: float, reason: str | None,
           verdict: models.Callback | None = None) -> None:
    """End a send, with the callback that ended it (`verdict`), if one did. Deferred (see
    Tx.defer): what follows in the unit reads and changes other sends (the next step, the
    ones never sent) and the delivery, never this send."""
    if verdict is None:
        tx.defer("UPDATE sends SET state = $2, due_at = NULL, lease = NULL,"
                 " finished_at = $3, reason = $4 WHERE id = $1", send_id, state, now, reason)
        return
    tx.defer("UPDATE sends SET state = $2, due_at = NULL, lease = NULL, finished_at = $3,"
             " reason = $4, cb_state = $5, cb_description = $6, cb_context = $7,"
             " cb_target_url = $8, cb_received_at = $3 WHERE id = $1",
             send_id, state, now, reason, verdict.state, verdict.description,
             verdict.context, verdict.target_url)


async def step_states(tx: Tx, delivery_id: str) -> list[StepState]:
    """The state of each of a delivery's steps, in chain order."""
    rows = await tx.fetch("SELECT state FROM sends WHERE delivery_id = $1 AND kind = 'step'"
                          " ORDER BY idx", delivery_id)
    return [StepState(row["state"]) for row in rows]


async def start_next(tx: Tx, delivery_id: str, after: int, now: float) -> Row | None:
    """Make the delivery's first step after `after` that waits to be sent (one whose target
    does not take the push's tag is skipped already) due now; its row for `take`, or None
    when no step is left."""
    return await tx.fetchrow(
        "UPDATE sends SET state = 'sending', due_at = $3, started_at = $3 WHERE id ="
        " (SELECT id FROM sends WHERE delivery_id = $1 AND kind = 'step' AND state = 'pending'"
        " AND idx > $2 ORDER BY idx LIMIT 1)"
        " RETURNING id, idx, delivery_id, name, kind, state, lease, attempts",
        delivery_id, after, now)


async def start_next_leased(tx: Tx, delivery_id: str, after: int, now: float, lease: str,
                            lease_until: float) -> Claimed | None:
    """`start_next` and `take` in one statement, for a caller that knows no target is
    paused: the step is leased to `lease` at once, its attempt begun."""
    row = await tx.fetchrow(
        "UPDATE sends SET state = 'sending', started_at = $3, lease = $4, due_at = $5,"
        " attempts = attempts + 1 WHERE id = (SELECT id FROM sends WHERE delivery_id = $1"
        " AND kind = 'step' AND state = 'pending' AND idx > $2 ORDER BY idx LIMIT 1)"
        f" RETURNING {_returning(tx)}", delivery_id, after, now, lease, lease_until)
    if row is None:
        return None
    tx.append(_INSERT_ATTEMPT, (row["id"], row["attempts"], now, worker_of(lease)))
    return _claimed((await _with_delivery(tx, [row]))[0], lease)


def skip_pending_steps(tx: Tx, delivery_id: str, reason: str) -> None:
    """Deferred (see Tx.defer): it changes only steps that were never sent."""
    tx.defer("UPDATE sends SET state = 'skipped', reason = $2 WHERE delivery_id = $1"
             " AND kind = 'step' AND state = 'pending'", delivery_id, reason)


async def add_notice(tx: Tx, delivery_id: str, index: int, *, kind: SendKind, name: str,
                     url: str, body: dict[str, Any], insecure: bool, refused: str | None,
                     ref: str | None, now: float) -> Row:
    """A notice sent when the chain ended (due now), or shown as not sent (`refused`)."""
    row = await tx.fetchrow(
        "INSERT INTO sends (delivery_id, kind, idx, name, url, state, message_id, body,"
        " insecure, due_at, started_at, finished_at, reason, ref)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        " RETURNING *",
        delivery_id, kind, index, name, url,
        StepState.SKIPPED if refused else StepState.SENDING,
        models.new_message_id(), json.dumps(body, ensure_ascii=False), int(insecure),
        None if refused else now, now, now if refused else None, refused, ref)
    assert row is not None
    return row


async def release(tx: Tx, send_id: int, now: float) -> None:
    """Give a send back: due now, leased by nobody."""
    await tx.execute("UPDATE sends SET lease = NULL, due_at = $2 WHERE id = $1", send_id, now)
    tx.wake()


async def recover(tx: Tx, now: float) -> int:
    """At the start of the only process on a store: every lease left behind has run out."""
    return await tx.execute(
        "UPDATE sends SET due_at = $1 WHERE lease IS NOT NULL AND due_at > $1", now)
