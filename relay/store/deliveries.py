"""Units of work on deliveries and their sends: the only SQL that changes them.

A send is one outbound POST with its own retries: a chain step, or a notice sent when the
chain ends (the upstream report, Kudu and Dockership hooks). `sends.due_at` is the next time
anyone must look at a send (send it, retry it, give up waiting for its callback); a claim
moves it to the end of the claimer's lease, so work of a process that died becomes due again
by itself. Every change that moves a step (an answer, a callback, an expiry) first locks the
delivery row, so a callback and the answer to relay's own POST can never both move it; a
claim only takes sends that are due, with SKIP LOCKED.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, assert_never

from relay import chain, config, errors, models, notices
from relay.chain import Decision
from relay.models import DeliveryState, SendKind, StepState
from relay.store import idempotency
from relay.store.base import Row, Tx, placeholders


@dataclass(frozen=True)
class Push:
    """A validated push, ready to be stored as a delivery."""

    chain: str
    payload: dict[str, Any]
    text: str
    """The payload as JSON text, exactly as it is stored and later sent on."""
    source: str = "push"
    redelivery_of: str | None = None

    # Plain properties: functools.cached_property takes a lock on every access before 3.12,
    # which costs more than these look-ups.
    @property
    def repository(self) -> str:
        return str(_dig(self.payload, "repository", "repo_name") or "")

    @property
    def tag(self) -> str:
        return str(_dig(self.payload, "push_data", "tag") or "")

    @property
    def pusher(self) -> str:
        return str(_dig(self.payload, "push_data", "pusher") or "")

    @property
    def revision(self) -> str:
        """What Dockership calls a revision: the tag, else the digest, else the first image."""
        images = _dig(self.payload, "push_data", "images")
        first_image = images[0] if isinstance(images, list) and images else ""
        return str(self.tag or _dig(self.payload, "push_data", "digest") or first_image)


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


@dataclass(frozen=True)
class Applied:
    """What a unit did to a send, for the caller's log line."""

    delivery_id: str
    chain: str
    idx: int
    name: str
    decision: Decision
    finished: DeliveryState | None = None
    handoff: tuple[Claimed, ...] = ()
    """Sends this unit started and leased at once to the caller's worker (the next step of
    the chain): the worker POSTs them without another transaction or wake-up."""


async def accept(tx: Tx, push: Push, targets: Sequence[config.Target], now: float, *,
                 delivery_id: str | None = None, hold_until: float | None = None) -> str:
    """Store a push as a pending delivery with one pending step per target; one with
    `hold_until` is not started before then."""
    delivery_id = delivery_id or models.new_delivery_id(now)
    row = (delivery_id, push.chain, DeliveryState.PENDING, push.source, now, push.text,
           push.repository, push.tag, push.revision, push.pusher, push.redelivery_of,
           hold_until)
    secrets = models.new_step_secrets(len(targets))
    steps = [(delivery_id, SendKind.STEP, index, target.name, target.url, StepState.PENDING,
              message_id, token)
             for index, (target, (message_id, token)) in enumerate(
                 zip(targets, secrets, strict=True))]
    if hold_until is None:
        # Appended, not executed: a group commit inserts all its deliveries in one statement.
        tx.append(_INSERT_DELIVERY, row)
        for step in steps:
            tx.append(_INSERT_STEP, step)
    else:
        # Executed at once: the next push of the same tag, in this very group commit,
        # must find the delivery to merge into.
        await tx.execute(_INSERT_DELIVERY, *row)
        await tx.executemany(_INSERT_STEP, steps)
    tx.wake()
    return delivery_id


_INSERT_DELIVERY = (
    "INSERT INTO deliveries (id, chain, state, source, received_at, payload, repository, tag,"
    " revision, pusher, redelivery_of, hold_until)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)")
_INSERT_STEP = (
    "INSERT INTO sends (delivery_id, kind, idx, name, url, state, message_id, token)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")


@dataclass(frozen=True)
class Stored:
    """What became of a push that `receive` took."""

    id: str
    duplicate: bool = False
    """The sender's event was accepted before: `id` is the delivery it became then."""
    merged: int = 1
    """How many pushes the delivery now stands for (more than 1 once coalesced)."""


def locks_on_receive(chain: config.Chain, key: str | None) -> bool:
    """Whether `receive` takes locks (a repeat's key, a coalescing window): such a write
    must run alone (see Store.write)."""
    return key is not None or chain.coalesce > 0


async def receive(tx: Tx, push: Push, chain: config.Chain, now: float,
                  key: str | None = None) -> Stored:
    """Store a push the way its chain asks: a repeat of an event already accepted (same
    `key`) gives back the first delivery; within the chain's `coalesce` window a push of the
    same repository and tag merges into the delivery still held for it (the last payload
    wins)."""
    coalescing = chain.coalesce > 0 and bool(push.tag)
    if key is None and not coalescing:
        return Stored(await accept(tx, push, chain.targets, now))
    held = None
    if coalescing:
        # The lock admission takes: a held delivery cannot start while a push merges into
        # it, and of two processes only one holds a new delivery for the tag.
        await tx.lock(f"chain:{chain.name}")
        held = await tx.fetchrow(
            "SELECT id, merged FROM deliveries WHERE chain = $1 AND repository = $2"
            " AND tag = $3 AND hold_until > $4 AND state = 'pending'"
            " ORDER BY id DESC LIMIT 1 FOR UPDATE",
            chain.name, push.repository, push.tag, now)
    delivery_id = held["id"] if held is not None else models.new_delivery_id(now)
    if key is not None:
        first = await idempotency.claim(tx, chain, key, delivery_id, now)
        if first is not None:
            return Stored(first, duplicate=True)
    if held is not None:
        await tx.execute(
            "UPDATE deliveries SET payload = $2, pusher = $3, revision = $4,"
            " merged = merged + 1 WHERE id = $1",
            delivery_id, push.text, push.pusher, push.revision)
        return Stored(delivery_id, merged=held["merged"] + 1)
    hold_until = now + chain.coalesce if coalescing else None
    return Stored(await accept(tx, push, chain.targets, now, delivery_id=delivery_id,
                               hold_until=hold_until))


async def redeliver(tx: Tx, settings: config.Settings, delivery_id: str, now: float) -> str:
    """A new delivery of a stored delivery's payload through its chain as configured now."""
    row = await tx.fetchrow("SELECT id, chain, payload FROM deliveries WHERE id = $1",
                            delivery_id)
    if row is None:
        raise errors.HTTPError(404, f"no delivery has id {delivery_id!r}")
    return await again(tx, settings, row, "redeliver", now)


async def again(tx: Tx, settings: config.Settings, original: Row, source: str,
                now: float) -> str:
    """A new delivery (`source` "redeliver" or "trigger") of `original`'s payload (a row
    with id, chain, payload) through its chain as configured now; 409 if it is not."""
    configured = settings.chain(original["chain"])
    if configured is None:
        raise errors.HTTPError(409, f"chain {original['chain']!r} is no longer configured")
    push = Push(original["chain"], json.loads(original["payload"]), original["payload"],
                source=source, redelivery_of=original["id"])
    return await accept(tx, push, configured.targets, now)


async def dispatch(tx: Tx, settings: config.Settings, lease: str, now: float,
                   steps: int, notice_limit: int = 0) -> tuple[list[Claimed], float | None]:
    """One pass of a worker: admit waiting deliveries, claim up to `steps` due chain steps
    and `notice_limit` due notices, and say when to look next."""
    await admit(tx, settings, now)
    claimed = []
    if steps > 0:
        claimed += await claim(tx, settings, lease, now, steps, of_notices=False)
    if notice_limit > 0:
        claimed += await claim(tx, settings, lease, now, notice_limit, of_notices=True)
    # With no room for notices, only the steps' times matter (a freed slot wakes the worker).
    only_steps = " AND kind = 'step'" if notice_limit <= 0 else ""
    next_send = await tx.fetchval(
        f"SELECT min(due_at) FROM sends WHERE due_at IS NOT NULL{only_steps}")
    # A held delivery is due when its coalescing window closes.
    next_hold = await tx.fetchval(
        "SELECT min(hold_until) FROM deliveries WHERE hold_until > $1", now)
    due = [t for t in (next_send, next_hold) if t is not None]
    return claimed, min(due) if due else None


async def admit(tx: Tx, settings: config.Settings, now: float,
                only_chain: str | None = None) -> None:
    """Start pending deliveries, oldest first, while their chain runs fewer than `concurrency`.
    A delivery held for coalescing waits until its `hold_until` (and holds up later ones of
    its chain, which keeps their order).

    Costs a few index look-ups per configured chain, however long the backlog is.
    """
    # A chain no longer in the config runs its leftovers one at a time.
    limits = ({only_chain: getattr(settings.chain(only_chain), "concurrency", 1)}
              if only_chain is not None else {c.name: c.concurrency for c in settings.chains})
    for name, limit in limits.items():
        if await _running(tx, name) >= limit or not _may_start(await tx.fetchrow(
                "SELECT hold_until FROM deliveries WHERE state = 'pending' AND chain = $1"
                " ORDER BY id LIMIT 1", name), now):
            continue
        await tx.lock(f"chain:{name}")
        # Counted again under the lock: another process may have admitted meanwhile.
        free = limit - await _running(tx, name)
        if free <= 0:
            continue
        rows = await tx.fetch(
            "SELECT id, hold_until FROM deliveries WHERE state = 'pending' AND chain = $1"
            " ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED", name, free)
        for row in rows:
            if not _may_start(row, now):
                break
            await tx.execute("UPDATE deliveries SET state = 'running', started_at = $2,"
                             " hold_until = NULL WHERE id = $1", row["id"], now)
            await _start_step(tx, settings, row["id"], 0, now, None)


def _may_start(pending: Row | None, now: float) -> bool:
    return pending is not None and (pending["hold_until"] is None
                                    or pending["hold_until"] <= now)


async def admit_unconfigured(tx: Tx, settings: config.Settings, now: float) -> None:
    """Deliveries left waiting by chains no longer in the config: run them to their end."""
    configured = {c.name for c in settings.chains}
    rows = await tx.fetch("SELECT DISTINCT chain FROM deliveries WHERE state = 'pending'")
    for row in rows:
        if row["chain"] not in configured:
            await admit(tx, settings, now, only_chain=row["chain"])


async def _running(tx: Tx, chain_name: str) -> int:
    return int(await tx.fetchval(
        "SELECT count(*) FROM deliveries WHERE state = 'running' AND chain = $1", chain_name))


async def claim(tx: Tx, settings: config.Settings, lease: str, now: float,
                limit: int, of_notices: bool = False) -> list[Claimed]:
    """Take up to `limit` due chain steps (or notices) under `lease` until now +
    lease_seconds.

    Each send to be POSTed gets its attempt recorded now, before it goes out, so that the
    history shows every send, even one whose process dies before the answer comes.
    """
    kind = "kind <> 'step'" if of_notices else "kind = 'step'"
    due = await tx.fetch(
        f"SELECT id, state, lease, attempts FROM sends WHERE due_at <= $1 AND {kind}"
        " ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED", now, limit)
    return await _take(tx, settings, lease, now, due)


async def _take(tx: Tx, settings: config.Settings, lease: str, now: float,
                due: list[Row]) -> list[Claimed]:
    if not due:
        return []
    worker = worker_of(lease)
    for row in due:
        if row["state"] != StepState.SENDING:
            continue
        if row["lease"] is not None:
            await tx.execute(
                "UPDATE attempts SET error = $3 WHERE send_id = $1 AND n = $2"
                " AND status IS NULL AND error IS NULL", row["id"], row["attempts"],
                f"no answer recorded: {worker_of(row['lease'])} stopped during this attempt"
                " (its lease ran out)")
        tx.append("INSERT INTO attempts (send_id, n, at, worker) VALUES ($1, $2, $3, $4)",
                  (row["id"], row["attempts"] + 1, now, worker))
    ids = [row["id"] for row in due]
    rows = await tx.fetch(
        f"UPDATE sends SET lease = $1, due_at = $2, attempts = CASE WHEN state = 'sending'"
        f" THEN attempts + 1 ELSE attempts END WHERE id IN ({placeholders(3, len(ids))})"
        " RETURNING id, delivery_id, kind, idx, name, url, state, message_id, token, body,"
        " insecure, attempts",
        lease, now + settings.lease_seconds, *ids)
    delivery_ids = sorted({row["delivery_id"] for row in rows})
    deliveries = {
        d["id"]: d for d in await tx.fetch(
            f"SELECT id, chain, payload FROM deliveries"
            f" WHERE id IN ({placeholders(1, len(delivery_ids))})", *delivery_ids)}
    return [
        Claimed(id=row["id"], delivery_id=row["delivery_id"],
                chain=deliveries[row["delivery_id"]]["chain"], kind=SendKind(row["kind"]),
                idx=row["idx"], name=row["name"], url=row["url"],
                state=StepState(row["state"]), message_id=row["message_id"],
                token=row["token"], body=row["body"],
                payload=deliveries[row["delivery_id"]]["payload"]
                if row["kind"] == SendKind.STEP else None,
                insecure=bool(row["insecure"]), attempt=row["attempts"], lease=lease)
        for row in sorted(rows, key=lambda r: r["id"])]


def worker_of(lease: str) -> str:
    """The process a lease `worker#n` belongs to."""
    return lease.rsplit("#", 1)[0]


async def record_attempt(tx: Tx, settings: config.Settings, claimed: Claimed,
                         answer: chain.Answer, now: float, handoff: str | None = None
                         ) -> Applied:
    """Complete the attempt's record with its answer and move the send (and its chain) on."""
    await _lock_delivery(tx, claimed.delivery_id)
    await tx.execute(
        "UPDATE attempts SET status = $3, duration_ms = $4, error = $5"
        " WHERE send_id = $1 AND n = $2",
        claimed.id, claimed.attempt, answer.status, round(answer.duration_ms, 3),
        answer.error)
    send = await _send(tx, claimed.id)
    if send["lease"] != claimed.lease:
        # Settled by a callback meanwhile, or taken over after our lease ran out.
        return _applied(send, claimed.chain, chain.Ignore(_lost_lease(send)))
    if send["kind"] != SendKind.STEP:
        # A notice's last status is what its history entry and a Kudu hook's last_* show.
        await tx.execute("UPDATE sends SET status = $2 WHERE id = $1", claimed.id,
                         answer.status)
        send["status"] = answer.status
    return await _apply(tx, settings, send, claimed.chain, chain.Attempted(answer), now,
                        handoff)


async def expire(tx: Tx, settings: config.Settings, claimed: Claimed, now: float) -> Applied:
    """A step's callback deadline passed: it is an error, which ends the chain."""
    await _lock_delivery(tx, claimed.delivery_id)
    send = await _send(tx, claimed.id)
    if send["lease"] != claimed.lease:
        return _applied(send, claimed.chain, chain.Ignore(_lost_lease(send)))
    return await _apply(tx, settings, send, claimed.chain, chain.CallbackOverdue(), now)


def _lost_lease(send: Row) -> str:
    if StepState(send["state"]) in models.FINAL_STEP_STATES:
        return f"already {send['state']}"
    return "taken over by another worker"


async def release(tx: Tx, claimed: Claimed, now: float) -> None:
    """Give back an unfinished send at shutdown so that the next start sends it at once."""
    await _lock_delivery(tx, claimed.delivery_id)
    send = await _send(tx, claimed.id)
    if send["lease"] != claimed.lease:
        return
    if send["state"] == StepState.SENDING:
        await tx.execute(
            "UPDATE attempts SET error = $3 WHERE send_id = $1 AND n = $2"
            " AND status IS NULL AND error IS NULL", claimed.id, claimed.attempt,
            "no answer recorded: relay stopped before the target answered")
    await tx.execute("UPDATE sends SET lease = NULL, due_at = $2 WHERE id = $1",
                     claimed.id, now)
    tx.wake()


async def recover(tx: Tx, now: float) -> int:
    """At the start of the only process on a store: every lease left behind has run out."""
    return await tx.execute(
        "UPDATE sends SET due_at = $1 WHERE lease IS NOT NULL AND due_at > $1", now)


@dataclass(frozen=True)
class Callback:
    state: models.CallbackState
    description: str | None = None
    context: str | None = None
    target_url: str | None = None


async def callback(tx: Tx, settings: config.Settings, token: str, body: Callback,
                   now: float, handoff: str | None = None) -> Applied:
    """A target's callback: 404 for an unknown token, 409 once its step was answered."""
    found = await tx.fetchrow("SELECT id, delivery_id FROM sends WHERE token = $1", token)
    if found is None:
        raise errors.HTTPError(404, "no step has this callback URL")
    delivery = await _lock_delivery(tx, found["delivery_id"])
    send = await _send(tx, found["id"])
    # A stored callback settles its step in the same transaction: an open step has none.
    if StepState(send["state"]) not in chain.OPEN:
        raise errors.HTTPError(
            409, f"step {send['idx']} ({send['name']}) was already answered: it is "
                 f"{send['state']}")
    await tx.execute(
        "UPDATE sends SET cb_state = $2, cb_description = $3, cb_context = $4,"
        " cb_target_url = $5, cb_received_at = $6 WHERE id = $1",
        send["id"], body.state, body.description, body.context, body.target_url, now)
    send["cb_state"], send["cb_description"] = body.state, body.description
    return await _apply(tx, settings, send, delivery["chain"],
                        chain.CallbackArrived(body.state), now, handoff)


# -- applying decisions ------------------------------------------------------------------


async def _apply(tx: Tx, settings: config.Settings, send: Row, chain_name: str,
                 event: chain.Event, now: float, handoff: str | None = None) -> Applied:
    policy, await_callback = _policy(settings, chain_name, send)
    view = chain.StepView(state=StepState(send["state"]), attempts=send["attempts"],
                          await_callback=await_callback, policy=policy)
    decision = chain.decide(view, event, now)
    finished: DeliveryState | None = None
    started: list[Claimed] = []
    match decision:
        case chain.Retry(at=at, reason=reason):
            await tx.execute("UPDATE sends SET due_at = $2, lease = NULL, reason = $3"
                             " WHERE id = $1", send["id"], at, reason)
            tx.wake()
        case chain.Await(deadline=deadline):
            await tx.execute("UPDATE sends SET state = 'awaiting_callback', due_at = $2,"
                             " lease = NULL, reason = NULL WHERE id = $1", send["id"], deadline)
            tx.wake()
        case chain.Settle(state=state, reason=reason):
            finished, started = await _settle(tx, settings, send, chain_name, state, reason,
                                              now, handoff)
        case chain.Ignore():
            pass
        case _:
            assert_never(decision)
    return _applied(send, chain_name, decision, finished, started)


async def _settle(tx: Tx, settings: config.Settings, send: Row, chain_name: str,
                  state: StepState, reason: str | None, now: float, handoff: str | None
                  ) -> tuple[DeliveryState | None, list[Claimed]]:
    await tx.execute("UPDATE sends SET state = $2, due_at = NULL, lease = NULL,"
                     " finished_at = $3, reason = $4 WHERE id = $1",
                     send["id"], state, now, reason)
    if send["kind"] != SendKind.STEP:
        await notices.settled(tx, send, state, reason, now)
        return None, []
    count = await tx.fetchval("SELECT count(*) FROM sends WHERE delivery_id = $1"
                              " AND kind = 'step'", send["delivery_id"])
    move = chain.follow(send["idx"], state, count)
    match move:
        case chain.Next(index=index):
            return None, await _start_step(tx, settings, send["delivery_id"], index, now,
                                           handoff)
        case chain.Finish(state=outcome):
            summary = _summary(send, state, reason, count)
            await _finish(tx, settings, send["delivery_id"], outcome, summary, now)
            return outcome, []
        case _:
            assert_never(move)


async def _start_step(tx: Tx, settings: config.Settings, delivery_id: str, index: int,
                      now: float, handoff: str | None) -> list[Claimed]:
    """Make a step due now; with a `handoff` lease, claim it for the caller at once."""
    row = await tx.fetchrow(
        "UPDATE sends SET state = 'sending', due_at = $3, started_at = $3"
        " WHERE delivery_id = $1 AND kind = 'step' AND idx = $2"
        " RETURNING id, state, lease, attempts", delivery_id, index, now)
    if handoff is None or row is None:
        tx.wake()
        return []
    return await _take(tx, settings, handoff, now, [row])


async def _finish(tx: Tx, settings: config.Settings, delivery_id: str, state: DeliveryState,
                  summary: str, now: float) -> None:
    await tx.execute("UPDATE sends SET state = 'skipped', reason = $2 WHERE delivery_id = $1"
                     " AND kind = 'step' AND state = 'pending'",
                     delivery_id, "not sent: an earlier step did not succeed")
    delivery = await tx.fetchrow("UPDATE deliveries SET state = $2, finished_at = $3,"
                                 " summary = $4 WHERE id = $1 RETURNING *",
                                 delivery_id, state, now, summary)
    assert delivery is not None
    for index, notice in enumerate(await notices.plan(tx, settings, delivery)):
        send = await tx.fetchrow(
            "INSERT INTO sends (delivery_id, kind, idx, name, url, state, message_id, body,"
            " insecure, due_at, started_at, finished_at, reason, ref)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            " RETURNING *",
            delivery_id, notice.kind, index, notice.name, notice.url,
            StepState.SKIPPED if notice.refused else StepState.SENDING,
            models.new_message_id(), json.dumps(notice.body, ensure_ascii=False),
            int(notice.insecure), None if notice.refused else now, now,
            now if notice.refused else None, notice.refused, notice.ref)
        if notice.refused and send is not None:
            await notices.settled(tx, send, StepState.SKIPPED, notice.refused, now)
    # The chain's next delivery is admitted by the next dispatch, which this wakes.
    tx.wake()


def _summary(send: Row, state: StepState, reason: str | None, count: int) -> str:
    if state is StepState.SUCCESS:
        return f"all {count} steps succeeded"
    where = f"step {send['idx'] + 1} of {count} ({send['name']})"
    if send.get("cb_state") is not None:
        detail = send.get("cb_description") or "no description"
        return f"{where} answered {send['cb_state']}: {detail}"
    return f"{where} failed: {reason or state}"


def _policy(settings: config.Settings, chain_name: str,
            send: Row) -> tuple[config.Policy, bool]:
    if send["kind"] == SendKind.STEP:
        configured = settings.chain(chain_name)
        target = configured.target(send["name"]) if configured else None
        if target is not None:
            return target.policy, target.await_callback
    return settings.delivery.policy, False


async def _lock_delivery(tx: Tx, delivery_id: str) -> Row:
    """Lock a delivery for a change to its sends (callbacks, answers, expiry, release).
    None of these units takes a named lock: those that do (admission, a coalescing or
    idempotent receive) run alone (see Store.write), so group commits cannot deadlock."""
    row = await tx.fetchrow("SELECT chain FROM deliveries WHERE id = $1 FOR UPDATE",
                            delivery_id)
    if row is None:
        raise errors.StoreError(f"delivery {delivery_id} vanished")
    return row


async def _send(tx: Tx, send_id: int) -> Row:
    row = await tx.fetchrow("SELECT * FROM sends WHERE id = $1", send_id)
    if row is None:
        raise errors.StoreError(f"send {send_id} vanished")
    return row


def _applied(send: Row, chain_name: str, decision: chain.Decision,
             finished: DeliveryState | None = None,
             handoff: Sequence[Claimed] = ()) -> Applied:
    return Applied(delivery_id=send["delivery_id"], chain=chain_name,
                   idx=send["idx"], name=send["name"],
                   decision=decision, finished=finished, handoff=tuple(handoff))


def _dig(document: dict[str, Any], *keys: str) -> Any:
    value: Any = document
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value
