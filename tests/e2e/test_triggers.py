"""Docker Cloud service triggers: managed with the admin token, called with their URL alone."""

from __future__ import annotations

import io
import json
from typing import Any

import aiohttp
from support import Relay, Reply, StartRelay, StartTarget, seed_push, wait_until

TRIGGERS = "/api/chains/main/triggers/"


async def _create(relay: Relay, body: Any = None, chain: str = "main") -> dict[str, Any]:
    status, created = await relay.post(f"/api/chains/{chain}/triggers/",
                                       body if body is not None else {}, headers=relay.admin)
    assert status == 201, (status, created)
    return dict(created)


async def _call(url: str) -> tuple[int, Any]:
    """POST a trigger's URL as a CI job would: no credentials at all."""
    async with aiohttp.ClientSession() as session, session.post(url) as response:
        return response.status, await response.json()


def _trigger_id(trigger: dict[str, Any]) -> str:
    return str(trigger["resource_uri"].rstrip("/").rsplit("/", 1)[1])


async def test_create_list_get_and_delete_like_docker_cloud(start_relay: StartRelay,
                                                            start_target: StartTarget) -> None:
    relay = await start_relay(await start_target())

    status, named = await relay.post(TRIGGERS, {"name": "deploy-button"},
                                     headers=relay.admin)
    assert status == 201
    trigger_id = _trigger_id(named)
    assert named["resource_uri"] == f"{TRIGGERS}{trigger_id}/"
    assert named["url"] == f"{relay.url}{TRIGGERS}{trigger_id}/call/"
    assert (named["name"], named["operation"], named["chain"]) == (
        "deploy-button", "REDEPLOY", "main")
    assert len(trigger_id) >= 22  # at least 128 bits of base64
    # Docker Cloud's example creates with no body at all.
    async with relay.http.post(relay.url + TRIGGERS, headers=relay.admin) as response:
        assert response.status == 201
        assert response.headers["Location"].startswith(f"{relay.url}{TRIGGERS}")
        unnamed = await response.json()
    assert (unnamed["name"], unnamed["operation"]) == ("main-redeploy", "REDEPLOY")
    assert _trigger_id(unnamed) != trigger_id

    status, listed = await relay.get(TRIGGERS)
    assert status == 200
    assert listed == {"meta": {"total_count": 2}, "objects": [named, unnamed]}
    assert (await relay.get(TRIGGERS.rstrip("/")))[1] == listed
    assert (await relay.get(named["resource_uri"])) == (200, named)

    status, _ = await relay.delete(named["resource_uri"])
    assert status == 204
    assert (await relay.get(named["resource_uri"]))[0] == 404
    assert (await relay.delete(named["resource_uri"]))[0] == 404
    assert [t["name"] for t in (await relay.get(TRIGGERS))[1]["objects"]] == ["main-redeploy"]


async def test_bad_requests_are_refused_clearly(start_relay: StartRelay,
                                                start_target: StartTarget) -> None:
    relay = await start_relay(await start_target())

    status, body = await relay.post(TRIGGERS, {"operation": "SCALEUP"}, headers=relay.admin)
    assert status == 422
    assert "SCALEUP" in body["error"]
    assert "no containers to scale" in body["error"]
    assert [d["path"] for d in body["details"]] == ["/operation"]
    status, body = await relay.post(TRIGGERS, {"operation": "RESTART", "name": 7},
                                    headers=relay.admin)
    assert status == 422
    assert [d["path"] for d in body["details"]] == ["/name", "/operation"]
    assert (await relay.post(TRIGGERS, data=b"[1", headers=relay.admin))[0] == 400
    status, body = await relay.post("/api/chains/nope/triggers/", {}, headers=relay.admin)
    assert status == 404
    assert "nope" in body["error"]
    assert (await relay.get(TRIGGERS))[1]["objects"] == []


async def test_managing_triggers_needs_the_admin_token(start_relay: StartRelay,
                                                       start_target: StartTarget) -> None:
    relay = await start_relay(await start_target())
    trigger = await _create(relay)

    for method, path in (("GET", TRIGGERS), ("POST", TRIGGERS),
                         ("GET", trigger["resource_uri"]),
                         ("DELETE", trigger["resource_uri"])):
        for headers in ({}, {"Authorization": "Bearer wrong-admin-token-123456"}):
            async with relay.http.request(method, relay.url + path,
                                          headers=headers) as response:
                assert response.status == 401, (method, path)
    assert (await relay.get(trigger["resource_uri"]))[0] == 200


async def test_calling_a_trigger_redeploys_the_last_accepted_payload(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    ci = await start_target()
    relay = await start_relay(ci)
    older = await relay.wait_for(await relay.push(seed_push(tag="v1")))
    last = await relay.wait_for(await relay.push(seed_push(tag="v2")))
    trigger = await _create(relay, {"name": "redeploy"})

    status, accepted = await _call(trigger["url"])

    assert status == 202
    assert accepted["status_url"] == f"{relay.url}/history/{accepted['id']}"
    again = await relay.wait_for(accepted["id"])
    assert again["state"] == "success"
    assert again["source"] == "trigger"
    assert again["redelivery_of"] == last["id"] != older["id"]
    assert again["payload"] == last["payload"]
    assert [r.json["push_data"]["tag"] for r in ci.requests] == ["v1", "v2", "v2"]
    # The registry heard about the push once; a trigger does not report to it again.
    assert again["upstream"]["state"] == "skipped"
    assert "trigger" in again["upstream"]["reason"]


async def test_a_chain_with_no_payload_yet_has_nothing_to_redeploy(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    ci = await start_target()
    relay = await start_relay(ci)
    trigger = await _create(relay)

    status, body = await _call(trigger["url"])

    assert status == 404
    assert "no accepted payload" in body["error"]
    assert (await relay.get("/history"))[1]["items"] == []
    assert ci.requests == []


async def test_a_deleted_trigger_is_revoked_at_once(start_relay: StartRelay,
                                                    start_target: StartTarget) -> None:
    ci = await start_target()
    relay = await start_relay(chains=[{"name": "main", "targets": [{"name": "ci",
                                                                    "url": ci.url}]},
                                      {"name": "other", "targets": [{"name": "ci",
                                                                     "url": ci.url}]}])
    await relay.wait_for(await relay.push())
    trigger = await _create(relay)
    assert (await _call(trigger["url"]))[0] == 202

    # A trigger belongs to its chain: its id under another chain's path is nothing.
    elsewhere = trigger["url"].replace("/chains/main/", "/chains/other/")
    assert (await _call(elsewhere))[0] == 404
    assert (await relay.delete(trigger["resource_uri"]))[0] == 204
    status, body = await _call(trigger["url"])

    assert status == 404
    assert body == {"error": "no trigger at this URL", "details": []}
    assert len((await relay.get("/history?chain=main"))[1]["items"]) == 2


async def test_trigger_ids_never_reach_the_logs(start_relay: StartRelay,
                                                start_target: StartTarget,
                                                log_lines: io.StringIO) -> None:
    relay = await start_relay(await start_target())
    await relay.wait_for(await relay.push())
    trigger = await _create(relay, {"name": "ci-button"})
    trigger_id = _trigger_id(trigger)

    await relay.get(TRIGGERS)
    await relay.get(trigger["resource_uri"])
    status, accepted = await _call(trigger["url"])
    assert status == 202
    await relay.wait_for(accepted["id"])
    await _call(trigger["url"].replace(trigger_id, trigger_id[:-2] + "xx"))
    await relay.delete(trigger["resource_uri"])
    await _call(trigger["url"])

    events = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    names = [e["event"] for e in events]
    assert {"trigger.created", "trigger.called", "trigger.deleted"} <= set(names)
    called = next(e for e in events if e["event"] == "trigger.called")
    assert (called["chain"], called["name"], called["delivery"]) == (
        "main", "ci-button", accepted["id"])
    assert trigger_id not in log_lines.getvalue()
    assert trigger_id[:-2] not in log_lines.getvalue()


async def test_hooks_and_triggers_survive_a_restart(start_relay: StartRelay,
                                                    start_target: StartTarget) -> None:
    receiver = await start_target(default=Reply(callback=None))
    ci = await start_target()
    loopback = {"allow_networks": ["127.0.0.0/8"]}  # the Kudu receiver is on loopback
    first = await start_relay(ci, outbound=loopback)
    status, hook = await first.post("/api/hooks", {"url": receiver.url, "event":
                                                   "PostDeployment"}, headers=first.admin)
    assert status == 201
    trigger = await _create(first, {"name": "survivor"})
    pushed = await first.wait_for(await first.push(seed_push(tag="v9")))
    await wait_until(lambda: _some(receiver.requests), what="the first Kudu notice")
    await first.stop()

    second = await start_relay(ci, outbound=loopback)  # the same store, a new process
    assert second.url != first.url
    status, hooks = await second.get("/api/hooks")
    assert status == 200
    assert [(h["id"], h["url"]) for h in hooks] == [(hook["id"], receiver.url)]
    [kept] = (await second.get(TRIGGERS))[1]["objects"]
    assert _trigger_id(kept) == _trigger_id(trigger)
    assert kept["url"] == trigger["url"].replace(first.url, second.url)

    status, accepted = await _call(kept["url"])
    assert status == 202
    again = await second.wait_for(accepted["id"])
    assert again["redelivery_of"] == pushed["id"]

    async def both_notified() -> bool:
        return len(receiver.requests) == 2

    await wait_until(both_notified, what="the Kudu notice after the restart")
    assert [r.json["id"] for r in receiver.requests] == [pushed["id"], accepted["id"]]


async def _some(items: list[Any]) -> bool:
    return bool(items)
