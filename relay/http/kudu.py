"""Kudu web hooks (seeds/kudu-web-hooks.txt): POST/GET/DELETE /api/hooks[/{id}] and POST
/api/hooks/[hooks/]publish/{event}, admin token.

A PostDeployment hook is sent Kudu's deployment payload whenever a chain ends (built in
notices.plan, sent by the worker like any step); a hook of any event type is sent what is
published to it (engine/publish.py). Its last_* fields tell how the last one went.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from relay import errors, logs, redaction, schemas
from relay.engine import publish as publishing
from relay.http import answers, auth, bodies
from relay.http.appkeys import CONFIG, STORE, WORKER
from relay.models import iso
from relay.store import kudu_hooks

_MAX_ID_DIGITS = 18  # a BIGINT
MAX_EVENT_LENGTH = 64
FIELDS = ("url", "event", "insecure_ssl", "chain")


async def subscribe(request: web.Request) -> web.Response:
    settings = request.app[CONFIG].current
    auth.require_admin(request)
    document = kudu_fields((await bodies.read_object(request))[0])
    details = schemas.validate("kudu-hook", document)
    chain = document.get("chain")
    if not details and chain is not None and settings.chain(chain) is None:
        details = [errors.Detail("/chain", f"no chain is named {chain!r}")]
    if details:
        raise errors.HTTPError(422, "the body is not a valid Kudu web hook", details)
    event = kudu_hooks.event_named(document.get("event", kudu_hooks.POST_DEPLOYMENT))
    wanted = kudu_hooks.Subscription(url=document["url"], event=event,
                                insecure=document.get("insecure_ssl", False), chain=chain)
    hook, created = await request.app[STORE].write(
        lambda tx: kudu_hooks.add(tx, wanted, time.time()), alone=True)
    if created:
        # Not the url: it may carry credentials or a receiver's own secret path.
        logs.get().info("kudu.subscribed", hook=hook["id"], kudu_event=hook["event"],
                        chain=hook["chain"], insecure_ssl=bool(hook["insecure"]))
    location = f"{settings.server.public_url}/api/hooks/{hook['id']}"
    return answers.respond(shown(hook), 201, {"Location": location})


async def listing(request: web.Request) -> web.Response:
    auth.require_admin(request)
    rows = await request.app[STORE].read(kudu_hooks.listing)
    return answers.respond([shown(row) for row in rows])


async def show(request: web.Request) -> web.Response:
    auth.require_admin(request)
    hook_id = _hook_id(request)
    row = await request.app[STORE].read(lambda tx: kudu_hooks.get(tx, hook_id))
    if row is None:
        raise _no_such_hook(hook_id)
    return answers.respond(shown(row))


async def unsubscribe(request: web.Request) -> web.Response:
    """200 and the hook as it was; 200 and null when there is no such hook, as Kudu answers
    200 whatever the id (deleting is done when the hook is not there)."""
    auth.require_admin(request)
    try:
        hook_id = _hook_id(request)
    except errors.HTTPError:
        return answers.respond(None)
    row = await request.app[STORE].write(lambda tx: kudu_hooks.delete(tx, hook_id, time.time()))
    if row is None:
        return answers.respond(None)
    logs.get().info("kudu.unsubscribed", hook=hook_id)
    return answers.respond(shown(row))


async def publish(request: web.Request) -> web.Response:
    """POST the body (any JSON) to every hook of the event type, now, as Kudu does; 200 and
    those hooks with their last_* fields, once every one has answered or failed."""
    auth.require_admin(request)
    event = kudu_hooks.event_named(request.match_info["event"])
    if len(event) > MAX_EVENT_LENGTH:
        raise errors.HTTPError(400, f"an event type has at most {MAX_EVENT_LENGTH} characters")
    server = request.app[CONFIG].current.server
    _, text = bodies.parse_json(await bodies.read_body(request, server.max_body_bytes),
                                server.max_json_depth)
    hooks = await publishing.publish(request.app[WORKER], event, text)
    return answers.respond([shown(row) for row in hooks])


def kudu_fields(document: dict[str, Any]) -> dict[str, Any]:
    """A hook's body as Kudu (Json.NET) reads it: known fields matched ignoring case, the
    rest ignored (Kudu's own client sends id and last_* along)."""
    found: dict[str, Any] = {}
    for key, value in document.items():
        name = key if key in FIELDS else key.lower()
        if name in FIELDS and (name not in found or key == name):
            found[name] = value
    return found


def shown(row: dict[str, Any]) -> dict[str, Any]:
    """A hook as Kudu shows it, plus relay's chain filter; the url without credentials."""
    return {
        "id": row["id"],
        "url": redaction.without_credentials(row["url"]),
        "event": row["event"],
        "insecure_ssl": bool(row["insecure"]),
        "chain": row["chain"],
        "last_datetime": iso(row["last_at"]),
        "last_status": row["last_status"],
        "last_reason": row["last_reason"],
        "last_context": row["last_context"],
    }


def _hook_id(request: web.Request) -> int:
    text = request.match_info["id"]
    if not (text.isascii() and text.isdigit()) or len(text) > _MAX_ID_DIGITS:
        raise errors.HTTPError(404, "no hook has this id")
    return int(text)


def _no_such_hook(hook_id: int) -> errors.HTTPError:
    return errors.HTTPError(404, f"no hook has id {hook_id}")
