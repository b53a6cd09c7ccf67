"""What relay.toml says, as frozen values: the Settings every other part of relay reads."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class SendPolicy:
    """How one outbound POST (a step or a notice) is timed and retried."""

    timeout: float = 10.0
    attempts: int = 5
    callback_timeout: float = 3600.0
    backoff_initial: float = 1.0
    backoff_max: float = 300.0
    retry_after_max: float = 3600.0


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


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    policy: SendPolicy
    await_callback: bool = True
    secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class RateLimit:
    """At most `burst` requests at once, refilled at `per_second`."""

    per_second: float
    burst: int


@dataclass(frozen=True)
class Chain:
    name: str
    token: str
    targets: tuple[Target, ...]
    repositories: tuple[str, ...] = ()
    concurrency: int = 1
    webhook: str | None = None
    environment: str = ""
    media_types: tuple[str, ...] = MANIFEST_MEDIA_TYPES
    """Manifest media types (or glob patterns) of a registry event that make a delivery."""
    coalesce: float = 0.0
    """Pushes of one repository and tag within this many seconds become one delivery; 0: off."""
    idempotency_window: float = IDEMPOTENCY_WINDOW
    """How long a sender's event id (or Idempotency-Key) keeps giving back its first delivery."""
    rate_limit: RateLimit | None = None
    previous_tokens: tuple[str, ...] = ()
    """Still accepted beside `token` while senders move to it (a rotation)."""

    @property
    def tokens(self) -> tuple[str, ...]:
        return (self.token, *self.previous_tokens)

    def target(self, name: str) -> Target | None:
        return next((target for target in self.targets if target.name == name), None)

    @property
    def steps(self) -> tuple[tuple[str, str], ...]:
        """(name, url) of each target: the steps a new delivery of this chain is stored with."""
        return tuple((target.name, target.url) for target in self.targets)


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = ServerSettings()
    store: StoreSettings = StoreSettings()
    delivery: DeliverySettings = DeliverySettings()
    upstream: UpstreamSettings = UpstreamSettings()
    outbound: OutboundSettings = OutboundSettings()
    chains: tuple[Chain, ...] = ()
    secrets: frozenset[str] = field(default=frozenset(), repr=False)
    """Every secret value in the file, so that logging can redact them wherever they appear."""

    def status_url(self, delivery_id: str) -> str:
        """Where a delivery's history is: the `status_url` of intake's answers."""
        return f"{self.server.public_url}/history/{delivery_id}"

    def chain(self, name: str) -> Chain | None:
        for chain in self.chains:
            if chain.name == name:
                return chain
        return None

    @property
    def lease_seconds(self) -> float:
        """How long a claimed send stays with one process: its longest attempt, plus slack
        for recording the answer. Past it, another process may send it again."""
        timeouts = [self.delivery.policy.timeout]
        timeouts += [t.policy.timeout for c in self.chains for t in c.targets]
        return max(timeouts) + 10.0

    @property
    def concurrency(self) -> dict[str, int]:
        """How many deliveries of each configured chain may run at once."""
        return {chain.name: chain.concurrency for chain in self.chains}

    @property
    def idempotency_windows(self) -> dict[str, float]:
        """How long each configured chain remembers a sender's event ids."""
        return {chain.name: chain.idempotency_window for chain in self.chains}
