"""An HTTP client for a running relay's API, for the client commands (client_commands.py).

Every failure is a ClientError with one sentence that says what to do: relay cannot be
reached, refused the token (401), or has no such thing (404).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from relay import errors

TIMEOUT = aiohttp.ClientTimeout(total=30, connect=5)


class ClientError(errors.RelayError):
    """A request to relay failed; the message is the one line to show."""


class Client:
    def __init__(self, url: str, admin_token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.admin_token = admin_token
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        self._session = aiohttp.ClientSession(timeout=TIMEOUT)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def history(self, **filters: str | int | None) -> dict[str, Any]:
        query = {k: str(v) for k, v in filters.items() if v is not None and v != ""}
        return dict(await self.request("GET", "/history", params=query))

    async def delivery(self, delivery_id: str) -> dict[str, Any]:
        return dict(await self.request("GET", f"/history/{_segment(delivery_id)}"))

    async def redeliver(self, delivery_id: str,
                        from_step: int | str | None = None) -> dict[str, Any]:
        body = b"" if from_step is None else orjson.dumps({"from_step": from_step})
        return dict(await self.request("POST", f"/history/{_segment(delivery_id)}/redeliver",
                                       data=body, headers=_JSON))

    async def redeliver_matching(self, **matching: Any) -> dict[str, Any]:
        """POST /history/redeliver: every ended delivery the filter selects."""
        body = {k: v for k, v in matching.items() if v is not None}
        return dict(await self.request("POST", "/history/redeliver",
                                       data=orjson.dumps(body), headers=_JSON))

    async def prune(self, older_than: str, dry_run: bool) -> dict[str, Any]:
        """POST /api/prune: delete deliveries that ended longer ago than `older_than`."""
        body = orjson.dumps({"older_than": older_than, "dry_run": dry_run})
        return dict(await self.request("POST", "/api/prune", data=body, headers=_JSON))

    async def targets(self) -> dict[str, Any]:
        return dict(await self.request("GET", "/api/targets"))

    async def set_target(self, chain: str, target: str, action: str) -> dict[str, Any]:
        """POST /api/targets/{chain}/{target}/pause (or resume)."""
        return dict(await self.request(
            "POST", f"/api/targets/{_segment(chain)}/{_segment(target)}/{action}"))

    async def services(self) -> list[dict[str, Any]]:
        """Every chain as a Docker Cloud service (name, UUID, targets), page by page."""
        found: list[dict[str, Any]] = []
        while True:
            page = await self.request("GET", "/api/app/v1/service/",
                                      params={"limit": "250", "offset": str(len(found))})
            found += page["objects"]
            if not page["meta"]["next"] or not page["objects"]:
                return found

    async def reload(self) -> dict[str, Any]:
        """POST /api/reload: relay reads its config file again."""
        return dict(await self.request("POST", "/api/reload"))

    async def push(self, chain: str, chain_token: str, payload: bytes) -> dict[str, Any]:
        """POST /hooks/{chain} with the token as a Bearer header, so it is in no URL."""
        return dict(await self.request(
            "POST", f"/hooks/{_segment(chain)}", data=payload, token=chain_token,
            headers={"Content-Type": "application/json"}))

    async def request(self, method: str, path: str, *, params: dict[str, str] | None = None,
                      data: bytes | None = None, token: str | None = None,
                      headers: dict[str, str] | None = None) -> Any:
        assert self._session is not None, "use `async with Client(...)`"
        token = token if token is not None else self.admin_token
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        try:
            async with self._session.request(method, self.url + path, params=params,
                                             data=data, headers=sent) as response:
                status, text = response.status, await response.text()
        except aiohttp.ClientConnectorError as exc:
            refused = isinstance(exc.os_error, ConnectionRefusedError)
            reason = "connection refused" if refused else (exc.os_error.strerror
                                                           or str(exc.os_error))
            raise ClientError(f"cannot reach relay at {self.url}: {reason.lower()}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ClientError(f"{method} {self.url}{path} failed: "
                              f"{exc or type(exc).__name__}") from None
        body = _json(text)
        if status >= 400:
            raise ClientError(_refusal(status, body, text, path))
        return body


_JSON = {"Content-Type": "application/json"}


def _segment(text: str) -> str:
    return quote(text, safe="")


def _json(text: str) -> Any:
    try:
        return orjson.loads(text) if text else None
    except orjson.JSONDecodeError:
        return None


def _refusal(status: int, body: Any, text: str, path: str) -> str:
    said = body.get("error") if isinstance(body, dict) else None
    said = said or text.strip()[:200] or "no explanation"
    if status == 401:
        return (f"relay refused the admin token (401): set RELAY_ADMIN_TOKEN to its "
                f"[server] admin_token ({said})")
    if status == 404 and path.startswith("/hooks/"):
        return "relay has no such chain, or the chain token is wrong (404)"
    details = body.get("details") if isinstance(body, dict) else None
    if details:
        said += ": " + "; ".join(f"{d.get('path')} {d.get('message')}" for d in details[:5]
                                 if isinstance(d, dict))
    return f"{said} ({status})"
