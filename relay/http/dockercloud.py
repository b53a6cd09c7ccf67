"""Docker Cloud service triggers (seeds/docker-cloud-service-triggers.md), per chain, under
/api/chains/{chain}/triggers/: list, create, get, delete with the admin token; POST
.../{id}/call/ with no other credential, since the unguessable id is one.

A trigger id is a secret: it is never logged (logs.py also scrubs /triggers/<id> from any
string) and never put in an error answer.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from relay import config, errors, logs, schemas
from relay.engine import redelivery
from relay.http import answers, auth, bodies, intake
from relay.http.appkeys import CONFIG, STORE
from relay.models import iso
from relay.store import triggers

SCALEUP_REFUSED = ("SCALEUP is not offered: relay runs chains of webhooks and has no "
                   "containers to scale; use REDEPLOY")


async def listing(request: web.Request) -> web.Response:
    settings = request.app[CONFIG].current
    chain = auth.admin_chain(request)
    rows = await request.app[STORE].read(lambda tx: triggers.listing(tx, chain.name))
    return answers.respond({"meta": {"total_count": len(rows)},
                            "objects": [shown(settings, row) for row in rows]})


async def create(request: web.Request) -> web.Response:
    settings = request.app[CONFIG].current
    chain = auth.admin_chain(request)
    document, _ = await bodies.read_object(request, empty_is_object=True)
    details = schemas.validate("trigger", document)
    if details:
        raise errors.HTTPError(422, "the body is not a valid trigger", details)
    operation = document.get("operation", triggers.REDEPLOY)
    if operation != triggers.REDEPLOY:
        raise errors.HTTPError(422, SCALEUP_REFUSED,
                               [errors.Detail("/operation", "must be REDEPLOY")])
    name = document.get("name") or f"{chain.name}-{operation.lower()}"
    row = await request.app[STORE].write(
        lambda tx: triggers.create(tx, chain.name, name, operation, time.time()))
    logs.get().info("trigger.created", chain=chain.name, name=name, operation=operation)
    answer = shown(settings, row)
    return answers.respond(answer, 201,
                           {"Location": settings.server.public_url + answer["resource_uri"]})


async def show(request: web.Request) -> web.Response:
    settings = request.app[CONFIG].current
    chain = auth.admin_chain(request)
    trigger_id = request.match_info["id"]
    row = await request.app[STORE].read(lambda tx: triggers.get(tx, chain.name, trigger_id))
    if row is None:
        raise redelivery.no_such_trigger()
    return answers.respond(shown(settings, row))


async def delete(request: web.Request) -> web.Response:
    chain = auth.admin_chain(request)
    trigger_id = request.match_info["id"]
    row = await request.app[STORE].write(lambda tx: triggers.delete(tx, chain.name, trigger_id))
    if row is None:
        raise redelivery.no_such_trigger()
    logs.get().info("trigger.deleted", chain=chain.name, name=row["name"])
    return web.Response(status=204)


async def call(request: web.Request) -> web.Response:
    """POST .../{id}/call/: no Authorization needed; the body, if any, is not read."""
    settings = request.app[CONFIG].current
    chain, trigger_id = request.match_info["chain"], request.match_info["id"]
    trigger, delivery_id = await request.app[STORE].write(
        lambda tx: redelivery.redeploy(tx, request.app[CONFIG], chain, trigger_id,
                                      time.time()))
    logs.get().info("trigger.called", chain=chain, name=trigger["name"],
                    operation=trigger["operation"], delivery=delivery_id)
    return intake.accepted(settings, delivery_id)


def shown(settings: config.Settings, row: dict[str, Any]) -> dict[str, Any]:
    """A trigger as Docker Cloud shows one; `url` is absolute, to be handed to a caller."""
    resource = f"/api/chains/{row['chain']}/triggers/{row['id']}/"
    return {
        "url": f"{settings.server.public_url}{resource}call/",
        "name": row["name"],
        "operation": row["operation"],
        "resource_uri": resource,
        "chain": row["chain"],
        "created_at": iso(row["created_at"]),
    }



