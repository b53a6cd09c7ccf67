"""Typed keys of the aiohttp application: what handlers may take from `request.app`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from relay import config, metrics
from relay.http import ratelimit
from relay.store import Store

if TYPE_CHECKING:
    from relay.engine.worker import Worker

CONFIG = web.AppKey("config", config.Live)
"""The configuration served by; `.current` for a request, `.of(version)` for a delivery."""
STORE = web.AppKey("store", Store)
SESSION = web.AppKey("session", aiohttp.ClientSession)
OUTSIDE_SESSION = web.AppKey("outside_session", aiohttp.ClientSession)
"""For URLs from outside (outbound.OUTSIDE_URL_KINDS): only reaches allowed addresses."""
WORKER: web.AppKey[Worker] = web.AppKey("worker")
METRICS = web.AppKey("metrics", metrics.Metrics)
LIMITS = web.AppKey("limits", ratelimit.Limits)
