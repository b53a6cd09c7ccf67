"""`relay example-target`: a tiny CI stand-in for trying relay out (and for `make demo`).

It answers every POST with 200 and then, after --delay seconds, POSTs a real callback
({state, description, context, target_url}) to the callback_url it received, as a CI system
does when its build ends. target_url points at a page of its own describing that run.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

STATES = ("success", "failure", "error")
DESCRIPTIONS = {"success": "all checks passed", "failure": "2 of 387 tests FAILED",
                "error": "the build runner crashed"}
CALLBACK_TRIES = 5


def add_command(commands: Any) -> None:
    parser = commands.add_parser("example-target",
                                 help="a stand-in CI target that answers 200 and calls back")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--state", choices=STATES, default="success",
                        help="what the callback says (default success)")
    parser.add_argument("--delay", type=float, default=1.0,
                        help="seconds between answering and calling back (default 1)")
    parser.add_argument("--name", default="example-target",
                        help="how it introduces itself in its output and callbacks")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    target = ExampleTarget(args.name, args.host, args.port, args.state, args.delay)

    def listening(_: object) -> None:  # run_app calls it once the port is bound
        print(f"{target.name}: listening on http://{args.host}:{args.port}/ "
              f"(calls back {args.state} after {args.delay:g} s)", flush=True)

    # Nothing it serves is worth waiting for at SIGTERM (aiohttp's default waits up to 60 s).
    web.run_app(target.app(), host=args.host, port=args.port, print=listening,
                access_log=None, shutdown_timeout=1.0)
    return 0


class ExampleTarget:
    def __init__(self, name: str, host: str, port: int, state: str, delay: float) -> None:
        self.name = name
        self.base = f"http://{host}:{port}"
        self.state = state
        self.delay = delay
        self.runs: dict[int, dict[str, Any]] = {}
        self._numbers = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.cleanup_ctx.append(self._client)
        app.router.add_get("/runs/{number}", self.show_run)
        app.router.add_post("/{tail:.*}", self.receive)
        return app

    async def _client(self, _: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            self._session = session
            yield
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def receive(self, request: web.Request) -> web.Response:
        try:
            payload = json.loads(await request.read())
        except ValueError:
            return web.json_response({"error": "the body is not JSON"}, status=400)
        callback_url = payload.get("callback_url") if isinstance(payload, dict) else None
        number = next(self._numbers)
        image = _image(payload)
        self.runs[number] = {"image": image, "state": "running", "received": time.time(),
                             "webhook_id": request.headers.get("webhook-id")}
        self._say(f"run {number}: {image} received; calling back {self.state} in "
                  f"{self.delay:g} s")
        if isinstance(callback_url, str):
            task = asyncio.create_task(self._call_back(number, callback_url))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.json_response({"accepted": True, "run": f"{self.base}/runs/{number}"})

    async def _call_back(self, number: int, url: str) -> None:
        await asyncio.sleep(self.delay)
        assert self._session is not None
        body = {"state": self.state,
                "description": f"{self.name}: {DESCRIPTIONS[self.state]}",
                "context": "relay example-target",
                "target_url": f"{self.base}/runs/{number}"}
        for attempt in range(1, CALLBACK_TRIES + 1):
            try:
                async with self._session.post(url, json=body) as answer:
                    status = answer.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, problem = None, str(exc) or type(exc).__name__
            else:
                problem = f"HTTP {status}"
            if status is not None and status < 500:
                self.runs[number]["state"] = self.state
                self._say(f"run {number}: called back {self.state} (relay answered {status})")
                return
            self._say(f"run {number}: callback attempt {attempt} failed: {problem}")
            await asyncio.sleep(attempt)
        self.runs[number]["state"] = "callback failed"

    async def show_run(self, request: web.Request) -> web.Response:
        number = request.match_info["number"]
        run = self.runs.get(int(number) if number.isascii() and number.isdigit() else 0)
        if run is None:
            return web.Response(status=404, text="no such run\n")
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run["received"]))
        return web.Response(text=f"{self.name} run {request.match_info['number']}\n"
                                 f"image:      {run['image']}\nstarted:    {started}\n"
                                 f"webhook-id: {run['webhook_id']}\nresult:     {run['state']}\n")

    def _say(self, line: str) -> None:
        print(f"{self.name}: {line}", flush=True)


def _image(payload: Any) -> str:
    if not isinstance(payload, dict):
        return "?"
    repository = payload.get("repository") or {}
    push_data = payload.get("push_data") or {}
    name = repository.get("repo_name", "?") if isinstance(repository, dict) else "?"
    tag = push_data.get("tag") if isinstance(push_data, dict) else None
    return f"{name}:{tag}" if tag else str(name)
