"""Drive a two-target chain end to end and time it: the pieces bench/delivery.py and
bench/scale.py share.

The two targets are CI stand-ins that answer 200 and then POST `{"state": "success"}` to
the callback_url they received. A closed loop keeps `inflight` pushes going: each push
(with a unique tag) is done when the second target has called back. A hop is the time
from the first target posting its callback to the second target receiving the payload.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from loadgen import free_port


@dataclass
class ChainRun:
    done: int = 0
    seconds: float = 0.0
    failed: int = 0
    hops_ms: list[float] = field(default_factory=list)
    ends_ms: list[float] = field(default_factory=list)
    cpu_ms: float = 0.0
    """The server's CPU per chain done (all its threads), when measured."""
    load_busy: float = 0.0
    """The share of the run the load generator's process was on a CPU: near 100 %, it is
    the bottleneck, not the server."""

    @property
    def per_second(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    def hop(self, quantile: float) -> float:
        return _quantile(self.hops_ms, quantile)

    def end_to_end(self, quantile: float) -> float:
        return _quantile(self.ends_ms, quantile)


def _quantile(values: list[float], quantile: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * quantile))]


class Targets:
    """Both targets of the chain in one aiohttp app on one port (/ci and /deploy)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.callback_posted: dict[str, float] = {}
        self.deploy_received: dict[str, float] = {}
        self.finished: dict[str, asyncio.Future[float]] = {}
        self.callback_failures = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> Targets:
        app = web.Application()
        app.router.add_post("/ci", self._ci)
        app.router.add_post("/deploy", self._deploy)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        connector = aiohttp.TCPConnector(limit=0)
        self.session = aiohttp.ClientSession(connector=connector)
        return self

    async def stop(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.session.close()
        await self.runner.cleanup()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    async def _ci(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        self._call_back(body, first=True)
        return web.Response(status=200)

    async def _deploy(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        self.deploy_received.setdefault(body["push_data"]["tag"], time.perf_counter())
        self._call_back(body, first=False)
        return web.Response(status=200)

    def _call_back(self, body: dict[str, Any], first: bool) -> None:
        task = asyncio.create_task(self._post_callback(body, first))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post_callback(self, body: dict[str, Any], first: bool) -> None:
        tag = body["push_data"]["tag"]
        if first:
            self.callback_posted.setdefault(tag, time.perf_counter())
        try:
            async with self.session.post(body["callback_url"], data=_SUCCESS,
                                         headers=_JSON) as response:
                ok = response.status == 200
        except aiohttp.ClientError:
            ok = False
        if not ok:
            self.callback_failures += 1
        if not first and tag in self.finished and not self.finished[tag].done():
            self.finished[tag].set_result(time.perf_counter())


_runs = itertools.count()
_SUCCESS = b'{"state": "success"}'
_JSON = {"Content-Type": "application/json"}
_TAG = "TAG-PLACEHOLDER"


def _with_tag(payload: dict[str, Any]) -> tuple[bytes, bytes]:
    """The payload as JSON with a placeholder tag, split where the tag goes: the load
    generator shares a core with the targets, and must not be the bottleneck."""
    document = json.loads(json.dumps(payload))
    document["push_data"]["tag"] = _TAG
    before, after = orjson.dumps(document).split(_TAG.encode())
    return before, after


async def drive(hook_urls: list[str], targets: Targets, payload: dict[str, Any],
                seconds: float, inflight: int, headers: dict[str, str] | None = None
                ) -> ChainRun:
    """Keep `inflight` pushes going for `seconds`, spread over `hook_urls`."""
    run = ChainRun()
    prefix = f"r{next(_runs)}x"
    tags = itertools.count()
    deadline = time.perf_counter() + seconds
    urls = itertools.cycle(hook_urls)
    before, after = _with_tag(payload)
    sent = {**_JSON, **(headers or {})}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one_after_another() -> None:
            while time.perf_counter() < deadline:
                tag = f"{prefix}{next(tags)}"
                finished = asyncio.get_running_loop().create_future()
                targets.finished[tag] = finished
                started = time.perf_counter()
                try:
                    async with session.post(next(urls), data=before + tag.encode() + after,
                                            headers=sent) as response:
                        if response.status != 202:
                            run.failed += 1
                            await asyncio.sleep(0.01)
                            continue
                    ended = await asyncio.wait_for(finished, 60)
                except (aiohttp.ClientError, TimeoutError):
                    run.failed += 1
                    continue
                run.done += 1
                run.ends_ms.append((ended - started) * 1000)
                if tag in targets.callback_posted and tag in targets.deploy_received:
                    run.hops_ms.append(
                        (targets.deploy_received[tag] - targets.callback_posted[tag]) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(one_after_another() for _ in range(inflight)))
        run.seconds = time.perf_counter() - started
    return run


def summary(name: str, run: ChainRun) -> str:
    return (f"{name:<34}{run.per_second:>9.0f}{run.end_to_end(0.5):>10.1f}"
            f"{run.end_to_end(0.99):>10.1f}{run.hop(0.5):>9.2f}{run.hop(0.99):>9.2f}")


HEADER = (f"{'':<34}{'chains/s':>9}{'e2e p50':>10}{'e2e p99':>10}{'hop p50':>9}"
          f"{'hop p99':>9}   (ms)")


def median_of(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")
