"""relay.toml -> frozen Settings; every problem is a ConfigError that names its key."""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from relay import errors, signing

MIN_TOKEN_LENGTH = 16
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|m|h)\s*$")

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
class Policy:
    """How one outbound POST is timed and retried."""

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
    policy: Policy = Policy()
    max_connections: int = 100


@dataclass(frozen=True)
class UpstreamSettings:
    allowed_hosts: tuple[str, ...] = ("registry.hub.docker.com", "hub.docker.com")


@dataclass(frozen=True)
class OutboundSettings:
    allow_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    """Non-public networks that URLs from outside may reach all the same (see outbound.py)."""


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    policy: Policy
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


def load(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Settings:
    """Read and check a relay.toml; raise ConfigError naming the key (and line) at fault."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise errors.ConfigError(f"{source}: cannot read: {exc.strerror}") from exc
    return parse(text, environ, origin=str(source))


def parse(text: str, environ: Mapping[str, str] | None = None, origin: str = "config") -> Settings:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # The message carries "(at line N, column M)".
        raise errors.ConfigError(f"{origin}: TOML syntax error: {exc}") from exc
    reader = _Reader(os.environ if environ is None else environ)
    try:
        return reader.settings(document)
    except errors.ConfigError as exc:
        raise errors.ConfigError(f"{origin}: {exc}") from None


T = TypeVar("T")


class _Reader:
    """Walks the TOML document, checking each key and remembering secret values."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.secrets: set[str] = set()

    def settings(self, doc: dict[str, Any]) -> Settings:
        self._only(doc, "", {"server", "store", "delivery", "upstream", "outbound", "chain"})
        server = self.server(self._table(doc, "server"))
        store = StoreSettings(url=self._string(self._table(doc, "store"), "store.url",
                                               "url", StoreSettings.url))
        delivery_table = self._table(doc, "delivery")
        self._only(delivery_table, "delivery", {*_POLICY_KEYS, "max_connections"})
        policy = self.policy(delivery_table, "delivery", Policy())
        delivery = DeliverySettings(
            policy=policy,
            max_connections=self._int(delivery_table, "delivery.max_connections",
                                      "max_connections", 100, minimum=1),
        )
        upstream_table = self._table(doc, "upstream")
        self._only(upstream_table, "upstream", {"allowed_hosts"})
        upstream = UpstreamSettings(allowed_hosts=tuple(
            host.lower() for host in self._strings(
                upstream_table, "upstream.allowed_hosts", "allowed_hosts",
                UpstreamSettings.allowed_hosts)))
        outbound = self.outbound(self._table(doc, "outbound"))
        chain_tables = doc.get("chain", [])
        if not isinstance(chain_tables, list):
            raise errors.ConfigError("chain: must be an array of tables ([[chain]])")
        chains = tuple(self.chain(table, f"chain[{i}]", policy)
                       for i, table in enumerate(chain_tables))
        _unique([c.name for c in chains], "chain", "name")
        return Settings(server=server, store=store, delivery=delivery, upstream=upstream,
                        outbound=outbound, chains=chains, secrets=frozenset(self.secrets))

    def outbound(self, table: dict[str, Any]) -> OutboundSettings:
        self._only(table, "outbound", {"allow_networks"})
        networks = []
        for text in self._strings(table, "outbound.allow_networks", "allow_networks", ()):
            try:
                networks.append(ipaddress.ip_network(text.strip(), strict=False))
            except ValueError:
                raise errors.ConfigError(
                    f"outbound.allow_networks: {text!r} is not a network such as "
                    "\"10.0.0.0/8\", \"127.0.0.1/32\" or \"fd00::/8\"") from None
        return OutboundSettings(allow_networks=tuple(networks))

    def server(self, table: dict[str, Any]) -> ServerSettings:
        self._only(table, "server", {"host", "port", "public_url", "admin_token",
                                     "max_body_bytes", "max_json_depth", "header_timeout",
                                     "read_timeout", "shutdown_grace"})
        default = ServerSettings()
        host = self._string(table, "server.host", "host", default.host)
        port = self._int(table, "server.port", "port", default.port, minimum=0, maximum=65535)
        public_url = self._url(table, "server.public_url", "public_url",
                               f"http://{host}:{port}").rstrip("/")
        admin_token = self._token(table, "server.admin_token", "admin_token")
        return ServerSettings(
            host=host,
            port=port,
            public_url=public_url,
            admin_token=admin_token,
            max_body_bytes=self._int(table, "server.max_body_bytes", "max_body_bytes",
                                     default.max_body_bytes, minimum=1024),
            max_json_depth=self._int(table, "server.max_json_depth", "max_json_depth",
                                     default.max_json_depth, minimum=4),
            header_timeout=self._duration(table, "server.header_timeout", "header_timeout",
                                          default.header_timeout),
            read_timeout=self._duration(table, "server.read_timeout", "read_timeout",
                                        default.read_timeout),
            shutdown_grace=self._duration(table, "server.shutdown_grace", "shutdown_grace",
                                          default.shutdown_grace),
        )

    def policy(self, table: dict[str, Any], where: str, base: Policy) -> Policy:
        return Policy(
            timeout=self._duration(table, f"{where}.timeout", "timeout", base.timeout),
            attempts=self._int(table, f"{where}.attempts", "attempts", base.attempts,
                               minimum=1, maximum=1000),
            callback_timeout=self._duration(table, f"{where}.callback_timeout",
                                            "callback_timeout", base.callback_timeout),
            backoff_initial=self._duration(table, f"{where}.backoff_initial",
                                           "backoff_initial", base.backoff_initial),
            backoff_max=self._duration(table, f"{where}.backoff_max", "backoff_max",
                                       base.backoff_max),
            retry_after_max=self._duration(table, f"{where}.retry_after_max",
                                           "retry_after_max", base.retry_after_max),
        )

    def chain(self, table: Any, where: str, policy: Policy) -> Chain:
        if not isinstance(table, dict):
            raise errors.ConfigError(f"{where}: must be a table")
        self._only(table, where, {"name", "token", "repositories", "concurrency", "target",
                                  "webhook", "environment", "media_types", "coalesce",
                                  "idempotency_window", "rate_limit", "rate_burst"})
        name = self._name(table, f"{where}.name")
        target_tables = table.get("target", [])
        if not isinstance(target_tables, list) or not target_tables:
            raise errors.ConfigError(f"{where}.target: chain {name!r} needs at least one "
                                     "[[chain.target]]")
        targets = tuple(self.target(t, f"{where}.target[{i}]", policy)
                        for i, t in enumerate(target_tables))
        _unique([t.name for t in targets], f"{where}.target", "name")
        webhook = table.get("webhook")
        tokens = self._tokens(table, f"{where}.token", "token")
        return Chain(
            name=name,
            token=tokens[0],
            previous_tokens=tokens[1:],
            targets=targets,
            repositories=self._strings(table, f"{where}.repositories", "repositories", ()),
            concurrency=self._int(table, f"{where}.concurrency", "concurrency", 1,
                                  minimum=1, maximum=1000),
            webhook=None if webhook is None else self._url(table, f"{where}.webhook",
                                                           "webhook", ""),
            environment=self._string(table, f"{where}.environment", "environment", ""),
            media_types=self._media_types(table, f"{where}.media_types"),
            coalesce=self._duration(table, f"{where}.coalesce", "coalesce", 0.0,
                                    allow_zero=True),
            idempotency_window=self._duration(table, f"{where}.idempotency_window",
                                              "idempotency_window", IDEMPOTENCY_WINDOW),
            rate_limit=self.rate_limit(table, where),
        )

    def rate_limit(self, table: dict[str, Any], where: str) -> RateLimit | None:
        if "rate_limit" not in table:
            if "rate_burst" in table:
                raise errors.ConfigError(f"{where}.rate_burst: needs a rate_limit beside it")
            return None
        text = self._get(table, "rate_limit", str, "a string", f"{where}.rate_limit", "")
        match = _RATE.match(text)
        count = float(match.group(1)) if match else 0.0
        if match is None or count <= 0:
            raise errors.ConfigError(f"{where}.rate_limit: must be a rate such as \"50/s\", "
                                     f"\"600/m\" or \"1000/h\", got {_show(text)}")
        per_second = count / _DURATION_UNITS[match.group(2)]
        # "600/m" allows 600 at once by default: what the rate says may come within its unit.
        burst = self._int(table, f"{where}.rate_burst", "rate_burst",
                          max(1, int(count)), minimum=1)
        return RateLimit(per_second=per_second, burst=burst)

    def target(self, table: Any, where: str, policy: Policy) -> Target:
        if not isinstance(table, dict):
            raise errors.ConfigError(f"{where}: must be a table")
        self._only(table, where, {"name", "url", "await_callback", "secret", *_POLICY_KEYS})
        secrets = self._strings(table, f"{where}.secret", "secret", (), secret=True)
        for secret in secrets:
            try:
                signing.decode_secret(secret)
            except ValueError as exc:
                raise errors.ConfigError(f"{where}.secret: {exc}") from None
        return Target(
            name=self._name(table, f"{where}.name"),
            url=self._url(table, f"{where}.url", "url", ""),
            policy=self.policy(table, where, policy),
            await_callback=self._bool(table, f"{where}.await_callback", "await_callback", True),
            secrets=secrets,
        )

    # -- scalar readers -------------------------------------------------------------

    def _table(self, doc: dict[str, Any], key: str) -> dict[str, Any]:
        value = doc.get(key, {})
        if not isinstance(value, dict):
            raise errors.ConfigError(f"{key}: must be a table ([{key}])")
        return value

    def _only(self, table: dict[str, Any], where: str, allowed: set[str]) -> None:
        for key in table:
            if key not in allowed:
                path = f"{where}.{key}" if where else key
                raise errors.ConfigError(f"{path}: unknown key")

    def _get(self, table: dict[str, Any], key: str, kind: type[T], kind_name: str,
             path: str, default: T, secret: bool = False) -> T:
        value = table.get(key, default)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            shown = type(value).__name__ if secret else _show(value)
            raise errors.ConfigError(f"{path}: must be {kind_name}, got {shown}")
        return value

    def _expand(self, value: str, path: str, secret: bool) -> str:
        def substitute(match: re.Match[str]) -> str:
            variable = match.group(1)
            if variable not in self.environ:
                raise errors.ConfigError(
                    f"{path}: environment variable {variable} is not set")
            expanded = self.environ[variable]
            if expanded:
                self.secrets.add(expanded)
            return expanded

        expanded = _ENV_REFERENCE.sub(substitute, value)
        if secret and expanded:
            self.secrets.add(expanded)
        return expanded

    def _string(self, table: dict[str, Any], path: str, key: str, default: str,
                secret: bool = False) -> str:
        value = self._get(table, key, str, "a string", path, default, secret)
        return self._expand(value, path, secret)

    def _strings(self, table: dict[str, Any], path: str, key: str, default: tuple[str, ...],
                 secret: bool = False) -> tuple[str, ...]:
        value = table.get(key, default)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            shown = type(value).__name__ if secret else _show(value)
            raise errors.ConfigError(f"{path}: must be a string or a list of strings, "
                                     f"got {shown}")
        return tuple(self._expand(v, path, secret) for v in value)

    def _int(self, table: dict[str, Any], path: str, key: str, default: int,
             minimum: int | None = None, maximum: int | None = None) -> int:
        value = self._get(table, key, int, "an integer", path, default)
        if minimum is not None and value < minimum:
            raise errors.ConfigError(f"{path}: must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise errors.ConfigError(f"{path}: must be at most {maximum}, got {value}")
        return value

    def _bool(self, table: dict[str, Any], path: str, key: str, default: bool) -> bool:
        return self._get(table, key, bool, "true or false", path, default)

    def _duration(self, table: dict[str, Any], path: str, key: str, default: float,
                  allow_zero: bool = False) -> float:
        value = table.get(key, default)
        seconds = parse_duration(value)
        if seconds is None or seconds < 0 or (seconds == 0 and not allow_zero):
            kind = "zero or a positive" if allow_zero else "a positive"
            raise errors.ConfigError(f"{path}: must be {kind} number of seconds or a "
                                     f"duration like \"10s\", \"5m\", got {_show(value)}")
        return seconds

    def _media_types(self, table: dict[str, Any], path: str) -> tuple[str, ...]:
        types = self._strings(table, path, "media_types", MANIFEST_MEDIA_TYPES)
        if not types:
            raise errors.ConfigError(f"{path}: must name at least one media type (a registry "
                                     "chain with none would never make a delivery)")
        for media_type in types:
            if "/" not in media_type or media_type.strip() != media_type:
                raise errors.ConfigError(f"{path}: {media_type!r} is not a media type such as "
                                         "\"application/vnd.oci.image.index.v1+json\"")
        return types

    def _name(self, table: dict[str, Any], path: str) -> str:
        if "name" not in table:
            raise errors.ConfigError(f"{path}: is required")
        name = self._get(table, "name", str, "a string", path, "")
        if not _NAME.match(name):
            raise errors.ConfigError(f"{path}: {name!r} must be 1-64 letters, digits, "
                                     "'.', '_' or '-'")
        return name

    def _token(self, table: dict[str, Any], path: str, key: str) -> str:
        if key not in table:
            raise errors.ConfigError(f"{path}: is required")
        return _checked_token(self._string(table, path, key, "", secret=True), path)

    def _tokens(self, table: dict[str, Any], path: str, key: str) -> tuple[str, ...]:
        """One token, or a list of them while senders move from an old one to a new one."""
        if key not in table:
            raise errors.ConfigError(f"{path}: is required")
        tokens = self._strings(table, path, key, (), secret=True)
        if not tokens:
            raise errors.ConfigError(f"{path}: must name at least one token")
        for index, token in enumerate(tokens):
            _checked_token(token, path if len(tokens) == 1 else f"{path}[{index}]")
        return tokens

    def _url(self, table: dict[str, Any], path: str, key: str, default: str) -> str:
        if key not in table and not default:
            raise errors.ConfigError(f"{path}: is required")
        url = self._string(table, path, key, default)
        if not is_http_url(url):
            raise errors.ConfigError(f"{path}: must be an absolute http(s) URL, "
                                     f"got {url!r}")
        return url


_POLICY_KEYS = {"timeout", "attempts", "callback_timeout", "backoff_initial", "backoff_max",
                "retry_after_max"}


def _checked_token(token: str, path: str) -> str:
    if len(token) < MIN_TOKEN_LENGTH:
        raise errors.ConfigError(f"{path}: must be at least {MIN_TOKEN_LENGTH} characters "
                                 f"long (it has {len(token)})")
    if token.strip() != token or any(c in token for c in "/?# "):
        raise errors.ConfigError(f"{path}: must not contain spaces, '/', '?' or '#'")
    return token


def parse_duration(value: object) -> float | None:
    """Seconds from a number or a string such as "250ms", "10s", "5m", "1h"."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    return None


def is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _unique(names: list[str], path: str, key: str) -> None:
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name in seen:
            raise errors.ConfigError(f"{path}[{index}].{key}: {name!r} is used twice")
        seen.add(name)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."

