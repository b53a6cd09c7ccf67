"""Which pending deliveries start, by a chain's `order` and `concurrency`, on both stores."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from relay import config
from relay.engine import apply, chain, worker
from relay.models import Push
from relay.store import Store, Tx, deliveries, open_store, sends

NOW = 1000.0


def _settings(order: config.Order, concurrency: int = 16,
              coalesce: float = 0.0) -> config.Settings:
    policy = config.SendPolicy(timeout=1.0)
    target = config.Target(name="ci", url="http://127.0.0.1:9/hook", policy=policy,
                           await_callback=False)
    main = config.Chain(name="main", token="x" * 16, targets=(target,), order=order,
                        concurrency=concurrency, coalesce=coalesce)
    return config.Settings(chains=(main,))


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(store_url)
    yield opened
    await opened.close()


async def _push(store: Store, settings: config.Settings, tag: str,
                repository: str = "acme/app", now: float = NOW) -> str:
    text = json.dumps({"push_data": {"tag": tag}, "repository": {"repo_name": repository}})
    push = Push("main", json.loads(text), text)
    chain_config = settings.chains[0]
    receipt = deliveries.Receipt(chain_config.steps_for(tag), chain_config.coalesce,
                                 config=config.version_of(settings))
    stored = await store.write(lambda tx: deliveries.receive(tx, push, receipt, now),
                               alone=chain_config.coalesce > 0)
    return stored.id


async def _dispatch(store: Store, settings: config.Settings, now: float = NOW,
                    lease: str = "w#1") -> list[sends.Claimed]:
    claimed, _ = await store.write(lambda tx: worker.dispatch(
        tx, config.Live(settings), lease, now, 100, 100), alone=True)
    return claimed


async def _succeed(store: Store, settings: config.Settings,
                   claimed: sends.Claimed) -> None:
    applied = await store.write(lambda tx: apply.record_attempt(
        tx, config.Live(settings), claimed, chain.Answer(200, None, 1.0), NOW))
    assert applied.finished == "success"


async def _running(store: Store) -> list[str]:
    async def read(tx: Tx) -> list[str]:
        rows = await tx.fetch("SELECT id FROM deliveries WHERE state = 'running' ORDER BY id")
        return [row["id"] for row in rows]

    return await store.read(read)


async def test_order_tag_runs_one_tag_at_a_time_and_others_beside_it(store: Store) -> None:
    settings = _settings(config.Order.TAG)
    latest_1, v1, latest_2, v2 = [await _push(store, settings, tag)
                                  for tag in ("latest", "v1", "latest", "v2")]
    other_repo = await _push(store, settings, "latest", repository="acme/other")

    first = await _dispatch(store, settings)

    assert sorted(c.delivery_id for c in first) == sorted([latest_1, v1, v2, other_repo])
    assert await _dispatch(store, settings) == []  # latest_2 waits for latest_1
    await _succeed(store, settings, next(c for c in first if c.delivery_id == latest_1))
    assert [c.delivery_id for c in await _dispatch(store, settings)] == [latest_2]


async def test_order_tag_keeps_arrival_order_within_a_tag(store: Store) -> None:
    settings = _settings(config.Order.TAG)
    ids = [await _push(store, settings, "latest") for _ in range(4)]

    started = []
    for _ in ids:
        (claimed,) = await _dispatch(store, settings)
        started.append(claimed.delivery_id)
        await _succeed(store, settings, claimed)

    assert started == ids


async def test_order_tag_stays_within_the_chain_concurrency(store: Store) -> None:
    settings = _settings(config.Order.TAG, concurrency=2)
    ids = [await _push(store, settings, f"v{n}") for n in range(5)]

    assert sorted(c.delivery_id for c in await _dispatch(store, settings)) == ids[:2]
    assert await _running(store) == ids[:2]


async def test_order_chain_runs_one_at_a_time_whatever_the_tag(store: Store) -> None:
    settings = _settings(config.Order.CHAIN, concurrency=1)
    first, second = await _push(store, settings, "v1"), await _push(store, settings, "v2")

    (claimed,) = await _dispatch(store, settings)
    assert claimed.delivery_id == first
    assert await _dispatch(store, settings) == []
    await _succeed(store, settings, claimed)
    assert [c.delivery_id for c in await _dispatch(store, settings)] == [second]


async def test_order_none_starts_everything_it_may(store: Store) -> None:
    settings = _settings(config.Order.NONE)
    ids = [await _push(store, settings, "latest") for _ in range(3)]

    assert sorted(c.delivery_id for c in await _dispatch(store, settings)) == ids


async def test_a_held_delivery_holds_up_only_its_own_tag(store: Store) -> None:
    settings = _settings(config.Order.TAG, coalesce=5)
    v1 = await _push(store, settings, "v1", now=NOW - 10)  # its window closed at NOW - 5
    held = await _push(store, settings, "latest", now=NOW)  # open until NOW + 5
    after = await _push(store, settings, "latest", now=NOW + 6)

    assert [c.delivery_id for c in await _dispatch(store, settings)] == [v1]
    assert [c.delivery_id for c in await _dispatch(store, settings, now=NOW + 6)] == [held]
    assert await _running(store) == [v1, held]  # `after` waits for `held`, its tag's elder
    assert after not in await _running(store)


async def test_changing_the_order_on_reload_leaves_nobody_stuck(store: Store) -> None:
    by_tag = _settings(config.Order.TAG)
    ids = [await _push(store, by_tag, "latest") for _ in range(3)]
    (first,) = await _dispatch(store, by_tag)  # the others are queued in their lane

    anyhow = _settings(config.Order.NONE)
    assert sorted(c.delivery_id for c in await _dispatch(store, anyhow)) == ids[1:]
    await _succeed(store, anyhow, first)
    assert await _running(store) == ids[1:]


async def test_two_processes_never_start_two_deliveries_of_one_tag(store_url: str) -> None:
    if not store_url.startswith("postgresql"):
        pytest.skip("one SQLite file serves one process")
    settings = _settings(config.Order.TAG)
    first, second = await open_store(store_url), await open_store(store_url)
    try:
        for n in range(30):
            await _push(first, settings, f"t{n % 3}")
        claims = await asyncio.gather(*(
            _dispatch(store, settings, lease=f"{name}#{n}")
            for n in range(5) for name, store in (("a", first), ("b", second))))
        started = [c for batch in claims for c in batch]
        assert len(started) == 3

        async def tags(tx: Tx) -> list[str]:
            rows = await tx.fetch("SELECT tag FROM deliveries WHERE state = 'running'")
            return sorted(row["tag"] for row in rows)

        assert await first.read(tags) == ["t0", "t1", "t2"]
    finally:
        await first.close()
        await second.close()


async def test_a_process_on_another_port_starts_a_delivery_as_it_was_planned(
        store: Store) -> None:
    # Two processes on one store each listen on their own port; their chains are the same,
    # so a delivery one accepted keeps its steps (and their callback tokens) when the other
    # starts it. A change to the chains is a new version, and the steps are planned again.
    here = _settings(config.Order.TAG)
    there = replace(here, server=replace(here.server, port=8081,
                                         public_url="http://127.0.0.1:8081"))
    assert config.version_of(here) == config.version_of(there)
    changed = replace(here, chains=(replace(here.chains[0], concurrency=3),))
    assert config.version_of(changed) != config.version_of(here)

    pushed = await _push(store, here, "latest")
    (claimed,) = await _dispatch(store, there)

    assert claimed.delivery_id == pushed
    assert claimed.token == await store.read(lambda tx: tx.fetchval(
        "SELECT token FROM sends WHERE delivery_id = $1 AND idx = 0", pushed))
    assert claimed.id == await store.read(lambda tx: tx.fetchval(
        "SELECT min(id) FROM sends WHERE delivery_id = $1", pushed))
