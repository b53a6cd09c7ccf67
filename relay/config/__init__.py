"""relay.toml: `load(path)` gives the frozen Settings that the rest of relay reads."""

from relay.config.fields import is_http_url, parse_duration
from relay.config.live import Live, Reloaded, version_of
from relay.config.loading import load, parse
from relay.config.settings import (
    IDEMPOTENCY_WINDOW,
    MANIFEST_MEDIA_TYPES,
    MIN_TOKEN_LENGTH,
    Chain,
    DeliverySettings,
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

__all__ = [
    "IDEMPOTENCY_WINDOW",
    "MANIFEST_MEDIA_TYPES",
    "MIN_TOKEN_LENGTH",
    "Chain",
    "DeliverySettings",
    "Live",
    "Order",
    "OutboundSettings",
    "RateLimit",
    "Reloaded",
    "SendPolicy",
    "ServerSettings",
    "Settings",
    "StoreSettings",
    "Target",
    "UpstreamSettings",
    "is_http_url",
    "load",
    "parse",
    "parse_duration",
    "version_of",
]
