"""Kudu web hooks: /api/hooks as Kudu answers it, PostDeployment sent when a chain ends, and
events of any type published through /api/hooks/[hooks/]publish/{event}."""

from __future__ import annotations

import copy
import json
import ssl
from datetime import datetime
from typing import Any
from urllib.parse import quote

import pytest
import trustme
from support import (
    ADMIN_TOKEN,
    SEED_IMAGES_PUSH,
    Relay,
    Reply,
    StartRelay,
    StartTarget,
    free_socket,
    seed_push,
    wait_until,
)

RECEIVER = Reply(callback=None)  # a hook receiver answers 200 and calls nothing back
FAST = {"backoff_initial": 0.02, "backoff_max": 0.1, "attempts": 3}
PAYLOAD_FIELDS = {"id", "status", "author_email", "author", "message", "deployer",
                  "start_time", "end_time"}

LOOPBACK = {"allow_networks": ["127.0.0.0/8"]}


@pytest.fixture
def start_relay(start_relay: StartRelay) -> StartRelay:
    """Kudu hook URLs come from outside, so relay calls only public addresses unless told:
    these tests' receivers are on loopback, which their relays allow explicitly."""

    async def start(*targets: Any, **sections: Any) -> Relay:
        sections.setdefault("outbound", LOOPBACK)
        return await start_relay(*targets, **sections)

    return start


async def _subscribe(relay: Relay, url: str, **fields: Any) -> tuple[int, Any]:
    body = {"url": url, "event": "PostDeployment", "insecure_ssl": False, **fields}
    return await relay.post("/api/hooks", body, headers=relay.admin)


async def _hook(relay: Relay, hook_id: int) -> dict[str, Any]:
    status, body = await relay.get(f"/api/hooks/{hook_id}")
    assert status == 200, (status, body)
    return dict(body)


async def _settled_hook(relay: Relay, hook_id: int, timeout: float = 10.0) -> dict[str, Any]:
    async def recorded() -> dict[str, Any] | None:
        hook = await _hook(relay, hook_id)
        return hook if hook["last_status"] is not None else None

    return await wait_until(recorded, timeout=timeout, what=f"hook {hook_id} to record a send")


async def _kudu_notices(relay: Relay, delivery_id: str, count: int = 1,
                        timeout: float = 10.0) -> list[dict[str, Any]]:
    async def settled() -> list[dict[str, Any]] | None:
        notices = [n for n in (await relay.delivery(delivery_id))["notices"]
                   if n["kind"] == "kudu"]
        done = [n for n in notices if n["state"] not in ("pending", "sending")]
        return notices if len(done) >= count else None

    return await wait_until(settled, timeout=timeout, what=f"kudu notices of {delivery_id}")


def _instant(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text)


async def test_subscribe_list_get_and_delete_as_kudu_does(start_relay: StartRelay,
                                                          start_target: StartTarget) -> None:
    relay = await start_relay(await start_target())
    url = "http://127.0.0.1:9/kudu"

    status, created = await _subscribe(relay, url)
    assert status == 201
    assert {k: created[k] for k in ("url", "event", "insecure_ssl", "chain")} == {
        "url": url, "event": "PostDeployment", "insecure_ssl": False, "chain": None}
    assert isinstance(created["id"], int)
    assert created["last_status"] is None

    # The same url with the same event: Kudu gives back the hook it has.
    again_status, again = await _subscribe(relay, url.upper().replace("HTTP", "http"),
                                           event="postDeployment")
    assert (again_status, again["id"]) == (201, created["id"])
    # The same url with another event: Kudu's 409.
    conflict_status, conflict = await _subscribe(relay, url, event="PreDeployment")
    assert conflict_status == 409
    assert str(created["id"]) in conflict["error"]
    assert [d["path"] for d in conflict["details"]] == ["/event"]
    # Another setting of the same url is not silently ignored either.
    assert (await _subscribe(relay, url, insecure_ssl=True))[0] == 409

    other_status, other = await _subscribe(relay, "http://127.0.0.1:9/other", chain="main")
    assert other_status == 201
    status, listed = await relay.get("/api/hooks")
    assert status == 200
    assert [(h["id"], h["url"], h["event"], h["chain"]) for h in listed] == [
        (created["id"], url, "PostDeployment", None),
        (other["id"], "http://127.0.0.1:9/other", "PostDeployment", "main")]
    assert await _hook(relay, created["id"]) == created
    # An id is ASCII digits: the same number in Arabic-Indic digits names no hook.
    arabic = quote(str(created["id"]).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")))
    assert (await relay.get(f"/api/hooks/{arabic}"))[0] == 404

    assert (await relay.delete(f"/api/hooks/{created['id']}")) == (200, created)
    assert (await relay.get(f"/api/hooks/{created['id']}"))[0] == 404
    # Kudu answers 200 to a DELETE whatever the id: the hook is not there, as asked.
    assert (await relay.delete(f"/api/hooks/{created['id']}")) == (200, None)
    assert (await relay.delete("/api/hooks/not-an-id")) == (200, None)
    assert [h["id"] for h in (await relay.get("/api/hooks"))[1]] == [other["id"]]
    # A new hook never gets the id of a deleted one.
    _, third = await _subscribe(relay, "http://127.0.0.1:9/third")
    assert third["id"] not in (created["id"], other["id"])


async def test_bad_bodies_are_400_or_422_naming_the_field(start_relay: StartRelay,
                                                          start_target: StartTarget) -> None:
    relay = await start_relay(await start_target())

    status, _ = await relay.post("/api/hooks", data=b"{not json", headers=relay.admin)
    assert status == 400
    assert (await relay.post("/api/hooks", [], headers=relay.admin))[0] == 400

    status, body = await relay.post("/api/hooks", {
        "url": "ftp://example.com/x", "Insecure_SSL": "yes"}, headers=relay.admin)
    assert status == 422
    assert sorted(d["path"] for d in body["details"]) == ["/insecure_ssl", "/url"]

    status, body = await relay.post("/api/hooks", {"event": "PostDeployment"},
                                    headers=relay.admin)
    assert (status, body["details"]) == (422, [{"path": "/url", "message": "is required"}])

    status, body = await _subscribe(relay, "http://127.0.0.1:9/x", chain="nope")
    assert (status, [d["path"] for d in body["details"]]) == (422, ["/chain"])

    status, body = await _subscribe(relay, "http://127.0.0.1:9/x", event="")
    assert (status, [d["path"] for d in body["details"]]) == (422, ["/event"])

    assert (await relay.get("/api/hooks"))[1] == []
    assert (await relay.get("/api/hooks/abc"))[0] == 404
    assert (await relay.get("/api/hooks/123456789012345678901234"))[0] == 404


async def test_the_hooks_api_needs_the_admin_token(start_relay: StartRelay,
                                                   start_target: StartTarget) -> None:
    relay = await start_relay(await start_target())
    _, hook = await _subscribe(relay, "http://127.0.0.1:9/kudu")

    for method, path in (("POST", "/api/hooks"), ("GET", "/api/hooks"),
                         ("GET", f"/api/hooks/{hook['id']}"),
                         ("DELETE", f"/api/hooks/{hook['id']}")):
        for headers in ({}, {"Authorization": "Bearer wrong-admin-token-123456"}):
            async with relay.http.request(method, relay.url + path, headers=headers,
                                          json={"url": "http://127.0.0.1:9/y"}) as response:
                assert response.status == 401, (method, path)
    assert [h["id"] for h in (await relay.get("/api/hooks"))[1]] == [hook["id"]]


async def test_post_deployment_carries_kudus_payload_and_updates_last_fields(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    receiver = await start_target(default=RECEIVER)
    relay = await start_relay(await start_target())
    _, hook = await _subscribe(relay, receiver.url)

    delivery_id = await relay.push(seed_push(tag="v1.2.3"))
    done = await relay.wait_for(delivery_id)
    assert done["state"] == "success"
    settled = await _settled_hook(relay, hook["id"])

    assert len(receiver.requests) == 1
    sent = receiver.requests[0]
    body = sent.json
    assert set(body) == PAYLOAD_FIELDS
    assert body["id"] == delivery_id
    assert body["status"] == "success"
    assert body["author"] == body["deployer"] == "trustedbuilder"
    assert body["author_email"] == ""
    assert body["message"].startswith("svendowideit/testhook:v1.2.3: ")
    assert "success" in body["message"]
    assert _instant(body["start_time"]) <= _instant(body["end_time"])
    assert body["end_time"] == done["finished_at"]
    assert sent.headers["Content-Type"] == "application/json"

    assert settled["last_status"] == "OK"
    assert settled["last_reason"] == "OK"
    assert json.loads(settled["last_context"]) == body
    assert _instant(settled["last_datetime"]) >= _instant(body["end_time"])

    # The notice is in the history like a step, with its attempts.
    [notice] = await _kudu_notices(relay, delivery_id)
    assert notice["name"] == f"kudu hook {hook['id']}"
    assert notice["state"] == "success"
    assert [a["status"] for a in notice["attempts"]] == [200]


async def test_a_failed_chain_is_reported_as_failed(start_relay: StartRelay,
                                                    start_target: StartTarget) -> None:
    receiver = await start_target(default=RECEIVER)
    relay = await start_relay(await start_target(
        default=Reply(callback="failure", description="3 tests failed")))
    _, hook = await _subscribe(relay, receiver.url)

    delivery_id = await relay.push()
    assert (await relay.wait_for(delivery_id))["state"] == "failure"
    await _settled_hook(relay, hook["id"])

    body = receiver.requests[0].json
    assert body["status"] == "failed"
    assert body["message"].startswith("svendowideit/testhook:latest: chain main failure")
    assert "3 tests failed" in body["message"]


DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(("push_data", "image"), [
    ({}, f"svendowideit/testhook image {SEED_IMAGES_PUSH['push_data']['images'][0]}"),
    ({"digest": DIGEST}, f"svendowideit/testhook@{DIGEST}"),
], ids=["image-id", "digest"])
async def test_the_message_names_an_untagged_push_as_docker_does(
        start_relay: StartRelay, start_target: StartTarget, push_data: dict[str, str],
        image: str) -> None:
    receiver = await start_target(default=RECEIVER)
    relay = await start_relay(await start_target())
    await _subscribe(relay, receiver.url)
    payload = copy.deepcopy(SEED_IMAGES_PUSH)
    payload["push_data"].update(push_data)

    await _kudu_notices(relay, await relay.push(payload))

    assert receiver.requests[0].json["message"].startswith(f"{image}: chain main success")


async def test_a_hook_receiver_is_retried_like_a_step(start_relay: StartRelay,
                                                      start_target: StartTarget) -> None:
    receiver = await start_target(Reply(503, callback=None), default=RECEIVER)
    relay = await start_relay(await start_target(), delivery=FAST)
    _, hook = await _subscribe(relay, receiver.url)

    delivery_id = await relay.push()
    [notice] = await _kudu_notices(relay, delivery_id)

    assert notice["state"] == "success"
    assert [a["status"] for a in notice["attempts"]] == [503, 200]
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1
    assert (await _settled_hook(relay, hook["id"]))["last_status"] == "OK"


async def test_last_fields_tell_why_a_hook_receiver_failed(start_relay: StartRelay,
                                                           start_target: StartTarget) -> None:
    broken = await start_target(default=Reply(500, callback=None))
    relay = await start_relay(await start_target(), delivery=FAST)
    _, failing = await _subscribe(relay, broken.url)
    _, unreachable = await _subscribe(relay, "http://127.0.0.1:9/kudu")

    delivery_id = await relay.push()
    await _kudu_notices(relay, delivery_id, count=2)

    first = await _settled_hook(relay, failing["id"])
    assert first["last_status"] == "InternalServerError"
    assert first["last_reason"] == "gave up after 3 attempts: target answered HTTP 500"
    assert len(broken.requests) == 3
    second = await _settled_hook(relay, unreachable["id"])
    assert second["last_status"] == "Failure"
    assert "connection refused" in second["last_reason"]
    assert json.loads(second["last_context"])["id"] == delivery_id
    # The chain itself is not affected by its notices.
    assert (await relay.delivery(delivery_id))["state"] == "success"


async def test_a_410_unsubscribes_the_hook(start_relay: StartRelay,
                                           start_target: StartTarget) -> None:
    gone = await start_target(default=Reply(410, callback=None))
    relay = await start_relay(await start_target(), delivery=FAST)
    _, hook = await _subscribe(relay, gone.url)

    [notice] = await _kudu_notices(relay, await relay.push())

    assert notice["state"] == "error"
    assert (await relay.get(f"/api/hooks/{hook['id']}"))[0] == 404
    # Notices are planned when a chain ends: the next push plans none for the deleted hook.
    after = await relay.wait_for(await relay.push())
    assert [n for n in after["notices"] if n["kind"] == "kudu"] == []
    assert len(gone.requests) == 1


async def test_a_chain_filter_limits_a_hook_to_one_chain(start_relay: StartRelay,
                                                         start_target: StartTarget) -> None:
    receiver = await start_target(default=RECEIVER)
    ci = await start_target()
    relay = await start_relay(chains=[
        {"name": "main", "targets": [{"name": "ci", "url": ci.url}]},
        {"name": "other", "targets": [{"name": "ci", "url": ci.url}]}])
    _, hook = await _subscribe(relay, receiver.url, chain="other")

    on_main = await relay.push(chain="main")
    await relay.wait_for(on_main)
    on_other = await relay.push(chain="other")
    await _kudu_notices(relay, on_other)

    assert [r.json["id"] for r in receiver.requests] == [on_other]
    assert [n for n in (await relay.delivery(on_main))["notices"]
            if n["kind"] == "kudu"] == []
    assert (await _hook(relay, hook["id"]))["chain"] == "other"


async def test_a_deleted_hook_is_not_called_again(start_relay: StartRelay,
                                                  start_target: StartTarget) -> None:
    receiver = await start_target(default=RECEIVER)
    relay = await start_relay(await start_target())
    _, hook = await _subscribe(relay, receiver.url)
    await _kudu_notices(relay, await relay.push())

    assert (await relay.delete(f"/api/hooks/{hook['id']}"))[0] == 200
    later = await relay.push()
    await relay.wait_for(later)

    assert len(receiver.requests) == 1
    assert [n for n in (await relay.delivery(later))["notices"] if n["kind"] == "kudu"] == []


async def test_deleting_a_hook_skips_its_notices_still_due(start_relay: StartRelay,
                                                             start_target: StartTarget) -> None:
    failing = await start_target(default=Reply(503, callback=None))
    recovering = await start_target(Reply(503, callback=None), Reply(503, callback=None),
                                    default=RECEIVER)
    relay = await start_relay(await start_target(), delivery={
        "backoff_initial": 0.2, "backoff_max": 0.3, "attempts": 6})
    _, doomed = await _subscribe(relay, failing.url)
    await _subscribe(relay, recovering.url)
    delivery_id = await relay.push()

    async def tried() -> bool:
        return len(failing.requests) >= 1

    await wait_until(tried, what="a first notice to the failing receiver")
    assert (await relay.delete(f"/api/hooks/{doomed['id']}"))[0] == 200
    notices = {n["name"]: n for n in await _kudu_notices(relay, delivery_id, count=2)}

    skipped = notices[f"kudu hook {doomed['id']}"]
    assert skipped["state"] == "skipped"
    assert skipped["reason"] == f"not sent: kudu hook {doomed['id']} was deleted"
    assert [n["state"] for n in notices.values()] == ["skipped", "success"]
    # The other hook's three tries outlast the doomed one's backoff: it was not tried again.
    assert len(failing.requests) == len(skipped["attempts"]) < 6


async def test_insecure_ssl_skips_certificate_checks_for_that_hook_only(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    authority = trustme.CA()  # not trusted by relay: its certificates fail verification
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    lax = await start_target(default=RECEIVER, ssl_context=context)
    strict = await start_target(default=RECEIVER, ssl_context=context)
    relay = await start_relay(await start_target(), delivery={**FAST, "attempts": 1})
    _, insecure = await _subscribe(relay, lax.url, insecure_ssl=True)
    _, secure = await _subscribe(relay, strict.url)
    assert lax.url.startswith("https://")

    delivery_id = await relay.push()
    await _kudu_notices(relay, delivery_id, count=2)

    assert [r.json["id"] for r in lax.requests] == [delivery_id]
    assert (await _settled_hook(relay, insecure["id"]))["last_status"] == "OK"
    assert strict.requests == []
    refused = await _settled_hook(relay, secure["id"])
    assert refused["last_status"] == "Failure"
    assert "certificate verify failed" in refused["last_reason"]
    assert (await _hook(relay, insecure["id"]))["insecure_ssl"] is True


async def test_credentials_in_a_hook_url_are_used_but_never_shown(
        start_relay: StartRelay, start_target: StartTarget, log_lines: Any) -> None:
    receiver = await start_target(default=RECEIVER)
    relay = await start_relay(await start_target())
    with_password = receiver.url.replace("http://", "http://kudu:hook-password-42@")

    status, hook = await _subscribe(relay, with_password)
    await relay.push()
    await _settled_hook(relay, hook["id"])

    assert status == 201
    assert hook["url"] == receiver.url
    assert receiver.requests[0].headers["Authorization"].startswith("Basic ")
    listed = json.dumps((await relay.get("/api/hooks"))[1])
    history = json.dumps(await relay.delivery(receiver.requests[0].json["id"]))
    assert receiver.url in history
    for text in (listed, history, log_lines.getvalue()):
        assert "hook-password-42" not in text
        assert ADMIN_TOKEN not in text


async def test_a_hook_on_a_private_address_is_refused_unless_allowed(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    receiver = await start_target(RECEIVER)
    relay = await start_relay(await start_target(), outbound={"allow_networks": []})
    status, hook = await _subscribe(relay, receiver.url)
    assert status == 201

    delivery = await relay.wait_for(await relay.push())
    (notice,) = await _kudu_notices(relay, delivery["id"])

    assert receiver.requests == []
    assert notice["state"] == "error"
    assert "127.0.0.1" in notice["attempts"][0]["error"]
    settled = await _settled_hook(relay, hook["id"])
    assert settled["last_status"] == "Failure"


async def test_the_body_kudus_own_client_sends_is_taken(start_relay: StartRelay,
                                                        start_target: StartTarget) -> None:
    relay = await start_relay(await start_target())
    # Kudu.Client's RemoteWebHooksManager posts a whole WebHook as Json.NET writes it.
    sent = {"id": None, "event": "PostDeployment", "url": "http://127.0.0.1:9/kudu",
            "insecure_ssl": False, "last_status": None, "last_reason": None,
            "last_datetime": "0001-01-01T00:00:00", "last_context": None}

    status, created = await relay.post("/api/hooks", sent, headers=relay.admin)
    again_status, again = await relay.post("/api/hooks", {
        "URL": "http://127.0.0.1:9/kudu", "Event": "POSTDEPLOYMENT"}, headers=relay.admin)

    assert status == 201
    assert (created["url"], created["event"], created["last_datetime"]) == (
        sent["url"], "PostDeployment", None)
    assert (again_status, again["id"]) == (201, created["id"])


async def _publish(relay: Relay, path: str, body: Any) -> tuple[int, Any]:
    return await relay.post(path, body, headers=relay.admin)


async def test_publish_sends_the_body_to_each_hook_of_its_event_type(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    jobs, jobs_of_main, deployments = [await start_target(default=RECEIVER) for _ in range(3)]
    relay = await start_relay(await start_target())
    _, job_hook = await _subscribe(relay, jobs.url, event="TriggeredJobFinished")
    _, main_hook = await _subscribe(relay, jobs_of_main.url, event="triggeredjobfinished",
                                    chain="main")
    await _subscribe(relay, deployments.url)
    finished = {"job_name": "nightly", "status": "Success", "id": 12345678901234567890123}

    status, hooks = await _publish(relay, "/api/hooks/hooks/publish/TriggeredJobFinished",
                                   finished)

    assert status == 200
    assert [(h["id"], h["event"], h["last_status"], h["last_reason"]) for h in hooks] == [
        (job_hook["id"], "TriggeredJobFinished", "OK", "OK"),
        (main_hook["id"], "TriggeredJobFinished", "OK", "OK")]
    assert all(json.loads(h["last_context"]) == finished for h in hooks)
    assert await _hook(relay, job_hook["id"]) == hooks[0]
    for receiver in (jobs, jobs_of_main):
        [request] = receiver.requests
        assert request.json == finished  # as sent, the big integer exactly
        assert request.headers["Content-Type"] == "application/json"
    assert deployments.requests == []

    # Kudu's own path, its event name in any case; nobody subscribed: 200 all the same.
    status, again = await _publish(relay, "/api/hooks/publish/TRIGGEREDJOBFINISHED", [1, 2])
    assert (status, [h["id"] for h in again]) == (200, [job_hook["id"], main_hook["id"]])
    assert [r.json for r in jobs.requests] == [finished, [1, 2]]
    assert await _publish(relay, "/api/hooks/publish/Nobody", {}) == (200, [])

    # A chain's end is PostDeployment only.
    await _kudu_notices(relay, await relay.push())
    assert len(deployments.requests) == 1
    assert len(jobs.requests) == 2


async def test_publish_records_failures_and_410_unsubscribes(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    broken = await start_target(default=Reply(500, callback=None))
    gone = await start_target(default=Reply(410, callback=None))
    relay = await start_relay(await start_target())
    down = free_socket()  # bound, not listening
    _, failing = await _subscribe(relay, broken.url, event="MyEvent")
    _, unreachable = await _subscribe(relay, f"http://127.0.0.1:{down.getsockname()[1]}/k",
                                      event="MyEvent")
    _, leaving = await _subscribe(relay, gone.url, event="myevent")

    status, hooks = await _publish(relay, "/api/hooks/hooks/publish/MyEvent", {"n": 1})
    down.close()

    assert status == 200
    assert [(h["id"], h["last_status"]) for h in hooks] == [
        (failing["id"], "InternalServerError"), (unreachable["id"], "Failure")]
    assert hooks[0]["last_reason"] == "Internal Server Error"
    assert "connection refused" in hooks[1]["last_reason"]
    assert len(broken.requests) == 1  # a publish is sent once, as in Kudu
    assert (await relay.get(f"/api/hooks/{leaving['id']}"))[0] == 404
    assert (await relay.get("/api/hooks/hooks/publish/MyEvent"))[0] == 405
    assert (await relay.post("/api/hooks/publish/MyEvent", {"n": 1}))[0] == 401
