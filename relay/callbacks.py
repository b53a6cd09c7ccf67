"""POST /callbacks/{token}: a target's verdict on its step; validate -> decide -> apply."""

from __future__ import annotations

import time

from aiohttp import web

from relay import errors, httpkit, logs, models, schemas, worker
from relay.appkeys import METRICS, SETTINGS, STORE, WORKER
from relay.store import deliveries


async def receive(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    document, _ = await httpkit.read_object(request)
    details = schemas.validate("callback", document)
    if details:
        raise errors.HTTPError(422, "the callback is not valid", details)
    verdict = deliveries.Callback(
        state=models.CallbackState(document["state"]),
        description=document.get("description"),
        context=document.get("context"),
        target_url=document.get("target_url"),
    )
    token = request.match_info["token"]
    # The step this callback starts goes straight to this process's worker.
    relay_worker = request.app[WORKER]
    handoff = relay_worker.handoff_lease()
    applied = await request.app[STORE].write(
        lambda tx: deliveries.callback(tx, settings, token, verdict, time.time(), handoff))
    relay_worker.take(applied.handoff)
    logs.get().info("callback", delivery=applied.delivery_id, chain=applied.chain,
                    step=applied.idx, target=applied.name, state=verdict.state,
                    description=verdict.description)
    worker.report(applied, request.app[METRICS])
    return httpkit.respond({"delivery": applied.delivery_id, "step": applied.idx,
                            "state": verdict.state})
