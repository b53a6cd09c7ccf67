"""A failing target is paused instead of failing every push: by relay after `pause_after`
failed attempts (then probed), or by an operator through /api/targets."""

from __future__ import annotations

import itertools
from typing import Any

from support import Relay, Reply, StartRelay, StartTarget, Target, seed_push, wait_until

FAST = {"schedule": ["20ms"], "pause_after": 3, "probe_interval": "300ms",
        "await_callback": False}


async def _relay(start_relay: StartRelay, ci: Target, **options: Any) -> Relay:
    return await start_relay(chains=[{"name": "main", "order": "none", "targets": [
        {"name": "ci", "url": ci.url, **FAST, **options}]}])


async def _target_state(relay: Relay, target: str = "ci") -> dict[str, Any]:
    status, body = await relay.get("/api/targets")
    assert status == 200, body
    return next(t for t in body["items"] if t["target"] == target)


async def _state_is(relay: Relay, wanted: str) -> dict[str, Any] | None:
    found = await _target_state(relay)
    return found if found["state"] == wanted else None


async def _push_tags(relay: Relay, tags: list[str]) -> list[str]:
    return [await relay.push(seed_push(tag=tag)) for tag in tags]


async def test_relay_pauses_a_failing_target_probes_it_and_resumes_in_order(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    ci = await start_target(default=Reply(status=503, callback=None))
    relay = await _relay(start_relay, ci)

    first = await relay.push(seed_push(tag="t0"))
    paused = await wait_until(lambda: _state_is(relay, "paused"), timeout=20,
                              what="the target to be paused")
    assert paused["paused_by"] == "relay"
    assert paused["consecutive_failures"] == 3
    assert paused["last_error"] == "target answered HTTP 503"
    assert (await relay.wait_for_step(first, 0, "paused"))["state"] == "running"

    later = await _push_tags(relay, ["t1", "t2", "t3"])
    for delivery_id in later:
        step = (await relay.wait_for_step(delivery_id, 0, "paused"))["steps"][0]
        assert step["reason"] == "its target is paused"
    # While paused only probes arrive, one per probe_interval, with the oldest step.
    before = len(ci.requests)
    await wait_until(lambda: _at_least(ci, before + 2), timeout=20, what="two probes")
    probes = ci.requests[before:]
    assert {r.json["push_data"]["tag"] for r in probes} == {"t0"}
    assert all(b.at - a.at >= 0.25 for a, b in itertools.pairwise(probes))

    ci.default = Reply(status=200, callback=None)  # the target is back
    for delivery_id in [first, *later]:
        assert (await relay.wait_for(delivery_id, timeout=20))["state"] == "success"
    resumed = await _target_state(relay)
    assert resumed["state"] == "active"
    assert resumed["consecutive_failures"] == 0
    sent_after = [r.json["push_data"]["tag"] for r in ci.requests if r.at >= probes[-1].at]
    assert sent_after[-3:] == ["t1", "t2", "t3"]  # in their deliveries' order
    _status, metrics = await relay.get("/metrics")
    assert "relay_targets_paused 0.0" in metrics


async def _at_least(target: Target, count: int) -> bool:
    return len(target.requests) >= count


async def test_an_operator_pauses_and_resumes_a_target(start_relay: StartRelay,
                                                        start_target: StartTarget) -> None:
    ci = await start_target(default=Reply(callback=None))
    relay = await _relay(start_relay, ci)

    status, paused = await relay.post("/api/targets/main/ci/pause", headers=relay.admin)
    assert status == 200
    assert (paused["state"], paused["paused_by"]) == ("paused", "operator")
    assert paused["since"] is not None
    ids = await _push_tags(relay, ["a", "b", "c"])
    for delivery_id in ids:
        await relay.wait_for_step(delivery_id, 0, "paused")
    assert ci.requests == []  # a paused target receives nothing, and is not probed
    status, metrics = await relay.get("/metrics")
    assert "relay_targets_paused 1.0" in metrics
    assert "relay_steps_paused 3.0" in metrics
    assert (await _target_state(relay))["waiting"] == 3

    status, resumed = await relay.post("/api/targets/main/ci/resume", headers=relay.admin)
    assert status == 200
    assert (resumed["state"], resumed["paused_by"]) == ("active", None)
    for delivery_id in ids:
        assert (await relay.wait_for(delivery_id))["state"] == "success"
    assert [r.json["push_data"]["tag"] for r in ci.requests] == ["a", "b", "c"]


async def test_the_targets_api_needs_the_admin_token_and_knows_its_targets(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    ci = await start_target()
    relay = await _relay(start_relay, ci)

    assert (await relay.get("/api/targets", admin=False))[0] == 401
    assert (await relay.post("/api/targets/main/ci/pause"))[0] == 401
    status, body = await relay.post("/api/targets/main/nope/pause", headers=relay.admin)
    assert (status, body["error"]) == (404, "chain 'main' has no target 'nope'")
    assert (await relay.post("/api/targets/other/ci/resume", headers=relay.admin))[0] == 404
    status, listed = await relay.get("/api/targets")
    assert listed["items"] == [{"chain": "main", "target": "ci", "state": "active",
                                "paused_by": None, "since": None, "consecutive_failures": 0,
                                "last_error": None, "waiting": 0}]


async def test_pause_after_zero_never_pauses(start_relay: StartRelay,
                                             start_target: StartTarget) -> None:
    ci = await start_target(default=Reply(status=503, callback=None))
    relay = await _relay(start_relay, ci, pause_after=0, attempts=6)

    assert (await relay.wait_for(await relay.push()))["state"] == "error"
    assert len(ci.requests) == 6
    assert (await _target_state(relay))["state"] == "active"
