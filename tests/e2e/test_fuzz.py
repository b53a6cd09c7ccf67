"""Fuzzing the running app: generated pushes and callbacks, valid and hostile.

Never a 5xx; never an invalid document stored; every valid push stored exactly once (counted
through /history); every valid callback moves its step, and nothing else does. Hypothesis
runs in a thread and calls the relay on the test's event loop. The budget is small in
`make test` and large in `make fuzz` (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import jsonschema_rs
from hypothesis import example, given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from support import SEED_TAG_PUSH, Relay, Reply, StartRelay, StartTarget, Target, wait_until
from support.fuzz import bodies, canonical, expected, valid_callbacks, valid_pushes

from relay import schemas

T = TypeVar("T")
MAX_BODY = 8192


def _on_loop(loop: asyncio.AbstractEventLoop) -> Callable[[Awaitable[T]], T]:
    def call(awaitable: Awaitable[T]) -> T:
        async def run() -> T:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout=60)

    return call


async def _all_deliveries(relay: Relay) -> list[dict[str, Any]]:
    """Every delivery in the history, page by page, in full."""
    found = []
    cursor = None
    while True:
        status, page = await relay.get("/history?limit=500"
                                       + (f"&cursor={cursor}" if cursor else ""))
        assert status == 200
        found += [await relay.delivery(item["id"]) for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return found


async def _stored_payloads(relay: Relay) -> Counter[str]:
    return Counter(canonical(delivery["payload"]) for delivery in await _all_deliveries(relay))


async def test_generated_pushes(start_relay: StartRelay, start_target: StartTarget) -> None:
    target = await start_target(default=Reply(callback=None))
    relay = await start_relay(chains=[{"name": "main", "concurrency": 1000, "targets": [
        {"name": "ci", "url": target.url, "await_callback": False}]}],
        server={"max_body_bytes": MAX_BODY})
    call = _on_loop(asyncio.get_running_loop())
    path = relay.hook_url().removeprefix(relay.url)
    sent: Counter[str] = Counter()

    @given(body=bodies(valid_pushes))
    @example(body=json.dumps(SEED_TAG_PUSH).encode())  # one valid push, whatever is drawn
    def push(body: bytes) -> None:
        verdict, detail = expected(body, "push", MAX_BODY)
        status, answer = call(relay.post(path, data=body))
        assert status < 500, (status, answer, body[:300])
        if verdict == "valid":
            assert status == 202, (answer, body[:300])
            sent[canonical(detail)] += 1
        else:
            assert status == detail, (status, answer, body[:300])
            assert set(answer) == {"error", "details"}

    await asyncio.to_thread(push)

    assert sum(sent.values()) > 0, "no valid push was generated: the test proves nothing"
    assert await _stored_payloads(relay) == sent


async def _awaiting_callback(relay: Relay, target: Target) -> str:
    count = len(target.requests)
    delivery_id = await relay.push()

    async def sent() -> bool:
        return len(target.requests) > count

    await wait_until(sent, what="the target to receive the push")
    await relay.wait_for_step(delivery_id, 0, "awaiting_callback")
    return str(target.requests[-1].json["callback_url"]).removeprefix(relay.url)


async def test_generated_callbacks(start_relay: StartRelay, start_target: StartTarget) -> None:
    target = await start_target(default=Reply(callback=None))
    relay = await start_relay(chains=[{"name": "main", "concurrency": 1000, "targets": [
        {"name": "ci", "url": target.url}]}], server={"max_body_bytes": MAX_BODY})
    call = _on_loop(asyncio.get_running_loop())
    answered: dict[str, dict[str, Any]] = {}
    current = [await _awaiting_callback(relay, target)]

    @given(body=bodies(valid_callbacks), to_unknown=st.booleans())
    @example(body=b'{"state": "success"}', to_unknown=False)
    def callback(body: bytes, to_unknown: bool) -> None:
        verdict, detail = expected(body, "callback", MAX_BODY)
        path = "/callbacks/not-a-token-of-relay" if to_unknown else current[0]
        status, answer = call(relay.post(path, data=body))
        assert status < 500, (status, answer, body[:300])
        if verdict == "valid":
            assert status == (404 if to_unknown else 200), (answer, body[:300])
            if not to_unknown:
                answered[path] = detail
                assert call(relay.post(path, data=body))[0] == 409
                current[0] = call(_awaiting_callback(relay, target))
        else:
            assert status in (detail, 404) if to_unknown else status == detail, \
                (status, answer, body[:300])

    await asyncio.to_thread(callback)

    assert answered, "no valid callback was generated: the test proves nothing"
    callbacks: dict[str, int] = {}
    for delivery in await _all_deliveries(relay):
        step = delivery["steps"][0]
        callbacks[step["state"]] = callbacks.get(step["state"], 0) + 1
        if step["callback"] is not None:
            sent = answered.pop(_path_of(step, target, relay))
            assert step["state"] == sent["state"]
            for key in ("description", "context", "target_url"):
                assert step["callback"][key] == sent.get(key)
        else:
            assert step["state"] == "awaiting_callback"
    assert answered == {}
    assert callbacks.get("awaiting_callback") == 1


def _path_of(step: dict[str, Any], target: Target, relay: Relay) -> str:
    (request,) = [r for r in target.requests if r.headers["webhook-id"] == step["webhook_id"]]
    return str(request.json["callback_url"]).removeprefix(relay.url)


# -- the fast check and the reference agree -------------------------------------------------


def _agree(name: str, document: Any) -> None:
    reference = Draft202012Validator(schemas.schema(name),
                                     format_checker=Draft202012Validator.FORMAT_CHECKER)
    fast = jsonschema_rs.validator_for(schemas.schema(name), validate_formats=True)
    assert fast.is_valid(document) == reference.is_valid(document), \
        json.dumps(document, ensure_ascii=False)[:500]
    assert (schemas.validate(name, document) == []) == reference.is_valid(document)


@given(document=st.one_of(valid_pushes, bodies(valid_pushes).map(
    lambda body: json.loads(body) if _json_object(body) else {})))
def test_jsonschema_rs_agrees_with_jsonschema_on_pushes(document: Any) -> None:
    _agree("push", document)


@given(document=st.one_of(valid_callbacks, bodies(valid_callbacks).map(
    lambda body: json.loads(body) if _json_object(body) else {})))
def test_jsonschema_rs_agrees_with_jsonschema_on_callbacks(document: Any) -> None:
    _agree("callback", document)


def _json_object(body: bytes) -> bool:
    try:
        return isinstance(json.loads(body), dict)
    except (ValueError, RecursionError):
        return False
