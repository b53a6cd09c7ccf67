"""Delivery guarantees against real targets: retries, timeouts, signing, the upstream report."""

from __future__ import annotations

import copy
import json
from typing import Any

import standardwebhooks
from support import (
    SEED_TAG_PUSH,
    SIGNING_SECRET,
    Reply,
    StartRelay,
    StartTarget,
    Target,
    wait_until,
)

FAST = {"backoff_initial": 0.02, "backoff_max": 0.1}


async def test_a_flaky_target_is_retried_under_one_webhook_id(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    flaky = await start_target(Reply(503, callback=None), Reply(503, callback=None), Reply())
    relay = await start_relay({"url": flaky.url, **FAST})

    delivery_id = await relay.push()
    assert (await relay.wait_for(delivery_id))["state"] == "success"
    done = await relay.wait_for_attempts(delivery_id, 0, 3)

    assert [a["status"] for a in done["steps"][0]["attempts"]] == [503, 503, 200]
    assert len(flaky.requests) == 3
    assert len({r.headers["webhook-id"] for r in flaky.requests}) == 1
    assert done["steps"][0]["webhook_id"] == flaky.requests[0].headers["webhook-id"]


async def test_an_unreachable_target_is_retried_then_the_step_is_an_error(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    relay = await start_relay({"url": "http://127.0.0.1:9/hook", "attempts": 3, **FAST},
                              await start_target())

    done = await relay.wait_for(await relay.push())

    assert done["state"] == "error"
    first, second = done["steps"]
    assert [a["status"] for a in first["attempts"]] == [None, None, None]
    assert all("connection refused" in a["error"] for a in first["attempts"])
    assert first["reason"].startswith("gave up after 3 attempts")
    assert second["state"] == "skipped"


async def test_a_4xx_is_final_and_not_retried(start_relay: StartRelay,
                                              start_target: StartTarget) -> None:
    rejecting = await start_target(default=Reply(400, callback=None))
    relay = await start_relay({"url": rejecting.url, **FAST})

    done = await relay.wait_for(await relay.push())

    assert done["state"] == "error"
    assert [a["status"] for a in done["steps"][0]["attempts"]] == [400]
    assert done["steps"][0]["reason"] == "target answered HTTP 400"
    assert len(rejecting.requests) == 1


async def test_retry_after_is_honoured(start_relay: StartRelay,
                                       start_target: StartTarget) -> None:
    busy = await start_target(Reply(429, callback=None, headers={"Retry-After": "1"}), Reply())
    relay = await start_relay({"url": busy.url, **FAST})

    done = await relay.wait_for(await relay.push())

    assert done["state"] == "success"
    assert len(busy.requests) == 2
    first, second = busy.requests
    # Without Retry-After the backoff would have waited at most 0.02 s.
    assert second.at - first.at >= 0.95


async def test_a_slow_target_times_out_and_is_retried(start_relay: StartRelay,
                                                      start_target: StartTarget) -> None:
    slow = await start_target(Reply(delay=4.0, callback=None), Reply())
    relay = await start_relay({"url": slow.url, "timeout": 1, **FAST})

    delivery_id = await relay.push()
    assert (await relay.wait_for(delivery_id))["state"] == "success"
    done = await relay.wait_for_attempts(delivery_id, 0, 2)

    timed_out, ok = done["steps"][0]["attempts"]
    assert timed_out["status"] is None
    assert timed_out["error"] == "no answer within 1 s"
    assert ok["status"] == 200


async def test_no_callback_in_time_is_an_error_that_breaks_the_chain(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    silent = await start_target(default=Reply(callback=None))
    later = await start_target()
    relay = await start_relay({"url": silent.url, "callback_timeout": 0.3}, later)

    done = await relay.wait_for(await relay.push())

    assert done["state"] == "error"
    assert done["steps"][0]["state"] == "error"
    assert done["steps"][0]["reason"] == "no callback within 0.3 s"
    assert done["steps"][1]["state"] == "skipped"
    assert later.requests == []
    # The callback URL is dead once the step ended.
    path = silent.requests[0].json["callback_url"].removeprefix(relay.url)
    assert (await relay.post(path, {"state": "success"}))[0] == 409


async def test_signed_targets_verify_with_standard_webhooks(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    old_secret = "whsec_" + "b2xkLXNlY3JldC1vbGQtc2VjcmV0LTAxMjM0NTY3OA=="
    signed = await start_target()
    rotating = await start_target()
    unsigned = await start_target()
    relay = await start_relay({"url": signed.url, "secret": SIGNING_SECRET},
                              {"url": rotating.url, "secret": [SIGNING_SECRET, old_secret]},
                              unsigned)

    assert (await relay.wait_for(await relay.push()))["state"] == "success"

    for target in (signed, rotating):
        sent = target.requests[0]
        headers = {k.lower(): v for k, v in sent.headers.items()}
        verified = standardwebhooks.Webhook(SIGNING_SECRET).verify(sent.body, headers)
        assert verified == json.loads(sent.body)
    rotated = {k.lower(): v for k, v in rotating.requests[0].headers.items()}
    assert len(rotated["webhook-signature"].split(" ")) == 2
    standardwebhooks.Webhook(old_secret).verify(rotating.requests[0].body, rotated)
    assert "webhook-signature" not in {k.lower() for k in unsigned.requests[0].headers}


async def test_the_chain_outcome_is_reported_upstream(start_relay: StartRelay,
                                                      start_target: StartTarget) -> None:
    upstream = await start_target(Reply(callback=None))
    ci = await start_target(Reply(callback="failure", description="x" * 255))
    relay = await start_relay(ci, upstream={"allowed_hosts": ["127.0.0.1"]},
                              outbound={"allow_networks": ["127.0.0.0/8"]})
    payload = copy.deepcopy(SEED_TAG_PUSH)
    payload["callback_url"] = upstream.url

    delivery_id = await relay.push(payload)
    await relay.wait_for(delivery_id)

    async def reported() -> dict[str, Any] | None:
        found = await relay.delivery(delivery_id)
        return found if (found["upstream"] or {}).get("state") == "success" else None

    done = await wait_until(reported, what="the upstream report")
    assert done["upstream"]["url"] == upstream.url
    assert done["upstream"]["status"] == 200
    report = upstream.requests[0].json
    assert report["state"] == "failure"
    assert report["target_url"] == f"{relay.url}/history/{delivery_id}"
    assert len(report["description"]) == 255
    assert report["description"].endswith("…")
    assert len(report["context"]) <= 100
    assert upstream.requests[0].headers["webhook-id"] == done["upstream"]["webhook_id"]


async def test_no_report_goes_to_a_host_that_is_not_allowed(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    upstream = await start_target()
    relay = await start_relay(await start_target())
    payload = copy.deepcopy(SEED_TAG_PUSH)
    payload["callback_url"] = upstream.url

    done = await relay.wait_for(await relay.push(payload))

    assert done["upstream"]["state"] == "skipped"
    assert done["upstream"]["reason"] == ("not sent: host 127.0.0.1 is not in [upstream] "
                                          "allowed_hosts")
    assert done["upstream"]["attempts"] == []
    assert upstream.requests == []


async def test_a_slow_chain_does_not_hold_up_another(start_relay: StartRelay,
                                                     start_target: StartTarget) -> None:
    slow: Target = await start_target(default=Reply(delay=3.0))
    fast = await start_target()
    relay = await start_relay(chains=[
        {"name": "slow", "targets": [{"name": "t", "url": slow.url}]},
        {"name": "main", "targets": [{"name": "t", "url": fast.url}]},
    ])

    slow_id = await relay.push(chain="slow")
    fast_id = await relay.push(chain="main")

    assert (await relay.wait_for(fast_id, timeout=2.5))["state"] == "success"
    assert (await relay.delivery(slow_id))["state"] == "running"
