"""No secret leaks: a full run, then every log line and every HTTP answer is searched for
every secret relay knows (tokens, signing secrets, callback tokens, ${ENV} values)."""

from __future__ import annotations

import copy
import io
import json
import logging
from typing import Any

import aiohttp
import pytest
from support import (
    ADMIN_TOKEN,
    CHAIN_TOKEN,
    SEED_TAG_PUSH,
    SIGNING_SECRET,
    Relay,
    Reply,
    StartRelay,
    StartTarget,
    Target,
    wait_until,
)

from relay import logs

OLD_TOKEN = "old-chain-token-still-accepted-42"
OTHER_TOKEN = "other-chain-token-0123456789abc"
GONE_TOKEN = "gone-chain-token-0123456789abcd"
ENV_SIGNING_SECRET = "whsec_c2lnbmluZy1zZWNyZXQtZnJvbS10aGUtZW52aXJvbm1lbnQ="
ENV_URL_TOKEN = "url-token-from-the-environment-77"
URL_PASSWORD = "password-in-the-target-url-99"
FAST = {"backoff_initial": 0.02, "backoff_max": 0.1}


class Transcript:
    """Every HTTP answer relay gives in the test, status line, headers and body."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.answers: list[str] = []

    async def call(self, method: str, path: str, body: Any = None, *, data: bytes | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        if data is None and body is not None:
            data = json.dumps(body).encode()
        async with self.relay.http.request(method, self.relay.url + path, data=data,
                                           headers=headers) as response:
            raw = await response.read()
            self.answers.append(f"{response.status} {response.reason}\n{response.headers}\n"
                                + raw.decode("utf-8", "replace"))
            try:
                return response.status, json.loads(raw)
            except ValueError:
                return response.status, raw

    async def admin(self, method: str, path: str) -> tuple[int, Any]:
        return await self.call(method, path, headers=self.relay.admin)


def _callback_path(target: Target, relay: Relay, index: int = -1) -> str:
    return str(target.requests[index].json["callback_url"]).removeprefix(relay.url)


async def _received(target: Target, count: int) -> None:
    async def enough() -> bool:
        return len(target.requests) >= count

    await wait_until(enough, what=f"{count} requests at {target.url}")


async def test_a_full_run_leaks_no_secret(start_relay: StartRelay, start_target: StartTarget,
                                          log_lines: io.StringIO,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_LEAK_SIGNING", ENV_SIGNING_SECRET)
    monkeypatch.setenv("RELAY_LEAK_URL_TOKEN", ENV_URL_TOKEN)
    ci = await start_target(Reply(503, callback=None), default=Reply(callback=None))
    deploy = await start_target(default=Reply(callback=None))
    rejecting = await start_target(default=Reply(400, callback=None))
    registry = await start_target(default=Reply(callback=None))
    ci_url = ci.url.replace("http://", f"http://ci:{URL_PASSWORD}@") + \
        "?token=${RELAY_LEAK_URL_TOKEN}&build=1"
    relay = await start_relay(
        chains=[
            {"name": "main", "token": [CHAIN_TOKEN, OLD_TOKEN], "concurrency": 5,
             "order": "chain", "targets": [
                {"name": "ci", "url": ci_url, "secret": SIGNING_SECRET, **FAST},
                {"name": "deploy", "url": deploy.url, "secret": "${RELAY_LEAK_SIGNING}"}]},
            {"name": "other", "token": OTHER_TOKEN, "targets": [
                {"name": "picky", "url": rejecting.url}]},
            {"name": "gone", "token": GONE_TOKEN, "targets": [
                {"name": "nowhere", "url": "http://127.0.0.1:9/hook", "attempts": 2, **FAST}]},
        ],
        upstream={"allowed_hosts": ["127.0.0.1"]},
        outbound={"allow_networks": ["127.0.0.0/8"]},
        server={"max_body_bytes": 4096})
    http = Transcript(relay)
    reported = copy.deepcopy(SEED_TAG_PUSH)
    reported["callback_url"] = registry.url
    elsewhere = copy.deepcopy(SEED_TAG_PUSH)
    elsewhere["callback_url"] = "https://registry.example.org/hook/abc"

    # Pushes: both token forms, the old token of the rotation, and every refusal.
    status, first = await http.call("POST", f"/hooks/main/{CHAIN_TOKEN}", reported)
    assert status == 202
    status, second = await http.call("POST", "/hooks/main", SEED_TAG_PUSH,
                                     headers={"Authorization": f"Bearer {OLD_TOKEN}"})
    assert status == 202
    refusals = [
        await http.call("POST", f"/hooks/main/{CHAIN_TOKEN}x", SEED_TAG_PUSH),
        await http.call("POST", f"/hooks/nope/{CHAIN_TOKEN}", SEED_TAG_PUSH),
        await http.call("POST", "/hooks/main", SEED_TAG_PUSH,
                        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}),
        await http.call("POST", f"/hooks/main/{CHAIN_TOKEN}", data=b"{\"a\": " + b"["),
        await http.call("POST", f"/hooks/main/{CHAIN_TOKEN}", {"push_data": CHAIN_TOKEN}),
        await http.call("POST", f"/hooks/main/{CHAIN_TOKEN}", data=b"x" * 5000),
        await http.call("GET", f"/hooks/main/{CHAIN_TOKEN}"),
        await http.call("GET", "/history", headers={"Authorization": f"Bearer {CHAIN_TOKEN}"}),
        await http.call("GET", "/history", headers={"Authorization": f"Basic {ADMIN_TOKEN}"}),
        await http.call("POST", f"/history/{first['id']}/redeliver",
                        headers={"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"}),
    ]
    assert [status for status, _ in refusals] == [404, 404, 404, 400, 422, 413, 405, 401,
                                                  401, 401]
    other = (await http.call("POST", f"/hooks/other/{OTHER_TOKEN}", elsewhere))[1]["id"]
    gone = (await http.call("POST", "/hooks/gone", SEED_TAG_PUSH,
                            headers={"Authorization": f"Bearer {GONE_TOKEN}"}))[1]["id"]

    # Callbacks: refused ones, then the verdicts, then a late repeat and a made-up token.
    await _received(ci, 3)  # the first push's 503 and retry, the second push
    for index in (1, 2):
        path = _callback_path(ci, relay, index)
        assert (await http.call("POST", path, {"state": "done"}))[0] == 422
        assert (await http.call("POST", path, data=b"state=success"))[0] == 400
        assert (await http.call("POST", path, {"state": "success"}))[0] == 200
        assert (await http.call("POST", path, {"state": "success"}))[0] == 409
    assert (await http.call("POST", "/callbacks/made-up-token-0123456789",
                            {"state": "success"}))[0] == 404
    await _received(deploy, 2)
    deploy_paths = [_callback_path(deploy, relay, i) for i in (0, 1)]
    by_delivery = {(await http.call("POST", path, {"state": state, "description": "done"}))[1][
        "delivery"]: state for path, state in zip(deploy_paths, ["failure", "success"],
                                                  strict=True)}
    assert set(by_delivery) == {first["id"], second["id"]}

    # A redelivery of the first push, walked to its end.
    status, again = await http.admin("POST", f"/history/{first['id']}/redeliver")
    assert status == 202
    await _received(ci, 4)
    assert (await http.call("POST", _callback_path(ci, relay), {"state": "success"}))[0] == 200
    await _received(deploy, 3)
    assert (await http.call("POST", _callback_path(deploy, relay), {"state": "error"}))[0] \
        == 200

    ids = [first["id"], second["id"], other, gone, again["id"]]
    for delivery_id in ids:
        await relay.wait_for(delivery_id)
    await _received(registry, 1)

    async def report_recorded() -> bool:
        found = await relay.delivery(first["id"])
        return bool(found["upstream"] and found["upstream"]["state"] == "success")

    await wait_until(report_recorded, what="the upstream report in the history")

    # Everything an operator can read back.
    status, listing = await http.admin("GET", "/history?limit=500")
    assert status == 200
    assert {item["id"] for item in listing["items"]} == set(ids)
    shown = {delivery_id: (await http.admin("GET", f"/history/{delivery_id}"))[1]
             for delivery_id in ids}
    assert {delivery_id: shown[delivery_id]["state"] for delivery_id in by_delivery} == \
        by_delivery
    assert shown[other]["state"] == "error"
    assert shown[gone]["state"] == "error"
    assert shown[first["id"]]["steps"][0]["url"] == \
        ci.url + "?token=[redacted]&build=1"
    assert shown[other]["upstream"]["state"] == "skipped"

    # The run did what it should, and logged it: a search of empty logs would prove nothing.
    events = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    names = {event["event"] for event in events}
    assert {"push.accepted", "push.rejected", "push.redelivered", "attempt", "callback",
            "chain.finished", "notice.upstream"} <= names
    assert any(e["event"] == "attempt" and e["status"] == 503 for e in events)
    assert any(e["event"] == "attempt" and e["status"] is None for e in events)
    callback_tokens = {r.json["callback_url"].rsplit("/", 1)[1]
                       for target in (ci, deploy, rejecting) for r in target.requests}
    assert len(callback_tokens) == 7  # ci: 3 (a retry keeps its URL), deploy: 3, picky: 1
    secrets = {ADMIN_TOKEN, CHAIN_TOKEN, OLD_TOKEN, OTHER_TOKEN, GONE_TOKEN, SIGNING_SECRET,
               SIGNING_SECRET.removeprefix("whsec_"), ENV_SIGNING_SECRET,
               ENV_SIGNING_SECRET.removeprefix("whsec_"), ENV_URL_TOKEN, URL_PASSWORD,
               *callback_tokens}
    logged = log_lines.getvalue()
    answered = "\n".join(http.answers)
    assert len(http.answers) >= 34
    for secret in secrets:
        assert secret not in logged, f"a secret is in the logs: {secret}"
        assert secret not in answered, f"a secret is in an HTTP answer: {secret}"


def test_library_log_lines_are_redacted_too() -> None:
    buffer = io.StringIO()
    secret = "library-secret-0123456789"
    logs.configure([secret], stream=buffer, json=True, level="info")
    library = logging.getLogger("aiohttp.server")

    library.info("quiet: relay's own events say what happens")
    library.error("failed for http://relay/callbacks/%s with %s", "cb-token-123", secret)
    try:
        raise aiohttp.InvalidURL(f"http://relay/hooks/main/{secret}")
    except aiohttp.InvalidURL:
        logging.getLogger("asyncio").exception("task failed")

    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert [line["event"] for line in lines] == [
        "failed for http://relay/callbacks/[redacted] with [redacted]", "task failed"]
    assert lines[0]["logger"] == "aiohttp.server"
    assert lines[0]["level"] == "error"
    assert "InvalidURL" in lines[1]["exception"]
    assert secret not in buffer.getvalue()
    assert "cb-token-123" not in buffer.getvalue()
