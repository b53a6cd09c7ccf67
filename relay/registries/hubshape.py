"""Docker Hub's push payload (DESIGN §1), built from what any registry tells of a tag push."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any, TypeGuard

import orjson

# Docker's reference grammar: a tag is up to 128 of [A-Za-z0-9_.-], not starting with . or -.
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
TIME_MESSAGE = "must be an RFC 3339 time such as 2006-01-02T15:04:05Z"
_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$")


def payload(*, repository: str, tag: str, pushed_at: int, pusher: str,
            digest: str | None = None, media_type: str | None = None,
            registry: str | None = None, repo_url: str | None = None,
            more_repository: dict[str, Any] | None = None) -> dict[str, Any]:
    """A tag push as Docker Hub sends it, with what a self-hosted registry adds kept beside:
    the digest and media type of what was pushed, the registry's host, and the reference
    that `docker pull` takes (`push_data.resource_url`)."""
    namespace, _, name = repository.rpartition("/")
    push_data: dict[str, Any] = {"pushed_at": pushed_at, "pusher": pusher, "tag": tag}
    if digest:
        push_data["digest"] = digest
    if media_type:
        push_data["media_type"] = media_type
    if registry:
        push_data["resource_url"] = f"{registry}/{repository}:{tag}"
    described: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "owner": namespace,
        "repo_name": repository,
    }
    if repo_url:
        described["repo_url"] = repo_url
    if registry:
        described["registry"] = registry
    described.update(more_repository or {})
    return {"push_data": push_data, "repository": described}


def is_tag(value: object) -> TypeGuard[str]:
    """Whether `value` names a tag (a digest in the tag's place, as Harbor sends for a push by
    digest, does not)."""
    return isinstance(value, str) and bool(_TAG.match(value))


def epoch_seconds(timestamp: str) -> int:
    """Whole seconds since the epoch from an RFC 3339 time with any number of fraction digits
    (Go writes nanoseconds), as Docker Hub's integer `pushed_at`."""
    match = _RFC3339.match(timestamp)
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {timestamp!r}")
    date, time, _fraction, offset = match.groups()
    offset = "+00:00" if offset in ("Z", "z") else offset
    return int(datetime.fromisoformat(f"{date}T{time}{offset}").timestamp())


def fingerprint(document: Any) -> str:
    """A stable id for an event that carries none: the same JSON (in any key order) gives the
    same fingerprint, so a sender's repeat of it is recognised."""
    canonical = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    return "sha256:" + hashlib.sha256(canonical).hexdigest()
