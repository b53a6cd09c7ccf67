"""Lists as Docker Cloud's API (Django tastypie) answers them: `{"meta": {limit, next, offset,
previous, total_count}, "objects": [...]}`, paged by `?limit=&offset=`, with `next` and
`previous` as relative URLs (python-dockercloud follows `next` by offset)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from aiohttp import web

from relay import errors

DEFAULT_LIMIT = 25
MAX_LIMIT = 250
PAGING = frozenset({"limit", "offset", "format"})
"""Query parameters every list takes (`format=json` is tastypie's, and JSON is all there is)."""


def page(request: web.Request, objects: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The page of `objects` that the request's `limit` and `offset` ask for."""
    limit = _number(request, "limit", DEFAULT_LIMIT) or MAX_LIMIT  # tastypie: 0 is "most"
    limit = min(limit, MAX_LIMIT)
    offset = _number(request, "offset", 0)
    total = len(objects)
    after = offset + limit
    return {
        "meta": {
            "limit": limit,
            "next": _at(request, limit, after) if after < total else None,
            "offset": offset,
            "previous": _at(request, limit, max(0, offset - limit)) if offset > 0 else None,
            "total_count": total,
        },
        "objects": list(objects[offset:after]),
    }


def filters(request: web.Request, allowed: Collection[str]) -> dict[str, str]:
    """The request's filters; 400 for one the list does not take, as tastypie answers."""
    found = {key: value for key, value in request.query.items() if key not in PAGING}
    refused = [key for key in found if key not in allowed]
    if refused:
        shown = ", ".join(sorted(allowed)) or "none"
        raise errors.HTTPError(400, f"the {refused[0]!r} field does not allow filtering "
                                    f"(filters here: {shown})",
                               [errors.Detail(key, "does not allow filtering")
                                for key in refused])
    return found


def _number(request: web.Request, key: str, default: int) -> int:
    text = request.query.get(key)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise errors.HTTPError(400, f"{key} must be a whole number from 0",
                               [errors.Detail(key, "must be a whole number from 0")])
    return int(text)


def _at(request: web.Request, limit: int, offset: int) -> str:
    return str(request.rel_url.update_query(limit=limit, offset=offset))
