"""The baselines relay is measured against: bare aiohttp servers doing the least possible.

    python bench/bare.py intake PORT            parse the JSON body, answer 202
    python bench/bare.py sink PORT              answer 200 to anything
    python bench/bare.py page PORT FILE         answer GET with the JSON in FILE
    python bench/bare.py chain PORT URL1 URL2   a chain walker with nothing durable: forward
                                                the push to URL1 with a callback_url of its
                                                own, on that callback forward to URL2
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web


async def intake(request: web.Request) -> web.Response:
    json.loads(await request.read())
    return web.json_response({"id": "x"}, status=202)


async def sink(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(status=200)


class BareChain:
    """What relay does on the way from intake to the last target, minus the store."""

    def __init__(self, port: int, targets: list[str]) -> None:
        self.port = port
        self.targets = targets
        self.payloads: dict[str, dict[str, Any]] = {}
        self.ids = itertools.count()
        self.tasks: set[asyncio.Task[None]] = set()

    async def session_ctx(self, app: web.Application) -> Any:
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
        yield
        await self.session.close()

    async def intake(self, request: web.Request) -> web.Response:
        payload = json.loads(await request.read())
        delivery = str(next(self.ids))
        self.payloads[delivery] = payload
        self.forward(delivery, 0)
        return web.json_response({"id": delivery}, status=202)

    async def callback(self, request: web.Request) -> web.Response:
        json.loads(await request.read())
        delivery, step = request.match_info["token"].split("-")
        if int(step) + 1 < len(self.targets):
            self.forward(delivery, int(step) + 1)
        else:
            del self.payloads[delivery]
        return web.json_response({"ok": True})

    def forward(self, delivery: str, step: int) -> None:
        body = dict(self.payloads[delivery])
        body["callback_url"] = f"http://127.0.0.1:{self.port}/callbacks/{delivery}-{step}"
        task = asyncio.create_task(self.post(self.targets[step], body))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def post(self, url: str, body: dict[str, Any]) -> None:
        async with self.session.post(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}) as answer:
            await answer.read()


def main() -> None:
    mode, port = sys.argv[1], int(sys.argv[2])
    app = web.Application()
    if mode == "page":
        page = Path(sys.argv[3]).read_bytes()

        async def canned(request: web.Request) -> web.Response:
            return web.Response(body=page, content_type="application/json")

        app.router.add_get("/{tail:.*}", canned)
    elif mode == "chain":
        walker = BareChain(port, sys.argv[3:])
        app.cleanup_ctx.append(walker.session_ctx)
        app.router.add_post("/hooks/{tail:.*}", walker.intake)
        app.router.add_post("/callbacks/{token}", walker.callback)
    else:
        app.router.add_post("/{tail:.*}", intake if mode == "intake" else sink)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
