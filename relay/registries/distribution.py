"""The CNCF distribution registry's notifications (`{"events": [...]}`, events v1 and v2).

Only a manifest push with a tag is a push in Docker Hub's sense. Blob pushes, pulls, mounts,
deletes and manifests pushed by digest alone are skips: a multi-platform push sends its
per-platform manifests by digest and then the index with the tag, so it makes one push.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from relay.registries import hubshape
from relay.registries.items import Invalid, Item, Skip, TagPush


def translate(envelope: dict[str, Any], media_types: Sequence[str],
              request_key: str | None) -> list[Item]:
    events = envelope["events"]
    return [event_item(event, f"/events/{index}", media_types,
                       _request_key(request_key, index, len(events)))
            for index, event in enumerate(events)]


def event_item(event: dict[str, Any], pointer: str, media_types: Sequence[str],
               request_key: str | None) -> Item:
    own_id = event.get("id") or ""
    action = event.get("action", "")
    target = event.get("target") or {}
    if action != "push":
        return Skip(pointer, own_id, f"a {action or 'nameless'} event makes no delivery")
    media_type = target.get("mediaType", "")
    if not any(fnmatch.fnmatchcase(media_type, pattern) for pattern in media_types):
        what = "a blob" if _is_blob(target) else "media type " + media_type
        return Skip(pointer, own_id, f"a push of {what} makes no delivery: only manifests of "
                                     "the chain's media_types do")
    tag = target.get("tag")
    if not hubshape.is_tag(tag):
        return Skip(pointer, own_id, "a manifest pushed by digest alone, without a tag, makes "
                                     "no delivery")
    key = own_id or request_key or hubshape.fingerprint(event)
    try:
        pushed_at = hubshape.epoch_seconds(event["timestamp"])
    except ValueError:
        raise Invalid(f"{pointer}/timestamp", hubshape.TIME_MESSAGE) from None
    return TagPush(pointer, own_id, f"distribution:{key}",
                _payload(event, target, tag, pushed_at))


def _payload(event: dict[str, Any], target: dict[str, Any], tag: str,
             pushed_at: int) -> dict[str, Any]:
    repository = target["repository"]
    url = urlsplit(target.get("url") or "")
    registry = (event.get("request") or {}).get("host") or url.netloc or None
    repo_url = None
    if url.scheme in ("http", "https") and url.netloc:
        repo_url = f"{url.scheme}://{url.netloc}/v2/{repository}/tags/list"
    return hubshape.payload(
        repository=repository, tag=tag,
        pushed_at=pushed_at,
        pusher=(event.get("actor") or {}).get("name") or "",
        digest=target.get("digest"), media_type=target.get("mediaType"),
        registry=registry, repo_url=repo_url)


def _is_blob(target: dict[str, Any]) -> bool:
    return "/blobs/" in (target.get("url") or "") or \
        target.get("mediaType") == "application/octet-stream"


def _request_key(request_key: str | None, index: int, count: int) -> str | None:
    """The request's Idempotency-Key for an event without an id of its own."""
    if request_key is None:
        return None
    return f"request:{request_key}" if count == 1 else f"request:{request_key}#{index}"
