"""Notifications of registries other than Docker Hub, turned into Docker Hub pushes (DESIGN §7).

`recognise` tells from the content type and the body's shape who sent a notification; the
sender's module turns the body into one `TagPush` per tag push (its payload in Docker Hub's shape,
so that a chain's targets see one shape whatever the registry) and one `Skip` per anything
else (a pull, a blob, a manifest pushed by digest alone), with the reason. All of it is pure:
no I/O, no clock; intake validates the body against `schema_of(sender)` first.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from relay.registries import distribution, harbor
from relay.registries.items import Invalid, Item, Skip, TagPush

__all__ = ["Invalid", "Item", "Sender", "Skip", "TagPush", "recognise", "schema_of", "translate"]

DISTRIBUTION_MEDIA_TYPE_PREFIX = "application/vnd.docker.distribution.events."


class Sender(StrEnum):
    DOCKER_HUB = "docker-hub"
    DISTRIBUTION = "distribution"
    HARBOR = "harbor"


_SCHEMAS = {
    Sender.DOCKER_HUB: "push",
    Sender.DISTRIBUTION: "distribution-events",
    Sender.HARBOR: "harbor-event",
}

DESCRIPTIONS = {
    Sender.DOCKER_HUB: "Docker Hub push notification",
    Sender.DISTRIBUTION: "distribution registry notification",
    Sender.HARBOR: "Harbor webhook event",
}


def recognise(content_type: str, document: dict[str, Any]) -> Sender:
    """Who sent `document`: the content type says it when the sender sets its own, the shape
    says it when the sender (or a proxy on the way) calls it application/json."""
    content_type = content_type.lower()
    if content_type.startswith(DISTRIBUTION_MEDIA_TYPE_PREFIX):
        return Sender.DISTRIBUTION
    if "push_data" in document:
        return Sender.DOCKER_HUB
    if "events" in document:
        return Sender.DISTRIBUTION
    if harbor.looks_like(document):
        return Sender.HARBOR
    return Sender.DOCKER_HUB


def schema_of(sender: Sender) -> str:
    """The name of the schema in schemas/ that a body from `sender` must satisfy."""
    return _SCHEMAS[sender]


def translate(sender: Sender, document: dict[str, Any], media_types: Sequence[str],
              request_key: str | None) -> list[Item]:
    """A registry's (schema-valid) notification as pushes and skips, in the body's order.

    `media_types` are the manifest media types (or glob patterns) that count as an image push;
    `request_key` is the request's Idempotency-Key, used for events that carry no id of their
    own.
    """
    match sender:
        case Sender.DISTRIBUTION:
            return distribution.translate(document, media_types, request_key)
        case Sender.HARBOR:
            return harbor.translate(document, request_key)
        case Sender.DOCKER_HUB:
            raise ValueError("a Docker Hub push needs no translation")
