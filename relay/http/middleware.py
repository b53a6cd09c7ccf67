"""The one middleware: every error becomes DESIGN §4 JSON, and never a traceback."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from relay import errors, logs
from relay.http import answers, bodies
from relay.http.appkeys import CONFIG

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_REFUSAL_STATUS: dict[type[errors.Refusal], int] = {
    errors.NotFound: 404, errors.Conflict: 409, errors.Invalid: 422}


def error_middleware() -> Any:
    """Every error becomes DESIGN §4 JSON; never a traceback in an answer."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except errors.HTTPError as exc:
            response = answers.respond(exc.body(), exc.status, exc.headers)
            if exc.status == 408:
                await _answer_and_close(request, response)
            return response
        except errors.Refusal as exc:
            status = _REFUSAL_STATUS[type(exc)]
            return answers.respond(errors.HTTPError(status, exc.message, exc.details).body(),
                                   status)
        except web.HTTPRequestEntityTooLarge:
            # A handler that read the body itself instead of through read_body.
            limit = request.app[CONFIG].current.server.max_body_bytes
            return answers.respond(bodies.too_large(limit).body(), 413)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
            return answers.respond(errors.HTTPError(exc.status, _sentence(request, exc)).body(),
                                   exc.status, headers)
        except errors.StoreError as exc:
            logs.get().error("store.failed", error=str(exc), route=_route(request))
            return answers.respond(
                errors.HTTPError(503, "the store is unavailable; try again later").body(),
                503, {"Retry-After": "5"})
        except Exception:  # noqa: BLE001 - answered as JSON 500, logged with traceback
            logs.get().exception("http.failed", method=request.method, route=_route(request))
            return answers.respond(
                errors.HTTPError(500, "relay failed to handle this request; the log has the"
                                      " details").body(), 500)

    return middleware


async def _answer_and_close(request: web.Request, response: web.Response) -> None:
    """Send `response` now and close the connection at once. aiohttp would otherwise keep
    reading ("lingering") the unread rest of the body for 10 s: not worth it from a client
    that was too slow already."""
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "(no route)"


def _sentence(request: web.Request, exc: web.HTTPException) -> str:
    if exc.status == 404:
        return "nothing is here"
    if exc.status == 405:
        return f"method {request.method} is not allowed here"
    return exc.reason.lower()
