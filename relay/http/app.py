"""make_app(settings): the aiohttp application with its store, client session and worker."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from relay import config, errors, logs, metrics
from relay.engine import outbound
from relay.engine.worker import Worker
from relay.http import (
    answers,
    auth,
    callbacks,
    dockercloud,
    dockercloud_v1,
    dockership,
    history,
    intake,
    kudu,
    middleware,
    openapi,
    prune,
    ratelimit,
    targets,
)
from relay.http.appkeys import (
    CONFIG,
    LIMITS,
    METRICS,
    OUTSIDE_SESSION,
    SESSION,
    STORE,
    WORKER,
)
from relay.http.ui import handlers as ui
from relay.store import open_store

READY_TIMEOUT = 5.0
"""Seconds /readyz waits for the store before it answers 503."""

GC_THRESHOLD = 10_000
"""Net allocations of container objects before a young-generation collection (Python: 700)."""


def make_app(source: config.Settings | config.Live) -> web.Application:
    """The app serving `source`: Settings, or a Live configuration that can be reloaded."""
    live = source if isinstance(source, config.Live) else config.Live(source)
    settings = live.current
    app = web.Application(
        client_max_size=settings.server.max_body_bytes,
        middlewares=[middleware.error_middleware()],
    )
    app[CONFIG] = live
    app[METRICS] = metrics.Metrics(chain.name for chain in settings.chains)
    app[LIMITS] = ratelimit.Limits(settings.chains)
    live.on_reload(app[METRICS].configured)
    live.on_reload(app[LIMITS].configured)
    live.on_reload(lambda fresh: logs.remember_secrets(fresh.secrets))
    app.cleanup_ctx.append(_store)
    app.cleanup_ctx.append(_session)
    app.cleanup_ctx.append(_worker)
    app.on_shutdown.append(_stop_worker)
    app.router.add_post("/hooks/{chain}/{token}", intake.hook_with_token)
    app.router.add_post("/hooks/{chain}", intake.hook_with_header)
    app.router.add_post("/callbacks/{token}", callbacks.receive)
    app.router.add_get("/history", history.listing)
    app.router.add_get("/history/{id}", history.show)
    app.router.add_post("/history/redeliver", history.redeliver_matching)
    app.router.add_post("/history/{id}/redeliver", history.redeliver)
    # The other seed systems (DESIGN §6): Kudu web hooks, Dockership's endpoints, and
    # Docker Cloud service triggers (with and without the trailing slash Docker Cloud uses).
    app.router.add_post("/api/hooks", kudu.subscribe)
    app.router.add_get("/api/hooks", kudu.listing)
    app.router.add_get("/api/hooks/{id}", kudu.show)
    app.router.add_delete("/api/hooks/{id}", kudu.unsubscribe)
    # The seed's publish path, and Kudu's own (its routes are hooks/... under /api).
    app.router.add_post("/api/hooks/hooks/publish/{event}", kudu.publish)
    app.router.add_post("/api/hooks/publish/{event}", kudu.publish)
    app.router.add_get("/rest/projects", dockership.projects)
    app.router.add_get("/rest/status", dockership.statuses)
    app.router.add_get("/rest/status/{chain}", dockership.status)
    for end in ("/", ""):
        base = "/api/chains/{chain}/triggers"
        app.router.add_get(base + end, dockercloud.listing)
        app.router.add_post(base + end, dockercloud.create)
        app.router.add_get(base + "/{id}" + end, dockercloud.show)
        app.router.add_delete(base + "/{id}" + end, dockercloud.delete)
        app.router.add_post(base + "/{id}/call" + end, dockercloud.call)
    add_dockercloud_v1(app)
    app.router.add_post("/api/reload", reload)
    app.router.add_get("/api/targets", targets.listing)
    app.router.add_post("/api/prune", prune.prune)
    app.router.add_post("/api/targets/{chain}/{target}/pause", targets.pause)
    app.router.add_post("/api/targets/{chain}/{target}/resume", targets.resume)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    # Operator experience (issue 8): the web UI at /ui and Prometheus metrics.
    app.router.add_get("/ui", ui.page)
    app.router.add_get("/ui/deliveries/{id}", ui.page)
    app.router.add_get("/ui/static/{name}", ui.static)
    app.router.add_post("/ui/login", ui.login)
    app.router.add_post("/ui/logout", ui.logout)
    app.router.add_get("/ui/api/session", ui.whoami)
    app.router.add_get("/ui/api/history", ui.listing)
    app.router.add_get("/ui/api/history/{id}", ui.show)
    app.router.add_post("/ui/api/history/redeliver", ui.redeliver_matching)
    app.router.add_post("/ui/api/history/{id}/redeliver", ui.redeliver)
    app.router.add_get("/ui/api/overview", ui.overview_page)
    app.router.add_post("/ui/api/targets/{chain}/{target}/pause", ui.pause)
    app.router.add_post("/ui/api/targets/{chain}/{target}/resume", ui.resume)
    app.router.add_get("/metrics", scrape)
    # The OpenAPI document (issue 4). Every route above must have its entry in
    # relay/http/openapi.py OPERATIONS; tests/e2e/test_openapi.py fails for any that has none.
    app.router.add_get("/openapi.json", openapi_document(settings))
    return app


def add_dockercloud_v1(app: web.Application) -> None:
    """Docker Cloud's own paths, for its clients (dockercloud_v1.py), with and without the
    namespace. {uuid} before /trigger/ may end in one more '/', which python-dockercloud
    sends there."""
    for prefix in ("/api/app/v1", "/api/app/v1/{namespace}"):
        app.router.add_get(prefix + "/service/", dockercloud_v1.services)
        app.router.add_get(prefix + "/service/{uuid}/", dockercloud_v1.fetch)
        base = prefix + "/service/{uuid:[^{}/]+/?}/trigger/"
        app.router.add_get(base, dockercloud_v1.triggers)
        app.router.add_post(base, dockercloud_v1.create)
        app.router.add_get(base + "{trigger_uuid}/", dockercloud_v1.show)
        app.router.add_delete(base + "{trigger_uuid}/", dockercloud_v1.delete)
        app.router.add_post(base + "{trigger_uuid}/call/", dockercloud_v1.call)


def openapi_document(settings: config.Settings) -> middleware.Handler:
    body = answers.dumps(openapi.document(settings))

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    return serve


def tune_for_serving() -> None:
    """The garbage collector's settings for a serving process, once its app is made. With
    Python's threshold of 700, the objects of 50 requests in flight set off ~55 collections
    a second that find next to nothing (6 µs of CPU a push, measured); and the objects of
    start-up are frozen, so that a rare full collection does not walk them (30 ms each)."""
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 10, 10)


def server_options(settings: config.Settings) -> dict[str, Any]:
    """How aiohttp's server must run relay's app (web.run_app and web.AppRunner take them)."""
    # aiohttp's keep-alive timer starts when a connection opens and after each answer, and
    # closes the connection if no whole request head has arrived by then: the defence
    # against clients that dribble their headers (slowloris) and against idle connections.
    # On a stop, a request still in progress gets the grace period, not aiohttp's 60 s.
    return {"keepalive_timeout": settings.server.header_timeout,
            "shutdown_timeout": settings.server.shutdown_grace}


def reload_config(app: web.Application) -> config.Reloaded:
    """Read the config file again (SIGHUP, POST /api/reload); a ConfigError keeps the old
    configuration serving, and says why in the log (naming the key)."""
    try:
        reloaded = app[CONFIG].reload()
    except errors.ConfigError as exc:
        logs.get().error("config.reload_failed", error=str(exc))
        raise
    if reloaded.restart_needed:
        logs.get().warning("config.restart_needed", keys=list(reloaded.restart_needed))
    logs.get().info("config.reloaded", version=reloaded.version, changed=reloaded.changed,
                    chains=[chain.name for chain in reloaded.settings.chains])
    return reloaded


async def reload(request: web.Request) -> web.Response:
    """POST /api/reload (admin token): as SIGHUP does."""
    auth.require_admin(request)
    try:
        reloaded = reload_config(request.app)
    except errors.ConfigError as exc:
        raise errors.HTTPError(422, f"the configuration was not reloaded: {exc}") from None
    return answers.respond({"version": reloaded.version, "changed": reloaded.changed,
                            "chains": [chain.name for chain in reloaded.settings.chains],
                            "restart_needed": list(reloaded.restart_needed)})


async def healthz(request: web.Request) -> web.Response:
    return answers.respond({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    try:
        await asyncio.wait_for(request.app[STORE].ping(), READY_TIMEOUT)
    except TimeoutError:
        raise errors.StoreError(f"the store did not answer within {READY_TIMEOUT:g} s"
                                ) from None
    return answers.respond({"status": "ready"})


async def scrape(request: web.Request) -> web.Response:
    """GET /metrics: open like /healthz (no secrets in it; see README "Metrics")."""
    body, content_type = await request.app[METRICS].render(
        request.app[STORE], request.app[WORKER].in_flight, request.headers.get("Accept", ""))
    return web.Response(body=body, headers={"Content-Type": content_type})


async def _store(app: web.Application) -> AsyncIterator[None]:
    store = await open_store(app[CONFIG].current.store.url)
    app[STORE] = store
    yield
    await store.close()


async def _session(app: web.Application) -> AsyncIterator[None]:
    settings = app[CONFIG].current
    limit = settings.delivery.max_connections
    guarded = outbound.connector(outbound.AddressPolicy(settings.outbound.allow_networks), limit)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit)) as session, \
            aiohttp.ClientSession(connector=guarded) as outside_session:
        app[SESSION] = session
        app[OUTSIDE_SESSION] = outside_session
        yield


async def _worker(app: web.Application) -> AsyncIterator[None]:
    worker = Worker(app[CONFIG], app[STORE], app[SESSION],
                    outside_session=app[OUTSIDE_SESSION], observe=app[METRICS])
    app[WORKER] = worker
    await worker.start(sole_process=app[STORE].dialect == "sqlite")
    yield
    await worker.stop(grace=0)


async def _stop_worker(app: web.Application) -> None:
    await app[WORKER].stop(grace=app[CONFIG].current.server.shutdown_grace)
