"""The engine stepped by hand: a real store, real targets on loopback, a worker in burst mode
(`Worker.run_once`) and a clock the test moves. Nothing here waits for time to pass."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from support import SEED_TAG_PUSH, Reply, StartTarget, Target

from relay import config
from relay.engine import apply, worker
from relay.models import Callback, CallbackState, Push
from relay.store import Store, deliveries, open_store, views

START = 1_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(store_url)
    yield opened
    await opened.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened


def _settings(*targets: tuple[Target, bool]) -> config.Settings:
    policy = config.SendPolicy(timeout=5, attempts=3, callback_timeout=600,
                               schedule=(10, 20, 40, 60))
    chain = config.Chain(name="main", token="x" * 16, targets=tuple(
        config.Target(name=f"t{i}", url=target.url, policy=policy, await_callback=awaits)
        for i, (target, awaits) in enumerate(targets)))
    # The seed push's callback_url is Docker Hub's: no report is sent there from a test.
    return config.Settings(chains=(chain,), upstream=config.UpstreamSettings(allowed_hosts=()))


async def _push(store: Store, settings: config.Settings, now: float) -> str:
    text = json.dumps(SEED_TAG_PUSH)
    push = Push("main", json.loads(text), text)
    return await store.write(lambda tx: deliveries.accept(
        tx, push, settings.chains[0].steps_for(push.tag), now,
        config=config.version_of(settings)))


async def _shown(store: Store, delivery_id: str) -> dict[str, Any]:
    found = await store.read(lambda tx: views.delivery(tx, delivery_id))
    assert found is not None
    return found


def _states(found: dict[str, Any]) -> list[str]:
    return [found["state"], *(step["state"] for step in found["steps"])]


async def test_a_chain_of_targets_that_need_no_callback_walks_in_one_burst(
        store: Store, session: aiohttp.ClientSession, start_target: StartTarget) -> None:
    first = await start_target(default=Reply(callback=None))
    second = await start_target(default=Reply(callback=None))
    settings = _settings((first, False), (second, False))
    clock = Clock()
    delivery_id = await _push(store, settings, clock.now)

    handled = await worker.Worker(settings, store, session, clock=clock).run_once()

    assert handled == 2  # the second step was handed on, not found by a second dispatch
    assert _states(await _shown(store, delivery_id)) == ["success", "success", "success"]
    assert len(first.requests) == len(second.requests) == 1


async def test_a_retry_waits_for_its_time_and_not_longer(
        store: Store, session: aiohttp.ClientSession, start_target: StartTarget) -> None:
    target = await start_target(Reply(status=503), default=Reply(callback=None))
    settings = _settings((target, False))
    clock = Clock()
    relay_worker = worker.Worker(settings, store, session, clock=clock)
    delivery_id = await _push(store, settings, clock.now)

    assert await relay_worker.run_once() == 1
    assert await relay_worker.run_once() == 0  # not due yet: the backoff is in the store
    clock.now += 60  # the longest wait: the retry is due by now, whatever the jitter drew
    assert await relay_worker.run_once() == 1

    found = await _shown(store, delivery_id)
    assert _states(found) == ["success", "success"]
    assert [a["status"] for a in found["steps"][0]["attempts"]] == [503, 200]


@dataclass
class TwoSteps:
    """A pushed delivery of two steps: the first waits for a callback, the second does not."""

    first: Target
    second: Target
    settings: config.Settings
    clock: Clock
    worker: worker.Worker
    delivery_id: str


async def _awaiting_then_plain(store: Store, session: aiohttp.ClientSession,
                               start_target: StartTarget) -> TwoSteps:
    first = await start_target(default=Reply(callback=None))
    second = await start_target(default=Reply(callback=None))
    settings = _settings((first, True), (second, False))
    clock = Clock()
    delivery_id = await _push(store, settings, clock.now)
    return TwoSteps(first, second, settings, clock,
                    worker.Worker(settings, store, session, clock=clock), delivery_id)


async def test_a_callback_hands_the_next_step_to_the_worker(
        store: Store, session: aiohttp.ClientSession, start_target: StartTarget) -> None:
    two = await _awaiting_then_plain(store, session, start_target)

    assert await two.worker.run_once() == 1
    assert _states(await _shown(store, two.delivery_id)) == ["running", "awaiting_callback",
                                                             "pending"]
    token = two.first.requests[0].json["callback_url"].rsplit("/", 1)[1]
    lease = two.worker.handoff_lease()
    applied = await store.write(lambda tx: apply.callback(
        tx, config.Live(two.settings), token, Callback(CallbackState.SUCCESS, "387 tests PASSED"),
        two.clock.now, lease))
    two.worker.take(applied.handoff)
    assert [c.idx for c in applied.handoff] == [1]
    assert await two.worker.run_once() == 1  # the step handed on, and nothing more

    found = await _shown(store, two.delivery_id)
    assert _states(found) == ["success", "success", "success"]
    assert found["steps"][0]["callback"]["description"] == "387 tests PASSED"
    assert len(two.second.requests) == 1


async def test_an_overdue_callback_ends_the_chain_and_skips_the_rest(
        store: Store, session: aiohttp.ClientSession, start_target: StartTarget) -> None:
    two = await _awaiting_then_plain(store, session, start_target)

    await two.worker.run_once()
    two.clock.now += 599
    assert await two.worker.run_once() == 0
    two.clock.now += 2
    assert await two.worker.run_once() == 1

    found = await _shown(store, two.delivery_id)
    assert _states(found) == ["error", "error", "skipped"]
    assert found["steps"][0]["reason"] == "no callback within 600 s"
    assert found["summary"] == "step 1 of 2 (t0) failed: no callback within 600 s"
    assert two.second.requests == []
