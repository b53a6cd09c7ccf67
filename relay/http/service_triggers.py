"""A chain's Docker Cloud service triggers (seeds/docker-cloud-service-triggers.md), whichever
path names them: what relay's /api/chains/{chain}/triggers/ (dockercloud.py) and Docker
Cloud's own /api/app/v1/service/{uuid}/trigger/ (dockercloud_v1.py) share. Their handlers
find the chain and shape the answers; creating, finding, revoking and calling are here.

A trigger id is a secret: it is never logged (logs.py also scrubs /trigger(s)/<id> from any
string) and never put in an error answer.
"""

from __future__ import annotations

import time

from aiohttp import web

from relay import config, errors, logs, schemas
from relay.engine import redelivery
from relay.http import bodies, intake, ratelimit
from relay.http.appkeys import CONFIG, LIMITS, STORE
from relay.store import triggers
from relay.store.base import Row

SCALEUP_REFUSED = ("SCALEUP is not offered: relay runs chains of webhooks and has no "
                   "containers to scale; use REDEPLOY")


async def listing(request: web.Request, chain: config.Chain) -> list[Row]:
    return await request.app[STORE].read(lambda tx: triggers.listing(tx, chain.name))


async def create(request: web.Request, chain: config.Chain) -> Row:
    """A trigger made from the request's body (optional, as in Docker Cloud)."""
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
    return row


async def get(request: web.Request, chain: config.Chain, trigger_id: str) -> Row:
    row = await request.app[STORE].read(lambda tx: triggers.get(tx, chain.name, trigger_id))
    if row is None:
        raise redelivery.no_such_trigger()
    return row


async def delete(request: web.Request, chain: config.Chain, trigger_id: str) -> Row:
    """The trigger as it was; its call URL stops working at once."""
    row = await request.app[STORE].write(lambda tx: triggers.delete(tx, chain.name, trigger_id))
    if row is None:
        raise redelivery.no_such_trigger()
    request.app[LIMITS].forget_trigger(chain.name, trigger_id)
    logs.get().info("trigger.deleted", chain=chain.name, name=row["name"])
    return row


async def call(request: web.Request, chain_name: str, trigger_id: str) -> web.Response:
    """Run the chain again (REDEPLOY), within the trigger's and the chain's rate limits.

    The limits are counted only for a trigger that exists, so that nobody without its URL
    can spend them. The body, if any, is not read."""
    store, limits = request.app[STORE], request.app[LIMITS]
    found = await store.read(lambda tx: triggers.get(tx, chain_name, trigger_id))
    if found is None:
        raise redelivery.no_such_trigger()
    wait = limits.wait_trigger(chain_name, trigger_id)
    if wait:
        raise ratelimit.too_many(wait, f"too many calls of trigger {found['name']}")
    wait = limits.wait(chain_name)
    if wait:
        raise ratelimit.too_many(wait, f"too many pushes and trigger calls to chain "
                                       f"{chain_name}")
    trigger, delivery_id = await store.write(
        lambda tx: redelivery.redeploy(tx, request.app[CONFIG], chain_name, trigger_id,
                                      time.time()))
    logs.get().info("trigger.called", chain=chain_name, name=trigger["name"],
                    operation=trigger["operation"], delivery=delivery_id)
    return intake.accepted(request.app[CONFIG].current, delivery_id)
