"""The store contract, on SQLite and PostgreSQL alike: claims, leases, admission, isolation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from support import SEED_TAG_PUSH, tcp_proxy, wait_until

from relay import config, errors
from relay.engine import apply, chain, worker
from relay.models import Callback, CallbackState, Push, StepState
from relay.store import Store, Tx, deliveries, migrations, open_store, sends

TEXT = '{"push_data": {"tag": "latest"}, "repository": {"repo_name": "a/b"}}'


def _settings(concurrency: int = 1, timeout: float = 1.0) -> config.Settings:
    policy = config.SendPolicy(timeout=timeout, attempts=3, schedule=(0.01,))
    target = config.Target(name="ci", url="http://127.0.0.1:9/hook", policy=policy)
    # Every push here is of one tag: ordered by chain, as all deliveries were before
    # `order` existed (tests/unit/test_admission.py has the orders).
    main = config.Chain(name="main", token="x" * 16, targets=(target, target),
                        concurrency=concurrency, order=config.Order.CHAIN)
    return config.Settings(chains=(main,))


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(store_url)
    yield opened
    await opened.close()


async def _accept(store: Store, settings: config.Settings, now: float = 1000.0) -> str:
    push = Push("main", dict(SEED_TAG_PUSH), TEXT)
    return await store.write(
        lambda tx: deliveries.accept(tx, push, settings.chains[0].steps_for("latest")[:1], now,
                                     config=config.version_of(settings)))


async def _dispatch(store: Store, settings: config.Settings, lease: str, now: float,
                    limit: int = 10) -> list[sends.Claimed]:
    claimed, _ = await store.write(
        lambda tx: worker.dispatch(tx, config.Live(settings), lease, now, limit, limit),
        alone=True)
    return claimed


async def test_migrations_are_idempotent(store: Store) -> None:
    version = await store.write(migrations.migrate, alone=True)
    assert version == len(migrations.MIGRATIONS)
    assert await store.write(migrations.migrate, alone=True) == version


async def test_a_due_send_is_claimed_once_until_its_lease_runs_out(store: Store) -> None:
    settings = _settings()
    await _accept(store, settings)

    first = await _dispatch(store, settings, "a#1", now=1000.0)
    again = await _dispatch(store, settings, "b#1", now=1001.0)
    after_lease = await _dispatch(store, settings, "b#2",
                                  now=1000.0 + settings.lease_seconds + 1)

    assert [c.lease for c in first] == ["a#1"]
    assert again == []
    assert [(c.id, c.lease, c.attempt) for c in after_lease] == [(first[0].id, "b#2", 2)]

    async def attempts(tx: Tx) -> list[Any]:
        return await tx.fetch("SELECT n, status, error, worker FROM attempts ORDER BY n")

    lost, current = await store.read(attempts)
    assert (lost["n"], lost["worker"], lost["status"]) == (1, "a", None)
    assert "a stopped during this attempt (its lease ran out)" in lost["error"]
    assert (current["n"], current["worker"], current["error"]) == (2, "b", None)


async def test_an_answer_after_the_lease_was_lost_changes_nothing(store: Store) -> None:
    settings = _settings()
    await _accept(store, settings)
    (mine,) = await _dispatch(store, settings, "a#1", now=1000.0)
    (theirs,) = await _dispatch(store, settings, "b#1", now=1000.0 + settings.lease_seconds + 1)
    answer = chain.Answer(503, None, 1.0)

    late = await store.write(lambda tx: apply.record_attempt(
        tx, config.Live(settings), mine, answer, 1001.0))
    current = await store.write(lambda tx: apply.record_attempt(
        tx, config.Live(settings), theirs, chain.Answer(200, None, 1.0), 1050.0))

    assert isinstance(late.decision, chain.Ignore)
    assert isinstance(current.decision, chain.Await)


async def test_admission_respects_chain_concurrency(store: Store) -> None:
    settings = _settings(concurrency=2)
    ids = [await _accept(store, settings) for _ in range(5)]

    claimed = await _dispatch(store, settings, "a#1", now=1000.0)

    assert sorted(c.delivery_id for c in claimed) == ids[:2]

    async def states(tx: Tx) -> list[str]:
        rows = await tx.fetch("SELECT state FROM deliveries ORDER BY id")
        return [row["state"] for row in rows]

    assert await store.read(states) == ["running", "running", "pending", "pending",
                                        "pending"]


async def test_a_failing_unit_does_not_undo_its_group(store: Store) -> None:
    settings = _settings()

    async def refuse(tx: Tx) -> None:
        await tx.execute("UPDATE deliveries SET state = 'error'")
        raise errors.HTTPError(409, "no")

    results = await asyncio.gather(
        _accept(store, settings), store.write(refuse), _accept(store, settings),
        return_exceptions=True)

    assert isinstance(results[1], errors.HTTPError)

    async def states(tx: Tx) -> list[str]:
        return [r["state"] for r in await tx.fetch("SELECT state FROM deliveries")]

    assert await store.read(states) == ["pending", "pending"]


async def test_a_refused_statement_fails_only_its_unit(store: Store) -> None:
    settings = _settings()
    delivery_id = await _accept(store, settings)

    async def duplicate(tx: Tx) -> None:
        await tx.execute("UPDATE deliveries SET summary = 'undone' WHERE id = $1", delivery_id)
        await tx.execute("INSERT INTO deliveries (id, chain, state, source, received_at,"
                         " payload, repository, tag, revision, pusher) VALUES ($1, 'main',"
                         " 'pending', 'push', 0, '{}', '', '', '', '')", delivery_id)

    async def refuse_early(tx: Tx) -> None:
        await tx.fetchval("SELECT count(*) FROM deliveries")
        raise errors.NotFound("nothing to do")

    results = await asyncio.gather(
        _accept(store, settings), store.write(duplicate), store.write(refuse_early),
        _accept(store, settings), return_exceptions=True)

    assert isinstance(results[1], errors.StoreError)
    assert isinstance(results[2], errors.NotFound)

    async def rows(tx: Tx) -> list[Any]:
        return [r["summary"] for r in await tx.fetch("SELECT summary FROM deliveries")]

    assert await store.read(rows) == [None, None, None]


async def test_deferred_writes_go_with_the_next_statement_or_at_the_end(store: Store) -> None:
    settings = _settings()
    first, second = await _accept(store, settings), await _accept(store, settings)

    async def unit(tx: Tx) -> int:
        tx.defer("UPDATE deliveries SET summary = 'taken along' WHERE id = $1", first)
        # The next statement reads another row, and carries the deferred write.
        count = int(await tx.fetchval("SELECT count(*) FROM deliveries WHERE id = $1", second))
        tx.defer("UPDATE deliveries SET summary = $2 WHERE id = $1", second, "at the end")
        return count

    assert await store.write(unit) == 1

    async def summaries(tx: Tx) -> list[Any]:
        return [r["summary"] for r in await tx.fetch("SELECT summary FROM deliveries"
                                                      " ORDER BY id")]

    assert await store.read(summaries) == ["taken along", "at the end"]


async def test_many_units_that_send_statements_are_all_committed(store: Store) -> None:
    # More statements than one group takes (PostgresStore.GROUP_STATEMENTS): the units left
    # out of a group are committed by the next ones, none is lost or run twice.
    settings = _settings()
    delivery_id = await _accept(store, settings)

    async def count_once(n: int) -> int:
        async def unit(tx: Tx) -> int:
            await tx.fetchval("SELECT count(*) FROM deliveries")
            await tx.execute("UPDATE deliveries SET merged = merged + 1 WHERE id = $1",
                             delivery_id)
            return n

        return await store.write(unit)

    done = await asyncio.wait_for(asyncio.gather(*(count_once(n) for n in range(100))), 60)

    assert done == list(range(100))
    assert await store.read(lambda tx: tx.fetchval(
        "SELECT merged FROM deliveries WHERE id = $1", delivery_id)) == 101


async def test_a_callback_settles_a_step_that_is_still_being_sent(store: Store) -> None:
    settings = _settings()
    delivery_id = await _accept(store, settings)
    (claimed,) = await _dispatch(store, settings, "a#1", now=1000.0)
    assert claimed.token is not None
    token = claimed.token

    applied = await store.write(lambda tx: apply.callback(
        tx, config.Live(settings), token, Callback(CallbackState.SUCCESS), 1000.5))
    answered = await store.write(lambda tx: apply.record_attempt(
        tx, config.Live(settings), claimed, chain.Answer(200, None, 1.0), 1001.0))

    assert applied.finished == "success"
    assert answered.decision == chain.Ignore("already success")

    async def step(tx: Tx) -> Any:
        return await tx.fetchrow("SELECT state, attempts FROM sends WHERE delivery_id = $1",
                                 delivery_id)

    assert await store.read(step) == {"state": StepState.SUCCESS, "attempts": 1}


async def test_two_stores_on_one_database_never_claim_the_same_send(store_url: str) -> None:
    if not store_url.startswith("postgresql"):
        pytest.skip("one SQLite file serves one process")
    settings = _settings(concurrency=50)
    first, second = await open_store(store_url), await open_store(store_url)
    try:
        for _ in range(40):
            await _accept(first, settings)
        claims = await asyncio.gather(*(
            _dispatch(store, settings, f"{name}#{n}", now=1000.0, limit=3)
            for n in range(10) for name, store in (("a", first), ("b", second))))
        ids = [c.id for batch in claims for c in batch]
        assert len(ids) == len(set(ids)) == 40
    finally:
        await first.close()
        await second.close()


async def test_processes_starting_together_on_a_new_schema_all_open(store_url: str) -> None:
    if not store_url.startswith("postgresql"):
        pytest.skip("one SQLite file serves one process")
    # As when several relay processes start at once: the schema does not exist yet.
    stores = await asyncio.gather(*(open_store(store_url) for _ in range(6)))
    try:
        settings = _settings()
        delivery_id = await _accept(stores[0], settings)
        claimed = await _dispatch(stores[-1], settings, "b#1", now=1000.0, limit=1)
        assert [c.delivery_id for c in claimed] == [delivery_id]
    finally:
        for store in stores:
            await store.close()


async def test_a_second_process_on_a_sqlite_file_is_refused(store_url: str) -> None:
    if not store_url.startswith("sqlite"):
        pytest.skip("PostgreSQL is shared on purpose")
    first = await open_store(store_url)
    try:
        with pytest.raises(errors.StoreError, match="another relay process is using"):
            await open_store(store_url)
    finally:
        await first.close()


async def test_wake_ups_come_again_after_postgresql_comes_back(store_url: str) -> None:
    if not store_url.startswith("postgresql"):
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    settings = _settings()
    async with tcp_proxy(store_url) as proxy:
        listening = await open_store(proxy.url)
        writer = await open_store(store_url)
        try:
            # As if PostgreSQL restarted: every connection of `listening` drops.
            proxy.cut.set()

            async def dropped() -> bool:
                return proxy.dropped >= 2  # the pool's connection and the LISTEN one

            await wait_until(dropped, what="the proxy to drop the connections")
            proxy.cut.clear()

            async def woken() -> bool:
                await listening.wait_for_work(0.01)  # forget earlier wake-ups
                await _accept(writer, settings)
                started = time.monotonic()
                await listening.wait_for_work(3.0)
                return time.monotonic() - started < 1.0

            async def woken_twice() -> bool:
                # Twice in a row: a reconnect wakes the store once by itself.
                return await woken() and await woken()

            # Woken by the other store's NOTIFY, not by the 3 s timeout.
            assert await wait_until(woken_twice, timeout=20,
                                    what="NOTIFYs to arrive after the reconnect")
        finally:
            await writer.close()
            await listening.close()


async def test_a_unit_waiting_for_a_locked_delivery_holds_up_nothing(store_url: str) -> None:
    if not store_url.startswith("postgresql"):
        pytest.skip("one SQLite writer: no row is another transaction's")
    store = await open_store(store_url)
    settings = _settings()
    try:
        delivery_id = await _accept(store, settings)
        # Another process's transaction holds the delivery, as a group of its would.
        other = await store.pool.acquire()  # type: ignore[attr-defined]
        transaction = other.transaction()
        await transaction.start()
        await other.execute("SELECT 1 FROM deliveries WHERE id = $1 FOR UPDATE", delivery_id)

        async def locking(tx: Tx) -> str:
            return str((await deliveries.lock(tx, delivery_id))["chain"])

        waiting = asyncio.ensure_future(store.write(locking))
        # A unit of the same group, or of the next, is not held up behind it.
        await asyncio.wait_for(_accept(store, settings), 5)
        assert not waiting.done()
        await transaction.commit()
        await store.pool.release(other)  # type: ignore[attr-defined]
        assert await asyncio.wait_for(waiting, 5) == "main"
    finally:
        await store.close()
