"""POST /hooks/...: what is accepted, what is refused and how, and that refusals store nothing."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest
from support import CHAIN_TOKEN, SEED_IMAGES_PUSH, SEED_TAG_PUSH, Relay, StartRelay, StartTarget


async def _count(relay: Relay) -> int:
    status, body = await relay.get("/history?limit=500")
    assert status == 200
    return len(body["items"])


@pytest.fixture
async def relay(start_relay: StartRelay, start_target: StartTarget) -> Relay:
    return await start_relay(await start_target())


@pytest.mark.parametrize("payload", [SEED_TAG_PUSH, SEED_IMAGES_PUSH], ids=["tag", "images"])
async def test_both_seed_shapes_are_accepted_durably(relay: Relay,
                                                     payload: dict[str, Any]) -> None:
    status, body = await relay.post(f"/hooks/main/{CHAIN_TOKEN}", payload)

    assert status == 202
    assert body["status_url"] == f"{relay.url}/history/{body['id']}"
    stored = await relay.delivery(body["id"])
    assert stored["payload"] == payload
    assert stored["chain"] == "main"


async def test_the_header_form_authenticates_with_bearer(relay: Relay) -> None:
    status, body = await relay.post("/hooks/main", SEED_TAG_PUSH,
                                    headers={"Authorization": f"Bearer {CHAIN_TOKEN}"})
    assert status == 202, body

    missing = await relay.post("/hooks/main", SEED_TAG_PUSH)
    wrong = await relay.post("/hooks/main", SEED_TAG_PUSH,
                             headers={"Authorization": "Bearer not-the-token-at-all"})
    assert missing[0] == wrong[0] == 404
    assert missing[1] == wrong[1]


async def test_unknown_chain_and_wrong_token_get_the_same_404(relay: Relay) -> None:
    unknown = await relay.post(f"/hooks/nope/{CHAIN_TOKEN}", SEED_TAG_PUSH)
    wrong = await relay.post("/hooks/main/wrong-token-0123456789", SEED_TAG_PUSH)

    assert unknown[0] == wrong[0] == 404
    assert unknown[1] == wrong[1] == {"error": "no hook at this URL", "details": []}
    assert await _count(relay) == 0


@pytest.mark.parametrize(("data", "fragment"), [
    (b"{not json", "not valid JSON"),
    (b"", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object, not an array"),
    (b'"text"', "must be a JSON object, not a string"),
    (b"\xff\xfe", "not UTF-8"),
    (b'{"a": NaN}', "not valid JSON"),
])
async def test_malformed_bodies_are_400(relay: Relay, data: bytes, fragment: str) -> None:
    status, body = await relay.post(f"/hooks/main/{CHAIN_TOKEN}", data=data)

    assert status == 400
    assert fragment in body["error"]
    assert body["details"] == []
    assert await _count(relay) == 0


async def test_a_body_over_the_limit_is_413(start_relay: StartRelay,
                                            start_target: StartTarget) -> None:
    relay = await start_relay(await start_target(), server={"max_body_bytes": 4096})
    payload = copy.deepcopy(SEED_TAG_PUSH)
    payload["repository"]["full_description"] = "x" * 5000

    status, body = await relay.post(f"/hooks/main/{CHAIN_TOKEN}", payload)

    assert status == 413
    assert "4096 bytes" in body["error"]
    assert await _count(relay) == 0


async def test_a_chunked_body_over_the_limit_is_413(start_relay: StartRelay,
                                                    start_target: StartTarget) -> None:
    relay = await start_relay(await start_target(), server={"max_body_bytes": 4096})

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 1000

    async with relay.http.post(relay.hook_url(), data=chunks()) as response:
        assert response.status == 413
        assert "4096 bytes" in (await response.json())["error"]


async def test_each_schema_violation_is_one_detail(relay: Relay) -> None:
    payload = copy.deepcopy(SEED_TAG_PUSH)
    payload["callback_url"] = "not a url"
    payload["push_data"]["pushed_at"] = "yesterday"
    payload["push_data"]["tag"] = "-bad"
    payload["repository"]["star_count"] = -1
    del payload["repository"]["repo_name"]

    status, body = await relay.post(f"/hooks/main/{CHAIN_TOKEN}", payload)

    assert status == 422
    assert body["error"] == "the payload is not a valid Docker Hub push notification"
    assert {d["path"] for d in body["details"]} == {
        "/callback_url", "/push_data/pushed_at", "/push_data/tag",
        "/repository/star_count", "/repository/repo_name"}
    assert len(body["details"]) == 5
    by_path = {d["path"]: d["message"] for d in body["details"]}
    assert by_path["/repository/repo_name"] == "is required"
    assert by_path["/push_data/pushed_at"] == "must be of type number, not string"
    assert await _count(relay) == 0


@pytest.mark.parametrize("url", [
    "http://exa mple.com/hook", "https://[::1/x", "ftp://example.com/hook", "//example.com",
    "http://", "https://example.com/a b", "https://example.com/%zz",
])
async def test_callback_url_format_is_really_checked(relay: Relay, url: str) -> None:
    payload = copy.deepcopy(SEED_TAG_PUSH)
    payload["callback_url"] = url

    status, body = await relay.post(f"/hooks/main/{CHAIN_TOKEN}", payload)

    assert status == 422, body
    assert [d["path"] for d in body["details"]] == ["/callback_url"]


async def test_a_push_needs_a_tag_or_images(relay: Relay) -> None:
    payload = copy.deepcopy(SEED_TAG_PUSH)
    del payload["push_data"]["tag"]

    status, body = await relay.post(f"/hooks/main/{CHAIN_TOKEN}", payload)

    assert status == 422
    assert body["details"] == [{"path": "/push_data",
                                "message": "needs either a tag or a list of images"}]


async def test_missing_top_level_objects_are_named(relay: Relay) -> None:
    status, body = await relay.post(f"/hooks/main/{CHAIN_TOKEN}", {"callback_url": None})

    assert status == 422
    assert {d["path"] for d in body["details"]} == {"/push_data", "/repository",
                                                     "/callback_url"}


async def test_a_repository_outside_the_filter_is_ignored_not_stored(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    target = await start_target()
    relay = await start_relay(chains=[{
        "name": "main", "repositories": ["acme/*", "svendowideit/other"],
        "targets": [{"name": "ci", "url": target.url}]}])

    status, body = await relay.post(f"/hooks/main/{CHAIN_TOKEN}", SEED_TAG_PUSH)

    assert status == 200
    assert "svendowideit/testhook" in body["ignored"]
    assert await _count(relay) == 0

    matching = copy.deepcopy(SEED_TAG_PUSH)
    matching["repository"]["repo_name"] = "acme/api"
    assert (await relay.post(f"/hooks/main/{CHAIN_TOKEN}", matching))[0] == 202


async def test_unknown_routes_and_methods_answer_json(relay: Relay) -> None:
    status, body = await relay.get("/nowhere")
    assert status == 404
    assert body["error"]
    async with relay.http.get(relay.hook_url()) as response:
        assert response.status == 405
        assert (await response.json())["error"] == "method GET is not allowed here"


@pytest.mark.parametrize("where", ["value", "key"])
async def test_a_nul_character_is_refused_on_every_store(relay: Relay, where: str) -> None:
    payload = copy.deepcopy(SEED_TAG_PUSH)
    if where == "value":
        payload["push_data"]["pusher"] = "trusted\u0000builder"
    else:
        payload["repository"]["x\u0000"] = 1

    status, body = await relay.post(f"/hooks/main/{CHAIN_TOKEN}", payload)

    assert status == 400
    assert "U+0000" in body["error"]
    assert await _count(relay) == 0


async def test_an_escaped_backslash_before_u0000_is_just_text(relay: Relay) -> None:
    payload = copy.deepcopy(SEED_TAG_PUSH)
    payload["repository"]["description"] = "a literal \\u0000, not a NUL"

    status, body = await relay.post(f"/hooks/main/{CHAIN_TOKEN}", payload)

    assert status == 202, body
    assert (await relay.delivery(body["id"]))["payload"] == payload
