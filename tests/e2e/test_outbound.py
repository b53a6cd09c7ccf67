"""URLs from outside reach only public addresses, checked on the addresses really connected."""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

import aiohttp
import pytest
from support import SEED_TAG_PUSH, Relay, Reply, StartRelay, StartTarget, Target, wait_until
from support.fake_dns import FakeDNS

from relay.engine import outbound


async def _post(connector: aiohttp.TCPConnector, url: str) -> int:
    async with aiohttp.ClientSession(connector=connector) as session, session.post(
            url, json={}) as response:
        return response.status


async def test_a_rebound_name_is_refused_at_connect_time(start_target: StartTarget) -> None:
    """Whatever a name resolved to before, the connection goes only where the lookup made at
    connect time allows: here the name now points at loopback, where a target listens."""
    target = await start_target(default=Reply(callback=None))
    port = target.url.split(":")[2].split("/")[0]
    dns = FakeDNS({"rebound.test": ["127.0.0.1"]})

    with pytest.raises(aiohttp.ClientConnectorError) as raised:
        await _post(outbound.connector(outbound.AddressPolicy(), 1, dns),
                    f"http://rebound.test:{port}/hook")
    assert isinstance(raised.value.os_error, outbound.Refused)
    assert dns.lookups == 1
    assert target.requests == []

    allowed = outbound.AddressPolicy([ipaddress.ip_network("127.0.0.1/32")])
    assert await _post(outbound.connector(allowed, 1, dns),
                       f"http://rebound.test:{port}/hook") == 200
    assert len(target.requests) == 1


async def test_ip_literals_are_checked_by_the_socket_factory(start_target: StartTarget
                                                             ) -> None:
    target = await start_target()
    dns = FakeDNS({})

    with pytest.raises(aiohttp.ClientConnectorError) as raised:
        await _post(outbound.connector(outbound.AddressPolicy(), 1, dns), target.url)

    assert str(raised.value.os_error) == "127.0.0.1 is a loopback address"
    assert dns.lookups == 0  # literals never reach a resolver
    assert target.requests == []


async def _report_to(relay: Relay, callback_url: str) -> dict[str, Any]:
    payload = copy.deepcopy(SEED_TAG_PUSH)
    payload["callback_url"] = callback_url
    delivery_id = await relay.push(payload)

    async def reported() -> dict[str, Any] | None:
        found = await relay.delivery(delivery_id)
        upstream = found["upstream"] or {}
        return found if upstream.get("state") in ("success", "error", "skipped") else None

    return await wait_until(reported, what="the upstream report to settle")


@pytest.mark.parametrize(("host", "reason"), [
    ("localhost", "localhost resolves to "),
    ("127.0.0.1", "127.0.0.1 is a loopback address"),
    ("[::ffff:127.0.0.1]", "::ffff:"),
])
async def test_an_upstream_report_to_a_loopback_address_is_refused(
        start_relay: StartRelay, start_target: StartTarget, host: str, reason: str) -> None:
    registry: Target = await start_target()
    relay = await start_relay(await start_target(),
                              upstream={"allowed_hosts": [host.strip("[]")]})
    port = registry.url.split(":")[-1].split("/")[0]

    done = await _report_to(relay, f"http://{host}:{port}/hook")

    upstream = done["upstream"]
    assert upstream["state"] == "error"
    (attempt,) = upstream["attempts"]  # a refusal is final: no retries
    assert attempt["status"] is None
    assert attempt["error"].startswith(f"refused: {reason}")
    assert "loopback address" in attempt["error"]
    assert attempt["error"].endswith("relay calls only public addresses for URLs from outside"
                                     " ([outbound] allow_networks)")
    assert registry.requests == []


async def test_chain_targets_on_loopback_need_no_allowance(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    target = await start_target()
    relay = await start_relay(target)

    assert (await relay.wait_for(await relay.push()))["state"] == "success"
    assert len(target.requests) == 1


async def test_allow_networks_lets_a_report_through(start_relay: StartRelay,
                                                    start_target: StartTarget) -> None:
    registry = await start_target(default=Reply(callback=None))
    relay = await start_relay(await start_target(), upstream={"allowed_hosts": ["localhost"]},
                              outbound={"allow_networks": ["127.0.0.0/8", "::1/128"]})
    port = registry.url.split(":")[-1].split("/")[0]

    done = await _report_to(relay, f"http://localhost:{port}/hook")

    assert done["upstream"]["state"] == "success"
    assert len(registry.requests) == 1
