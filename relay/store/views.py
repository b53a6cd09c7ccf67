"""Read units for the history: deliveries in DESIGN §4's shape. Nothing here writes.

What is shown here is what the store holds; the HTTP layer hides credentials in URLs
(relay/redaction.py) before anything leaves relay.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from relay.models import HISTORY_PAGE_DEFAULT, SendKind, iso
from relay.store.base import Row, Tx, placeholders


@dataclass(frozen=True)
class Query:
    chain: str | None = None
    state: str | None = None
    repository: str | None = None
    tag: str | None = None
    before: str | None = None
    """Only deliveries with ids below this one (the cursor)."""
    limit: int = HISTORY_PAGE_DEFAULT


async def page(tx: Tx, query: Query) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first; the second value is the id to continue below, if there is more."""
    conditions: list[str] = []
    args: list[object] = []
    for column, value in (("chain", query.chain), ("state", query.state),
                          ("repository", query.repository), ("tag", query.tag)):
        if value is not None:
            args.append(value)
            conditions.append(f"{column} = ${len(args)}")
    if query.before is not None:
        args.append(query.before)
        conditions.append(f"id < ${len(args)}")
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    args.append(query.limit + 1)
    rows = await tx.fetch(
        "SELECT id, chain, state, source, received_at, started_at, finished_at, repository,"
        f" tag, summary, redelivery_of, merged, hold_until FROM deliveries {where}"
        " ORDER BY id DESC"
        f" LIMIT ${len(args)}", *args)
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    steps = await _steps_of(tx, [row["id"] for row in rows])
    items = [{**_summary(row),
              "steps": [{"index": s["idx"], "target": s["name"], "state": s["state"]}
                        for s in steps.get(row["id"], [])]}
             for row in rows]
    return items, rows[-1]["id"] if more and rows else None


async def delivery(tx: Tx, delivery_id: str) -> dict[str, Any] | None:
    row = await tx.fetchrow("SELECT * FROM deliveries WHERE id = $1", delivery_id)
    if row is None:
        return None
    sends = await tx.fetch("SELECT * FROM sends WHERE delivery_id = $1 ORDER BY kind, idx",
                           delivery_id)
    attempts = await _attempts_of(tx, [s["id"] for s in sends])
    steps = [_step(s, attempts.get(s["id"], [])) for s in sends if s["kind"] == SendKind.STEP]
    notices = [_notice(s, attempts.get(s["id"], [])) for s in sends
               if s["kind"] != SendKind.STEP]
    upstream = next((n for n in notices if n["kind"] == SendKind.UPSTREAM), None)
    return {
        **_summary(row),
        "payload": json.loads(row["payload"]),
        "steps": steps,
        "upstream": upstream,
        "notices": [n for n in notices if n["kind"] != SendKind.UPSTREAM],
    }


def _summary(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "chain": row["chain"],
        "state": row["state"],
        "source": row["source"],
        "redelivery_of": row["redelivery_of"],
        "repository": row["repository"],
        "tag": row["tag"],
        "received_at": iso(row["received_at"]),
        "started_at": iso(row["started_at"]),
        "finished_at": iso(row["finished_at"]),
        "summary": row["summary"],
        # Coalescing (a chain's `coalesce`): how many pushes this delivery stands for, and
        # until when it waits for more.
        "merged": row["merged"],
        "held_until": iso(row["hold_until"]),
    }


def _step(send: Row, attempts: list[dict[str, Any]]) -> dict[str, Any]:
    callback = None
    if send["cb_state"] is not None:
        callback = {
            "state": send["cb_state"],
            "description": send["cb_description"],
            "context": send["cb_context"],
            "target_url": send["cb_target_url"],
            "received_at": iso(send["cb_received_at"]),
        }
    return {
        "index": send["idx"],
        "target": send["name"],
        "url": send["url"],
        "state": send["state"],
        "reason": send["reason"],
        "webhook_id": send["message_id"],
        "started_at": iso(send["started_at"]),
        "finished_at": iso(send["finished_at"]),
        "attempts": attempts,
        "callback": callback,
    }


def _notice(send: Row, attempts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "kind": send["kind"],
        "name": send["name"],
        "url": send["url"],
        "state": send["state"],
        "status": send["status"],
        "reason": send["reason"],
        "webhook_id": send["message_id"],
        "attempts": attempts,
    }


async def _steps_of(tx: Tx, delivery_ids: list[str]) -> dict[str, list[Row]]:
    if not delivery_ids:
        return {}
    rows = await tx.fetch(
        "SELECT delivery_id, idx, name, state FROM sends WHERE kind = 'step' AND delivery_id"
        f" IN ({placeholders(1, len(delivery_ids))}) ORDER BY idx", *delivery_ids)
    grouped: dict[str, list[Row]] = {}
    for row in rows:
        grouped.setdefault(row["delivery_id"], []).append(row)
    return grouped


async def _attempts_of(tx: Tx, send_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    if not send_ids:
        return {}
    rows = await tx.fetch(
        "SELECT send_id, n, at, status, duration_ms, error, response FROM attempts"
        f" WHERE send_id IN ({placeholders(1, len(send_ids))}) ORDER BY send_id, n",
        *send_ids)
    grouped: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        error = row["error"]
        if row["status"] is None and error is None:
            error = "no answer recorded"
        grouped.setdefault(row["send_id"], []).append({
            "at": iso(row["at"]), "status": row["status"],
            "duration_ms": row["duration_ms"], "error": error,
            "response": json.loads(row["response"]) if row["response"] else None})
    return grouped
