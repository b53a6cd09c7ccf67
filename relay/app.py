"""make_app(settings): the aiohttp application with its store, client session and worker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from relay import callbacks, config, history, httpkit, intake, openapi, outbound, ratelimit
from relay.appkeys import LIMITS, OUTSIDE_SESSION, SESSION, SETTINGS, STORE, WORKER
from relay.store import open_store
from relay.worker import Worker


def make_app(settings: config.Settings) -> web.Application:
    app = web.Application(
        client_max_size=settings.server.max_body_bytes,
        middlewares=[httpkit.error_middleware(settings.server.max_body_bytes)],
    )
    app[SETTINGS] = settings
    app[LIMITS] = ratelimit.Limits(settings.chains)
    app.cleanup_ctx.append(_store)
    app.cleanup_ctx.append(_session)
    app.cleanup_ctx.append(_worker)
    app.on_shutdown.append(_stop_worker)
    app.router.add_post("/hooks/{chain}/{token}", intake.hook_with_token)
    app.router.add_post("/hooks/{chain}", intake.hook_with_header)
    app.router.add_post("/callbacks/{token}", callbacks.receive)
    app.router.add_get("/history", history.listing)
    app.router.add_get("/history/{id}", history.show)
    app.router.add_post("/history/{id}/redeliver", history.redeliver)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    # The OpenAPI document (issue 4). Every route above and below must have its entry in
    # relay/openapi.py OPERATIONS; tests/test_openapi.py fails for any that has none.
    app.router.add_get("/openapi.json", openapi_document(settings))
    return app


def openapi_document(settings: config.Settings) -> httpkit.Handler:
    body = httpkit.dumps(openapi.document(settings))

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    return serve


def server_options(settings: config.Settings) -> dict[str, Any]:
    """How aiohttp's server must run relay's app (web.run_app and web.AppRunner take them)."""
    # aiohttp's keep-alive timer starts when a connection opens and after each answer, and
    # closes the connection if no whole request head has arrived by then: the defence
    # against clients that dribble their headers (slowloris) and against idle connections.
    return {"keepalive_timeout": settings.server.header_timeout}


async def healthz(request: web.Request) -> web.Response:
    return httpkit.respond({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    await request.app[STORE].ping()
    return httpkit.respond({"status": "ready"})


async def _store(app: web.Application) -> AsyncIterator[None]:
    store = await open_store(app[SETTINGS].store.url)
    app[STORE] = store
    yield
    await store.close()


async def _session(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    limit = settings.delivery.max_connections
    guarded = outbound.connector(outbound.Policy(settings.outbound.allow_networks), limit)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit)) as session, \
            aiohttp.ClientSession(connector=guarded) as outside_session:
        app[SESSION] = session
        app[OUTSIDE_SESSION] = outside_session
        yield


async def _worker(app: web.Application) -> AsyncIterator[None]:
    worker = Worker(app[SETTINGS], app[STORE], app[SESSION],
                    outside_session=app[OUTSIDE_SESSION])
    app[WORKER] = worker
    await worker.start(sole_process=app[STORE].dialect == "sqlite")
    yield
    await worker.stop(grace=0)


async def _stop_worker(app: web.Application) -> None:
    await app[WORKER].stop(grace=app[SETTINGS].server.shutdown_grace)
