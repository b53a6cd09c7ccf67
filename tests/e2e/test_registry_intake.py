"""POST /hooks/... from registries other than Docker Hub: distribution's envelopes and
Harbor's events walk the same chains as Docker Hub pushes, in Docker Hub's shape."""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Any

import pytest
from support import (
    CHAIN_TOKEN,
    SEED_IMAGES_PUSH,
    SEED_TAG_PUSH,
    Relay,
    StartRelay,
    StartTarget,
    Target,
    wait_until,
)
from support import registry_payloads as rp

from relay.engine import worker
from relay.http.appkeys import STORE

BEARER = {"Authorization": f"Bearer {CHAIN_TOKEN}"}


async def _notify(relay: Relay, document: dict[str, Any], *, content_type: str = rp.V1,
                  headers: dict[str, str] | None = None,
                  path: str = "/hooks/main") -> tuple[int, Any]:
    """POST as a registry does: the header credential and the registry's content type."""
    sent = {"Content-Type": content_type, **(BEARER if headers is None else headers)}
    return await relay.post(path, document, headers=sent)


async def _deliveries(relay: Relay) -> list[dict[str, Any]]:
    status, body = await relay.get("/history?limit=500")
    assert status == 200
    return list(body["items"])


@pytest.fixture
async def target(start_target: StartTarget) -> Target:
    return await start_target()


@pytest.fixture
async def relay(start_relay: StartRelay, target: Target) -> Relay:
    return await start_relay(target)


async def test_a_tag_push_walks_the_chain_in_docker_hubs_shape(relay: Relay,
                                                              target: Target) -> None:
    status, body = await _notify(relay, rp.envelope(rp.REAL_MANIFEST))

    assert status == 202, body
    assert body["status_url"] == f"{relay.url}/history/{body['id']}"
    assert body["events"] == [{"pointer": "/events/0", "event": rp.REAL_MANIFEST["id"],
                               "id": body["id"], "status_url": body["status_url"]}]
    done = await relay.wait_for(body["id"])
    assert done["state"] == "success"
    assert done["repository"] == "team/app"
    assert done["tag"] == "v1"
    sent = target.requests[0].json
    assert sent["callback_url"].startswith(f"{relay.url}/callbacks/")
    assert sent["push_data"] == {
        "pushed_at": 1795490253, "pusher": "", "tag": "v1", "digest": rp.DIGEST,
        "media_type": rp.OCI_MANIFEST, "resource_url": "registry.example.com:5000/team/app:v1"}
    assert sent["repository"]["repo_name"] == "team/app"
    assert done["payload"] == {k: v for k, v in sent.items() if k != "callback_url"}


@pytest.mark.parametrize("content_type", [rp.V1, rp.V2, "application/json"])
async def test_both_envelope_versions_and_plain_json_are_taken(relay: Relay,
                                                               content_type: str) -> None:
    status, body = await _notify(relay, rp.envelope(rp.REAL_MANIFEST),
                                 content_type=content_type)

    assert status == 202, body
    assert [d["id"] for d in await _deliveries(relay)] == [body["id"]]


async def test_the_url_token_works_for_registries_too(relay: Relay) -> None:
    status, body = await _notify(relay, rp.envelope(rp.REAL_MANIFEST), headers={},
                                 path=f"/hooks/main/{CHAIN_TOKEN}")
    assert status == 202, body


@pytest.mark.parametrize(("authorization", "status"), [
    (f"Bearer {CHAIN_TOKEN}", 202),
    (f"bearer   {CHAIN_TOKEN} ", 202),
    (CHAIN_TOKEN, 202),  # Harbor sends its configured auth header verbatim
    (f"Basic {CHAIN_TOKEN}", 404),
    ("Bearer wrong-token-0123456789abc", 404),
    ("", 404),
    (None, 404),
])
async def test_the_header_credential(relay: Relay, authorization: str | None,
                                     status: int) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    answer = await _notify(relay, rp.HARBOR_PUSH, content_type="application/json",
                           headers=headers)

    assert answer[0] == status, answer
    if status == 404:
        assert answer[1] == {"error": "no hook at this URL", "details": []}
        assert await _deliveries(relay) == []


@pytest.mark.parametrize("document", [
    rp.DOCS_PULL, rp.DOCS_V2_PUSH,
    rp.envelope(rp.REAL_LAYER, rp.REAL_PLATFORM),
    rp.envelope(rp.REAL_MOUNT, rp.REAL_DELETE_MANIFEST, rp.REAL_DELETE_TAG),
    rp.envelope(),
], ids=["pull", "docs-v2-by-digest", "layer-and-platform", "mount-and-deletes", "empty"])
async def test_what_is_no_tag_push_is_answered_200_and_stored_nowhere(
        relay: Relay, target: Target, document: dict[str, Any]) -> None:
    status, body = await _notify(relay, document)

    assert status == 200, body
    assert "ignored" in body
    assert [e["pointer"] for e in body["events"]] == [
        f"/events/{n}" for n in range(len(document["events"]))]
    assert all(e["ignored"] for e in body["events"])
    assert await _deliveries(relay) == []
    assert target.requests == []


async def test_one_multi_platform_push_is_one_delivery(relay: Relay, target: Target) -> None:
    status, body = await _notify(relay, rp.envelope(
        rp.REAL_LAYER, rp.REAL_PLATFORM, rp.REAL_LAYER, rp.REAL_PLATFORM, rp.REAL_INDEX))

    assert status == 202, body
    assert [("id" in e, e["pointer"]) for e in body["events"]] == [
        (False, "/events/0"), (False, "/events/1"), (False, "/events/2"), (False, "/events/3"),
        (True, "/events/4")]
    (only,) = await _deliveries(relay)
    assert only["id"] == body["id"]
    assert only["tag"] == "v2"
    await relay.wait_for(body["id"])
    assert [r.json["push_data"]["media_type"] for r in target.requests] == [rp.OCI_INDEX]


async def test_several_tag_pushes_in_one_envelope_are_several_deliveries(relay: Relay) -> None:
    status, body = await _notify(relay, rp.envelope(
        rp.event(id="a", tag="v1"), rp.REAL_LAYER, rp.event(id="b", tag="latest")))

    assert status == 202, body
    ids = [e["id"] for e in body["events"] if "id" in e]
    assert len(ids) == 2
    assert body["id"] == ids[0]
    assert sorted(d["tag"] for d in await _deliveries(relay)) == ["latest", "v1"]


async def test_the_chains_media_types_filter_manifests(start_relay: StartRelay,
                                                       target: Target) -> None:
    relay = await start_relay(chains=[{"name": "main", "media_types": [rp.OCI_INDEX],
                                       "targets": [{"name": "ci", "url": target.url}]}])

    manifest = await _notify(relay, rp.envelope(rp.REAL_MANIFEST))
    index = await _notify(relay, rp.envelope(rp.REAL_INDEX))

    assert manifest[0] == 200
    assert "media type application/vnd.oci.image.manifest.v1+json" in manifest[1]["ignored"]
    assert index[0] == 202
    assert [d["tag"] for d in await _deliveries(relay)] == ["v2"]


async def test_the_repository_filter_applies_to_registry_pushes(start_relay: StartRelay,
                                                                target: Target) -> None:
    relay = await start_relay(chains=[{"name": "main", "repositories": ["acme/*"],
                                       "targets": [{"name": "ci", "url": target.url}]}])

    status, body = await _notify(relay, rp.envelope(rp.REAL_MANIFEST))

    assert status == 200
    assert "team/app matches none of chain main's repositories" in body["ignored"]
    assert await _deliveries(relay) == []
    assert (await _notify(relay, rp.envelope(rp.event(repository="acme/app"))))[0] == 202


async def test_a_broken_envelope_is_422_naming_each_violation(relay: Relay) -> None:
    good = rp.event(id="good")
    bad = rp.event(id="bad", repository="Team/App", timestamp="yesterday")

    status, body = await _notify(relay, rp.envelope(good, bad))

    assert status == 422
    assert body["error"] == "the body is not a valid distribution registry notification"
    assert {d["path"] for d in body["details"]} == {"/events/1/target/repository",
                                                    "/events/1/timestamp"}
    # All or nothing: the good event of the refused envelope is not stored either.
    assert await _deliveries(relay) == []


async def test_harbors_push_walks_the_chain_and_other_events_are_ignored(
        relay: Relay, target: Target) -> None:
    pulled = await _notify(relay, rp.HARBOR_PULL, content_type="application/json",
                           headers={"Authorization": CHAIN_TOKEN})
    status, body = await _notify(relay, rp.HARBOR_PUSH, content_type="application/json",
                                 headers={"Authorization": CHAIN_TOKEN})

    assert pulled[0] == 200
    assert pulled[1]["ignored"] == "a Harbor PULL_ARTIFACT event makes no delivery"
    assert status == 202, body
    done = await relay.wait_for(body["id"])
    assert done["state"] == "success"
    assert done["repository"] == "test-webhook/debian"
    assert target.requests[0].json["push_data"]["pusher"] == "admin"
    assert len(await _deliveries(relay)) == 1


async def test_a_broken_harbor_push_is_422(relay: Relay) -> None:
    broken = copy.deepcopy(rp.HARBOR_PUSH)
    del broken["event_data"]["repository"]["repo_full_name"]

    status, body = await _notify(relay, broken, content_type="application/json")

    assert status == 422
    assert body["error"] == "the body is not a valid Harbor webhook event"
    assert body["details"] == [{"path": "/event_data/repository/repo_full_name",
                                "message": "is required"}]


# -- idempotency --------------------------------------------------------------------------


@pytest.mark.parametrize(("document", "content_type", "headers"), [
    (rp.envelope(rp.REAL_LAYER, rp.REAL_MANIFEST), rp.V1, None),
    (rp.HARBOR_PUSH, "application/json", None),
    (rp.HARBOR_CLOUD_PUSH, "application/cloudevents+json", None),
    (SEED_TAG_PUSH, "application/json", {**BEARER, "Idempotency-Key": "build-4711"}),
], ids=["distribution-id", "harbor-fingerprint", "harbor-cloudevents-id", "idempotency-key"])
async def test_a_repeat_gives_back_the_first_delivery(
        relay: Relay, target: Target, document: dict[str, Any], content_type: str,
        headers: dict[str, str] | None) -> None:
    first = await _notify(relay, document, content_type=content_type, headers=headers)
    repeat = await _notify(relay, copy.deepcopy(document), content_type=content_type,
                           headers=headers)

    assert first[0] == 202, first
    assert repeat[0] == 200, repeat
    assert repeat[1]["id"] == first[1]["id"]
    assert repeat[1]["status_url"] == first[1]["status_url"]
    assert repeat[1]["duplicate"] is True
    assert [d["id"] for d in await _deliveries(relay)] == [first[1]["id"]]
    await relay.wait_for(first[1]["id"])
    # ... also after the first delivery has gone through its chain.
    late = await _notify(relay, document, content_type=content_type, headers=headers)
    assert (late[0], late[1]["id"]) == (200, first[1]["id"])
    assert len(target.requests) == 1


async def test_a_different_key_or_event_is_a_new_delivery(relay: Relay) -> None:
    one = await relay.post("/hooks/main", SEED_TAG_PUSH,
                           headers={**BEARER, "Idempotency-Key": "one"})
    two = await relay.post("/hooks/main", SEED_TAG_PUSH,
                           headers={**BEARER, "Idempotency-Key": "two"})
    plain = [await relay.push(SEED_TAG_PUSH) for _ in range(2)]
    other = await _notify(relay, rp.envelope(rp.event(id="another-event")))

    assert one[0] == two[0] == other[0] == 202
    assert len({one[1]["id"], two[1]["id"], *plain, other[1]["id"]}) == 5


async def test_a_key_is_its_chains_own(start_relay: StartRelay, target: Target) -> None:
    relay = await start_relay(chains=[
        {"name": "main", "targets": [{"name": "ci", "url": target.url}]},
        {"name": "other", "targets": [{"name": "ci", "url": target.url}]}])

    main = await _notify(relay, rp.envelope(rp.REAL_MANIFEST))
    other = await _notify(relay, rp.envelope(rp.REAL_MANIFEST), path="/hooks/other")

    assert main[0] == other[0] == 202
    assert main[1]["id"] != other[1]["id"]


async def test_a_key_is_forgotten_after_the_window(start_relay: StartRelay,
                                                   target: Target) -> None:
    relay = await start_relay(chains=[{"name": "main", "idempotency_window": "3s",
                                       "targets": [{"name": "ci", "url": target.url}]}])
    first = await _notify(relay, rp.envelope(rp.REAL_MANIFEST))
    assert first[0] == 202

    async def repeat_is_new() -> tuple[int, Any] | None:
        answer = await _notify(relay, rp.envelope(rp.REAL_MANIFEST))
        if answer[0] == 200:
            assert answer[1]["id"] == first[1]["id"]
            await asyncio.sleep(0.2)
            return None
        return answer

    later = await wait_until(repeat_is_new, timeout=15, what="the key's window to close")
    assert later[0] == 202
    assert later[1]["id"] != first[1]["id"]
    assert len(await _deliveries(relay)) == 2


async def test_keys_past_their_window_are_pruned(start_relay: StartRelay,
                                                 target: Target) -> None:
    relay = await start_relay(chains=[{"name": "main", "idempotency_window": "1h",
                                       "targets": [{"name": "ci", "url": target.url}]}])
    assert (await _notify(relay, rp.envelope(rp.REAL_MANIFEST)))[0] == 202
    assert relay.runner is not None
    store = relay.runner.app[STORE]

    def prune_at(now: float) -> Any:
        return store.write(lambda tx: worker.prune_keys(tx, relay.settings, now))

    assert await prune_at(time.time()) == 0
    assert await prune_at(time.time() + 3601) == 1
    assert (await _notify(relay, rp.envelope(rp.REAL_MANIFEST)))[0] == 202


async def test_concurrent_repeats_make_one_delivery(relay: Relay) -> None:
    document = rp.envelope(rp.REAL_MANIFEST)
    answers = await asyncio.gather(*(_notify(relay, document) for _ in range(20)))

    assert sorted(status for status, _ in answers) == [200] * 19 + [202]
    assert len({body["id"] for _, body in answers}) == 1
    assert len(await _deliveries(relay)) == 1


async def test_two_processes_on_one_database_store_a_repeat_once(
        start_relay: StartRelay, target: Target, store_url: str) -> None:
    if store_url.startswith("sqlite"):
        pytest.skip("one SQLite file serves one relay process")
    first = await start_relay(target)
    second = await start_relay(target)
    documents = [rp.envelope(rp.event(id=f"event-{n}", tag=f"t{n}")) for n in range(10)]

    answers = await asyncio.gather(*(
        _notify(relay, document) for document in documents for relay in (first, second)
        for _ in range(3)))

    assert sorted(status for status, _ in answers).count(202) == 10
    assert len({body["id"] for _, body in answers}) == 10
    assert len(await _deliveries(first)) == 10


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there"])
async def test_a_bad_idempotency_key_is_400(relay: Relay, key: str) -> None:
    status, body = await relay.post(f"/hooks/main/{CHAIN_TOKEN}", SEED_TAG_PUSH,
                                    headers={"Idempotency-Key": key})

    assert status == 400
    assert "Idempotency-Key" in body["error"]
    assert await _deliveries(relay) == []


# -- coalescing ---------------------------------------------------------------------------


def _tag_push(tag: str, pushed_at: int) -> dict[str, Any]:
    payload = copy.deepcopy(SEED_TAG_PUSH)
    payload["push_data"].update(tag=tag, pushed_at=pushed_at)
    return payload


async def test_pushes_of_one_tag_within_the_window_are_one_delivery(
        start_relay: StartRelay, target: Target) -> None:
    relay = await start_relay(chains=[{"name": "main", "coalesce": "1.5s",
                                       "targets": [{"name": "ci", "url": target.url}]}])

    answers = [await relay.post(f"/hooks/main/{CHAIN_TOKEN}", _tag_push("latest", n))
               for n in (1, 2, 3)]
    other_tag = await relay.post(f"/hooks/main/{CHAIN_TOKEN}", _tag_push("v1", 4))

    assert [status for status, _ in answers] == [202, 202, 202]
    assert len({body["id"] for _, body in answers}) == 1
    assert [body.get("merged") for _, body in answers] == [None, 2, 3]
    assert other_tag[1]["id"] != answers[0][1]["id"]
    held = await relay.delivery(answers[0][1]["id"])
    assert held["state"] == "pending"
    assert held["merged"] == 3
    assert held["held_until"] is not None

    done = await relay.wait_for(answers[0][1]["id"], timeout=15)
    await relay.wait_for(other_tag[1]["id"], timeout=15)
    assert done["state"] == "success"
    assert done["merged"] == 3
    assert done["held_until"] is None
    assert done["payload"]["push_data"]["pushed_at"] == 3  # the last payload wins
    sent = sorted((r.json["push_data"]["tag"], r.json["push_data"]["pushed_at"])
                  for r in target.requests)
    assert sent == [("latest", 3), ("v1", 4)]
    # Nothing went out before the window closed, and the worker woke when it did (not at
    # its next 5 s poll).
    waited = min(r.at for r in target.requests) - held_received(held)
    assert 1.4 <= waited < 3.5

    after = await relay.post(f"/hooks/main/{CHAIN_TOKEN}", _tag_push("latest", 5))
    assert after[1]["id"] != answers[0][1]["id"]
    assert "merged" not in after[1]


async def test_a_held_delivery_keeps_its_place_in_the_chains_order(
        start_relay: StartRelay, target: Target) -> None:
    relay = await start_relay(chains=[{"name": "main", "coalesce": "1s", "order": "chain",
                                       "concurrency": 1,
                                       "targets": [{"name": "ci", "url": target.url}]}])
    held = await relay.push(_tag_push("latest", 1))
    # Docker Hub's automated-build shape has no tag: nothing to coalesce, not held.
    untagged = copy.deepcopy(SEED_IMAGES_PUSH)
    later = await relay.push(untagged)

    await relay.wait_for(later, timeout=15)
    await relay.wait_for(held, timeout=15)
    assert [("tag" in r.json["push_data"]) for r in target.requests] == [True, False]


def held_received(delivery: dict[str, Any]) -> float:
    from datetime import datetime

    return datetime.fromisoformat(delivery["received_at"].replace("Z", "+00:00")).timestamp()


async def test_a_repeat_of_a_merged_event_gives_back_the_merged_delivery(
        start_relay: StartRelay, target: Target) -> None:
    relay = await start_relay(chains=[{"name": "main", "coalesce": "1s",
                                       "targets": [{"name": "ci", "url": target.url}]}])
    first = await _notify(relay, rp.envelope(rp.event(id="one")))
    second = await _notify(relay, rp.envelope(rp.event(id="two")))
    again = await _notify(relay, rp.envelope(rp.event(id="one")))

    assert first[1]["id"] == second[1]["id"] == again[1]["id"]
    assert second[1]["events"][0]["merged"] == 2
    assert (again[0], again[1]["duplicate"]) == (200, True)
    assert (await relay.delivery(first[1]["id"]))["merged"] == 2


async def test_coalescing_across_two_processes_makes_one_delivery(
        start_relay: StartRelay, target: Target, store_url: str) -> None:
    if store_url.startswith("sqlite"):
        pytest.skip("one SQLite file serves one relay process")
    chains = [{"name": "main", "coalesce": "2s",
               "targets": [{"name": "ci", "url": target.url}]}]
    first = await start_relay(chains=copy.deepcopy(chains))
    second = await start_relay(chains=copy.deepcopy(chains))

    answers = await asyncio.gather(*(
        relay.post(f"/hooks/main/{CHAIN_TOKEN}", _tag_push("latest", n))
        for n in range(12) for relay in (first, second)))

    assert {status for status, _ in answers} == {202}
    assert len({body["id"] for _, body in answers}) == 1
    assert sorted(body.get("merged", 1) for _, body in answers) == list(range(1, 25))
    done = await first.wait_for(answers[0][1]["id"], timeout=15)
    assert done["merged"] == 24
    assert len(target.requests) == 1
