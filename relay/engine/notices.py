"""What relay tells others when a chain ends: the upstream report (DESIGN §5), Kudu web hooks
and the Dockership web hook (DESIGN §6).

`plan` runs inside the transaction that finishes a delivery; each notice becomes a send with
the same retries and history as a chain step. `settled` runs inside the transaction that
settles a notice, so that what it was sent for (a Kudu hook) can record how it went.
"""

from __future__ import annotations

import fnmatch
import http
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from relay import config
from relay.models import DeliveryState, SendKind, StepState, iso
from relay.store import chains, kudu_hooks
from relay.store.base import Row, Tx

DESCRIPTION_LIMIT = 255
CONTEXT_LIMIT = 100


@dataclass(frozen=True)
class Notice:
    kind: SendKind
    name: str
    url: str
    body: dict[str, Any]
    insecure: bool = False
    refused: str | None = None
    """Why this notice is not sent; it is still shown in the history."""
    ref: str | None = None
    """What the notice is sent for, when that wants to know how it went (a Kudu hook's id)."""


async def plan(tx: Tx, settings: config.Settings, delivery: Row) -> list[Notice]:
    notices: list[Notice] = []
    upstream = upstream_report(settings, delivery)
    if upstream is not None:
        notices.append(upstream)
    configured = settings.chain(delivery["chain"])
    if configured is not None and configured.webhook is not None:
        notices.append(await dockership_report(tx, configured, delivery))
    hooks = await kudu_hooks.subscribers(tx, kudu_hooks.POST_DEPLOYMENT, delivery["chain"]
                                         ) if delivery.get("any_kudu_hook", True) else []
    if hooks:
        body = kudu_payload(delivery)
        notices += [Notice(SendKind.KUDU, f"kudu hook {hook['id']}", hook["url"], body,
                           insecure=bool(hook["insecure"]), ref=str(hook["id"]))
                    for hook in hooks]
    return notices


async def settled(tx: Tx, send: Row, state: StepState, reason: str | None,
                  now: float) -> None:
    """A notice is done with: delivered, given up on, or refused before it was sent."""
    if send["kind"] != SendKind.KUDU or send["ref"] is None:
        return
    hook_id = int(send["ref"])
    status = send["status"]
    if status == http.HTTPStatus.GONE:
        # Kudu (and REST hooks generally) read 410 Gone as "unsubscribe me".
        await kudu_hooks.delete(tx, hook_id, now)
        return
    await kudu_hooks.record(tx, hook_id, at=now, status=kudu_status(status),
                      reason=kudu_reason(state, status, reason), context=send["body"])


def upstream_report(settings: config.Settings, delivery: Row) -> Notice | None:
    """Docker Hub's callback_url answered as a link of its chain would answer it."""
    payload = json.loads(delivery["payload"])
    url = payload.get("callback_url") if isinstance(payload, dict) else None
    if not isinstance(url, str) or not url:
        return None
    body = {
        "state": delivery["state"],
        "description": truncate(delivery["summary"] or "", DESCRIPTION_LIMIT),
        "context": truncate(f"relay chain {delivery['chain']}", CONTEXT_LIMIT),
        "target_url": settings.status_url(delivery["id"]),
    }
    refused = None
    if delivery["source"] != "push":
        refused = f"not sent: a {delivery['source']} does not report to the registry again"
    elif not host_allowed(url, settings.upstream.allowed_hosts):
        host = urlsplit(url).hostname or "?"
        refused = f"not sent: host {host} is not in [upstream] allowed_hosts"
    return Notice(SendKind.UPSTREAM, "upstream", url, body, refused=refused)


def _reference(delivery: Row) -> str:
    """The pushed image as Docker writes it: `repo:tag`, `repo@sha256:…`, or by image id."""
    repository = str(delivery["repository"] or delivery["chain"])
    if delivery["tag"]:
        return f"{repository}:{delivery['tag']}"
    payload = json.loads(delivery["payload"])
    push_data = payload.get("push_data") if isinstance(payload, dict) else None
    digest = push_data.get("digest") if isinstance(push_data, dict) else None
    if isinstance(digest, str) and digest:
        return f"{repository}@{digest}"
    if delivery["revision"]:
        return f"{repository} image {delivery['revision']}"
    return repository


def kudu_payload(delivery: Row) -> dict[str, Any]:
    """Kudu's PostDeployment body; relay knows no e-mail address of a pusher."""
    succeeded = delivery["state"] == DeliveryState.SUCCESS
    reference = _reference(delivery)
    summary = f": {delivery['summary']}" if delivery["summary"] else ""
    return {
        "id": delivery["id"],
        "status": "success" if succeeded else "failed",
        "author_email": "",
        "author": delivery["pusher"],
        "message": f"{reference}: chain {delivery['chain']} {delivery['state']}{summary}",
        "deployer": delivery["pusher"],
        "start_time": iso(delivery["started_at"] or delivery["received_at"]),
        "end_time": iso(delivery["finished_at"]),
    }


def kudu_status(status: int | None) -> str:
    """What Kudu shows as last_status: .NET's name of the HTTP status, or Failure when no
    HTTP answer came at all."""
    if status is None:
        return "Failure"
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        return str(status)
    return "".join(word if word.isupper() else word[:1].upper() + word[1:]
                   for word in phrase.replace("-", " ").split())


def kudu_reason(state: StepState, status: int | None, reason: str | None) -> str | None:
    if state is StepState.SUCCESS and status is not None:
        try:
            return http.HTTPStatus(status).phrase
        except ValueError:
            return None
    return reason


async def dockership_report(tx: Tx, chain: config.Chain, delivery: Row) -> Notice:
    """Dockership's deploy notification: on failure `errors` says why and the current
    revision stays the previous one."""
    previous = await chains.previous_revision(tx, chain.name, delivery["id"]) or ""
    succeeded = delivery["state"] == DeliveryState.SUCCESS
    # A chain ends at the one step that did not succeed; its summary says which and why.
    problems = [] if succeeded else [delivery["summary"] or
                                     f"the chain ended {delivery['state']}"]
    body = {
        "previous_revision": previous,
        "current_revision": delivery["revision"] if succeeded else previous,
        "project": chain.name,
        "environment": environment(chain),
        "errors": problems,
    }
    assert chain.webhook is not None
    return Notice(SendKind.DOCKERSHIP, "dockership", chain.webhook, body)


def environment(chain: config.Chain) -> str:
    """A chain's environment as Dockership names it (every deploy there has one)."""
    return chain.environment or "default"


def host_allowed(url: str, allowed_hosts: tuple[str, ...]) -> bool:
    """Exact host names, or patterns such as `*.example.com`; http(s) only."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not host:
        return False
    return any(fnmatch.fnmatchcase(host, pattern) for pattern in allowed_hosts)


def truncate(text: str, limit: int) -> str:
    """At most `limit` characters (code points, as Docker Hub counts), ending in '…' if cut."""
    if len(text) <= limit:
        return text
    return text[: limit - 1] + "…"
