"""What relay keeps: states and identifiers (the strings and ids in the store), a push ready
to be stored, and a target's callback."""

from __future__ import annotations

import base64
import os
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class DeliveryState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"
    ERROR = "error"


class StepState(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    AWAITING_CALLBACK = "awaiting_callback"
    PAUSED = "paused"
    """Held back: its target is paused (engine/pausing.py)."""
    SUCCESS = "success"
    FAILURE = "failure"
    ERROR = "error"
    SKIPPED = "skipped"


class CallbackState(StrEnum):
    """The three states a Docker Hub callback may carry."""

    SUCCESS = "success"
    FAILURE = "failure"
    ERROR = "error"


class SendKind(StrEnum):
    """What an outbound POST is for: a chain step, or a notice sent when the chain ends."""

    STEP = "step"
    UPSTREAM = "upstream"
    KUDU = "kudu"
    DOCKERSHIP = "dockership"


HISTORY_PAGE_MAX = 500
HISTORY_PAGE_DEFAULT = 50
"""Deliveries on one page of the history: at most, and when no limit is asked for."""

FINAL_DELIVERY_STATES = frozenset(
    {DeliveryState.SUCCESS, DeliveryState.FAILURE, DeliveryState.ERROR}
)
FINAL_STEP_STATES = frozenset(
    {StepState.SUCCESS, StepState.FAILURE, StepState.ERROR, StepState.SKIPPED}
)


@dataclass(frozen=True)
class Push:
    """A validated push, ready to be stored as a delivery."""

    chain: str
    payload: dict[str, Any]
    text: str
    """The payload as JSON text, exactly as it is stored and later sent on."""
    source: str = "push"
    redelivery_of: str | None = None

    # Plain properties: functools.cached_property takes a lock on every access before 3.12,
    # which costs more than these look-ups.
    @property
    def repository(self) -> str:
        return str(_dig(self.payload, "repository", "repo_name") or "")

    @property
    def tag(self) -> str:
        return str(_dig(self.payload, "push_data", "tag") or "")

    @property
    def pusher(self) -> str:
        return str(_dig(self.payload, "push_data", "pusher") or "")

    @property
    def revision(self) -> str:
        """What Dockership calls a revision: the tag, else the digest, else the first image."""
        images = _dig(self.payload, "push_data", "images")
        first_image = images[0] if isinstance(images, list) and images else ""
        return str(self.tag or _dig(self.payload, "push_data", "digest") or first_image)


def _dig(document: dict[str, Any], *keys: str) -> Any:
    value: Any = document
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


@dataclass(frozen=True)
class Callback:
    """A target's verdict on its step, as POSTed to its callback URL (DESIGN §1)."""

    state: CallbackState
    description: str | None = None
    context: str | None = None
    target_url: str | None = None


_last_id = 0
_id_lock = threading.Lock()


def delivery_id_floor(at: float) -> str:
    """The lowest id a delivery received at `at` (or later) can have: a bound on the primary
    key that stands for a time."""
    value = int(at * 1000) << 80
    return base64.b32hexencode(value.to_bytes(16, "big")).decode("ascii")[:26].lower()


def new_delivery_id(now: float | None = None) -> str:
    """A ULID-style id: 48 bits of milliseconds then 80 random bits, 26 characters.

    Ids sort by time, which gives history its newest-first order and its cursor; within one
    process they also sort in the order they were made, even inside one millisecond.
    """
    global _last_id
    millis = int((time.time() if now is None else now) * 1000)
    with _id_lock:
        value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
        if value <= _last_id:
            value = _last_id + 1
        _last_id = value
    # base32hex keeps the byte order in the text order.
    return base64.b32hexencode(value.to_bytes(16, "big")).decode("ascii")[:26].lower()


def new_trigger_id() -> str:
    """A Docker Cloud trigger's id, which is also its only credential: 192 bits from `secrets`."""
    return secrets.token_urlsafe(24)


SERVICES = uuid.uuid5(uuid.NAMESPACE_URL, "relay:chains")
"""The namespace of chains' Docker Cloud service UUIDs (fixed: a UUID must never change)."""


def service_uuid(chain: str) -> str:
    """The UUID a chain has as a Docker Cloud service: the same for its name on every relay."""
    return str(uuid.uuid5(SERVICES, chain))


_MESSAGE_ID = "msg_"


def new_message_id() -> str:
    """The Standard Webhooks `webhook-id` of one send, stable across its retries."""
    return _MESSAGE_ID + secrets.token_hex(12)


def new_step_secrets(count: int) -> list[tuple[str, str]]:
    """(webhook-id, callback token: 192 bits) for `count` steps, from one read of the OS's
    randomness."""
    pool = secrets.token_bytes(36 * count)
    return [(_MESSAGE_ID + pool[i:i + 12].hex(),
             base64.urlsafe_b64encode(pool[i + 12:i + 36]).decode("ascii"))
            for i in range(0, 36 * count, 36)]


def iso(timestamp: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC with milliseconds, the way history shows times."""
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def delivery_time(delivery_id: str) -> float:
    """When a delivery id was made (epoch seconds, to the millisecond): new_delivery_id's
    inverse."""
    value = int.from_bytes(base64.b32hexdecode(delivery_id.upper() + "======"), "big")
    return (value >> 80) / 1000
