"""POST /hooks/...: bytes -> JSON -> schema -> durable delivery -> 202. Never calls a target.

A Docker Hub push is stored as it is; a notification of another registry (distribution,
Harbor) is first turned into Docker Hub pushes by relay/registries.
"""

from __future__ import annotations

import fnmatch
import time
from typing import Any

from aiohttp import web

from relay import config, errors, logs, registries, schemas
from relay.http import answers, auth, bodies, ratelimit
from relay.http.appkeys import CONFIG, LIMITS, METRICS, STORE
from relay.models import Push
from relay.store import Tx, deliveries


def no_such_hook() -> errors.HTTPError:
    """One answer for an unknown chain and for a wrong token, so that neither can be probed.
    A new one each time: an exception raised again keeps every earlier traceback alive."""
    return errors.HTTPError(404, "no hook at this URL")
IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


async def hook_with_token(request: web.Request) -> web.Response:
    """POST /hooks/{chain}/{token}: the token in the URL is the credential."""
    chain = authorize(request.app[CONFIG].current, request.match_info["chain"],
                      request.match_info["token"])
    return await take(request, chain)


async def hook_with_header(request: web.Request) -> web.Response:
    """POST /hooks/{chain} with `Authorization: Bearer <token>`, for registries that can only
    send static headers. The bare token is taken too: Harbor sends the auth header it was
    given verbatim, and its form asks for the whole header value."""
    chain = authorize(request.app[CONFIG].current, request.match_info["chain"],
                      auth.bearer(request) or request.headers.get("Authorization", "").strip())
    return await take(request, chain)


def authorize(settings: config.Settings, chain_name: str, token: str) -> config.Chain:
    chain = settings.chain(chain_name)
    # Compare even for an unknown chain, and with every token the chain accepts (no early
    # exit), so that the time taken tells nothing about chains or tokens.
    expected = chain.tokens if chain is not None else _DECOY
    matches = [auth.same_secret(token, candidate) for candidate in expected]
    if chain is None or not any(matches):
        raise no_such_hook()
    return chain


_DECOY = ("\0" * config.MIN_TOKEN_LENGTH,)


def throttle(request: web.Request, chain: config.Chain) -> None:
    """429 when the chain's rate_limit is used up. Only after authorize: a stranger must not
    be able to spend a chain's allowance."""
    wait = request.app[LIMITS].wait(chain.name)
    if wait:
        raise ratelimit.too_many(wait, f"too many pushes to chain {chain.name}")


async def take(request: web.Request, chain: config.Chain) -> web.Response:
    """Dispatch by sender: Docker Hub's push as it is, another registry's notification
    through its translation into Docker Hub pushes (relay/registries)."""
    metrics = request.app[METRICS]
    try:
        throttle(request, chain)
        document, text = await bodies.read_object(request)
        request_key = idempotency_key(request)
        sender = registries.recognise(request.content_type, document)
        _check_schema(chain, sender, document)
        if sender is registries.Sender.DOCKER_HUB:
            return await take_push(request, chain, document, text, request_key)
        return await take_notification(request, chain, sender, document, request_key)
    except errors.HTTPError:
        metrics.pushed(chain.name, "rejected")
        raise


def _check_schema(chain: config.Chain, sender: registries.Sender,
                  document: dict[str, Any]) -> None:
    """422 with one detail per violation of the sender's schema."""
    details = schemas.validate(registries.schema_of(sender), document)
    if not details:
        return
    hub = sender is registries.Sender.DOCKER_HUB
    logs.get().info("push.rejected", chain=chain.name, **({} if hub else {"sender": sender}),
                    violations=len(details))
    what = "the payload" if hub else "the body"
    raise errors.HTTPError(422, f"{what} is not a valid {registries.DESCRIPTIONS[sender]}",
                           details)


async def take_push(request: web.Request, chain: config.Chain, payload: dict[str, Any],
                    text: str, request_key: str | None) -> web.Response:
    app = request.app  # looked up once: intake's hot path
    live, metrics = app[CONFIG], app[METRICS]
    push = Push(chain.name, payload, text)
    reason = ignored(chain, push.repository, push.tag)
    if reason is not None:
        metrics.pushed(chain.name, "ignored")
        logs.get().info("push.ignored", chain=chain.name, repository=push.repository,
                        tag=push.tag)
        return answers.respond({"ignored": reason})
    key = f"request:{request_key}" if request_key is not None else None
    receipt = _receipt(live, chain, push)
    stored = await app[STORE].write(
        lambda tx: deliveries.receive(tx, push, receipt, time.time(), key),
        alone=receipt.locks(key))
    metrics.pushed(chain.name, "accepted")
    _log_stored(chain, push, stored, sender=registries.Sender.DOCKER_HUB, event="")
    return _answer(_stored_json(live.current, stored), 200 if stored.duplicate else 202)


async def take_notification(request: web.Request, chain: config.Chain,
                            sender: registries.Sender, document: dict[str, Any],
                            request_key: str | None) -> web.Response:
    """A registry's notification: each tag push in it is stored as a delivery (all in one
    transaction); everything else is answered 200 and stored nowhere."""
    settings = request.app[CONFIG].current
    described = registries.DESCRIPTIONS[sender]
    try:
        items = registries.translate(sender, document, chain.media_types, request_key)
    except registries.Invalid as exc:
        raise errors.HTTPError(422, f"the body is not a valid {described}",
                               [errors.Detail(exc.pointer, exc.message)]) from None
    items = [_for_chain(chain, item) for item in items]
    pushes = [(item, _as_push(chain, item)) for item in items
              if isinstance(item, registries.TagPush)]
    for item in items:
        if isinstance(item, registries.Skip):
            logs.get().debug("push.ignored", chain=chain.name, sender=sender,
                             event_id=item.event, reason=item.reason)
    if not pushes:
        request.app[METRICS].pushed(chain.name, "ignored")
        why = items[0].reason if len(items) == 1 and isinstance(items[0], registries.Skip) \
            else f"none of its {len(items)} events is a tag push this chain takes"
        return answers.respond({"ignored": why,
                                "events": [_event_json(settings, i, None) for i in items]})

    receipts = [_receipt(request.app[CONFIG], chain, push) for _, push in pushes]

    async def store_all(tx: Tx) -> list[deliveries.Stored]:
        now = time.time()
        return [await deliveries.receive(tx, push, receipt, now, item.key)
                for (item, push), receipt in zip(pushes, receipts, strict=True)]

    results = await request.app[STORE].write(store_all, alone=any(
        receipt.locks(item.key) for (item, _), receipt in zip(pushes, receipts, strict=True)))
    stored: dict[str, deliveries.Stored] = {}
    for (item, push), result in zip(pushes, results, strict=True):
        request.app[METRICS].pushed(chain.name, "accepted")
        _log_stored(chain, push, result, sender=sender, event=item.event)
        stored[item.pointer] = result
    duplicate = all(result.duplicate for result in results)
    body = {"id": results[0].id, "status_url": settings.status_url(results[0].id),
            **({"duplicate": True} if duplicate else {}),
            "events": [_event_json(settings, i, stored.get(i.pointer)) for i in items]}
    return _answer(body, 200 if duplicate else 202)


def _for_chain(chain: config.Chain, item: registries.Item) -> registries.Item:
    """A push of a repository that the chain's `repositories` leave out is a skip too."""
    if isinstance(item, registries.Skip):
        return item
    reason = ignored(chain, str(item.payload["repository"]["repo_name"]),
                     str(item.payload["push_data"].get("tag") or ""))
    return item if reason is None else registries.Skip(item.pointer, item.event, reason)


def _event_json(settings: config.Settings, item: registries.Item,
                stored: deliveries.Stored | None) -> dict[str, Any]:
    """One event of a notification in the answer: its delivery, or why it has none."""
    described: dict[str, Any] = {"pointer": item.pointer, "event": item.event}
    if isinstance(item, registries.Skip):
        return {**described, "ignored": item.reason}
    assert stored is not None
    return {**described, **_stored_json(settings, stored)}


def _as_push(chain: config.Chain, item: registries.TagPush) -> Push:
    """A registry's tag push as a stored push; the Docker Hub schema holds it to the same
    rules as a push from Docker Hub (a 422 here would be a gap in the sender's schema)."""
    details = schemas.validate("push", item.payload)
    if details:
        raise errors.HTTPError(
            422, f"the event at {item.pointer or '/'} does not make a valid Docker Hub push",
            details)
    return Push(chain.name, item.payload, answers.dumps(item.payload).decode())


def _receipt(live: config.Live, chain: config.Chain, push: Push) -> deliveries.Receipt:
    """How `chain` stores `push`. A reload during the request leaves the version unknown:
    admission then plans the delivery's steps again with the configuration it starts under."""
    version = live.version if live.current.chain(chain.name) is chain else None
    return deliveries.Receipt(chain.steps_for(push.tag), chain.coalesce,
                              chain.idempotency_window, version)


def idempotency_key(request: web.Request) -> str | None:
    """The request's `Idempotency-Key`: a sender's own id for a push it may send again."""
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        raise errors.HTTPError(400, f"the {IDEMPOTENCY_HEADER} header must be 1 to "
                                    f"{MAX_KEY_LENGTH} printable characters")
    return key


def accepted(settings: config.Settings, delivery_id: str) -> web.Response:
    """202 for a new delivery (a redelivery, a trigger's call)."""
    return _answer(_stored_json(settings, deliveries.Stored(delivery_id)), 202)


def _answer(body: dict[str, Any], status: int) -> web.Response:
    return answers.respond(body, status, {"Location": body["status_url"]})


def _stored_json(settings: config.Settings, stored: deliveries.Stored) -> dict[str, Any]:
    answer: dict[str, Any] = {"id": stored.id, "status_url": settings.status_url(stored.id)}
    if stored.duplicate:
        answer["duplicate"] = True
    if stored.merged > 1:
        answer["merged"] = stored.merged
    return answer


def _log_stored(chain: config.Chain, push: Push, stored: deliveries.Stored, *,
                sender: registries.Sender, event: str) -> None:
    # Intake's canonical line, on the hot path: only the fields that say something.
    extra: dict[str, Any] = {}
    if sender is not registries.Sender.DOCKER_HUB:
        extra["sender"] = sender
    if event:
        extra["event_id"] = event
    if stored.duplicate:
        logs.get().info("push.duplicate", delivery=stored.id, chain=chain.name, **extra)
        return
    if stored.merged > 1:
        extra["merged"] = stored.merged
    logs.get().info("push.accepted", delivery=stored.id, chain=chain.name,
                    repository=push.repository, tag=push.tag, **extra)


def ignored(chain: config.Chain, repository: str, tag: str) -> str | None:
    """Why a push is not for this chain (its `repositories` and `tags` filters), or None."""
    if chain.repositories and not any(fnmatch.fnmatchcase(repository, pattern)
                                      for pattern in chain.repositories):
        patterns = ", ".join(chain.repositories)
        return (f"repository {repository} matches none of chain {chain.name}'s repositories "
                f"({patterns})")
    if not chain.takes(tag):
        what = f"tag {tag}" if tag else "a push without a tag"
        return f"{what} matches none of chain {chain.name}'s tags ({', '.join(chain.tags)})"
    return None
