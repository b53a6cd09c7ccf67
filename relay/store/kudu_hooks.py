"""Units on Kudu web hooks (seeds/kudu-web-hooks.txt): the subscriptions made over /api/hooks,
and what came of the last notice sent to each."""

from __future__ import annotations

from dataclasses import dataclass

from relay import errors
from relay.store.base import Row, Tx

POST_DEPLOYMENT = "PostDeployment"
"""The Kudu event relay fires itself: when a chain ends."""
KUDU_EVENTS = (POST_DEPLOYMENT, "TriggeredJobFinished")
"""Kudu's HookEventTypes (but None, its "no event"); any other name may be subscribed and
published too, as in Kudu."""


def event_named(name: str) -> str:
    """Kudu compares event names ignoring case; relay keeps Kudu's spelling of its own."""
    return next((known for known in KUDU_EVENTS if known.lower() == name.lower()), name)


@dataclass(frozen=True)
class Subscription:
    url: str
    event: str
    insecure: bool
    chain: str | None
    """Only deliveries of this chain fire the hook; None: every chain."""


async def add(tx: Tx, wanted: Subscription, now: float) -> tuple[Row, bool]:
    """The hook for `wanted.url`, and whether it was made now.

    As in Kudu, a url is registered once (compared ignoring case): the same registration
    again gives back the existing hook; the same url with other settings is a 409.
    """
    await tx.lock("kudu_hooks")
    existing = await tx.fetchrow("SELECT * FROM kudu_hooks WHERE url_key = $1",
                                 wanted.url.lower())
    if existing is not None:
        differences = _differences(existing, wanted)
        if differences:
            raise errors.Conflict(
                f"hook {existing['id']} already has this url with other settings; "
                "delete it first to change them", differences)
        return existing, False
    created = await tx.fetchrow(
        "INSERT INTO kudu_hooks (url, url_key, event, insecure, chain, created_at)"
        " VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
        wanted.url, wanted.url.lower(), wanted.event, int(wanted.insecure), wanted.chain, now)
    assert created is not None
    return created, True


def _differences(existing: Row, wanted: Subscription) -> list[errors.Detail]:
    found = []
    if existing["event"].lower() != wanted.event.lower():
        found.append(errors.Detail("/event", f"is {existing['event']} in hook {existing['id']}"))
    if bool(existing["insecure"]) != wanted.insecure:
        shown = "true" if existing["insecure"] else "false"
        found.append(errors.Detail("/insecure_ssl", f"is {shown} in hook {existing['id']}"))
    if existing["chain"] != wanted.chain:
        shown = existing["chain"] or "null (every chain)"
        found.append(errors.Detail("/chain", f"is {shown} in hook {existing['id']}"))
    return found


async def listing(tx: Tx) -> list[Row]:
    return await tx.fetch("SELECT * FROM kudu_hooks ORDER BY id")


async def get(tx: Tx, hook_id: int) -> Row | None:
    return await tx.fetchrow("SELECT * FROM kudu_hooks WHERE id = $1", hook_id)


async def delete(tx: Tx, hook_id: int, now: float) -> Row | None:
    """The hook as it was, or None when there is no such hook.

    Its notices still waiting to be sent or retried are skipped: an unsubscribed receiver is
    called no more. Their deliveries are locked first, in id order, as every change to a
    delivery's sends is (an attempt being recorded meanwhile then sees it lost its lease).
    """
    due = "ref = $1 AND due_at IS NOT NULL AND kind = 'kudu' AND state = 'sending'"
    await tx.fetch(f"SELECT id FROM deliveries WHERE id IN (SELECT delivery_id FROM sends"
                   f" WHERE {due}) ORDER BY id FOR UPDATE", str(hook_id))
    await tx.execute(
        f"UPDATE sends SET state = 'skipped', due_at = NULL, lease = NULL, finished_at = $2,"
        f" reason = $3 WHERE {due}",
        str(hook_id), now, f"not sent: kudu hook {hook_id} was deleted")
    return await tx.fetchrow("DELETE FROM kudu_hooks WHERE id = $1 RETURNING *", hook_id)


async def subscribers(tx: Tx, event: str, chain: str) -> list[Row]:
    """The hooks that a delivery of `chain` fires `event` to."""
    return await tx.fetch(
        "SELECT id, url, insecure FROM kudu_hooks WHERE lower(event) = lower($1)"
        " AND (chain IS NULL OR chain = $2) ORDER BY id", event, chain)


async def subscribed(tx: Tx, event: str) -> list[Row]:
    """Every hook of `event`, whatever its chain: a published event names no chain."""
    return await tx.fetch(
        "SELECT id, url, insecure FROM kudu_hooks WHERE lower(event) = lower($1)"
        " ORDER BY id", event)


async def record(tx: Tx, hook_id: int, *, at: float, status: str, reason: str | None,
                 context: str | None) -> None:
    """What came of the last notice to a hook (nothing happens if it was deleted since)."""
    await tx.execute(
        "UPDATE kudu_hooks SET last_at = $2, last_status = $3, last_reason = $4,"
        " last_context = $5 WHERE id = $1", hook_id, at, status, reason, context)
