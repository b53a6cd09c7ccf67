"""A target's own headers, method and body, on real sends: every attempt, signed as sent, and
no header value anywhere relay shows or logs anything."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import standardwebhooks
from support import SIGNING_SECRET, Reply, StartRelay, StartTarget, minimal_config

HEADER_SECRET = "header-secret-value-0123456789"
FAST = {"backoff_initial": "10ms", "backoff_max": "20ms"}


async def test_headers_go_with_every_attempt_and_are_shown_nowhere(
        start_relay: StartRelay, start_target: StartTarget, log_lines: io.StringIO,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_TEST_HEADER", HEADER_SECRET)
    target = await start_target(Reply(503, callback=None), default=Reply(callback=None))
    relay = await start_relay({
        "url": target.url, "await_callback": False, **FAST,
        "headers": {"Authorization": "Bearer ${RELAY_TEST_HEADER}", "X-Team": "payments"}})

    delivery = await relay.wait_for(await relay.push())

    assert delivery["state"] == "success"
    assert [r.headers["Authorization"] for r in target.requests] == [
        f"Bearer {HEADER_SECRET}"] * 2
    assert {r.headers["X-Team"] for r in target.requests} == {"payments"}
    assert {r.headers["Content-Type"] for r in target.requests} == {"application/json"}
    shown = [json.dumps(delivery), log_lines.getvalue(), json.dumps(
        (await relay.get("/rest/projects"))[1])]
    async with relay.http.get(relay.url + "/metrics") as answer:
        shown.append(await answer.text())
    for text in shown:
        assert HEADER_SECRET not in text
        assert "payments" not in text  # every header value is a secret, not just tokens


async def test_put_with_a_shaped_body_is_signed_as_sent(start_relay: StartRelay,
                                                       start_target: StartTarget) -> None:
    target = await start_target(default=Reply(callback=None))
    relay = await start_relay({
        "url": target.url, "await_callback": False, "method": "PUT", "secret": SIGNING_SECRET,
        "body": "{image: join(':', [payload.repository.repo_name, payload.push_data.tag]),"
                " delivery: delivery.id, step: step, chain: delivery.chain,"
                " cb: callback_url, same: callback_url == payload.callback_url}"})

    delivery_id = await relay.push()
    await relay.wait_for(delivery_id)

    (sent,) = target.requests
    headers = {k.lower(): v for k, v in sent.headers.items()}
    assert standardwebhooks.Webhook(SIGNING_SECRET).verify(sent.body, headers) == sent.json
    assert sent.json["image"] == "svendowideit/testhook:latest"
    assert sent.json["delivery"] == delivery_id
    assert sent.json["step"] == {"index": 0, "target": "t0"}
    assert sent.json["chain"] == "main"
    assert sent.json["cb"].startswith(f"{relay.url}/callbacks/")
    assert sent.json["same"] is True
    assert sent.method == "PUT"


@pytest.mark.parametrize(("body", "reason"), [
    ("abs(payload.push_data.tag)", "the target's body expression failed: In function abs(),"
                                   " invalid type for value: latest"),
    ("payload.no_such_key", "the target's body expression yields null for this delivery: "
                            "nothing to send"),
])
async def test_a_body_that_fails_for_a_delivery_is_an_error_at_once(
        start_relay: StartRelay, start_target: StartTarget, body: str, reason: str) -> None:
    target = await start_target(default=Reply(callback=None))
    relay = await start_relay({"url": target.url, "body": body, "attempts": 5, **FAST})

    delivery = await relay.wait_for(await relay.push())

    assert delivery["state"] == "error"
    (step,) = delivery["steps"]
    assert step["state"] == "error"
    assert step["reason"].startswith(reason)
    assert len(step["attempts"]) == 1  # not retried
    assert target.requests == []


def test_check_config_names_a_bad_body(tmp_path: Path) -> None:
    broken = tmp_path / "relay.toml"
    broken.write_text(minimal_config().replace(
        'url = "http://127.0.0.1:9001/hook"',
        'url = "http://127.0.0.1:9001/hook"\n  body = "{event: payload.push_data.tag"'))

    result = subprocess.run([sys.executable, "-m", "relay", "check-config", "--config",
                             str(broken)], capture_output=True, text=True, timeout=30)

    assert result.returncode == 2
    assert "chain[0].target[0].body: not a JMESPath expression: it ends too early" in \
        result.stderr
