"""URLs from outside reach only public addresses, checked on the addresses really connected."""

from __future__ import annotations

import copy
import ipaddress
import socket
from typing import Any

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from conftest import StartRelay, StartTarget
from support import SEED_TAG_PUSH, Relay, Reply, Target, wait_until

from relay import config, errors, outbound


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "a loopback address"),
    ("127.8.9.10", "a loopback address"),
    ("::1", "a loopback address"),
    ("169.254.169.254", "a link-local address (where cloud metadata services answer)"),
    ("fe80::1", "a link-local address (where cloud metadata services answer)"),
    ("fe80::1%eth0", "a link-local address (where cloud metadata services answer)"),
    ("10.1.2.3", "a private address"),
    ("172.16.0.1", "a private address"),
    ("192.168.1.1", "a private address"),
    ("fc00::1", "a private address"),
    ("fd12:3456::1", "a private address"),
    ("224.0.0.1", "a multicast address"),
    ("ff02::1", "a multicast address"),
    ("0.0.0.0", "an unspecified address"),  # noqa: S104 - an address to refuse
    ("::", "an unspecified address"),
    # Shared, documentation and reserved space: which word Python uses varies by version.
    ("100.64.0.1", ...),
    ("192.0.2.10", ...),
    ("240.0.0.1", ...),
    ("::ffff:127.0.0.1", "a loopback address (in IPv6 form)"),
    ("::ffff:169.254.169.254",
     "a link-local address (where cloud metadata services answer) (in IPv6 form)"),
    ("2002:7f00:1::1", "a loopback address (in IPv6 form)"),
    ("64:ff9b::a9fe:a9fe",
     "a link-local address (where cloud metadata services answer) (in IPv6 form)"),
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "a private address (in IPv6 form)"),
    ("8.8.8.8", None),
    ("2606:4700:4700::1111", None),
    ("::ffff:8.8.8.8", None),
])
def test_what_counts_as_not_public(address: str, kind: Any) -> None:
    found = outbound.category(ipaddress.ip_address(address.split("%")[0]))
    refusal = outbound.Policy().refusal(address)
    if kind is ...:
        assert found in ("a private address", "not a public address")
        kind = found
    assert found == kind
    assert refusal == (None if kind is None else f"{address.split('%')[0]} is {kind}")


def test_allowed_networks_are_allowed_and_nothing_else() -> None:
    policy = outbound.Policy([ipaddress.ip_network("127.0.0.0/8"),
                              ipaddress.ip_network("fd00::/8")])

    assert policy.refusal("127.0.0.1") is None
    assert policy.refusal("::ffff:127.0.0.1") is None
    assert policy.refusal("fd00::5") is None
    assert policy.refusal("::1") == "::1 is a loopback address"
    assert policy.refusal("10.0.0.1") == "10.0.0.1 is a private address"


class FakeDNS(AbstractResolver):
    """Names to addresses, as a DNS server that the test controls would answer."""

    def __init__(self, records: dict[str, list[str]]) -> None:
        self.records = records
        self.lookups = 0

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        self.lookups += 1
        return [{"hostname": host, "host": address, "port": port,
                 "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST}
                for address in self.records[host]]

    async def close(self) -> None:
        pass


async def test_the_resolver_keeps_only_allowed_addresses() -> None:
    dns = FakeDNS({"mixed.test": ["10.0.0.7", "93.184.215.14", "::1"],
                   "inside.test": ["10.0.0.7", "169.254.169.254"]})
    resolver = outbound.GuardedResolver(outbound.Policy(), dns)

    mixed = await resolver.resolve("mixed.test", 443)
    assert [result["host"] for result in mixed] == ["93.184.215.14"]
    with pytest.raises(outbound.Refused) as refused:
        await resolver.resolve("inside.test", 443)
    assert str(refused.value) == (
        "inside.test resolves to 10.0.0.7 is a private address; 169.254.169.254 is a "
        "link-local address (where cloud metadata services answer)")


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
        await _post(outbound.connector(outbound.Policy(), 1, dns),
                    f"http://rebound.test:{port}/hook")
    assert isinstance(raised.value.os_error, outbound.Refused)
    assert dns.lookups == 1
    assert target.requests == []

    allowed = outbound.Policy([ipaddress.ip_network("127.0.0.1/32")])
    assert await _post(outbound.connector(allowed, 1, dns),
                       f"http://rebound.test:{port}/hook") == 200
    assert len(target.requests) == 1


async def test_ip_literals_are_checked_by_the_socket_factory(start_target: StartTarget
                                                             ) -> None:
    target = await start_target()
    dns = FakeDNS({})

    with pytest.raises(aiohttp.ClientConnectorError) as raised:
        await _post(outbound.connector(outbound.Policy(), 1, dns), target.url)

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


def test_allow_networks_must_be_networks() -> None:
    text = """
[server]
admin_token = "admin-token-0123456789"
[outbound]
allow_networks = ["10.0.0.0/8", "localhost"]
"""
    with pytest.raises(errors.ConfigError, match=r"outbound\.allow_networks: 'localhost' is "
                                                 r"not a network"):
        config.parse(text)
    settings = config.parse(text.replace(', "localhost"', ', "127.0.0.1"'))
    assert [str(n) for n in settings.outbound.allow_networks] == ["10.0.0.0/8",
                                                                  "127.0.0.1/32"]
