"""Harbor's webhook events: the Default payload (`type`, `occur_at`, `operator`, `event_data`)
and the CloudEvents one (`specversion`, `id`, `time`, `data`). Only an artifact push with a
tag makes a push; every other event type is a skip.
"""

from __future__ import annotations

from typing import Any

from relay.registries import hubshape
from relay.registries.items import Invalid, Item, Skip, TagPush

PUSH_TYPES = frozenset({"PUSH_ARTIFACT", "harbor.artifact.pushed"})


def looks_like(document: dict[str, Any]) -> bool:
    """A Harbor event in either format, told apart from other JSON by its own fields."""
    if "specversion" in document:
        return str(document.get("type", "")).startswith("harbor.")
    return "type" in document and ("event_data" in document or "occur_at" in document)


def translate(document: dict[str, Any], request_key: str | None) -> list[Item]:
    cloud = "specversion" in document
    # Only the CloudEvents format carries an event id; Harbor sends the same body again
    # when it retries, so the body's fingerprint stands in for the Default format's.
    own_id = str(document.get("id") or "") if cloud else ""
    kind = document["type"]
    if kind not in PUSH_TYPES:
        return [Skip("", own_id, f"a Harbor {kind} event makes no delivery")]
    where = "/data" if cloud else "/event_data"
    data = document["data" if cloud else "event_data"]
    base = own_id or (f"request:{request_key}" if request_key else "") or \
        hubshape.fingerprint(document)
    pushed_at = _pushed_at(document, cloud)
    items: list[Item] = []
    for index, resource in enumerate(data["resources"]):
        pointer = f"{where}/resources/{index}"
        tag = resource.get("tag")
        if not hubshape.is_tag(tag):
            items.append(Skip(pointer, own_id, "an artifact pushed by digest alone, without a "
                                               "tag, makes no delivery"))
            continue
        payload = _payload(document, data["repository"], resource, tag, pushed_at)
        items.append(TagPush(pointer, own_id, f"harbor:{base}#{tag}", payload))
    return items or [Skip(where, own_id, "the event names no artifact")]


def _pushed_at(document: dict[str, Any], cloud: bool) -> int:
    if not cloud:
        return int(document["occur_at"])
    try:
        return hubshape.epoch_seconds(document["time"])
    except ValueError:
        raise Invalid("/time", hubshape.TIME_MESSAGE) from None


def _payload(document: dict[str, Any], repository: dict[str, Any], resource: dict[str, Any],
             tag: str, pushed_at: int) -> dict[str, Any]:
    resource_url = resource.get("resource_url") or ""
    registry = resource_url.split("/", 1)[0] if "/" in resource_url else None
    described: dict[str, Any] = {}
    for key in ("name", "namespace"):
        if isinstance(repository.get(key), str):
            described[key] = repository[key]
    if "namespace" in described:
        described["owner"] = described["namespace"]
    if isinstance(repository.get("date_created"), int | float):
        described["date_created"] = repository["date_created"]
    if repository.get("repo_type") in ("private", "public"):
        described["is_private"] = repository["repo_type"] == "private"
    return hubshape.payload(
        repository=repository["repo_full_name"], tag=tag, pushed_at=pushed_at,
        pusher=str(document.get("operator") or ""), digest=resource.get("digest"),
        registry=registry, more_repository=described)
