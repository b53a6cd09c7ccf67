"""Outbound safety for URLs that come from outside relay's config.

The registry's `callback_url` (the upstream report) and URLs registered through the API
(Kudu hooks) are chosen by whoever can reach relay, so they must not make relay call into its
own network: loopback, link-local (cloud metadata at 169.254.169.254), private, multicast,
unspecified and other non-public addresses are refused unless `[outbound] allow_networks`
lists them. The check runs at connect time on the addresses actually used, so a name that
resolves to a public address when checked and to 127.0.0.1 when connected (DNS rebinding)
gains nothing: the resolver drops refused addresses from every lookup, and the socket
factory refuses to open a socket to one (IP literals never reach the resolver).

Operator-configured chain targets are not checked: an operator may point relay at 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from relay import config
from relay.models import SendKind

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

OUTSIDE_URL_KINDS = frozenset({SendKind.UPSTREAM, SendKind.KUDU})
"""Sends whose URL came from outside: they go through the guarded session."""

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class Refused(OSError):
    """relay will not connect to this address for a URL from outside."""


class AddressPolicy:
    def __init__(self, allow_networks: Iterable[Network] = ()) -> None:
        self.allow_networks = tuple(allow_networks)

    def refusal(self, address: str) -> str | None:
        """Why relay must not connect to `address` (an IP literal), or None when it may."""
        address = address.split("%", 1)[0]  # fe80::1%eth0
        ip = ipaddress.ip_address(address)
        embedded = _embedded_ipv4(ip)
        if any(candidate in network for network in self.allow_networks
               for candidate in (ip, embedded) if candidate is not None
               and candidate.version == network.version):
            return None
        kind = category(ip)
        return None if kind is None else f"{address} is {kind}"


def category(ip: IPAddress) -> str | None:
    """What kind of non-public address `ip` is, or None for a public one."""
    embedded = _embedded_ipv4(ip)
    if embedded is not None and (kind := category(embedded)) is not None:
        return f"{kind} (in IPv6 form)"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (where cloud metadata services answer)"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "not a public address"
    return None


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, Teredo client, NAT64)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


class GuardedResolver(AbstractResolver):
    """Resolves with `inner` (aiohttp's default) and keeps only the addresses `policy` allows."""

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner if inner is not None else aiohttp.DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = await self.inner.resolve(host, port, family)
        allowed = [result for result in found if self.policy.refusal(result["host"]) is None]
        if not allowed:
            reasons = sorted({str(self.policy.refusal(result["host"])) for result in found})
            raise Refused(f"{host} resolves to {'; '.join(reasons)}")
        return allowed

    async def close(self) -> None:
        await self.inner.close()


def socket_factory(policy: AddressPolicy) -> Callable[[Any], socket.socket]:
    """aiohttp's socket_factory: the last word, on the very address about to be connected."""

    def open_socket(addr_info: Any) -> socket.socket:
        family, type_, proto, _, address = addr_info
        reason = policy.refusal(address[0])
        if reason is not None:
            raise Refused(reason)
        return socket.socket(family=family, type=type_, proto=proto)

    return open_socket


class Guard:
    """The check of a destination made before a send through a proxy: the proxy, not relay,
    connects to it, so the connector's checks never see its addresses."""

    def __init__(self, policy: AddressPolicy, resolver: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.resolver = GuardedResolver(policy, resolver)

    async def refusal(self, url: str) -> str | None:
        """Why relay must not send to `url`, or None when every address it has is allowed."""
        host = urlsplit(url).hostname or ""
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            try:
                await self.resolver.resolve(host, 0, socket.AF_UNSPEC)
            except Refused as exc:
                return str(exc)
            except OSError:
                return None  # not resolvable here: the proxy says what it makes of it
            return None
        return self.policy.refusal(host)


def proxy_for(url: str, settings: config.OutboundSettings) -> str | None:
    """The HTTP proxy a send to `url` goes through: [outbound] proxy, else (with trust_env)
    HTTP_PROXY / HTTPS_PROXY unless NO_PROXY names the host; None: a direct connection."""
    if settings.proxy is not None:
        return settings.proxy
    if not settings.trust_env:
        return None
    parts = urlsplit(url)
    found = urllib.request.getproxies().get(parts.scheme)
    if found is None or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return found


def connector(policy: AddressPolicy, limit: int,
              resolver: AbstractResolver | None = None) -> aiohttp.TCPConnector:
    """A connector that only reaches addresses `policy` allows; `resolver` is for tests."""
    return aiohttp.TCPConnector(limit=limit, resolver=GuardedResolver(policy, resolver),
                                socket_factory=socket_factory(policy))
