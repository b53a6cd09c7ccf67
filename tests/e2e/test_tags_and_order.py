"""Tag filters on chains and targets, and the order deliveries of a chain keep (per tag by
default), through the real HTTP interface."""

from __future__ import annotations

from typing import Any

from support import (
    CHAIN_TOKEN,
    SEED_IMAGES_PUSH,
    Relay,
    Reply,
    StartRelay,
    StartTarget,
    Target,
    seed_push,
    wait_until,
)


async def _history_ids(relay: Relay) -> list[str]:
    status, page = await relay.get("/history?limit=500")
    assert status == 200
    return [item["id"] for item in page["items"]]


async def test_a_chain_takes_only_the_tags_it_names(start_relay: StartRelay,
                                                    start_target: StartTarget) -> None:
    target = await start_target(default=Reply(callback=None))
    relay = await start_relay(chains=[{"name": "main", "tags": ["v*", "latest"],
                                       "targets": [{"name": "ci", "url": target.url,
                                                    "await_callback": False}]}])
    hook = f"/hooks/main/{CHAIN_TOKEN}"

    edge = await relay.post(hook, seed_push(tag="edge"))
    untagged = await relay.post(hook, SEED_IMAGES_PUSH)
    v2 = await relay.post(hook, seed_push(tag="v2.0"))

    assert edge == (200, {"ignored": "tag edge matches none of chain main's tags (v*, latest)"})
    assert untagged == (200, {"ignored": "a push without a tag matches none of chain main's "
                                         "tags (v*, latest)"})
    assert v2[0] == 202
    assert await _history_ids(relay) == [v2[1]["id"]]  # the ignored ones were not stored


async def test_star_takes_a_push_without_a_tag(start_relay: StartRelay,
                                               start_target: StartTarget) -> None:
    target = await start_target(default=Reply(callback=None))
    relay = await start_relay(chains=[{"name": "main", "tags": ["*"], "targets": [
        {"name": "ci", "url": target.url, "await_callback": False}]}])

    assert (await relay.wait_for(await relay.push(SEED_IMAGES_PUSH)))["state"] == "success"


async def test_a_target_that_does_not_take_the_tag_is_skipped_and_the_chain_goes_on(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    ci = await start_target(default=Reply(callback=None))
    deploy = await start_target(default=Reply(callback=None))
    notify = await start_target(default=Reply(callback=None))
    relay = await start_relay(chains=[{"name": "main", "targets": [
        {"name": "ci", "url": ci.url, "await_callback": False},
        {"name": "deploy", "url": deploy.url, "await_callback": False, "tags": ["v*"]},
        {"name": "notify", "url": notify.url, "await_callback": False}]}])

    latest = await relay.wait_for(await relay.push(seed_push(tag="latest")))
    release = await relay.wait_for(await relay.push(seed_push(tag="v1.0")))

    assert latest["state"] == "success"
    assert [s["state"] for s in latest["steps"]] == ["success", "skipped", "success"]
    assert latest["steps"][1]["reason"] == ("not sent: target deploy takes tags v*, and this "
                                            "push is of tag latest")
    assert latest["steps"][1]["attempts"] == []
    assert latest["summary"] == "all 2 steps that take this push succeeded (1 skipped)"
    assert [s["state"] for s in release["steps"]] == ["success"] * 3
    assert release["summary"] == "all 3 steps succeeded"
    assert [r.json["push_data"]["tag"] for r in deploy.requests] == ["v1.0"]
    assert len(ci.requests) == len(notify.requests) == 2


async def test_a_push_no_target_takes_succeeds_with_every_step_skipped(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    target = await start_target(default=Reply(callback=None))
    relay = await start_relay(chains=[{"name": "main", "targets": [
        {"name": "deploy", "url": target.url, "tags": ["v*"]}]}])

    delivery = await relay.wait_for(await relay.push(seed_push(tag="nightly")))

    assert delivery["state"] == "success"
    assert delivery["steps"][0]["state"] == "skipped"
    assert delivery["summary"] == "no target takes this push (nightly): all 1 steps skipped"
    assert target.requests == []


async def _callback(relay: Relay, target: Target, index: int, state: str = "success") -> None:
    url = target.requests[index].json["callback_url"]
    status, _ = await relay.post(url.removeprefix(relay.url), {"state": state})
    assert status == 200


async def _sent(target: Target, count: int) -> list[str]:
    async def enough() -> list[str] | None:
        tags = [r.json["push_data"]["tag"] for r in target.requests]
        return tags if len(tags) >= count else None

    return await wait_until(enough, what=f"{count} pushes at the target")


async def test_a_release_of_several_tags_runs_side_by_side_and_each_tag_in_order(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    # The target calls back only when the test says so: a 10-minute CI job, in effect.
    ci = await start_target(default=Reply(callback=None))
    relay = await start_relay(chains=[{"name": "main", "targets": [
        {"name": "ci", "url": ci.url}]}])

    first: dict[str, str] = {}
    for tag in ("1", "1.2", "1.2.3", "latest"):
        first[tag] = await relay.push(seed_push(tag=tag))
    again = await relay.push(seed_push(tag="latest", pusher="second"))

    # All four tags are at the target at once; the second `latest` waits for the first.
    assert sorted(await _sent(ci, 4)) == ["1", "1.2", "1.2.3", "latest"]
    assert (await relay.delivery(again))["state"] == "pending"
    await _callback(relay, ci, [r.json["push_data"]["tag"] for r in ci.requests].index(
        "latest"))
    await relay.wait_for(first["latest"])
    assert (await _sent(ci, 5))[4] == "latest"
    assert ci.requests[4].json["push_data"]["pusher"] == "second"


async def test_order_chain_runs_one_delivery_at_a_time_whatever_the_tag(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    ci = await start_target(default=Reply(callback=None))
    relay = await start_relay(chains=[{"name": "main", "order": "chain", "concurrency": 1,
                                       "targets": [{"name": "ci", "url": ci.url}]}])
    v1, v2 = await relay.push(seed_push(tag="v1")), await relay.push(seed_push(tag="v2"))

    assert await _sent(ci, 1) == ["v1"]
    assert (await relay.delivery(v2))["state"] == "pending"
    await _callback(relay, ci, 0)
    await relay.wait_for(v1)
    assert await _sent(ci, 2) == ["v1", "v2"]


async def test_order_none_lets_one_tag_overtake_itself(start_relay: StartRelay,
                                                       start_target: StartTarget) -> None:
    ci = await start_target(default=Reply(callback=None))
    relay = await start_relay(chains=[{"name": "main", "order": "none", "targets": [
        {"name": "ci", "url": ci.url}]}])
    ids = [await relay.push(seed_push(tag="latest", pusher=f"p{n}")) for n in range(3)]

    assert await _sent(ci, 3) == ["latest"] * 3
    states: list[Any] = [(await relay.delivery(i))["state"] for i in ids]
    assert states == ["running"] * 3
