"""Nothing lost under SIGKILL at full load: every push answered 202 reaches the target.

    python bench/sigkill.py [--pushes 10000] [--inflight 64] [--store sqlite|postgres|both]
                            [--postgres URL]

For each store, one `relay serve` process with a one-target chain (the target answers 200
and relay needs no callback). `inflight` clients push `pushes` pushes (each with its own
tag) as fast as relay takes them; when half of them have been answered, relay is killed
with SIGKILL, in the middle of intake and of sending, and started again on the same store
and port, and the clients go on. Then it waits for the target to have received every push
that was answered 202 and prints, per store: pushes, 202s, pushes without an answer (in
flight at the kill), delivered, lost (202 but never received), and duplicates (received
more than once: sends the killed process had made but not yet recorded, made again after
the restart, which at-least-once allows). It exits 1 if any push was lost.

PostgreSQL: 127.0.0.1:5432, database `test`, in a schema of its own that is dropped after.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
from aiohttp import web
from loadgen import free_port, start_server
from subject import PAYLOAD, TOKEN, server_and_store

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
DELIVERY_DEADLINE = 600.0
"""Seconds to wait, after the last push, for the target to have every 202."""


@dataclass
class Result:
    store: str
    pushes: int
    accepted: set[str] = field(default_factory=set)
    statuses: Counter[int] = field(default_factory=Counter)
    unanswered: int = 0
    received: Counter[str] = field(default_factory=Counter)
    delivered_at_kill: int = 0
    accepted_at_kill: int = 0
    seconds: float = 0.0
    """From the first push to the last answer."""
    drain: float = 0.0
    """From the last answer until the target had every 202 (or the deadline)."""

    @property
    def lost(self) -> set[str]:
        return self.accepted - self.received.keys()

    @property
    def duplicates(self) -> int:
        return sum(count - 1 for count in self.received.values() if count > 1)


class Target:
    """Counts what it receives, by tag; answers 200 at once."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: Counter[str] = Counter()

    async def start(self) -> Target:
        app = web.Application()
        app.router.add_post("/hook", self._receive)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        await self.runner.cleanup()

    async def _receive(self, request: web.Request) -> web.Response:
        self.received[json.loads(await request.read())["push_data"]["tag"]] += 1
        return web.Response(status=200)


def config(port: int, store_url: str, target: Target) -> str:
    return f"""{server_and_store(port, store_url)}
[delivery]
timeout = 5
max_connections = 200
[upstream]
allowed_hosts = []
[[chain]]
name = "bench"
token = "{TOKEN}"
concurrency = 1000
  [[chain.target]]
  name = "ci"
  url = "http://127.0.0.1:{target.port}/hook"
  await_callback = false
"""


class Relay:
    """`relay serve` in a subprocess that can be killed and started again on one port."""

    def __init__(self, folder: Path, store_url: str, target: Target) -> None:
        self.folder = folder
        self.port = free_port()
        self.config = folder / "relay.toml"
        self.config.write_text(config(self.port, store_url, target))
        self.process: subprocess.Popen[bytes] | None = None
        self.up = asyncio.Event()

    async def start(self) -> None:
        with open(self.folder / "relay.log", "ab") as log:
            self.process = await asyncio.to_thread(
                start_server, [sys.executable, "-m", "relay", "serve", "--config",
                               str(self.config), "--log-level", "warning"],
                self.port, cwd=self.folder, stdout=log, stderr=log)
        self.up.set()

    async def kill(self) -> None:
        assert self.process is not None
        self.up.clear()
        self.process.kill()
        await asyncio.to_thread(self.process.wait, 30)

    async def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            await asyncio.to_thread(self.process.wait, 30)

    @property
    def hook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/bench/{TOKEN}"


async def run(store: str, pushes: int, inflight: int, postgres: str) -> Result:
    folder = Path(tempfile.mkdtemp(prefix="relay-sigkill-"))
    schema = f"bench_sigkill_{uuid.uuid4().hex[:10]}"
    store_url = (f"{postgres}?schema={schema}" if store == "postgres"
                 else f"sqlite:///{folder}/relay.db")
    target = await Target().start()
    relay = Relay(folder, store_url, target)
    result = Result(store, pushes)
    numbers = iter(range(pushes))
    answered = itertools.count(1)
    half = asyncio.Event()
    try:
        await relay.start()
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def client() -> None:
                for number in numbers:
                    await relay.up.wait()
                    tag = f"k{number}"
                    body = {**PAYLOAD, "push_data": {**PAYLOAD["push_data"], "tag": tag}}
                    try:
                        async with session.post(relay.hook_url, json=body) as response:
                            await response.read()
                            result.statuses[response.status] += 1
                            if response.status == 202:
                                result.accepted.add(tag)
                    except aiohttp.ClientError:
                        result.unanswered += 1  # in flight when relay was killed
                    if next(answered) == pushes // 2:
                        half.set()

            async def killer() -> None:
                await half.wait()
                await relay.kill()
                result.accepted_at_kill = len(result.accepted)
                result.delivered_at_kill = len(result.accepted & target.received.keys())
                await relay.start()

            started = time.perf_counter()
            await asyncio.gather(killer(), *(client() for _ in range(inflight)))
            result.seconds = time.perf_counter() - started
        deadline = time.perf_counter() + DELIVERY_DEADLINE
        while result.accepted - target.received.keys() and time.perf_counter() < deadline:
            await asyncio.sleep(0.2)
        result.drain = time.perf_counter() - started - result.seconds
        result.received = Counter(target.received)
    finally:
        await relay.stop()
        await target.stop()
        if store == "postgres":
            conn = await asyncpg.connect(postgres)
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await conn.close()
        shutil.rmtree(folder, ignore_errors=True)
    return result


def report(results: list[Result]) -> None:
    print(f"\n{'store':<10}{'pushes':>8}{'202':>8}{'other':>7}{'no answer':>11}"
          f"{'delivered':>11}{'lost':>6}{'duplicates':>12}{'push s':>8}{'drain s':>9}"
          "   at the kill")
    for r in results:
        other = sum(count for status, count in r.statuses.items() if status != 202)
        delivered = len(r.accepted & r.received.keys())
        print(f"{r.store:<10}{r.pushes:>8}{len(r.accepted):>8}{other:>7}{r.unanswered:>11}"
              f"{delivered:>11}{len(r.lost):>6}{r.duplicates:>12}{r.seconds:>8.1f}{r.drain:>9.1f}"
              f"   {r.accepted_at_kill} accepted, {r.delivered_at_kill} delivered")
        if r.lost:
            print(f"  lost on {r.store}: {sorted(r.lost)[:20]}")
        if other:
            print(f"  statuses other than 202 on {r.store}: {dict(r.statuses)}")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pushes", type=int, default=10_000)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--postgres", default=POSTGRES)
    args = parser.parse_args()
    stores = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    results = []
    for store in stores:
        print(f"{store}: {args.pushes} pushes, {args.inflight} in flight, SIGKILL half-way",
              flush=True)
        results.append(await run(store, args.pushes, args.inflight, args.postgres))
    report(results)
    return 1 if any(r.lost for r in results) else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
