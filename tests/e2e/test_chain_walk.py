"""A push walks its chain: targets get the payload and answer on their callback URLs."""

from __future__ import annotations

import asyncio
import json

from support import (
    SEED_IMAGES_PUSH,
    SEED_TAG_PUSH,
    Relay,
    Reply,
    StartRelay,
    StartTarget,
    wait_until,
)


async def test_two_targets_walk_to_success(start_relay: StartRelay,
                                           start_target: StartTarget) -> None:
    ci = await start_target(Reply(callback="success", description="387 tests PASSED"))
    deploy = await start_target(Reply(callback="success", description="deployed"))
    relay = await start_relay(ci, deploy)

    delivery_id = await relay.push(SEED_TAG_PUSH)
    assert (await relay.wait_for(delivery_id))["state"] == "success"
    done = await relay.wait_for_attempts(delivery_id, 1, 1)

    assert [s["state"] for s in done["steps"]] == ["success", "success"]
    first = done["steps"][0]
    assert first["callback"]["description"] == "387 tests PASSED"
    assert first["callback"]["context"] == "fake CI"
    assert first["attempts"][0]["status"] == 200
    assert done["finished_at"] is not None
    # Each target got the payload as received, but with a callback_url of relay's own,
    # one per step, and the second only after the first called back.
    sent_ci, sent_deploy = ci.requests[0], deploy.requests[0]
    assert sent_ci.at <= sent_deploy.at
    for sent in (sent_ci, sent_deploy):
        body = sent.json
        assert body["callback_url"].startswith(f"{relay.url}/callbacks/")
        assert {k: v for k, v in body.items() if k != "callback_url"} == {
            k: v for k, v in SEED_TAG_PUSH.items() if k != "callback_url"}
        assert sent.headers["Content-Type"] == "application/json"
        assert sent.headers["webhook-id"].startswith("msg_")
        assert sent.headers["webhook-timestamp"].isdigit()
    assert sent_ci.json["callback_url"] != sent_deploy.json["callback_url"]
    # The callback's own transaction started the next step: no wait for a dispatch.
    assert done["steps"][1]["attempts"][0]["at"] == first["callback"]["received_at"]
    assert sent_ci.headers["webhook-id"] != sent_deploy.headers["webhook-id"]


async def test_images_payload_with_float_pushed_at_is_relayed(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    ci = await start_target()
    relay = await start_relay(ci)

    done = await relay.wait_for(await relay.push(SEED_IMAGES_PUSH))

    assert done["state"] == "success"
    sent = ci.requests[0].json
    assert sent["push_data"]["images"] == SEED_IMAGES_PUSH["push_data"]["images"]
    assert sent["push_data"]["pushed_at"] == 1417566161.0
    assert done["payload"]["push_data"] == SEED_IMAGES_PUSH["push_data"]


async def test_failure_callback_breaks_the_chain(start_relay: StartRelay,
                                                 start_target: StartTarget) -> None:
    ci = await start_target(Reply(callback="failure", description="3 tests FAILED"))
    deploy = await start_target()
    relay = await start_relay(ci, deploy)

    done = await relay.wait_for(await relay.push())

    assert done["state"] == "failure"
    assert [s["state"] for s in done["steps"]] == ["failure", "skipped"]
    assert done["steps"][1]["attempts"] == []
    assert "3 tests FAILED" in done["summary"]
    assert deploy.requests == []


async def test_error_callback_ends_the_delivery_in_error(start_relay: StartRelay,
                                                         start_target: StartTarget) -> None:
    ci = await start_target(Reply(callback="error"))
    relay = await start_relay(ci, await start_target())

    done = await relay.wait_for(await relay.push())

    assert done["state"] == "error"
    assert [s["state"] for s in done["steps"]] == ["error", "skipped"]


async def test_a_callback_before_the_answer_to_relays_post_counts(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    # The target calls back first and only then answers relay's POST (after a pause).
    ci = await start_target(Reply(callback="success", early=True, delay=0.3))
    deploy = await start_target()
    relay = await start_relay(ci, deploy)

    done = await relay.wait_for(await relay.push())

    assert done["state"] == "success"
    assert ci.callback_answers == [200]
    assert done["steps"][0]["callback"]["state"] == "success"
    assert len(deploy.requests) == 1
    # The late answer to relay's POST is still kept as the step's attempt.
    await wait_until(lambda: _attempts(relay, done["id"], 0), what="the attempt record")


async def _attempts(relay: Relay, delivery_id: str, index: int) -> list[object]:
    return list((await relay.delivery(delivery_id))["steps"][index]["attempts"])


async def test_a_target_without_await_callback_succeeds_on_2xx(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    notify = await start_target(Reply(callback=None))
    relay = await start_relay({"url": notify.url, "await_callback": False})

    done = await relay.wait_for(await relay.push())

    assert done["state"] == "success"
    assert done["steps"][0]["callback"] is None


async def test_a_step_waits_for_its_callback(start_relay: StartRelay,
                                             start_target: StartTarget) -> None:
    silent = await start_target(Reply(callback=None))
    relay = await start_relay(silent, await start_target())

    delivery_id = await relay.push()
    waiting = await relay.wait_for_step(delivery_id, 0, "awaiting_callback")

    assert waiting["state"] == "running"
    assert waiting["steps"][1]["state"] == "pending"
    callback_url = silent.requests[0].json["callback_url"]
    path = callback_url.removeprefix(relay.url)
    status, body = await relay.post(path, {"state": "success"})
    assert status == 200, body
    assert (await relay.wait_for(delivery_id))["state"] == "success"


async def test_a_second_callback_for_a_step_is_409(start_relay: StartRelay,
                                                   start_target: StartTarget) -> None:
    ci = await start_target()
    relay = await start_relay(ci)
    await relay.wait_for(await relay.push())
    path = ci.requests[0].json["callback_url"].removeprefix(relay.url)

    status, body = await relay.post(path, {"state": "failure"})

    assert status == 409
    assert "already answered" in body["error"]


async def test_deliveries_of_one_chain_run_one_at_a_time_by_default(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    ci = await start_target(default=Reply(callback=None))
    relay = await start_relay(ci)

    first = await relay.push()
    second = await relay.push()
    await relay.wait_for_step(first, 0, "awaiting_callback")
    assert (await relay.delivery(second))["state"] == "pending"

    path = ci.requests[0].json["callback_url"].removeprefix(relay.url)
    assert (await relay.post(path, {"state": "success"}))[0] == 200
    await relay.wait_for(first)
    await relay.wait_for_step(second, 0, "awaiting_callback")
    assert len(ci.requests) == 2


async def test_the_stored_payload_keeps_unknown_fields(start_relay: StartRelay,
                                                       start_target: StartTarget) -> None:
    ci = await start_target()
    relay = await start_relay(ci)
    payload = json.loads(json.dumps(SEED_TAG_PUSH))
    payload["x_custom"] = {"build": 42, "unicode": "ビルド"}
    payload["push_data"]["extra"] = [1, 2]

    done = await relay.wait_for(await relay.push(payload))

    assert done["payload"] == payload
    assert ci.requests[0].json["x_custom"] == payload["x_custom"]
    assert ci.requests[0].json["push_data"]["extra"] == [1, 2]


async def test_parallel_pushes_each_finish(start_relay: StartRelay,
                                           start_target: StartTarget) -> None:
    ci = await start_target()
    relay = await start_relay(chains=[{"name": "main", "concurrency": 8,
                                       "targets": [{"name": "ci", "url": ci.url}]}])

    ids = await asyncio.gather(*(relay.push() for _ in range(20)))

    for delivery_id in ids:
        assert (await relay.wait_for(delivery_id))["state"] == "success"
    assert len({r.headers["webhook-id"] for r in ci.requests}) == 20
