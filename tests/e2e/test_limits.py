"""Limits an operator sets: [delivery] max_connections (the cap on POSTs in flight over all
chains, a quarter of it for the reports made when chains end) and [server] max_json_depth."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from support import (
    SEED_TAG_PUSH,
    Relay,
    Reply,
    StartRelay,
    StartTarget,
    Target,
    nested_push,
    wait_until,
)

HOLD = 0.4
"""How long the targets below keep each POST open before they answer it."""


class InFlight:
    """POSTs held open at once, and the most seen so far."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0

    def enter(self) -> None:
        self.now += 1
        self.most = max(self.most, self.now)

    def leave(self) -> None:
        self.now -= 1


class CountingTarget(Target):
    """A Target that also counts the POSTs it holds open at once (in `in_flight`, and in a
    counter it may share with other targets), and the connections open to it when each POST
    arrives."""

    def __init__(self, default: Reply, shared: InFlight | None = None) -> None:
        super().__init__(default=default)
        self.in_flight = InFlight()
        self.counters = [self.in_flight] + ([shared] if shared is not None else [])
        self.most_connections = 0

    async def _handle(self, request: web.Request) -> web.Response:
        for counter in self.counters:
            counter.enter()
        assert self._runner is not None
        assert self._runner.server is not None
        self.most_connections = max(self.most_connections,
                                    len(self._runner.server.connections))
        try:
            return await super()._handle(request)
        finally:
            for counter in self.counters:
                counter.leave()


@pytest.fixture
async def counting() -> AsyncIterator[list[CountingTarget]]:
    """CountingTargets the test starts; stopped after its relays (which the start_relay
    fixture, asked for after this one, stops first)."""
    started: list[CountingTarget] = []
    yield started
    for target in started:
        await target.stop()


async def _counting_target(started: list[CountingTarget], default: Reply,
                           shared: InFlight | None = None) -> CountingTarget:
    target = CountingTarget(default, shared)
    started.append(target)
    await target.start()
    return target


async def _reporting_to(upstream: Target, start_relay: StartRelay,
                        chains: list[dict[str, Any]], *, max_connections: int
                        ) -> tuple[Relay, dict[str, Any]]:
    """A relay that may report upstream to `upstream`, and a push whose callback_url is it."""
    relay = await start_relay(chains=chains, delivery={"max_connections": max_connections},
                              upstream={"allowed_hosts": ["127.0.0.1"]},
                              outbound={"allow_networks": ["127.0.0.0/8"]})
    payload = copy.deepcopy(SEED_TAG_PUSH)
    payload["callback_url"] = upstream.url
    return relay, payload


async def _all_finished(relay: Relay, ids: list[str], timeout: float) -> list[dict[str, Any]]:
    return [await relay.wait_for(delivery_id, timeout=timeout) for delivery_id in ids]


async def test_max_connections_caps_the_posts_in_flight_over_all_chains(
        counting: list[CountingTarget], start_relay: StartRelay) -> None:
    # Six chains of two steps each, every step at the same slow target: without the cap
    # all six first steps would be held open at once.
    ci = await _counting_target(counting, Reply(delay=HOLD))
    chains = [{"name": f"c{n}", "targets": [{"name": "build", "url": ci.url},
                                             {"name": "deploy", "url": ci.url}]}
              for n in range(6)]
    relay = await start_relay(chains=chains, delivery={"max_connections": 2})

    ids = [await relay.push(chain=f"c{n}") for n in range(6)]
    done = await _all_finished(relay, ids, timeout=30)

    assert [d["state"] for d in done] == ["success"] * 6
    assert len(ci.requests) == 12
    assert ci.in_flight.most == 2  # the cap is used, and never passed
    assert ci.most_connections <= 2


async def test_reports_upstream_hold_at_most_a_quarter_of_max_connections(
        counting: list[CountingTarget], start_relay: StartRelay,
        start_target: StartTarget) -> None:
    # max_connections 4: one report upstream at a time, while chains' steps go on beside it.
    upstream = await _counting_target(counting, Reply(callback=None, delay=HOLD))
    ci = await start_target()
    chains = [{"name": f"c{n}", "targets": [{"name": "ci", "url": ci.url}]} for n in range(5)]
    relay, payload = await _reporting_to(upstream, start_relay, chains, max_connections=4)

    ids = [await relay.push(payload, chain=f"c{n}") for n in range(5)]
    done = await _all_finished(relay, ids, timeout=10)
    assert [d["state"] for d in done] == ["success"] * 5

    # While the reports queue for their one connection, a new push goes straight through.
    async def reporting() -> bool:
        return upstream.in_flight.now > 0

    await wait_until(reporting, what="a report upstream to be in flight")
    later = await relay.wait_for(await relay.push(chain="c0"))
    assert later["state"] == "success"
    assert len(upstream.requests) < 5

    async def all_reported() -> bool:
        found = [await relay.delivery(delivery_id) for delivery_id in ids]
        return all((d["upstream"] or {}).get("state") == "success" for d in found)

    await wait_until(all_reported, timeout=30, what="the five reports upstream")
    assert len(upstream.requests) == 5
    assert upstream.in_flight.most == 1
    assert upstream.most_connections == 1


async def test_steps_and_reports_upstream_share_max_connections(
        counting: list[CountingTarget], start_relay: StartRelay) -> None:
    # Chains ending while others still walk their steps: the reports upstream and the steps
    # together never have more POSTs in flight than max_connections.
    both = InFlight()
    ci = await _counting_target(counting, Reply(delay=0.05), both)
    upstream = await _counting_target(counting, Reply(callback=None, delay=0.05), both)
    chains = [{"name": f"c{n}", "targets": [{"name": f"s{i}", "url": ci.url}
                                             for i in range(3)]}
              for n in range(12)]
    relay, payload = await _reporting_to(upstream, start_relay, chains, max_connections=2)

    ids = [await relay.push(payload, chain=f"c{n}") for n in range(12)]
    done = await _all_finished(relay, ids, timeout=30)
    assert [d["state"] for d in done] == ["success"] * 12

    async def all_reported() -> bool:
        return len(upstream.requests) == 12

    await wait_until(all_reported, timeout=30, what="the twelve reports upstream")
    assert len(ci.requests) == 36
    assert both.most == 2
    assert upstream.in_flight.most == 1


# -- max_json_depth ----------------------------------------------------------------------


async def test_a_configured_max_json_depth_refuses_deeper_bodies_with_400(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    ci = await start_target()
    relay = await start_relay(ci, server={"max_json_depth": 8})
    hook = relay.hook_url().removeprefix(relay.url)

    status, answer = await relay.post(hook, data=nested_push(9))
    assert (status, answer) == (400, {"error": "the body is nested deeper than 8 levels",
                                      "details": []})
    # Far deeper: the same refusal, naming the configured cap (not orjson's own).
    status, answer = await relay.post(hook, data=nested_push(40))
    assert status == 400
    assert answer["error"] == "the body is nested deeper than 8 levels"
    assert (await relay.get("/history"))[1]["items"] == []
    assert ci.requests == []

    status, answer = await relay.post(hook, data=nested_push(8))
    assert status == 202, answer
    done = await relay.wait_for(answer["id"])
    assert done["state"] == "success"
    assert [r.json["deep"] for r in ci.requests] == [json.loads("[" * 7 + "]" * 7)]


async def test_max_json_depth_holds_for_callbacks_too(start_relay: StartRelay,
                                                     start_target: StartTarget) -> None:
    ci = await start_target(Reply(callback=None))
    relay = await start_relay(ci, server={"max_json_depth": 4})
    delivery_id = await relay.push()  # the seed push nests 3 deep (push_data.images)
    await relay.wait_for_step(delivery_id, 0, "awaiting_callback")
    callback_url = ci.requests[0].json["callback_url"].removeprefix(relay.url)

    deep = {"state": "success", "description": "ok", "x": [[[[]]]]}
    status, answer = await relay.post(callback_url, deep)
    assert (status, answer["error"]) == (400, "the body is nested deeper than 4 levels")
    assert (await relay.delivery(delivery_id))["steps"][0]["state"] == "awaiting_callback"

    at_the_cap = {"state": "success", "description": "ok", "x": [[[]]]}
    status, answer = await relay.post(callback_url, at_the_cap)
    assert status == 200, answer
    assert (await relay.wait_for(delivery_id))["state"] == "success"

