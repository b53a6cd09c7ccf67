"""GET /history, GET /history/{id}, POST /history/{id}/redeliver (admin token).

Each handler checks the admin token, then answers with an `answer_*` function that the web
UI (relay/http/ui) reuses behind its own session check.
"""

from __future__ import annotations

import base64
import binascii
import re
import time

from aiohttp import web

from relay import errors, logs, redaction
from relay.engine import redelivery
from relay.http import answers, auth, bodies, intake, redelivery_requests
from relay.http.appkeys import CONFIG, STORE
from relay.models import HISTORY_PAGE_DEFAULT, HISTORY_PAGE_MAX, DeliveryState
from relay.store import views

_ID = re.compile(r"^[0-9a-v]{26}$")


async def listing(request: web.Request) -> web.Response:
    auth.require_admin(request)
    return await answer_listing(request)


async def show(request: web.Request) -> web.Response:
    auth.require_admin(request)
    return await answer_show(request)


async def redeliver(request: web.Request) -> web.Response:
    auth.require_admin(request)
    return await answer_redeliver(request)


async def answer_listing(request: web.Request) -> web.Response:
    query = parse_query(request)
    items, last = await request.app[STORE].read(lambda tx: views.page(tx, query))
    return answers.respond({"items": items, "next_cursor": encode_cursor(last)})


async def answer_show(request: web.Request) -> web.Response:
    delivery_id = request.match_info["id"]
    found = await request.app[STORE].read(lambda tx: views.delivery(tx, delivery_id))
    if found is None:
        raise errors.HTTPError(404, f"no delivery has id {delivery_id!r}")
    redactor = request.app[CONFIG].current.redactor
    return answers.respond(redaction.shown_delivery(found, redactor))


async def redeliver_matching(request: web.Request) -> web.Response:
    auth.require_admin(request)
    return await answer_redeliver_matching(request)


async def answer_redeliver(request: web.Request) -> web.Response:
    settings = request.app[CONFIG].current
    original = request.match_info["id"]
    body, _ = await bodies.read_object(request, empty_is_object=True)
    start = redelivery_requests.from_step(body)
    delivery_id = await request.app[STORE].write(lambda tx: redelivery.redeliver(
        tx, request.app[CONFIG], original, time.time(), start))
    logs.get().info("push.redelivered", delivery=delivery_id, original=original,
                    from_step=start)
    return intake.accepted(settings, delivery_id)


async def answer_redeliver_matching(request: web.Request) -> web.Response:
    body, _ = await bodies.read_object(request)
    matching, start, dry_run = redelivery_requests.bulk(body)
    count, ids = await request.app[STORE].write(lambda tx: redelivery.redeliver_matching(
        tx, request.app[CONFIG], matching, time.time(), start, dry_run))
    if dry_run:
        return answers.respond({"count": count})
    logs.get().info("push.redelivered_in_bulk", count=count, from_step=start)
    return answers.respond({"count": count, "ids": ids}, status=202)


def parse_query(request: web.Request) -> views.Query:
    params = request.query
    problems: list[errors.Detail] = []
    limit = HISTORY_PAGE_DEFAULT
    if "limit" in params:
        text = params["limit"]
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= HISTORY_PAGE_MAX:
            problems.append(errors.Detail("limit",
                                          f"must be an integer from 1 to {HISTORY_PAGE_MAX}"))
        else:
            limit = int(text)
    state = params.get("state") or None
    if state is not None and state not in set(DeliveryState):
        problems.append(errors.Detail("state", "must be one of " +
                                      ", ".join(s.value for s in DeliveryState)))
    before = None
    if params.get("cursor"):
        before = decode_cursor(params["cursor"])
        if before is None:
            problems.append(errors.Detail("cursor", "is not a cursor this relay gave out"))
    if problems:
        raise errors.HTTPError(400, "the query parameters are not valid", problems)
    return views.Query(chain=params.get("chain") or None, state=state,
                       repository=params.get("repository") or None,
                       tag=params.get("tag") or None, before=before, limit=limit)


def encode_cursor(delivery_id: str | None) -> str | None:
    if delivery_id is None:
        return None
    return base64.urlsafe_b64encode(delivery_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str | None:
    try:
        decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return decoded if _ID.match(decoded) else None
