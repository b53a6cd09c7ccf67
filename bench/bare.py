"""The baselines relay is measured against: bare aiohttp servers doing the least possible.

    python bench/bare.py intake PORT      parse the JSON body, answer 202
    python bench/bare.py sink PORT        answer 200 to anything (a target that never calls back)
"""

from __future__ import annotations

import json
import sys

from aiohttp import web


async def intake(request: web.Request) -> web.Response:
    json.loads(await request.read())
    return web.json_response({"id": "x"}, status=202)


async def sink(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(status=200)


def main() -> None:
    mode, port = sys.argv[1], int(sys.argv[2])
    app = web.Application()
    app.router.add_post("/{tail:.*}", intake if mode == "intake" else sink)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
