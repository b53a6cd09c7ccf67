"""Docker Cloud's own API for service triggers (seeds/docker-cloud-service-triggers.md), so
that its clients (python-dockercloud, docker-cloud) work against relay unchanged: each chain
is a service with a stable UUID, under /api/app/v1/service/ and /api/app/v1/{namespace}/
service/. Authorization: Basic base64(username:apikey) with relay's admin token as the apikey
(auth.require_api_key); a trigger's call/ URL needs none.

`url` and `resource_uri` are relative paths, as Docker Cloud gives them, and keep the form
(namespaced or not) that the request used.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from relay import config, errors
from relay.engine import redelivery
from relay.http import answers, auth, service_triggers, tastypie
from relay.http.appkeys import CONFIG
from relay.models import iso

SERVICE_FILTERS = ("name", "uuid", "uuid__startswith")


async def services(request: web.Request) -> web.Response:
    """GET .../service/: the chains as services, filtered by `name`, `uuid` or
    `uuid__startswith` (what python-dockercloud and docker-cloud look services up by)."""
    auth.require_api_key(request)
    wanted = tastypie.filters(request, SERVICE_FILTERS)
    found = [service(request, chain) for chain in request.app[CONFIG].current.chains]
    found = [s for s in found if _matches(s, wanted)]
    return answers.respond(tastypie.page(request, found))


async def fetch(request: web.Request) -> web.Response:
    return answers.respond(service(request, _chain(request)))


async def triggers(request: web.Request) -> web.Response:
    chain = _chain(request)
    tastypie.filters(request, ())
    rows = await service_triggers.listing(request, chain)
    return answers.respond(tastypie.page(request, [trigger(request, chain, r) for r in rows]))


async def create(request: web.Request) -> web.Response:
    chain = _chain(request)
    answer = trigger(request, chain, await service_triggers.create(request, chain))
    location = request.app[CONFIG].current.server.public_url + answer["resource_uri"]
    return answers.respond(answer, 201, {"Location": location})


async def show(request: web.Request) -> web.Response:
    chain = _chain(request)
    row = await service_triggers.get(request, chain, request.match_info["trigger_uuid"])
    return answers.respond(trigger(request, chain, row))


async def delete(request: web.Request) -> web.Response:
    chain = _chain(request)
    await service_triggers.delete(request, chain, request.match_info["trigger_uuid"])
    return web.Response(status=204)


async def call(request: web.Request) -> web.Response:
    """POST .../trigger/{trigger_uuid}/call/: no Authorization needed (the id is one), and an
    unknown service gets the same 404 as an unknown trigger."""
    chain = request.app[CONFIG].current.chain_of_service(_service_uuid(request))
    if chain is None:
        raise redelivery.no_such_trigger()
    return await service_triggers.call(request, chain.name, request.match_info["trigger_uuid"])


def service(request: web.Request, chain: config.Chain) -> dict[str, Any]:
    """A chain as a Docker Cloud service. A chain has no containers, so the counts are 0;
    its image is the first of its `repositories` (none: it takes every repository)."""
    return {
        "uuid": chain.service_uuid,
        "resource_uri": f"{_prefix(request)}/service/{chain.service_uuid}/",
        "name": chain.name,
        "nickname": chain.name,
        "image_name": chain.repositories[0] if chain.repositories else "",
        "state": "Running",
        "synchronized": True,
        "stack": None,
        "containers": [],
        "current_num_containers": 0,
        "running_num_containers": 0,
        "stopped_num_containers": 0,
        "target_num_containers": 0,
        "chain": chain.name,
        "targets": [target.name for target in chain.targets],
    }


def trigger(request: web.Request, chain: config.Chain, row: dict[str, Any]) -> dict[str, Any]:
    resource = f"{_prefix(request)}/service/{chain.service_uuid}/trigger/{row['id']}/"
    return {
        "url": f"{resource}call/",
        "name": row["name"],
        "operation": row["operation"],
        "resource_uri": resource,
        "chain": row["chain"],
        "created_at": iso(row["created_at"]),
    }


def _chain(request: web.Request) -> config.Chain:
    """The API key, then the chain that the path's service UUID names (404)."""
    auth.require_api_key(request)
    uuid = _service_uuid(request)
    chain = request.app[CONFIG].current.chain_of_service(uuid)
    if chain is None:
        raise errors.HTTPError(404, f"no service has UUID {uuid!r}")
    return chain


def _service_uuid(request: web.Request) -> str:
    # python-dockercloud joins a service's resource_uri (which ends in '/') and "trigger"
    # with another '/'; Docker Cloud's front end merged the two, and the route takes both.
    return request.match_info["uuid"].rstrip("/")


def _prefix(request: web.Request) -> str:
    namespace = request.match_info.get("namespace")
    return f"/api/app/v1/{namespace}" if namespace else "/api/app/v1"


def _matches(found: dict[str, Any], wanted: dict[str, str]) -> bool:
    return all(
        str(found["uuid"]).startswith(value.lower()) if key == "uuid__startswith"
        else str(found[key]) == value
        for key, value in wanted.items())
