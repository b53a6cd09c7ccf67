"""Dockership: a chain's web hook with Dockership's revision semantics, and /rest/..."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from support import (
    ADMIN_TOKEN,
    CHAIN_TOKEN,
    SEED_IMAGES_PUSH,
    SIGNING_SECRET,
    Relay,
    Reply,
    StartRelay,
    StartTarget,
    Target,
    seed_push,
    wait_until,
)

RECEIVER = Reply(callback=None)


async def _reported(relay: Relay, receiver: Target, delivery_id: str) -> dict[str, Any]:
    """The body Dockership's web hook got for this delivery, once its notice succeeded."""
    await relay.wait_for(delivery_id)

    async def sent() -> dict[str, Any] | None:
        notices = [n for n in (await relay.delivery(delivery_id))["notices"]
                   if n["kind"] == "dockership"]
        return notices[0] if notices and notices[0]["state"] == "success" else None

    notice = await wait_until(sent, what=f"the dockership notice of {delivery_id}")
    assert notice["name"] == "dockership"
    assert len(notice["attempts"]) == 1
    webhook_id = notice["webhook_id"]
    [request] = [r for r in receiver.requests if r.headers["webhook-id"] == webhook_id]
    return dict(request.json)


async def _dockership_chain(start_relay: StartRelay, receiver: Target,
                            *targets: dict[str, Any], **chain: Any) -> Relay:
    return await start_relay(chains=[{
        "name": "main", "webhook": receiver.url, "environment": "production",
        "targets": list(targets), **chain}])


async def test_success_moves_the_revision_and_failure_keeps_the_previous_one(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    receiver = await start_target(default=RECEIVER)
    ci = await start_target(Reply(), Reply(callback="failure", description="3 tests failed"),
                            Reply())
    relay = await _dockership_chain(start_relay, receiver, {"name": "ci", "url": ci.url})

    first = await _reported(relay, receiver, await relay.push(seed_push(tag="v1")))
    broken = await _reported(relay, receiver, await relay.push(seed_push(tag="v2")))
    fixed = await _reported(relay, receiver, await relay.push(seed_push(tag="v3")))

    assert first == {"previous_revision": "", "current_revision": "v1", "project": "main",
                     "environment": "production", "errors": []}
    assert broken == {"previous_revision": "v1", "current_revision": "v1", "project": "main",
                      "environment": "production",
                      "errors": ["step 1 of 1 (ci) answered failure: 3 tests failed"]}
    assert fixed["previous_revision"] == "v1"
    assert fixed["current_revision"] == "v3"
    assert fixed["errors"] == []


async def test_errors_name_the_step_the_target_and_the_http_error(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    receiver = await start_target(default=RECEIVER)
    ci = await start_target()
    deploy = await start_target(Reply(400, callback=None), Reply(callback=None))
    relay = await _dockership_chain(
        start_relay, receiver, {"name": "ci", "url": ci.url},
        {"name": "deploy", "url": deploy.url, "callback_timeout": 0.5})

    rejected = await _reported(relay, receiver, await relay.push(seed_push(tag="v1")))
    silent = await _reported(relay, receiver, await relay.push(seed_push(tag="v2")))

    assert rejected["errors"] == ["step 2 of 2 (deploy) failed: target answered HTTP 400"]
    assert silent["errors"] == ["step 2 of 2 (deploy) failed: no callback within 0.5 s"]
    for body in (rejected, silent):
        assert body["previous_revision"] == body["current_revision"] == ""


async def test_the_revision_is_the_digest_when_no_tag_was_pushed(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    receiver = await start_target(default=RECEIVER)
    relay = await _dockership_chain(start_relay, receiver,
                                    {"name": "ci", "url": (await start_target()).url})
    payload = copy.deepcopy(SEED_IMAGES_PUSH)
    digest = "sha256:" + "ab" * 32
    payload["push_data"]["digest"] = digest

    body = await _reported(relay, receiver, await relay.push(payload))

    assert body["current_revision"] == digest
    assert body["environment"] == "production"


async def test_a_chain_without_environment_reports_default(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    receiver = await start_target(default=RECEIVER)
    relay = await start_relay(chains=[{"name": "main", "webhook": receiver.url, "targets": [
        {"name": "ci", "url": (await start_target()).url}]}])

    body = await _reported(relay, receiver, await relay.push())

    assert (body["project"], body["environment"]) == ("main", "default")


async def test_rest_projects_shows_chains_without_their_secrets(
        start_relay: StartRelay, start_target: StartTarget,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOY_PATH_SECRET", "path-secret-from-the-env-77")
    relay = await start_relay(chains=[
        {"name": "main", "environment": "production", "repositories": ["svendowideit/*"],
         "webhook": "http://ship:webhook-password-9@127.0.0.1:9/dockership?key=webhook-key",
         "targets": [
             {"name": "ci", "url": "http://127.0.0.1:9/ci?token=query-token-secret",
              "secret": SIGNING_SECRET},
             {"name": "deploy", "url": "http://127.0.0.1:9/${DEPLOY_PATH_SECRET}/hook",
              "await_callback": False}]},
        {"name": "other", "targets": [{"name": "ci", "url": "http://127.0.0.1:9/ci"}]}])

    status, projects = await relay.get("/rest/projects")

    assert status == 200
    assert list(projects) == ["main", "other"]
    assert projects["main"] == {
        # Dockership's Project, key for key
        "Name": "main", "Repository": "svendowideit/*", "RelatedRepositories": None,
        "Dockerfile": "", "History": 0, "UseShortRevisions": False, "Files": None,
        "TestCommand": "", "NoCache": False, "Restart": "", "Ports": None, "Binds": None,
        "VolumesFrom": None, "LinkNames": None,
        "Environments": {"production": {"DockerEndPoints": None, "EtcdServers": None,
                                        "Name": "production", "Host": ""}},
        "EnvironmentNames": ["production"], "TaskStatus": {},
        "WebHook": "http://127.0.0.1:9/dockership",
        # relay's own
        "Environment": "production", "Repositories": ["svendowideit/*"], "Concurrency": 16,
        "Targets": [
            {"Name": "ci", "URL": "http://127.0.0.1:9/ci", "AwaitCallback": True,
             "Signed": True},
            {"Name": "deploy", "URL": "http://127.0.0.1:9/[redacted]/hook",
             "AwaitCallback": False, "Signed": False}]}
    assert (projects["other"]["WebHook"], projects["other"]["Repository"]) == ("", "")
    assert projects["other"]["EnvironmentNames"] == ["default"]
    text = json.dumps(projects) + json.dumps((await relay.get("/rest/status"))[1])
    for secret in (CHAIN_TOKEN, ADMIN_TOKEN, SIGNING_SECRET, "query-token-secret",
                   "webhook-password-9", "webhook-key", "path-secret-from-the-env-77"):
        assert secret not in text


async def test_rest_status_shows_last_revision_outcome_and_what_runs(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    ci = await start_target(Reply(), Reply(callback="failure"), default=Reply(callback=None))
    relay = await start_relay(chains=[
        {"name": "main", "environment": "production", "order": "chain", "concurrency": 1,
         "targets": [{"name": "ci", "url": ci.url}]},
        {"name": "idle", "targets": [{"name": "ci", "url": ci.url}]}])
    succeeded = await relay.wait_for(await relay.push(seed_push(tag="v1")))
    failed = await relay.wait_for(await relay.push(seed_push(tag="v2")))
    waiting = await relay.push(seed_push(tag="v3"))
    await relay.wait_for_step(waiting, 0, "awaiting_callback")
    await relay.push(seed_push(tag="v4"))  # waits behind v3 (concurrency 1)

    status, everything = await relay.get("/rest/status")
    one_status, one = await relay.get("/rest/status/main")

    assert (status, one_status) == (200, 200)
    assert list(everything) == ["main", "idle"]
    assert everything["main"] == one
    assert one["Project"]["Name"] == "main"
    assert one["Project"]["Repository"] == "svendowideit/testhook"
    assert one["Project"]["TaskStatus"] == {"production": {
        "deploy": (await relay.delivery(waiting))["started_at"]}}
    assert one["Error"] is None
    production = {"DockerEndPoints": None, "EtcdServers": None, "Name": "production",
                  "Host": ""}
    assert one["Status"] == {"production": {
        # Dockership's StatusRecord: its own key and the ProjectStatus it embeds
        "LastRevisionLabel": "v1",
        "Environment": production,
        "LastRevision": {"svendowideit/testhook": "v1"},
        "RunningContainers": [],
        "Containers": [],
        # relay's own
        "LastSuccessTime": succeeded["finished_at"],
        "LastDelivery": failed["id"],
        "LastOutcome": "failure",
        "LastTime": failed["finished_at"],
        "Running": 1,
        "Pending": 1}}
    assert everything["idle"]["Project"]["TaskStatus"] == {}
    assert everything["idle"]["Status"] == {"default": {
        "LastRevisionLabel": "", "LastRevision": {}, "RunningContainers": [],
        "Containers": [], "Environment": {**production, "Name": "default"},
        "LastSuccessTime": None, "LastDelivery": None, "LastOutcome": None, "LastTime": None,
        "Running": 0, "Pending": 0}}


async def test_rest_needs_the_admin_token_and_a_known_chain(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    relay = await start_relay(await start_target())

    for path in ("/rest/projects", "/rest/status", "/rest/status/main"):
        assert (await relay.get(path, admin=False))[0] == 401
        async with relay.http.get(relay.url + path, headers={
                "Authorization": "Bearer wrong-admin-token-123456"}) as response:
            assert response.status == 401
    status, body = await relay.get("/rest/status/nope")
    assert status == 404
    assert "nope" in body["error"]
