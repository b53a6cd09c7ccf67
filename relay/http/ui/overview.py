"""GET /ui/api/overview: the last 24 hours at a glance. Deliveries per hour by outcome (the
page draws the bars), and each target's state with its success rate, attempt times and last
error."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from typing import Any

from relay import config, models
from relay.engine import pausing
from relay.http.targets import shown
from relay.store import overview
from relay.store.base import Tx

HOURS = 24
OUTCOMES = ("success", "failure", "error", "running", "pending")


async def read(tx: Tx, settings: config.Settings, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    first_hour = math.floor(now / 3600) - HOURS + 1
    since = models.delivery_id_floor(first_hour * 3600)
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    for row in await overview.per_hour(tx, since):
        counts[int(row["hour"])][row["state"]] = int(row["n"])
    hours = [{"hour": models.iso(hour * 3600.0),
              **{outcome: counts[hour].get(outcome, 0) for outcome in OUTCOMES}}
             for hour in range(first_hour, first_hour + HOURS)]
    samples: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for row in await overview.latest_attempts(tx, since):
        samples[(row["chain"], row["name"])].append(row)
    targets = [_target(shown(state, settings), samples.get((state.chain, state.target), []),
                       settings)
               for state in await pausing.states(tx, settings)]
    return {"hours": hours, "targets": targets,
            "sample": overview.ATTEMPTS_SAMPLE}


def _target(state: dict[str, Any], attempts: list[Any],
            settings: config.Settings) -> dict[str, Any]:
    ok = [a["status"] is not None and 200 <= a["status"] < 300 for a in attempts]
    times = sorted(float(a["duration_ms"]) for a in attempts if a["duration_ms"] is not None)
    failed = next((a for a, good in zip(attempts, ok, strict=True) if not good), None)
    last_error = state["last_error"]
    if failed is not None:
        last_error = settings.redactor.scrub(
            failed["error"] or f"target answered HTTP {failed['status']}")
    return {**state, "attempts": len(attempts),
            "success_rate": round(sum(ok) / len(attempts), 4) if attempts else None,
            "p50_ms": _percentile(times, 0.50), "p95_ms": _percentile(times, 0.95),
            "last_error": last_error}


def _percentile(ordered: list[float], share: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)], 1)
