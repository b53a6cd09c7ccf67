"""POST /callbacks/{token}: a target's verdict on its step; validate -> decide -> apply."""

from __future__ import annotations

import time

from aiohttp import web

from relay import errors, logs, models, schemas
from relay.engine import apply
from relay.http import answers, bodies
from relay.http.appkeys import CONFIG, METRICS, STORE, WORKER


async def receive(request: web.Request) -> web.Response:
    live = request.app[CONFIG]
    document, _ = await bodies.read_object(request)
    details = schemas.validate("callback", document)
    if details:
        raise errors.HTTPError(422, "the callback is not valid", details)
    verdict = models.Callback(
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
        lambda tx: apply.callback(tx, live, token, verdict, time.time(), handoff),
        key=relay_worker.delivery_of(token))
    relay_worker.take(applied.handoff)
    logs.get().info("callback", delivery=applied.delivery_id, chain=applied.chain,
                    step=applied.idx, target=applied.name, state=verdict.state,
                    description=verdict.description)
    request.app[METRICS].chain_ended(applied.delivery_id, applied.chain, applied.finished)
    return answers.respond({"delivery": applied.delivery_id, "step": applied.idx,
                            "state": verdict.state})
