"""What relay.toml says, as frozen values: the Settings every other part of relay reads."""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from relay import models, redaction

MIN_TOKEN_LENGTH = 16

MANIFEST_MEDIA_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)
"""What a registry's manifest push must be to count as an image push: Docker v2 manifests and
manifest lists, OCI manifests and indexes. Layer blobs never count."""

IDEMPOTENCY_WINDOW = 24 * 3600.0


def takes_tag(patterns: tuple[str, ...], tag: str) -> bool:
    """Whether a push of `tag` passes a `tags` filter: no patterns take every push; a push
    without a tag (a manifest pushed by digest) passes only "*"."""
    if not patterns:
        return True
    if not tag:
        return "*" in patterns
    return any(fnmatch.fnmatchcase(tag, pattern) for pattern in patterns)


DEFAULT_SCHEDULE = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0)
"""Seconds to wait before the 2nd, 3rd, … attempt; the last wait repeats. A blip costs
seconds, a target back after a minute's outage has its pushes within two, and no wait is
longer than an hour."""
DEFAULT_RETRY_FOR = 24 * 3600.0


@dataclass(frozen=True)
class SendPolicy:
    """How one outbound POST (a step or a notice) is timed and retried."""

    timeout: float = 10.0
    attempts: int = 0
    """At most this many attempts (0: as many as `retry_for` allows)."""
    retry_for: float = DEFAULT_RETRY_FOR
    """A send failing for this long after its first attempt is an error."""
    schedule: tuple[float, ...] = DEFAULT_SCHEDULE
    callback_timeout: float = 3600.0
    retry_after_max: float = 3600.0
    pause_after: int = 10
    """Consecutive failed attempts to a target that pause it (0: never)."""
    probe_interval: float = 60.0
    """How often a paused target is tried again with its oldest waiting step."""


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = "http://127.0.0.1:8080"
    admin_token: str = ""
    max_body_bytes: int = 1024 * 1024
    max_json_depth: int = 64
    header_timeout: float = 20.0
    """A connection must send a whole request head this soon after it opens or after its
    previous answer (so this also closes idle keep-alive connections)."""
    read_timeout: float = 30.0
    """A request body must arrive whole this soon after its head."""
    shutdown_grace: float = 10.0


@dataclass(frozen=True)
class StoreSettings:
    url: str = "sqlite:///data/relay.db"


@dataclass(frozen=True)
class DeliverySettings:
    policy: SendPolicy = SendPolicy()
    max_connections: int = 100


@dataclass(frozen=True)
class UpstreamSettings:
    allowed_hosts: tuple[str, ...] = ("registry.hub.docker.com", "hub.docker.com")


@dataclass(frozen=True)
class OutboundSettings:
    allow_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    """Non-public networks that URLs from outside may reach all the same (engine/outbound)."""
    proxy: str | None = None
    """Every outbound POST goes through this HTTP proxy (a static egress address)."""
    trust_env: bool = False
    """Take HTTP_PROXY, HTTPS_PROXY and NO_PROXY from the environment (when `proxy` is unset)."""


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    policy: SendPolicy
    await_callback: bool = True
    secrets: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    """Extra request headers, sent on every attempt; their values are secrets."""
    method: str = "POST"
    body: str | None = None
    """A JMESPath expression that shapes what the target receives (None: the push itself)."""
    body_expression: Any = field(default=None, compare=False, repr=False)
    """`body`, compiled once when the config is read."""
    tags: tuple[str, ...] = ()
    """Globs on the push's tag that this target takes; empty: every push."""

    def takes(self, tag: str) -> bool:
        return takes_tag(self.tags, tag)


@dataclass(frozen=True)
class RateLimit:
    """At most `burst` requests at once, refilled at `per_second`."""

    per_second: float
    burst: int


TRIGGER_RATE_LIMIT = RateLimit(per_second=1.0, burst=60)
"""What each Docker Cloud trigger may be called by default: 60 a minute ("60/m")."""


class Order(StrEnum):
    """Which deliveries of a chain wait for each other."""

    TAG = "tag"
    """Those of one repository and tag run one at a time, in arrival order."""
    CHAIN = "chain"
    """All of the chain's deliveries run one at a time, in arrival order."""
    NONE = "none"
    """None waits for another (up to the chain's concurrency)."""


@dataclass(frozen=True)
class Chain:
    name: str
    token: str
    targets: tuple[Target, ...]
    repositories: tuple[str, ...] = ()
    concurrency: int = 16
    order: Order = Order.TAG
    tags: tuple[str, ...] = ()
    """Globs on the push's tag that this chain takes; empty: every push."""
    webhook: str | None = None
    environment: str = ""
    media_types: tuple[str, ...] = MANIFEST_MEDIA_TYPES
    """Manifest media types (or glob patterns) of a registry event that make a delivery."""
    coalesce: float = 0.0
    """Pushes of one repository and tag within this many seconds become one delivery; 0: off."""
    idempotency_window: float = IDEMPOTENCY_WINDOW
    """How long a sender's event id (or Idempotency-Key) keeps giving back its first delivery."""
    rate_limit: RateLimit | None = None
    trigger_rate_limit: RateLimit = TRIGGER_RATE_LIMIT
    """How often each of the chain's triggers may be called (on top of `rate_limit`)."""
    previous_tokens: tuple[str, ...] = ()
    """Still accepted beside `token` while senders move to it (a rotation)."""

    def takes(self, tag: str) -> bool:
        return takes_tag(self.tags, tag)

    @property
    def service_uuid(self) -> str:
        """The chain's UUID as a Docker Cloud service."""
        return models.service_uuid(self.name)

    @property
    def tokens(self) -> tuple[str, ...]:
        return (self.token, *self.previous_tokens)

    def target(self, name: str) -> Target | None:
        return next((target for target in self.targets if target.name == name), None)

    def steps_for(self, tag: str) -> list[tuple[str, str, str | None]]:
        """The steps a new delivery of a push of `tag` is stored with: each target's name and
        URL, and why it is skipped when it does not take the tag."""
        return [(target.name, target.url, None if target.takes(tag) else
                 f"not sent: target {target.name} takes tags {', '.join(target.tags)}, and "
                 f"this push is {'of tag ' + tag if tag else 'of no tag'}")
                for target in self.targets]


@dataclass(frozen=True)
class HistorySettings:
    retention: float = 30 * 86400.0
    """Deliveries that ended longer ago than this are deleted (0: kept for ever)."""


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = ServerSettings()
    store: StoreSettings = StoreSettings()
    delivery: DeliverySettings = DeliverySettings()
    upstream: UpstreamSettings = UpstreamSettings()
    outbound: OutboundSettings = OutboundSettings()
    history: HistorySettings = HistorySettings()
    chains: tuple[Chain, ...] = ()
    secrets: frozenset[str] = field(default=frozenset(), repr=False)
    """Every secret value in the file, so that logging can redact them wherever they appear."""

    @functools.cached_property
    def redactor(self) -> redaction.Redactor:
        """Scrubs every secret of this configuration out of a text."""
        return redaction.Redactor(self.secrets)

    def status_url(self, delivery_id: str) -> str:
        """Where a delivery's history is: the `status_url` of intake's answers."""
        return f"{self.server.public_url}/history/{delivery_id}"

    def chain(self, name: str) -> Chain | None:
        for chain in self.chains:
            if chain.name == name:
                return chain
        return None

    def chain_of_service(self, service_uuid: str) -> Chain | None:
        """The chain that is the Docker Cloud service `service_uuid`."""
        return self._services.get(service_uuid.lower())

    @functools.cached_property
    def _services(self) -> dict[str, Chain]:
        return {chain.service_uuid: chain for chain in self.chains}

    @property
    def lease_seconds(self) -> float:
        """How long a claimed send stays with one process: its longest attempt, plus slack
        for recording the answer. Past it, another process may send it again."""
        timeouts = [self.delivery.policy.timeout]
        timeouts += [t.policy.timeout for c in self.chains for t in c.targets]
        return max(timeouts) + 10.0

    @property
    def admission(self) -> dict[str, tuple[int, str]]:
        """How each configured chain admits deliveries: its concurrency and its order."""
        return {chain.name: (chain.concurrency, chain.order.value) for chain in self.chains}

    @property
    def idempotency_windows(self) -> dict[str, float]:
        """How long each configured chain remembers a sender's event ids."""
        return {chain.name: chain.idempotency_window for chain in self.chains}
