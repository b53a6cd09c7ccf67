"""Request bodies: read within the limits, parsed as strict JSON objects (400, 408, 413)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import orjson
from aiohttp import web

from relay import errors
from relay.http.appkeys import CONFIG


async def read_body(request: web.Request, limit: int, timeout: float | None = None) -> bytes:
    """The body, refused with 413 when it is over `limit` bytes, and with 408 when it has
    not arrived whole within `timeout` seconds ([server] read_timeout unless given): a client
    that dribbles its body cannot hold a handler for ever.

    A declared Content-Length over the limit is refused before anything is read; a chunked
    body is read at most up to [server] max_body_bytes (aiohttp's client_max_size) and then
    held to `limit`, which may be smaller."""
    length = request.content_length
    if length is not None and length > limit:
        raise too_large(limit)
    if timeout is None:
        timeout = request.app[CONFIG].current.server.read_timeout
    try:
        if request.content.is_eof():
            # Already received whole (a small body comes with its headers): no wait, so no
            # deadline to arm.
            body = await request.read()
        else:
            async with asyncio.timeout(timeout):
                body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large(limit) from None
    except web.RequestPayloadError as exc:
        # A body that does not decode as its Content-Encoding says, or broken chunking.
        encoding = request.headers.get("Content-Encoding")
        if encoding:
            raise errors.HTTPError(400, "the body does not decode as its Content-Encoding "
                                        f"says ({encoding})") from None
        raise errors.HTTPError(400, f"the body could not be read: {_reason(exc)}") from None
    except TimeoutError:
        raise errors.HTTPError(408, f"the body did not arrive within {timeout:g} s") from None
    if len(body) > limit:
        raise too_large(limit)
    return body


def _reason(exc: BaseException) -> str:
    """An aiohttp error's message without its status prefix."""
    return (getattr(exc, "message", None) or str(exc)).strip().removeprefix("400, message:").strip()


async def read_object(request: web.Request, *, empty_is_object: bool = False
                      ) -> tuple[dict[str, Any], str]:
    """The body as a JSON object (and as text), within [server] max_body_bytes and
    max_json_depth; with `empty_is_object`, an empty body (or JSON null) is {}."""
    server = request.app[CONFIG].current.server
    body = await read_body(request, server.max_body_bytes)
    if empty_is_object and body.strip() in (b"", b"null"):
        return {}, ""
    return parse_object(body, server.max_json_depth)


def too_large(limit: int) -> errors.HTTPError:
    return errors.HTTPError(413, f"the body is larger than the limit of {limit} bytes")


def parse_json(body: bytes, max_depth: int) -> tuple[Any, str]:
    """JSON from a request body, and the body as text; 400 for anything that is not strict
    JSON (RFC 8259 as I-JSON has it: no NaN, no lone surrogates) or is nested too deep."""
    try:
        text = body.decode("utf-8")
        document = orjson.loads(text)
    except UnicodeDecodeError:
        raise errors.HTTPError(400, "the body is not UTF-8 text") from None
    except orjson.JSONDecodeError as exc:
        # orjson stops at 1024 levels; its wording changed between releases.
        if "recursion" in str(exc) or "depth limit" in str(exc):
            raise errors.HTTPError(400, f"the body is nested deeper than {max_depth} levels"
                                   ) from None
        raise errors.HTTPError(400, f"the body is not valid JSON: {exc}") from None
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        # Valid JSON, but PostgreSQL's text cannot hold it: refused alike on every store.
        raise errors.HTTPError(400, "the body contains the character U+0000 (NUL), which "
                                    "relay does not store")
    # Counting brackets (those in strings too) bounds the depth from above, 10x cheaper
    # than walking the document: walk only when the count allows too deep a nesting.
    if text.count("{") + text.count("[") > max_depth and depth(document) > max_depth:
        raise errors.HTTPError(400, f"the body is nested deeper than {max_depth} levels")
    return document, text


def parse_object(body: bytes, max_depth: int) -> tuple[dict[str, Any], str]:
    """A JSON object from a request body (see parse_json), and the body as text."""
    document, text = parse_json(body, max_depth)
    if not isinstance(document, dict):
        raise errors.HTTPError(400, f"the body must be a JSON object, not {_kind(document)}")
    return document, text


# `\u0000` that is an escape, not an escaped backslash followed by "u0000".
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def depth(document: Any) -> int:
    """How deeply arrays and objects nest (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        level += 1
        deepest = max(deepest, level)
        stack.extend((child, level) for child in children)
    return deepest


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"
