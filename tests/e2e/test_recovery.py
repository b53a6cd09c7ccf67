"""Recovering after an outage: redelivering from the step that failed, redelivering in bulk
by filter, and each attempt's recorded answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from support import (
    Relay,
    Reply,
    StartRelay,
    StartTarget,
    Target,
    render_config,
    seed_push,
    serve,
)

FAST = {"schedule": ["10ms"], "attempts": 2, "pause_after": 0, "await_callback": False}


async def _two_steps(start_relay: StartRelay, ci: Target, deploy: Target) -> Relay:
    return await start_relay(chains=[{"name": "main", "order": "none", "targets": [
        {"name": "ci", "url": ci.url, **FAST}, {"name": "deploy", "url": deploy.url, **FAST}]}])


async def test_redeliver_from_the_failed_step_skips_the_ones_before(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    ci = await start_target(default=Reply(callback=None))
    deploy = await start_target(Reply(status=503, callback=None), Reply(status=503,
                                callback=None), default=Reply(callback=None))
    relay = await _two_steps(start_relay, ci, deploy)
    failed = await relay.wait_for(await relay.push())
    assert [s["state"] for s in failed["steps"]] == ["success", "error"]

    status, answer = await relay.post(f"/history/{failed['id']}/redeliver",
                                      {"from_step": "failed"}, headers=relay.admin)
    assert status == 202
    again = await relay.wait_for(answer["id"])
    assert again["state"] == "success"
    assert again["redelivery_of"] == failed["id"]
    assert [s["state"] for s in again["steps"]] == ["skipped", "success"]
    assert again["steps"][0]["reason"] == (f"not sent: redelivered from step 1 of delivery "
                                           f"{failed['id']}")
    assert len(ci.requests) == 1  # the step that had passed did not run again

    by_index = await relay.post(f"/history/{failed['id']}/redeliver", {"from_step": 0},
                                headers=relay.admin)
    assert by_index[0] == 202
    assert (await relay.wait_for(by_index[1]["id"]))["state"] == "success"
    assert len(ci.requests) == 2


async def test_from_step_out_of_range_or_without_a_failed_step_is_a_422(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    ci = await start_target(default=Reply(callback=None))
    deploy = await start_target(default=Reply(callback=None))
    relay = await _two_steps(start_relay, ci, deploy)
    done = await relay.wait_for(await relay.push())
    path = f"/history/{done['id']}/redeliver"

    status, body = await relay.post(path, {"from_step": 2}, headers=relay.admin)
    assert (status, body["error"]) == (422, f"from_step 2 is out of range: delivery "
                                            f"{done['id']} has steps 0 to 1")
    status, body = await relay.post(path, {"from_step": "failed"}, headers=relay.admin)
    assert (status, body["error"]) == (422, f"delivery {done['id']} has no failed step: "
                                            "every step succeeded or was skipped")
    status, body = await relay.post(path, {"from_step": "last"}, headers=relay.admin)
    assert status == 422
    assert body["details"] == [{"path": "/from_step",
                                "message": 'must be a step index (0, 1, ...) or "failed"'}]
    assert (await relay.post(path, {"from": 1}, headers=relay.admin))[0] == 422


async def test_bulk_redelivery_takes_the_ended_deliveries_the_filter_selects(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    ci = await start_target(default=Reply(status=503, callback=None))
    deploy = await start_target(default=Reply(callback=None))
    relay = await _two_steps(start_relay, ci, deploy)
    failed = [await relay.wait_for(await relay.push(seed_push(tag=t))) for t in ("a", "b", "c")]
    assert {d["state"] for d in failed} == {"error"}
    ci.default = Reply(callback=None)  # the outage is over
    fine = await relay.wait_for(await relay.push(seed_push(tag="d")))
    assert fine["state"] == "success"

    dry = await relay.post("/history/redeliver", {"state": "error", "dry_run": True},
                           headers=relay.admin)
    assert dry == (200, {"count": 3})
    assert len(ci.requests) == 3 * 2 + 1  # a dry run creates nothing

    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    status, answer = await relay.post("/history/redeliver", {
        "state": "error", "since": since, "chain": "main"}, headers=relay.admin)
    assert status == 202
    assert answer["count"] == 3
    redone = [await relay.wait_for(new_id) for new_id in answer["ids"]]
    assert [d["state"] for d in redone] == ["success"] * 3
    assert [d["redelivery_of"] for d in redone] == [d["id"] for d in failed]  # oldest first
    assert [d["tag"] for d in redone] == ["a", "b", "c"]


async def test_bulk_redelivery_refuses_a_filter_it_cannot_use(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    relay = await start_relay(await start_target())

    async def refused(body: Any) -> list[dict[str, str]]:
        status, answer = await relay.post("/history/redeliver", body, headers=relay.admin)
        assert status == 422, answer
        return list(answer["details"])

    assert (await refused({"chain": "main"}))[0]["message"].startswith("give state or since")
    assert await refused({"state": "running"}) == [{
        "path": "/state", "message": "must be success, failure or error: only ended "
                                     "deliveries are redelivered"}]
    assert (await refused({"since": "yesterday"}))[0]["path"] == "/since"
    assert (await refused({"state": "error", "colour": "red"}))[0]["path"] == "/colour"
    assert (await relay.post("/history/redeliver", {"state": "error"}))[0] == 401


async def test_each_attempt_keeps_what_the_target_answered(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    ci = await start_target(Reply(status=503, callback=None, headers={"Retry-After": "0"}),
                            default=Reply(callback=None))
    relay = await start_relay(chains=[{"name": "main", "targets": [
        {"name": "ci", "url": ci.url, **FAST}]}])

    done = await relay.wait_for(await relay.push())
    first, second = done["steps"][0]["attempts"]
    assert first["response"]["status"] == 503
    assert first["response"]["headers"]["retry-after"] == "0"
    assert first["response"]["headers"]["content-type"].startswith("application/json")
    assert first["response"]["body"] == '{"ok": false}'
    assert first["response"]["truncated"] is False
    assert second["response"]["status"] == 200


async def test_a_long_answer_is_cut_and_relays_secrets_echoed_back_are_redacted(
        start_relay: StartRelay) -> None:
    async def echo(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=200, text=f"got {request.headers['Authorization']} "
                                             + "x" * 5000)

    runner, url = await serve(echo, "/hook")
    try:
        relay = await start_relay(chains=[{"name": "main", "targets": [
            {"name": "ci", "url": url, **FAST,
             "headers": {"Authorization": "Bearer gh-secret-0123456789"}}]}])
        done = await relay.wait_for(await relay.push())
    finally:
        await runner.cleanup()
    (attempt,) = done["steps"][0]["attempts"]
    response = attempt["response"]
    assert response["truncated"] is True
    assert len(response["body"].encode()) <= 4096
    assert response["body"].startswith("got [redacted] xxx")
    assert "gh-secret-0123456789" not in str(done)


async def test_a_bulk_redelivery_that_cannot_do_one_does_none(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    ci = await start_target(default=Reply(callback=None))
    target = {"name": "ci", "url": ci.url, **FAST}
    relay = await start_relay(chains=[{"name": "main", "targets": [target]},
                                      {"name": "gone", "targets": [target]}])
    for chain in ("main", "gone", "main"):
        await relay.wait_for(await relay.push(chain=chain))
    relay.config_path.write_text(render_config(
        port=relay.settings.server.port, store_url=relay.settings.store.url,
        chains=[{"name": "main", "targets": [target]}]))
    assert (await relay.post("/api/reload", headers=relay.admin, data=b""))[0] == 200

    status, body = await relay.post("/history/redeliver", {"state": "success"},
                                    headers=relay.admin)
    assert (status, body["error"]) == (409, "chain 'gone' is no longer configured")
    _, listed = await relay.get("/history?limit=50")
    assert len(listed["items"]) == 3  # the first of the three was not kept either
    status, body = await relay.post("/history/redeliver", {"state": "success",
                                                           "chain": "main"},
                                    headers=relay.admin)
    assert (status, body["count"]) == (202, 2)
