"""What relay tells others when a chain ends: the upstream report (DESIGN §5).

`plan` runs inside the transaction that finishes a delivery; each notice becomes a send with
the same retries and history as a chain step.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from relay import config
from relay.models import SendKind
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


async def plan(tx: Tx, settings: config.Settings, delivery: Row) -> list[Notice]:
    notices: list[Notice] = []
    upstream = upstream_report(settings, delivery)
    if upstream is not None:
        notices.append(upstream)
    return notices


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
        "target_url": f"{settings.server.public_url}/history/{delivery['id']}",
    }
    refused = None
    if delivery["source"] != "push":
        refused = f"not sent: a {delivery['source']} does not report to the registry again"
    elif not host_allowed(url, settings.upstream.allowed_hosts):
        host = urlsplit(url).hostname or "?"
        refused = f"not sent: host {host} is not in [upstream] allowed_hosts"
    return Notice(SendKind.UPSTREAM, "upstream", url, body, refused=refused)


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
