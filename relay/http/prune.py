"""POST /api/prune (admin token): delete, now, the deliveries that ended longer ago than
`older_than` (what `[history] retention` does in the background)."""

from __future__ import annotations

import time

from aiohttp import web

from relay import config, errors, logs
from relay.engine import retention
from relay.http import answers, auth, bodies
from relay.http.appkeys import METRICS, STORE


async def prune(request: web.Request) -> web.Response:
    auth.require_admin(request)
    body, _ = await bodies.read_object(request)
    unknown = sorted(set(body) - {"older_than", "dry_run"})
    age = config.parse_duration(body.get("older_than"))
    problems = [errors.Detail(f"/{key}", "unknown field; known: older_than, dry_run")
                for key in unknown]
    if age is None or age <= 0:
        problems.append(errors.Detail("/older_than", 'must be an age such as "7d" or "12h"'))
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        problems.append(errors.Detail("/dry_run", "must be true or false"))
    if problems or age is None:
        raise errors.Invalid("the prune request is not valid", problems)
    cutoff = time.time() - age
    store = request.app[STORE]
    if dry_run:
        return answers.respond({"count": await retention.count(store, cutoff),
                                "dry_run": True})
    count = await retention.prune(store, cutoff)
    request.app[METRICS].pruned.inc(count)
    logs.get().info("history.pruned", deliveries=count, by="operator")
    return answers.respond({"count": count, "dry_run": False})
