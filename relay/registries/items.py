"""What a registry's notification becomes: pushes in Docker Hub's shape, and skips with reasons."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TagPush:
    """One tag push, ready to be validated and stored like a Docker Hub push."""

    pointer: str
    """Where in the notification it came from (a JSON pointer such as /events/2)."""
    event: str
    """The sender's own id of the event ("" when it has none), for answers and logs."""
    key: str
    """Relay's idempotency key: the same for every repeat of this event by the sender."""
    payload: dict[str, Any]


@dataclass(frozen=True)
class Skip:
    """An event that makes no delivery (a pull, a blob push, a manifest pushed by digest)."""

    pointer: str
    event: str
    reason: str


Item = TagPush | Skip


class Invalid(ValueError):
    """A value the schema let through that still cannot be read (a 31st of February)."""

    def __init__(self, pointer: str, message: str) -> None:
        super().__init__(f"{pointer}: {message}")
        self.pointer = pointer
        self.message = message
