"""Outbound POSTs: the only code that calls targets. Every failure becomes an Answer value."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from relay.engine import outbound, retry, signing
from relay.engine.chain import Answer

USER_AGENT = "relay-webhooks/1"
_DRAIN_LIMIT = 64 * 1024
RESPONSE_BODY_LIMIT = 4096
RESPONSE_HEADERS = ("content-type", "content-length", "retry-after", "location",
                    "www-authenticate", "x-request-id")


async def post(session: aiohttp.ClientSession, url: str, body: bytes, *, message_id: str,
               secrets: tuple[str, ...] = (), timeout: float, insecure: bool = False,
               now: float | None = None, method: str = "POST",
               headers: Sequence[tuple[str, str]] = (), proxy: str | None = None) -> Answer:
    """Send `body` once (a POST unless `method` says otherwise), signed per Standard
    Webhooks, with the target's own `headers`, and say what came of it."""
    timestamp = int(time.time() if now is None else now)
    sent = {"User-Agent": USER_AGENT, **dict(headers), "Content-Type": "application/json",
            **signing.headers(secrets, message_id, timestamp, body)}
    started = time.perf_counter()
    try:
        async with session.request(method, url, data=body, headers=sent, proxy=proxy,
                                   allow_redirects=False,
                                   timeout=aiohttp.ClientTimeout(total=timeout),
                                   ssl=not insecure) as response:
            # Read (a bounded part of) the answer so that the connection can be reused.
            data = await response.content.read(_DRAIN_LIMIT)
            error = None
            if 300 <= response.status < 400:
                error = (f"target answered HTTP {response.status}; redirects are not "
                         "followed")
            return Answer(response.status, error, _since(started),
                          retry.parse_retry_after(response.headers.get("Retry-After")),
                          response=shown_response(response, data))
    except TimeoutError:
        return Answer(None, f"no answer within {timeout:g} s", _since(started))
    except aiohttp.InvalidURL:
        # Its text is the URL, which may carry credentials.
        return Answer(None, "the URL is not valid", _since(started), permanent=True)
    except aiohttp.ClientProxyConnectionError as exc:
        return Answer(None, f"cannot connect to the proxy {exc.host}:{exc.port}: "
                            f"{_connect_failure(exc.os_error)}", _since(started))
    except aiohttp.ClientHttpProxyError as exc:
        # Its text carries URLs; the proxy's status says enough.
        return Answer(None, f"the proxy refused the connection: HTTP {exc.status}",
                      _since(started))
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, outbound.Refused):
            return Answer(None, refused(str(exc.os_error)), _since(started), permanent=True)
        reason = _connect_failure(exc.os_error)
        return Answer(None, f"cannot connect to {exc.host}:{exc.port}: {reason}",
                      _since(started))
    except aiohttp.ClientError as exc:
        return Answer(None, f"{type(exc).__name__}: {exc}".strip(": "), _since(started))
    except (OSError, ValueError) as exc:
        return Answer(None, f"{type(exc).__name__}: {exc}", _since(started))


def shown_response(response: aiohttp.ClientResponse, data: bytes) -> dict[str, Any]:
    """What the history keeps of an answer: its status, a few telling headers, and the
    first RESPONSE_BODY_LIMIT bytes of its body as text."""
    headers = {name: response.headers[name] for name in RESPONSE_HEADERS
               if name in response.headers}
    truncated = len(data) > RESPONSE_BODY_LIMIT or not response.content.at_eof()
    return {"status": response.status, "headers": headers,
            "body": data[:RESPONSE_BODY_LIMIT].decode("utf-8", "replace"),
            "truncated": truncated}


def refused(reason: str) -> str:
    """Why a send to a URL from outside was not made (outbound.Refused's reason)."""
    return (f"refused: {reason}; relay calls only public addresses for URLs from outside "
            "([outbound] allow_networks)")


def _connect_failure(error: OSError) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    return error.strerror or str(error) or type(error).__name__


def _since(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0

