"""JSON answers: every body relay sends is made here."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web


def respond(data: Any, status: int = 200, headers: Mapping[str, str] | None = None
            ) -> web.Response:
    return web.Response(body=dumps(data), status=status, headers=headers,
                        content_type="application/json")


def dumps(data: Any) -> bytes:
    try:
        return orjson.dumps(data)
    except TypeError:
        # An integer beyond 64 bits, kept exactly as a sender wrote it: orjson cannot write it.
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
