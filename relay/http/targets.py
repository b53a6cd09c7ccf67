"""GET /api/targets, POST /api/targets/{chain}/{target}/pause and /resume (admin token):
every configured target's state, and pausing or resuming one by hand."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from relay import config, errors, logs, models
from relay.engine import pausing
from relay.http import answers, auth
from relay.http.appkeys import CONFIG, STORE
from relay.store.base import Tx


async def listing(request: web.Request) -> web.Response:
    auth.require_admin(request)
    return await answer_listing(request)


async def pause(request: web.Request) -> web.Response:
    auth.require_admin(request)
    return await answer_change(request, pause=True)


async def resume(request: web.Request) -> web.Response:
    auth.require_admin(request)
    return await answer_change(request, pause=False)


async def answer_listing(request: web.Request) -> web.Response:
    settings = request.app[CONFIG].current
    found = await request.app[STORE].read(lambda tx: pausing.states(tx, settings))
    return answers.respond({"items": [shown(state, settings) for state in found]})


async def answer_change(request: web.Request, pause: bool) -> web.Response:
    settings = request.app[CONFIG].current
    chain_name, target = request.match_info["chain"], request.match_info["target"]
    configured = settings.chain(chain_name)
    if configured is None or configured.target(target) is None:
        raise errors.HTTPError(404, f"chain {chain_name!r} has no target {target!r}")

    async def change(tx: Tx) -> pausing.TargetState:
        now = time.time()
        if pause:
            await pausing.pause(tx, chain_name, target, now, by=pausing.OPERATOR)
        else:
            await pausing.resume(tx, chain_name, target, now, by=pausing.OPERATOR)
        return next(s for s in await pausing.states(tx, settings)
                    if (s.chain, s.target) == (chain_name, target))

    state = await request.app[STORE].write(change)
    if pause:
        logs.get().warning("target.paused", chain=chain_name, target=target,
                           by=pausing.OPERATOR)
    return answers.respond(shown(state, settings))


def shown(state: pausing.TargetState, settings: config.Settings) -> dict[str, Any]:
    return {"chain": state.chain, "target": state.target, "state": state.state,
            "paused_by": state.paused_by, "since": models.iso(state.since),
            "consecutive_failures": state.consecutive_failures,
            "last_error": settings.redactor.scrub(state.last_error) if state.last_error else None,
            "waiting": state.waiting}
