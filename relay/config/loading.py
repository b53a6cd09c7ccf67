"""relay.toml -> frozen Settings; every problem is a ConfigError that names its key."""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from relay import errors
from relay.config.fields import Table, parse_rate, show
from relay.config.schedule import schedule_of
from relay.config.settings import (
    IDEMPOTENCY_WINDOW,
    MANIFEST_MEDIA_TYPES,
    TRIGGER_RATE_LIMIT,
    Chain,
    DeliverySettings,
    HistorySettings,
    Order,
    OutboundSettings,
    RateLimit,
    SendPolicy,
    ServerSettings,
    Settings,
    StoreSettings,
    Target,
    UpstreamSettings,
)
from relay.config.shaping import body_of, tag_patterns, target_headers
from relay.engine import signing

_METHODS = ("POST", "PUT", "PATCH")
_POLICY_KEYS = {"timeout", "attempts", "retry_for", "schedule", "callback_timeout",
                "backoff_initial", "backoff_max", "retry_after_max", "pause_after",
                "probe_interval"}


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
    secrets: set[str] = set()
    root = Table(document, "", os.environ if environ is None else environ, secrets)
    try:
        settings = _settings(root)
    except errors.ConfigError as exc:
        raise errors.ConfigError(f"{origin}: {exc}") from None
    return Settings(server=settings.server, store=settings.store, delivery=settings.delivery,
                    upstream=settings.upstream, outbound=settings.outbound,
                    history=settings.history, chains=settings.chains,
                    secrets=frozenset(secrets))


def _settings(root: Table) -> Settings:
    root.only({"server", "store", "delivery", "upstream", "outbound", "history", "chain"})
    history = root.table("history")
    history.only({"retention"})
    server = _server(root.table("server"))
    store = root.table("store")
    delivery = root.table("delivery")
    delivery.only({*_POLICY_KEYS, "max_connections"})
    policy = _policy(delivery, SendPolicy())
    upstream = root.table("upstream")
    upstream.only({"allowed_hosts"})
    chains = tuple(_chain(table, policy) for table in root.tables("chain"))
    _unique([c.name for c in chains], "chain", "name")
    return Settings(
        server=server,
        store=StoreSettings(url=store.string("url", StoreSettings.url)),
        delivery=DeliverySettings(
            policy=policy,
            max_connections=delivery.integer("max_connections", 100, minimum=1)),
        upstream=UpstreamSettings(allowed_hosts=tuple(
            host.lower() for host in upstream.strings("allowed_hosts",
                                                      UpstreamSettings.allowed_hosts))),
        outbound=_outbound(root.table("outbound")),
        history=HistorySettings(retention=history.duration(
            "retention", HistorySettings.retention, allow_zero=True)),
        chains=chains)


def _outbound(table: Table) -> OutboundSettings:
    table.only({"allow_networks", "proxy", "trust_env"})
    networks = []
    for text in table.strings("allow_networks", ()):
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise errors.ConfigError(
                f"{table.path('allow_networks')}: {text!r} is not a network such as "
                "\"10.0.0.0/8\", \"127.0.0.1/32\" or \"fd00::/8\"") from None
    proxy = table.url("proxy", "") if "proxy" in table else None
    if proxy is not None and not proxy.startswith("http://"):
        raise errors.ConfigError(f"{table.path('proxy')}: must be an http:// proxy URL "
                                 "(relay speaks to the proxy in plain HTTP, and TLS to "
                                 "https targets through it)")
    if proxy is not None:
        table.secrets.update(_credentials_of(proxy))
    return OutboundSettings(allow_networks=tuple(networks), proxy=proxy,
                            trust_env=table.boolean("trust_env", False))


def _server(table: Table) -> ServerSettings:
    table.only({"host", "port", "public_url", "admin_token", "max_body_bytes",
                "max_json_depth", "header_timeout", "read_timeout", "shutdown_grace"})
    default = ServerSettings()
    host = table.string("host", default.host)
    port = table.integer("port", default.port, minimum=0, maximum=65535)
    return ServerSettings(
        host=host,
        port=port,
        public_url=table.url("public_url", f"http://{host}:{port}").rstrip("/"),
        admin_token=table.token("admin_token"),
        max_body_bytes=table.integer("max_body_bytes", default.max_body_bytes, minimum=1024),
        max_json_depth=table.integer("max_json_depth", default.max_json_depth, minimum=4),
        header_timeout=table.duration("header_timeout", default.header_timeout),
        read_timeout=table.duration("read_timeout", default.read_timeout),
        shutdown_grace=table.duration("shutdown_grace", default.shutdown_grace),
    )


def _policy(table: Table, base: SendPolicy) -> SendPolicy:
    policy = SendPolicy(
        timeout=table.duration("timeout", base.timeout),
        attempts=table.integer("attempts", base.attempts, minimum=0, maximum=100_000),
        retry_for=table.duration("retry_for", base.retry_for, allow_zero=True),
        schedule=schedule_of(table, base.schedule),
        callback_timeout=table.duration("callback_timeout", base.callback_timeout),
        retry_after_max=table.duration("retry_after_max", base.retry_after_max),
        pause_after=table.integer("pause_after", base.pause_after, minimum=0),
        probe_interval=table.duration("probe_interval", base.probe_interval),
    )
    if not policy.attempts and not policy.retry_for:
        raise errors.ConfigError(f"{table.path('retry_for')}: 0 (no time limit) needs a "
                                 "positive attempts, else a failing send is retried forever")
    return policy


def _chain(table: Table, policy: SendPolicy) -> Chain:
    table.only({"name", "token", "repositories", "tags", "order", "concurrency", "target",
                "webhook", "environment", "media_types", "coalesce", "idempotency_window",
                "rate_limit", "rate_burst", "trigger_rate_limit",
                "trigger_rate_burst"})
    name = table.name()
    if not isinstance(table.raw("target"), list) or not table.raw("target"):
        raise errors.ConfigError(f"{table.path('target')}: chain {name!r} needs at least one "
                                 "[[chain.target]]")
    targets = tuple(_target(t, policy) for t in table.tables("target"))
    _unique([t.name for t in targets], table.path("target"), "name")
    tokens = table.tokens("token")
    return Chain(
        name=name,
        token=tokens[0],
        previous_tokens=tokens[1:],
        targets=targets,
        repositories=table.strings("repositories", ()),
        tags=tag_patterns(table),
        order=_order(table),
        concurrency=table.integer("concurrency", 16, minimum=1, maximum=1000),
        webhook=table.url("webhook", "") if "webhook" in table else None,
        environment=table.string("environment", ""),
        media_types=_media_types(table),
        coalesce=table.duration("coalesce", 0.0, allow_zero=True),
        idempotency_window=table.duration("idempotency_window", IDEMPOTENCY_WINDOW),
        rate_limit=_rate_limit(table),
        trigger_rate_limit=_trigger_rate_limit(table),
    )


def _rate_limit(table: Table) -> RateLimit | None:
    if "rate_limit" not in table:
        if "rate_burst" in table:
            raise errors.ConfigError(f"{table.path('rate_burst')}: needs a rate_limit beside it")
        return None
    return _rate(table, "rate_limit", "rate_burst")


def _trigger_rate_limit(table: Table) -> RateLimit:
    if "trigger_rate_limit" not in table:
        return RateLimit(TRIGGER_RATE_LIMIT.per_second, table.integer(
            "trigger_rate_burst", TRIGGER_RATE_LIMIT.burst, minimum=1))
    return _rate(table, "trigger_rate_limit", "trigger_rate_burst")


def _rate(table: Table, key: str, burst_key: str) -> RateLimit:
    count, per_second = parse_rate(table, key)
    # "600/m" allows 600 at once by default: what the rate says may come within its unit.
    burst = table.integer(burst_key, max(1, int(count)), minimum=1)
    return RateLimit(per_second=per_second, burst=burst)


def _order(table: Table) -> Order:
    text = table.string("order", Order.TAG.value)
    try:
        return Order(text)
    except ValueError:
        choices = ", ".join(f'"{order.value}"' for order in Order)
        raise errors.ConfigError(f"{table.path('order')}: must be one of {choices}, "
                                 f"got {show(text)}") from None


def _target(table: Table, policy: SendPolicy) -> Target:
    table.only({"name", "url", "await_callback", "secret", "headers", "method", "body",
                "tags", *_POLICY_KEYS})
    secrets = table.strings("secret", (), secret=True)
    body = body_of(table)
    for secret in secrets:
        try:
            signing.decode_secret(secret)
        except ValueError as exc:
            raise errors.ConfigError(f"{table.path('secret')}: {exc}") from None
    return Target(
        name=table.name(),
        url=table.url("url", ""),
        policy=_policy(table, policy),
        await_callback=table.boolean("await_callback", True),
        secrets=secrets,
        headers=target_headers(table),
        method=_method(table),
        body=body.text if body else None,
        body_expression=body.expression if body else None,
        tags=tag_patterns(table),
    )


def _method(table: Table) -> str:
    method = table.string("method", "POST")
    if method.upper() not in _METHODS:
        raise errors.ConfigError(f"{table.path('method')}: must be POST, PUT or PATCH, "
                                 f"got {show(method)}")
    return method.upper()


def _credentials_of(url: str) -> set[str]:
    parts = urlsplit(url)
    return {value for value in (parts.username, parts.password) if value}


def _media_types(table: Table) -> tuple[str, ...]:
    types = table.strings("media_types", MANIFEST_MEDIA_TYPES)
    path = table.path("media_types")
    if not types:
        raise errors.ConfigError(f"{path}: must name at least one media type (a registry "
                                 "chain with none would never make a delivery)")
    for media_type in types:
        if "/" not in media_type or media_type.strip() != media_type:
            raise errors.ConfigError(f"{path}: {media_type!r} is not a media type such as "
                                     "\"application/vnd.oci.image.index.v1+json\"")
    return types


def _unique(names: list[str], path: str, key: str) -> None:
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name in seen:
            raise errors.ConfigError(f"{path}[{index}].{key}: {name!r} is used twice")
        seen.add(name)

