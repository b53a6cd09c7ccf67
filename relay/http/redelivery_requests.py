"""The bodies of POST /history/{id}/redeliver and POST /history/redeliver, checked: every
problem is a 422 detail naming its field."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from relay import errors
from relay.engine.redelivery import FromStep
from relay.models import FINAL_DELIVERY_STATES
from relay.store.deliveries import Filter

BULK_FIELDS = ("chain", "state", "repository", "tag", "since", "until", "from_step", "dry_run")


def from_step(body: dict[str, Any], allowed: tuple[str, ...] = ("from_step",)) -> FromStep:
    _only(body, allowed)
    value = body.get("from_step")
    if value is None:
        return None
    if value == "failed" or (isinstance(value, int) and not isinstance(value, bool)
                             and value >= 0):
        return value  # type: ignore[no-any-return]
    raise errors.Invalid("from_step is not valid", [errors.Detail(
        "/from_step", 'must be a step index (0, 1, ...) or "failed"')])


def bulk(body: dict[str, Any]) -> tuple[Filter, FromStep, bool]:
    """The filter, where each redelivery starts, and whether it is a dry run."""
    start = from_step(body, BULK_FIELDS)
    problems: list[errors.Detail] = []
    if body.get("state") is None and body.get("since") is None:
        problems.append(errors.Detail("", "give state or since (or both): redelivering "
                                          "everything at once is never what was meant"))
    texts = {}
    for key in ("chain", "state", "repository", "tag"):
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            problems.append(errors.Detail(f"/{key}", "must be a string"))
        texts[key] = value
    if isinstance(texts["state"], str) and texts["state"] not in FINAL_DELIVERY_STATES:
        problems.append(errors.Detail("/state", "must be success, failure or error: only "
                                                "ended deliveries are redelivered"))
    times = {key: _time(body.get(key), key, problems) for key in ("since", "until")}
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        problems.append(errors.Detail("/dry_run", "must be true or false"))
    if problems:
        raise errors.Invalid("the redelivery filter is not valid", problems)
    return Filter(chain=texts["chain"], state=texts["state"], repository=texts["repository"],
                  tag=texts["tag"], since=times["since"], until=times["until"]), start, dry_run


def _time(value: Any, key: str, problems: list[errors.Detail]) -> float | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        problems.append(errors.Detail(f"/{key}", "must be an RFC 3339 time with its offset, "
                                                 "such as 2026-12-01T08:00:00Z"))
        return None
    return moment.timestamp()


def _only(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise errors.Invalid("the body has fields relay does not know", [
            errors.Detail(f"/{key}", f"unknown field; known: {', '.join(allowed)}")
            for key in unknown])
