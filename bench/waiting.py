"""Memory per delivery waiting for its callback: relay's RSS as the waiting ones pile up.

    python bench/waiting.py [--deliveries 100000] [--store sqlite|postgres] [--postgres URL]

One `relay serve` with one-target chains (a chain runs at most 1 000 deliveries at once, so
as many chains as that takes) whose target answers 202 and never calls back
(callback_timeout 1 h), so every delivery ends up `awaiting_callback`. Pushes go in as fast
as relay takes them; at each tenth of `--deliveries` it prints how many wait and relay's
resident memory, then the growth per waiting delivery over the run. A waiting delivery is a
row in the store, not a task or an object in relay: the growth should stay near zero (what
is left is the allocator and the store's page cache settling). The baseline is relay's own
RSS before the first push.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg
from aiohttp import web
from loadgen import free_port, start_server
from subject import PAYLOAD, TOKEN, server_and_store

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


CHAIN_LIMIT = 1000
"""A chain runs at most this many deliveries at once (concurrency's maximum): the waiting
ones are spread over as many chains as that takes."""


def config(port: int, store_url: str, target_port: int, chains: int) -> str:
    return f"""{server_and_store(port, store_url)}
[delivery]
max_connections = 200
callback_timeout = "1h"
[upstream]
allowed_hosts = []
""" + "".join(f"""
[[chain]]
name = "bench{n}"
token = "{TOKEN}"
concurrency = {CHAIN_LIMIT}
  [[chain.target]]
  name = "ci"
  url = "http://127.0.0.1:{target_port}/hook"
""" for n in range(chains))


async def waiting(store: str, store_url: str, folder: Path) -> int:
    if store == "sqlite":
        with sqlite3.connect(folder / "relay.db") as db:
            return int(db.execute("SELECT count(*) FROM sends WHERE state ="
                                  " 'awaiting_callback'").fetchone()[0])
    dsn, schema = store_url.split("?schema=")
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        return int(await conn.fetchval(
            "SELECT count(*) FROM sends WHERE state = 'awaiting_callback'"))
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=100_000)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--postgres", default=POSTGRES)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="relay-waiting-"))
    schema = f"bench_waiting_{uuid.uuid4().hex[:10]}"
    store_url = (f"{args.postgres}?schema={schema}" if args.store == "postgres"
                 else f"sqlite:///{folder}/relay.db")

    async def answer(_: web.Request) -> web.Response:
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/hook", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    target_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", target_port).start()
    port = free_port()
    chains = -(-args.deliveries // CHAIN_LIMIT)
    (folder / "relay.toml").write_text(config(port, store_url, target_port, chains))
    with open(folder / "relay.log", "wb") as log:
        process = await asyncio.to_thread(
            start_server, [sys.executable, "-m", "relay", "serve", "--config", "relay.toml",
                           "--log-level", "warning"], port, cwd=folder, stdout=log, stderr=log)
    hooks = [f"http://127.0.0.1:{port}/hooks/bench{n}/{TOKEN}" for n in range(chains)]
    base = rss_mb(process.pid)
    print(f"{args.store}: relay RSS before the first push {base:.1f} MB")
    print(f"{'waiting':>10}{'RSS MB':>10}{'over base':>11}")
    numbers = iter(range(args.deliveries))
    step = max(1, args.deliveries // 10)
    marks: list[tuple[int, float]] = []
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

            async def client() -> None:
                for number in numbers:
                    body = {**PAYLOAD, "push_data": {**PAYLOAD["push_data"],
                                                     "tag": f"w{number}"}}
                    async with session.post(hooks[number % chains], json=body) as response:
                        await response.read()

            clients = [asyncio.create_task(client()) for _ in range(32)]
            for mark in itertools.count(step, step):
                if mark > args.deliveries:
                    break
                deadline = time.monotonic() + 600
                while (count := await waiting(args.store, store_url, folder)) < mark:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"only {count} of {mark} deliveries wait after 600 s")
                    await asyncio.sleep(0.5)
                rss = rss_mb(process.pid)
                marks.append((count, rss))
                print(f"{count:>10}{rss:>10.1f}{rss - base:>11.1f}", flush=True)
            await asyncio.gather(*clients)
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 30)
        await runner.cleanup()
        if args.store == "postgres":
            conn = await asyncpg.connect(args.postgres)
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await conn.close()
    (first_count, first_rss), (last_count, last_rss) = marks[0], marks[-1]
    per = (last_rss - first_rss) * 1024 / max(last_count - first_count, 1)
    print(f"growth from {first_count} to {last_count} waiting: {last_rss - first_rss:.1f} MB,"
          f" {per:.3f} KB per waiting delivery; {last_rss - base:.1f} MB over the base in all")


if __name__ == "__main__":
    asyncio.run(main())
