"""Units of SQL on deliveries: storing a push, admitting deliveries to run, ending them.

Every change that moves a delivery's sends (an answer, a callback, an expiry) first takes
`lock` on its row, so a callback and the answer to relay's own POST can never both move it;
a claim only takes sends that are due, with SKIP LOCKED.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from relay import errors, models
from relay.models import DeliveryState, Push, SendKind, StepState
from relay.store import idempotency, sends
from relay.store.base import Row, Tx, placeholders

StepPlan = tuple[str, str, str | None]
"""A step to store with a delivery: the target's name and URL, and why it is skipped (its
target does not take the push's tag), or None."""


async def accept(tx: Tx, push: Push, steps: Sequence[StepPlan], now: float, *,
                 delivery_id: str | None = None, hold_until: float | None = None,
                 config: str | None = None) -> str:
    """Store a push as a pending delivery with one step per target, run with configuration
    `config`; one with `hold_until` is not started before then."""
    delivery_id = delivery_id or models.new_delivery_id(now)
    row = (delivery_id, push.chain, DeliveryState.PENDING, push.source, now, push.text,
           push.repository, push.tag, push.revision, push.pusher, push.redelivery_of,
           hold_until, config)
    rows = _step_rows(delivery_id, steps)
    if hold_until is None:
        # Appended, not executed: a group commit inserts all its deliveries in one statement.
        tx.append(_INSERT_DELIVERY, row)
        for step in rows:
            tx.append(_INSERT_STEP, step)
    else:
        # Executed at once: the next push of the same tag, in this very group commit,
        # must find the delivery to merge into.
        await tx.execute(_INSERT_DELIVERY, *row)
        await tx.executemany(_INSERT_STEP, rows)
    tx.wake()
    return delivery_id


def _step_rows(delivery_id: str, steps: Sequence[StepPlan]) -> list[tuple[object, ...]]:
    secrets = models.new_step_secrets(len(steps), delivery_id[:models.TOKEN_PREFIX])
    return [(delivery_id, SendKind.STEP, index, name, url,
             StepState.SKIPPED if skipped else StepState.PENDING, message_id, token, skipped)
            for index, ((name, url, skipped), (message_id, token)) in enumerate(
                zip(steps, secrets, strict=True))]


_INSERT_DELIVERY = (
    "INSERT INTO deliveries (id, chain, state, source, received_at, payload, repository, tag,"
    " revision, pusher, redelivery_of, hold_until, config)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)")
_INSERT_STEP = (
    "INSERT INTO sends (delivery_id, kind, idx, name, url, state, message_id, token, reason)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")


@dataclass(frozen=True)
class Stored:
    """What became of a push that `receive` took."""

    id: str
    duplicate: bool = False
    """The sender's event was accepted before: `id` is the delivery it became then."""
    merged: int = 1
    """How many pushes the delivery now stands for (more than 1 once coalesced)."""


@dataclass(frozen=True)
class Receipt:
    """How a chain takes a push: the steps it makes, its coalescing window, its idempotency
    window, and the configuration version it runs with."""

    steps: Sequence[StepPlan]
    coalesce: float = 0.0
    idempotency_window: float = 24 * 3600.0
    config: str | None = None

    def locks(self, key: str | None) -> bool:
        """Whether `receive` takes locks (a repeat's key, a coalescing window): such a
        write must run alone (see Store.write)."""
        return key is not None or self.coalesce > 0


async def receive(tx: Tx, push: Push, receipt: Receipt, now: float,
                  key: str | None = None) -> Stored:
    """Store a push the way its chain asks: a repeat of an event already accepted (same
    `key`) gives back the first delivery; within the chain's `coalesce` window a push of the
    same repository and tag merges into the delivery still held for it (the last payload
    wins)."""
    coalescing = receipt.coalesce > 0 and bool(push.tag)
    if key is None and not coalescing:
        return Stored(await accept(tx, push, receipt.steps, now, config=receipt.config))
    held = None
    if coalescing:
        # The lock admission takes: a held delivery cannot start while a push merges into
        # it, and of two processes only one holds a new delivery for the tag.
        await tx.lock(f"chain:{push.chain}")
        held = await tx.fetchrow(
            "SELECT id, merged FROM deliveries WHERE chain = $1 AND repository = $2"
            " AND tag = $3 AND hold_until > $4 AND state = 'pending'"
            " ORDER BY id DESC LIMIT 1 FOR UPDATE",
            push.chain, push.repository, push.tag, now)
    delivery_id = held["id"] if held is not None else models.new_delivery_id(now)
    if key is not None:
        first = await idempotency.claim(tx, push.chain, key, delivery_id, now,
                                        receipt.idempotency_window)
        if first is not None:
            return Stored(first, duplicate=True)
    if held is not None:
        await tx.execute(
            "UPDATE deliveries SET payload = $2, pusher = $3, revision = $4,"
            " merged = merged + 1 WHERE id = $1",
            delivery_id, push.text, push.pusher, push.revision)
        return Stored(delivery_id, merged=held["merged"] + 1)
    hold_until = now + receipt.coalesce if coalescing else None
    return Stored(await accept(tx, push, receipt.steps, now, delivery_id=delivery_id,
                               hold_until=hold_until, config=receipt.config))


async def find(tx: Tx, delivery_id: str) -> Row | None:
    """A delivery's id, chain, payload, tag and configuration version."""
    return await tx.fetchrow("SELECT id, chain, payload, tag, config FROM deliveries"
                             " WHERE id = $1", delivery_id)


@dataclass(frozen=True)
class Filter:
    """Which ended deliveries a bulk redelivery takes (None: any)."""

    chain: str | None = None
    state: str | None = None
    repository: str | None = None
    tag: str | None = None
    since: float | None = None
    until: float | None = None
    """On `received_at`: since <= received_at < until."""

    def where(self) -> tuple[str, list[object]]:
        clauses = ["state IN ('success', 'failure', 'error')"]
        args: list[object] = []
        for column, value in (("chain", self.chain), ("state", self.state),
                              ("repository", self.repository), ("tag", self.tag)):
            if value is not None:
                args.append(value)
                clauses.append(f"{column} = ${len(args)}")
        if self.since is not None:
            args.append(self.since)
            clauses.append(f"received_at >= ${len(args)}")
        if self.until is not None:
            args.append(self.until)
            clauses.append(f"received_at < ${len(args)}")
        return " AND ".join(clauses), args


async def count_matching(tx: Tx, matching: Filter) -> int:
    where, args = matching.where()
    return int(await tx.fetchval(f"SELECT count(*) FROM deliveries WHERE {where}", *args))


async def matching(tx: Tx, matching: Filter, limit: int) -> list[Row]:
    """The deliveries `matching` selects (id, chain, payload, tag), oldest first."""
    where, args = matching.where()
    return await tx.fetch(f"SELECT id, chain, payload, tag FROM deliveries WHERE {where}"
                          f" ORDER BY received_at, id LIMIT {int(limit)}", *args)


async def latest(tx: Tx, chain: str) -> Row | None:
    """The chain's last accepted delivery (id, chain, payload)."""
    return await tx.fetchrow("SELECT id, chain, payload, tag FROM deliveries WHERE chain = $1"
                             " ORDER BY id DESC LIMIT 1", chain)


async def lock(tx: Tx, delivery_id: str) -> Row:
    """Lock a delivery for a change to its sends (callbacks, answers, expiry, release).
    None of these units takes a named lock: those that do (admission, a coalescing or
    idempotent receive) run alone (see Store.write), so group commits cannot deadlock."""
    row = await _locked(tx, "SELECT chain, config FROM deliveries WHERE id = $1",
                        "SELECT 1 FROM deliveries WHERE id = $1", delivery_id)
    if row is None:
        raise errors.StoreError(f"delivery {delivery_id} vanished")
    return row


# The send's columns beside its delivery's: one statement locks both and reads the send
# as it is once locked (a send moves only under its delivery's lock, or in a claim, which
# locks the send: locking it here too means reading its latest version). Read along, for
# the unit's decision: what relay knows of the send's target, how many targets are paused
# at all (none: no step needs checking before it is handed on), and the delivery's steps:
# how many, how many skipped, and the next one waiting to be sent (None: this is the last).
_SEND_AND_DELIVERY = (
    "SELECT s.*, d.chain AS delivery_chain, d.config AS delivery_config,"
    " t.failures AS target_failures, t.paused_by AS target_paused_by,"
    " (SELECT count(*) FROM targets WHERE paused_by IS NOT NULL) AS paused_targets,"
    " (SELECT count(*) FROM sends WHERE delivery_id = d.id AND kind = 'step') AS step_count,"
    " (SELECT count(*) FROM sends WHERE delivery_id = d.id AND kind = 'step'"
    " AND state = 'skipped') AS skipped_steps,"
    " (SELECT min(idx) FROM sends WHERE delivery_id = d.id AND kind = 'step'"
    " AND state = 'pending' AND idx > s.idx) AS next_step"
    " FROM deliveries d JOIN sends s ON s.delivery_id = d.id"
    " LEFT JOIN targets t ON t.chain = d.chain AND t.target = s.name")


async def lock_send(tx: Tx, delivery_id: str, send_id: int) -> Row:
    """`lock` and the send's row (sends.get), in one statement: the send's columns, and its
    delivery's chain and config as `delivery_chain` and `delivery_config`."""
    row = await _locked(tx, f"{_SEND_AND_DELIVERY} WHERE d.id = $1 AND s.id = $2",
                        "SELECT 1 FROM sends WHERE delivery_id = $1 AND id = $2",
                        delivery_id, send_id, of="d, s")
    if row is None:
        raise errors.StoreError(f"send {send_id} of delivery {delivery_id} vanished")
    return row


async def lock_by_token(tx: Tx, token: str) -> Row | None:
    """`lock_send` for the step whose callback URL carries `token`; None for no such step."""
    return await _locked(tx, f"{_SEND_AND_DELIVERY} WHERE s.token = $1",
                         "SELECT 1 FROM sends WHERE token = $1", token, of="d, s")


async def _locked(tx: Tx, sql: str, exists: str, *args: object, of: str = "") -> Row | None:
    """`sql` FOR UPDATE (of the tables `of` names). In a group on a shared database
    (tx.skip_locked) a row another transaction holds is not waited for: RowBusy."""
    locking = f"{sql} FOR UPDATE{' OF ' + of if of else ''}"
    if not tx.skip_locked:
        return await tx.fetchrow(locking, *args)
    row = await tx.fetchrow(locking + " SKIP LOCKED", *args)
    if row is None and await tx.fetchval(exists, *args):
        raise errors.RowBusy("a delivery is locked by another transaction")
    return row


@dataclass(frozen=True)
class Admission:
    """How one chain admits its pending deliveries."""

    limit: int
    """How many may run at once."""
    order: str = "chain"
    """"chain": one at a time in arrival order, held up by the oldest; "tag": the same, but
    per repository and tag; "none": any pending delivery may start."""
    config: str | None = None
    """The configuration version new starts run with: a delivery accepted under another one
    gets its steps planned again, by `plan` (its tag -> its steps)."""
    plan: Callable[[str], Sequence[StepPlan]] | None = None


PLACE = 1000
"""Pending deliveries one admission places in their lanes, per chain ordered by tag."""


async def admit(tx: Tx, chains: Mapping[str, Admission], now: float,
                limit: int | None = None) -> list[str]:
    """Start pending deliveries, oldest first, while their chain runs fewer than its limit,
    in the chain's order, and at most `limit` in all (the caller's room to send their
    first steps: what it cannot send, another process may start). A delivery held for
    coalescing waits until its `hold_until` (and, but for order "none", holds up the later
    ones it must precede).

    Returns the deliveries started with no step to run (every one skipped): the caller ends
    them. Costs a few statements per chain, however long the backlog is and however many
    start: a delivery of a chain ordered by tag is placed in its lane once, and made ready
    when the one before it ends.
    """
    unstarted: list[str] = []
    room = limit
    for name, rule in chains.items():
        if room is not None and room <= 0:
            break
        if not await _startable(tx, name, rule, now):
            continue
        await tx.lock(f"chain:{name}")
        if rule.order == "tag":
            _place(tx, name)
        # Counted again under the lock: another process may have admitted meanwhile.
        free = rule.limit - await _running(tx, name)
        if room is not None:
            free = min(free, room)
        if free <= 0:
            continue
        rows = []
        for row in await _candidates(tx, name, rule, free, now):
            if not _may_start(row, now):
                break  # order "chain": the oldest holds up the rest
            rows.append(row)
        unstarted += await _start(tx, rows, rule, now)
        if room is not None:
            room -= len(rows)
    return unstarted


_OPEN_COLUMNS = "id, repository, tag, hold_until, config"


async def _candidates(tx: Tx, name: str, rule: Admission, free: int, now: float) -> list[Row]:
    if rule.order == "chain":
        return await tx.fetch(
            f"SELECT {_OPEN_COLUMNS} FROM deliveries WHERE state = 'pending' AND chain = $1"
            " ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED", name, free)
    ready = " AND lane = 'ready'" if rule.order == "tag" else ""
    return await tx.fetch(
        f"SELECT {_OPEN_COLUMNS} FROM deliveries WHERE state = 'pending' AND chain = $1{ready}"
        " AND (hold_until IS NULL OR hold_until <= $2) ORDER BY id LIMIT $3"
        " FOR UPDATE SKIP LOCKED", name, now, free)


async def _startable(tx: Tx, name: str, rule: Admission, now: float) -> bool:
    """Whether the chain runs fewer than its limit and may have a delivery to start (checked
    before taking its lock)."""
    if rule.order == "chain":
        first = ("SELECT hold_until FROM deliveries WHERE state = 'pending' AND chain = $1"
                 " ORDER BY id LIMIT 1")
        row = await tx.fetchrow(f"SELECT ({_RUNNING}) AS running, EXISTS ({first}) AS waiting,"
                                f" ({first}) AS hold_until", name)
        assert row is not None
        return row["running"] < rule.limit and bool(row["waiting"]) and _may_start(row, now)
    waiting = ("SELECT 1 FROM deliveries WHERE state = 'pending' AND chain = $1"
               " AND (hold_until IS NULL OR hold_until <= $2)")
    if rule.order == "tag":
        # One look-up each in the index deliveries_lane, however many wait queued.
        waiting = f"{waiting} AND lane IS NULL) OR EXISTS ({waiting} AND lane = 'ready'"
    row = await tx.fetchrow(
        f"SELECT ({_RUNNING}) AS running, (EXISTS ({waiting})) AS waiting", name, now)
    assert row is not None
    return row["running"] < rule.limit and bool(row["waiting"])


def _place(tx: Tx, chain: str) -> None:
    """Put the chain's new pending deliveries in their lanes: ready when no older delivery of
    the same repository and tag is open, queued behind it otherwise. Deferred (see
    Tx.defer): counting the running deliveries does not read lanes.

    An older running delivery is locked FOR SHARE: one that another process is ending waits
    until that commits, and then no longer counts (it is not open any more); one locked
    first cannot end before this placement is committed, so that its end (_next_in_lane,
    a statement after the one that ends it) finds the delivery queued behind it. (An older
    pending one cannot end meanwhile: starting it takes the chain's lock, held here.)"""
    # state IN (...) as in the index deliveries_open, which SQLite uses only when named so.
    same_tag = ("SELECT 1 FROM deliveries o WHERE o.chain = deliveries.chain"
                " AND o.repository = deliveries.repository AND o.tag = deliveries.tag"
                " AND o.state IN ('pending', 'running') AND o.id < deliveries.id")
    tx.defer(
        f"UPDATE deliveries SET lane = CASE WHEN EXISTS ({same_tag} AND o.state <> 'running')"
        f" OR EXISTS ({same_tag} AND o.state <> 'pending' FOR SHARE) THEN 'queued'"
        " ELSE 'ready' END"
        " WHERE id IN (SELECT id FROM deliveries WHERE state = 'pending' AND chain = $1"
        " AND lane IS NULL ORDER BY id LIMIT $2)", chain, PLACE)


def _next_in_lane(tx: Tx, ended_id: str) -> None:
    """The delivery queued behind one that ended becomes ready. Deferred (see Tx.defer),
    after the statement that ends it: it must see a placement that committed while that
    statement waited for the ended delivery's row (see _place)."""
    tx.defer(
        "UPDATE deliveries SET lane = 'ready' WHERE id = (SELECT min(q.id) FROM deliveries q"
        " JOIN deliveries e ON e.id = $1 WHERE q.chain = e.chain"
        " AND q.repository = e.repository AND q.tag = e.tag AND q.state = 'pending'"
        " AND q.lane = 'queued')", ended_id)


async def _start(tx: Tx, rows: Sequence[Row], rule: Admission, now: float) -> list[str]:
    """Run pending deliveries: each one's first step that is not skipped becomes due. The
    ones whose every step is skipped are returned."""
    if not rows:
        return []
    for row in rows:
        if rule.plan is not None and rule.config is not None and row["config"] != rule.config:
            # Accepted under an earlier configuration: it runs with the one it starts under.
            await tx.execute("UPDATE deliveries SET config = $2 WHERE id = $1",
                             row["id"], rule.config)
            await tx.execute("DELETE FROM sends WHERE delivery_id = $1 AND kind = 'step'",
                             row["id"])
            await tx.executemany(_INSERT_STEP, _step_rows(row["id"], rule.plan(row["tag"])))
    ids = [row["id"] for row in rows]
    among = placeholders(2, len(ids))
    # Deferred: the UPDATE of their first steps, which takes it along, reads only sends.
    tx.defer("UPDATE deliveries SET state = 'running', started_at = $1, hold_until = NULL"
             f" WHERE id IN ({among})", now, *ids)
    started = await tx.fetch(
        "UPDATE sends SET state = 'sending', due_at = $1, started_at = $1"
        " WHERE (delivery_id, idx) IN (SELECT delivery_id, min(idx) FROM sends"
        f" WHERE delivery_id IN ({among}) AND kind = 'step' AND state = 'pending'"
        " GROUP BY delivery_id) RETURNING delivery_id", now, *ids)
    if started:
        tx.wake()
    begun = {row["delivery_id"] for row in started}
    return [delivery_id for delivery_id in ids if delivery_id not in begun]


_RUNNING = "SELECT count(*) FROM deliveries WHERE state = 'running' AND chain = $1"


async def _running(tx: Tx, chain_name: str) -> int:
    return int(await tx.fetchval(_RUNNING, chain_name))


def _may_start(pending: Row | None, now: float) -> bool:
    return pending is not None and (pending["hold_until"] is None
                                    or pending["hold_until"] <= now)


async def chains_pending(tx: Tx) -> set[str]:
    """Every chain that has deliveries waiting to start."""
    rows = await tx.fetch("SELECT DISTINCT chain FROM deliveries WHERE state = 'pending'")
    return {row["chain"] for row in rows}


async def finish(tx: Tx, delivery_id: str, state: DeliveryState, now: float,
                 summary: str) -> Row:
    """End a delivery: its steps not reached are skipped; the whole row as it is now, and
    `any_kudu_hook`: whether any Kudu hook is subscribed at all (none: no need to look for
    the ones this delivery fires)."""
    sends.skip_pending_steps(tx, delivery_id, "not sent: an earlier step did not succeed")
    delivery = await tx.fetchrow(
        "UPDATE deliveries SET state = $2, finished_at = $3, summary = $4 WHERE id = $1"
        " RETURNING *, EXISTS (SELECT 1 FROM kudu_hooks) AS any_kudu_hook",
        delivery_id, state, now, summary)
    assert delivery is not None
    if delivery["lane"] is not None:  # placed: its chain runs one delivery per tag at once
        _next_in_lane(tx, delivery_id)
    # The chain's next delivery is admitted by the next dispatch, which this wakes.
    tx.wake()
    return delivery
