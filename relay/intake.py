"""POST /hooks/...: bytes -> JSON -> schema -> durable delivery -> 202. Never calls a target."""

from __future__ import annotations

import fnmatch
import math
import time

from aiohttp import web

from relay import config, errors, httpkit, logs, schemas
from relay.appkeys import LIMITS, SETTINGS, STORE
from relay.store import deliveries

# One answer for an unknown chain and for a wrong token, so that neither can be probed.
NO_SUCH_HOOK = errors.HTTPError(404, "no hook at this URL")


async def hook_with_token(request: web.Request) -> web.Response:
    """POST /hooks/{chain}/{token}: the token in the URL is the credential."""
    chain = authorize(request.app[SETTINGS], request.match_info["chain"],
                      request.match_info["token"])
    return await take(request, chain)


async def hook_with_header(request: web.Request) -> web.Response:
    """POST /hooks/{chain} with `Authorization: Bearer <token>`, for registries that can only
    send static headers."""
    chain = authorize(request.app[SETTINGS], request.match_info["chain"],
                      httpkit.bearer(request) or "")
    return await take(request, chain)


def authorize(settings: config.Settings, chain_name: str, token: str) -> config.Chain:
    chain = settings.chain(chain_name)
    # Compare even for an unknown chain, and with every token the chain accepts (no early
    # exit), so that the time taken tells nothing about chains or tokens.
    expected = chain.tokens if chain is not None else _DECOY
    matches = [httpkit.same_secret(token, candidate) for candidate in expected]
    if chain is None or not any(matches):
        raise NO_SUCH_HOOK
    return chain


_DECOY = ("\0" * config.MIN_TOKEN_LENGTH,)


def throttle(request: web.Request, chain: config.Chain) -> None:
    """429 when the chain's rate_limit is used up. Only after authorize: a stranger must not
    be able to spend a chain's allowance."""
    wait = request.app[LIMITS].wait(chain.name)
    if wait:
        seconds = max(1, math.ceil(wait))
        raise errors.HTTPError(429, f"too many pushes to chain {chain.name}; try again in "
                                    f"{seconds} s", headers={"Retry-After": str(seconds)})


async def take(request: web.Request, chain: config.Chain) -> web.Response:
    settings = request.app[SETTINGS]
    throttle(request, chain)
    body = await httpkit.read_body(request, settings.server.max_body_bytes)
    payload, text = httpkit.parse_object(body, settings.server.max_json_depth)
    details = schemas.validate("push", payload)
    if details:
        logs.get().info("push.rejected", chain=chain.name, violations=len(details))
        raise errors.HTTPError(422, "the payload is not a valid Docker Hub push notification",
                               details)
    push = deliveries.Push(chain.name, payload, text)
    reason = ignored(chain, push.repository)
    if reason is not None:
        logs.get().info("push.ignored", chain=chain.name, repository=push.repository)
        return httpkit.respond({"ignored": reason})
    delivery_id = await request.app[STORE].write(
        lambda tx: deliveries.accept(tx, push, chain.targets, time.time()))
    logs.get().info("push.accepted", delivery=delivery_id, chain=chain.name,
                    repository=push.repository, tag=push.tag)
    return accepted(settings, delivery_id)


def accepted(settings: config.Settings, delivery_id: str) -> web.Response:
    status_url = f"{settings.server.public_url}/history/{delivery_id}"
    return httpkit.respond({"id": delivery_id, "status_url": status_url}, 202,
                           {"Location": status_url})


def ignored(chain: config.Chain, repository: str) -> str | None:
    """Why a push is not for this chain, or None when its repository matches the filter."""
    if not chain.repositories:
        return None
    if any(fnmatch.fnmatchcase(repository, pattern) for pattern in chain.repositories):
        return None
    patterns = ", ".join(chain.repositories)
    return f"repository {repository} matches none of chain {chain.name}'s repositories " \
           f"({patterns})"
