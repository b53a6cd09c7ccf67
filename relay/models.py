"""What relay keeps: states and identifiers (the strings and ids in the store), a push ready
to be stored, and a target's callback."""

from __future__ import annotations

import base64
import os
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
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
    # Read from the payload once: intake reads them several times a push.
    repository: str = field(init=False)
    tag: str = field(init=False)
    pusher: str = field(init=False)
    revision: str = field(init=False)
    """What Dockership calls a revision: the tag, else the digest, else the first image."""

    def __post_init__(self) -> None:
        push_data = self.payload.get("push_data")
        if not isinstance(push_data, dict):
            push_data = {}
        repository = self.payload.get("repository")
        tag = str(push_data.get("tag") or "")
        images = push_data.get("images")
        first_image = images[0] if isinstance(images, list) and images else ""
        # Frozen: set once here, as dataclasses' own __init__ does.
        setattr_ = object.__setattr__
        setattr_(self, "repository", str((repository.get("repo_name")
                                          if isinstance(repository, dict) else None) or ""))
        setattr_(self, "tag", tag)
        setattr_(self, "pusher", str(push_data.get("pusher") or ""))
        setattr_(self, "revision", str(tag or push_data.get("digest") or first_image))


@dataclass(frozen=True)
class Callback:
    """A target's verdict on its step, as POSTed to its callback URL (DESIGN §1)."""

    state: CallbackState
    description: str | None = None
    context: str | None = None
    target_url: str | None = None


_last_id = 0
_id_lock = threading.Lock()

_BASE32HEX = "0123456789abcdefghijklmnopqrstuv"
_PAIRS = [a + b for a in _BASE32HEX for b in _BASE32HEX]
"""Every 10 bits as two base32hex characters: base64.b32hexencode is pure Python, and
took 5 of the 7 µs an id cost on intake's hot path."""


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
    random = int.from_bytes(random_bytes(10), "big")
    with _id_lock:
        value = (millis << 80) | random
        if value <= _last_id:
            value = _last_id + 1
        _last_id = value
    # base32hex keeps the byte order in the text order: 128 bits and 2 zero bits make 26
    # characters, as b32hexencode(value.to_bytes(16, "big"))[:26].lower() has it.
    padded = value << 2
    return "".join([_PAIRS[(padded >> shift) & 0x3FF] for shift in range(120, -1, -10)])


class _Entropy:
    """The OS's randomness read 4 KiB at a time: one getrandom call for a few hundred ids
    and tokens instead of one each. Refilled in a forked child, which must not repeat its
    parent's bytes."""

    SIZE = 4096

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.pool = b""
        self.offset = 0

    def take(self, count: int) -> bytes:
        with self.lock:
            if self.offset + count > len(self.pool):
                self.pool, self.offset = os.urandom(max(self.SIZE, count)), 0
            taken = self.pool[self.offset:self.offset + count]
            self.offset += count
            return taken


_entropy = _Entropy()
os.register_at_fork(after_in_child=_entropy.reset)


def random_bytes(count: int) -> bytes:
    """`count` bytes from the OS's cryptographic randomness (as os.urandom, buffered)."""
    return _entropy.take(count)


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


def new_step_secrets(count: int, prefix: str = "") -> list[tuple[str, str]]:
    """(webhook-id, callback token) for `count` steps. A token is `prefix` (the start of its
    delivery's id: the time) then 192 random bits, so that new tokens go to the end of the
    index on them, as new ids do, instead of to a random page of it (which cost intake a
    page written per push at every commit)."""
    pool = random_bytes(36 * count)
    return [(_MESSAGE_ID + pool[i:i + 12].hex(),
             prefix + base64.urlsafe_b64encode(pool[i + 12:i + 36]).decode("ascii"))
            for i in range(0, 36 * count, 36)]


TOKEN_PREFIX = 10
"""Characters of a delivery id that start its steps' callback tokens: 50 bits, its
millisecond and two random bits."""


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
