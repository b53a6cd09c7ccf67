"""Egress through a proxy: every send goes through it, and URLs from outside are still held
to public addresses."""

from __future__ import annotations

import base64
import copy
import io
import json

import pytest
from support import SEED_TAG_PUSH, Reply, StartRelay, StartTarget, Target, wait_until
from support.http_proxy import forward_proxy

PROXY_PASSWORD = "proxy-password-0123456789"


def _reported_to(registry: Target) -> dict[str, object]:
    push = copy.deepcopy(SEED_TAG_PUSH)
    push["callback_url"] = registry.url
    return push


async def test_steps_and_reports_go_through_the_proxy(start_relay: StartRelay,
                                                      start_target: StartTarget,
                                                      log_lines: io.StringIO) -> None:
    ci = await start_target(default=Reply(callback=None))
    registry = await start_target(default=Reply(callback=None))
    async with forward_proxy() as proxy:
        with_credentials = proxy.url.replace("http://", f"http://relay:{PROXY_PASSWORD}@")
        relay = await start_relay(
            {"url": ci.url, "await_callback": False},
            upstream={"allowed_hosts": ["127.0.0.1"]},
            outbound={"proxy": with_credentials, "allow_networks": ["127.0.0.0/8"]})

        delivery = await relay.wait_for(await relay.push(_reported_to(registry)))

        async def reported() -> bool:
            return len(registry.requests) == 1

        await wait_until(reported, what="the upstream report")
    assert delivery["state"] == "success"
    assert [r.url for r in proxy.requests] == [ci.url, registry.url]
    expected = "Basic " + base64.b64encode(f"relay:{PROXY_PASSWORD}".encode()).decode()
    assert {r.proxy_authorization for r in proxy.requests} == {expected}
    assert len(ci.requests) == 1
    assert PROXY_PASSWORD not in log_lines.getvalue() + json.dumps(delivery)


async def test_a_url_from_outside_is_still_refused_a_private_address(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    ci = await start_target(default=Reply(callback=None))
    registry = await start_target(default=Reply(callback=None))
    async with forward_proxy() as proxy:
        relay = await start_relay({"url": ci.url, "await_callback": False},
                                  upstream={"allowed_hosts": ["127.0.0.1"]},
                                  outbound={"proxy": proxy.url})
        delivery_id = await relay.push(_reported_to(registry))

        async def report_settled() -> dict[str, object] | None:
            found = await relay.delivery(delivery_id)
            upstream = found["upstream"]
            return upstream if upstream and upstream["state"] != "sending" else None

        upstream = await wait_until(report_settled, what="the upstream report to settle")

    assert upstream["state"] == "error"
    assert "refused: 127.0.0.1 is a loopback address" in str(upstream["reason"])
    assert [r.url for r in proxy.requests] == [ci.url]  # the step went; the report did not
    assert registry.requests == []


@pytest.mark.parametrize("bypassed", [False, True])
async def test_trust_env_takes_the_proxy_from_the_environment(
        start_relay: StartRelay, start_target: StartTarget, monkeypatch: pytest.MonkeyPatch,
        bypassed: bool) -> None:
    ci = await start_target(default=Reply(callback=None))
    async with forward_proxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1" if bypassed else "example.com")
        relay = await start_relay({"url": ci.url, "await_callback": False},
                                  outbound={"trust_env": True})

        assert (await relay.wait_for(await relay.push()))["state"] == "success"
    assert [r.url for r in proxy.requests] == ([] if bypassed else [ci.url])
    assert len(ci.requests) == 1
