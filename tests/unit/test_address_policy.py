"""Which addresses URLs from outside may reach: the policy and the guarded resolver (pure)."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from support.fake_dns import FakeDNS

from relay import config, errors
from relay.engine import outbound


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
    refusal = outbound.AddressPolicy().refusal(address)
    if kind is ...:
        assert found in ("a private address", "not a public address")
        kind = found
    assert found == kind
    assert refusal == (None if kind is None else f"{address.split('%')[0]} is {kind}")


def test_allowed_networks_are_allowed_and_nothing_else() -> None:
    policy = outbound.AddressPolicy([ipaddress.ip_network("127.0.0.0/8"),
                              ipaddress.ip_network("fd00::/8")])

    assert policy.refusal("127.0.0.1") is None
    assert policy.refusal("::ffff:127.0.0.1") is None
    assert policy.refusal("fd00::5") is None
    assert policy.refusal("::1") == "::1 is a loopback address"
    assert policy.refusal("10.0.0.1") == "10.0.0.1 is a private address"


async def test_the_resolver_keeps_only_allowed_addresses() -> None:
    dns = FakeDNS({"mixed.test": ["10.0.0.7", "93.184.215.14", "::1"],
                   "inside.test": ["10.0.0.7", "169.254.169.254"]})
    resolver = outbound.GuardedResolver(outbound.AddressPolicy(), dns)

    mixed = await resolver.resolve("mixed.test", 443)
    assert [result["host"] for result in mixed] == ["93.184.215.14"]
    with pytest.raises(outbound.Refused) as refused:
        await resolver.resolve("inside.test", 443)
    assert str(refused.value) == (
        "inside.test resolves to 10.0.0.7 is a private address; 169.254.169.254 is a "
        "link-local address (where cloud metadata services answer)")


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
