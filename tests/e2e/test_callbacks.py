"""POST /callbacks/{token}: the Docker Hub callback contract, to the character."""

from __future__ import annotations

from typing import Any

import pytest
from support import Relay, Reply, StartRelay, StartTarget, Target


@pytest.fixture
async def silent(start_target: StartTarget) -> Target:
    """A target that answers 200 and leaves calling back to the test."""
    return await start_target(default=Reply(callback=None))


@pytest.fixture
async def relay(start_relay: StartRelay, silent: Target) -> Relay:
    return await start_relay(silent)


async def _awaiting(relay: Relay, target: Target) -> tuple[str, str]:
    delivery_id = await relay.push()
    await relay.wait_for_step(delivery_id, 0, "awaiting_callback")
    return delivery_id, target.requests[-1].json["callback_url"].removeprefix(relay.url)


@pytest.mark.parametrize(("field", "limit", "char"), [
    ("description", 255, "é"), ("description", 255, "🚀"), ("context", 100, "ß"),
    ("context", 100, "漢"),
])
async def test_lengths_are_characters_not_bytes(relay: Relay, silent: Target, field: str,
                                                limit: int, char: str) -> None:
    delivery_id, path = await _awaiting(relay, silent)

    status, body = await relay.post(path, {"state": "success", field: char * (limit + 1)})
    assert status == 422
    assert body["details"] == [{"path": f"/{field}",
                                "message": f"must be at most {limit} characters long "
                                           f"(it has {limit + 1})"}]
    assert (await relay.delivery(delivery_id))["steps"][0]["state"] == "awaiting_callback"

    status, body = await relay.post(path, {"state": "success", field: char * limit})
    assert status == 200, body
    done = await relay.wait_for(delivery_id)
    assert done["steps"][0]["callback"][field] == char * limit


@pytest.mark.parametrize(("callback", "paths"), [
    ({}, ["/state"]),
    ({"state": "pending"}, ["/state"]),
    ({"state": "SUCCESS"}, ["/state"]),
    ({"state": "success", "target_url": "/results/1"}, ["/target_url"]),
    ({"state": "success", "target_url": "mailto:ci@example.com"}, ["/target_url"]),
    ({"state": "success", "description": 42}, ["/description"]),
    ({"state": 1, "context": ["x"]}, ["/context", "/state"]),
])
async def test_invalid_callbacks_are_422_and_move_nothing(
        relay: Relay, silent: Target, callback: dict[str, Any], paths: list[str]) -> None:
    delivery_id, path = await _awaiting(relay, silent)

    status, body = await relay.post(path, callback)

    assert status == 422
    assert [d["path"] for d in body["details"]] == paths
    found = await relay.delivery(delivery_id)
    assert found["steps"][0]["state"] == "awaiting_callback"
    assert found["steps"][0]["callback"] is None


async def test_a_malformed_callback_is_400(relay: Relay, silent: Target) -> None:
    _, path = await _awaiting(relay, silent)

    assert (await relay.post(path, data=b"state=success"))[0] == 400
    assert (await relay.post(path, data=b'["success"]'))[0] == 400


async def test_an_unknown_token_is_404(relay: Relay) -> None:
    status, body = await relay.post("/callbacks/not-a-real-token", {"state": "success"})

    assert status == 404
    assert body["error"] == "no step has this callback URL"


async def test_a_full_callback_is_kept_in_the_history(relay: Relay, silent: Target) -> None:
    delivery_id, path = await _awaiting(relay, silent)
    callback = {"state": "success", "description": "387 tests PASSED",
                "context": "Continuous integration by Acme CI",
                "target_url": "https://ci.acme.com/results/afd339c1c3d27",
                "extra": "ignored but harmless"}

    status, body = await relay.post(path, callback)

    assert status == 200
    assert body == {"delivery": delivery_id, "step": 0, "state": "success"}
    kept = (await relay.wait_for(delivery_id))["steps"][0]["callback"]
    assert {k: kept[k] for k in ("state", "description", "context", "target_url")} == {
        k: callback[k] for k in ("state", "description", "context", "target_url")}
    assert kept["received_at"].endswith("Z")
