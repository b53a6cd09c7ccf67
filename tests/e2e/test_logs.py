"""Logs: one JSON event per intake, attempt, callback and chain end; no secret in any line."""

from __future__ import annotations

import io
import json
from typing import Any

from support import (
    ADMIN_TOKEN,
    CHAIN_TOKEN,
    SIGNING_SECRET,
    Reply,
    StartRelay,
    StartTarget,
    wait_until,
)

from relay import redaction


def _events(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


async def test_a_chain_run_logs_each_step_of_the_way(start_relay: StartRelay,
                                                     start_target: StartTarget,
                                                     log_lines: io.StringIO) -> None:
    ci = await start_target(Reply(503, callback=None), Reply(description="ok"))
    deploy = await start_target()
    relay = await start_relay({"url": ci.url, "backoff_initial": 0.01, "backoff_max": 0.02,
                               "secret": SIGNING_SECRET}, deploy)

    delivery_id = await relay.push()
    await relay.wait_for(delivery_id)

    # A callback can end the chain before relay logs the attempt that it answered.
    async def all_logged() -> list[dict[str, Any]] | None:
        events = _events(log_lines)
        names = [e["event"] for e in events]
        return events if "chain.finished" in names and names.count("attempt") >= 3 else None

    events = await wait_until(all_logged, what="the chain.finished and three attempt events")
    mine = [e for e in events if e.get("delivery") == delivery_id]
    names = [e["event"] for e in mine]
    assert names.count("push.accepted") == 1
    assert names.count("attempt") == 3
    assert names.count("callback") == 2
    assert names.count("chain.finished") == 1
    for event in mine:
        assert event["chain"] == "main"
        assert event["timestamp"].endswith("Z")
    attempts = [e for e in mine if e["event"] == "attempt"]
    assert [(e["step"], e["target"], e["status"]) for e in attempts] == [
        (0, "t0", 503), (0, "t0", 200), (1, "t1", 200)]
    # The callback may be in before relay records the 200 it answers.
    assert attempts[0]["outcome"] == "retry"
    assert {e["outcome"] for e in attempts[1:]} <= {"awaiting_callback", "already success"}
    assert next(e for e in mine if e["event"] == "chain.finished")["state"] == "success"

    callback_tokens = [r.json["callback_url"].rsplit("/", 1)[1]
                       for r in ci.requests + deploy.requests]
    text = log_lines.getvalue()
    for secret in [ADMIN_TOKEN, CHAIN_TOKEN, SIGNING_SECRET, *callback_tokens]:
        assert secret not in text


def test_the_redactor_scrubs_known_secrets_and_relays_own_urls() -> None:
    redactor = redaction.Redactor(["s3cret-admin-token-123"])
    event = redactor(None, "info", {
        "event": "x",
        "url": "http://relay/hooks/main/abcdefabcdefabcdef?x=1",
        "callback": "http://relay/callbacks/Zm9vYmFyYmF6cXV4",
        "auth": "Bearer s3cret-admin-token-123",
        "nested": {"list": ["s3cret-admin-token-123", "whsec_QUJDREVGR0g="]},
        "count": 3,
    })

    assert event == {
        "event": "x",
        "url": "http://relay/hooks/main/[redacted]?x=1",
        "callback": "http://relay/callbacks/[redacted]",
        "auth": "Bearer [redacted]",
        "nested": {"list": ["[redacted]", "[redacted]"]},
        "count": 3,
    }
