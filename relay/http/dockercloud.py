"""Docker Cloud service triggers in relay's own dialect, per chain, under
/api/chains/{chain}/triggers/: list, create, get, delete with the admin token; POST
.../{id}/call/ with no other credential, since the unguessable id is one.
(Docker Cloud's own paths are dockercloud_v1.py; both share service_triggers.py.)
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from relay import config
from relay.http import answers, auth, service_triggers
from relay.http.appkeys import CONFIG
from relay.models import iso


async def listing(request: web.Request) -> web.Response:
    settings = request.app[CONFIG].current
    chain = auth.admin_chain(request)
    rows = await service_triggers.listing(request, chain)
    return answers.respond({"meta": {"total_count": len(rows)},
                            "objects": [shown(settings, row) for row in rows]})


async def create(request: web.Request) -> web.Response:
    settings = request.app[CONFIG].current
    chain = auth.admin_chain(request)
    answer = shown(settings, await service_triggers.create(request, chain))
    return answers.respond(answer, 201,
                           {"Location": settings.server.public_url + answer["resource_uri"]})


async def show(request: web.Request) -> web.Response:
    chain = auth.admin_chain(request)
    row = await service_triggers.get(request, chain, request.match_info["id"])
    return answers.respond(shown(request.app[CONFIG].current, row))


async def delete(request: web.Request) -> web.Response:
    chain = auth.admin_chain(request)
    await service_triggers.delete(request, chain, request.match_info["id"])
    return web.Response(status=204)


async def call(request: web.Request) -> web.Response:
    """POST .../{id}/call/: no Authorization needed."""
    return await service_triggers.call(request, request.match_info["chain"],
                                       request.match_info["id"])


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
