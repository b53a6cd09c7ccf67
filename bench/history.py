"""History at scale: a SQLite store filled to `--deliveries` (1 000 000 by default), then each
history query's latency, beside a bare aiohttp handler answering the same bytes.

    python bench/history.py [--deliveries 1000000] [--requests 200] [--folder DIR]

The store is filled directly with SQL (relay's own schema, from its migrations): deliveries
over 3 chains, 50 repositories and 20 tags, each with two steps and an attempt per step,
1 % failed and 1 % errored, as a long-running relay's history would hold them. Then relay
serves it, and each query is asked `--requests` times, one at a time: the newest page, the
page of one chain, of one state (a rare one), of one repository, of one tag, a 20-page
cursor walk (each page timed), and a delivery by id. Printed: p50 and p99 of each, and the
ratio of relay's p99 to the bare handler's (a canned answer of the newest page's size).
With `--folder`, the filled store is kept there and reused by the next run of that size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from loadgen import free_port, start_server
from subject import SEED, start_relay, stop

from relay import models
from relay.store import open_store

ADMIN = {"Authorization": "Bearer bench-admin-token-0123456789"}
CHAINS = ("bench", "nightly", "release")
REPOSITORIES = tuple(f"team{n % 7}/service-{n}" for n in range(50))
TAGS = ("latest", *(f"v1.{n}" for n in range(19)))
BATCH = 20_000


def fill(path: Path, count: int) -> None:
    """`count` finished deliveries, oldest first, in relay's schema at `path` (migrated)."""
    db = sqlite3.connect(path, isolation_level=None)
    # Only while filling: a bench store need not survive a power cut.
    db.execute("PRAGMA synchronous = OFF")
    rng = random.Random(16)
    start = time.time() - count * 0.05
    send_id = 0
    for first in range(0, count, BATCH):
        deliveries, sends, attempts = [], [], []
        for n in range(first, min(first + BATCH, count)):
            at = start + n * 0.05
            delivery_id = models.new_delivery_id(at)
            roll = rng.random()
            state = "failure" if roll < 0.01 else "error" if roll < 0.02 else "success"
            repository, tag = rng.choice(REPOSITORIES), rng.choice(TAGS)
            document = {**SEED, "repository": {**SEED["repository"], "repo_name": repository},
                        "push_data": {**SEED["push_data"], "tag": tag}}
            deliveries.append((delivery_id, rng.choice(CHAINS), state, at, at + 0.01,
                               at + 2.0, json.dumps(document), repository, tag,
                               f"{state}: bench history"))
            for idx, (message_id, token) in enumerate(models.new_step_secrets(
                    2, delivery_id[:models.TOKEN_PREFIX])):
                send_id += 1
                step_state = state if idx == 1 else "success"
                sends.append((send_id, delivery_id, idx, f"t{idx}",
                              f"http://127.0.0.1:9/t{idx}", step_state, message_id, token,
                              at + idx, at + idx + 1))
                attempts.append((send_id, at + idx, 200 if step_state == "success" else 500))
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO deliveries (id, chain, state, source, received_at, started_at,"
            " finished_at, payload, repository, tag, revision, pusher, summary, config)"
            " VALUES (?1, ?2, ?3, 'push', ?4, ?5, ?6, ?7, ?8, ?9, ?9, 'bench', ?10, NULL)",
            deliveries)
        db.executemany(
            "INSERT INTO sends (id, delivery_id, kind, idx, name, url, state, message_id,"
            " token, attempts, started_at, finished_at)"
            " VALUES (?1, ?2, 'step', ?3, ?4, ?5, ?6, ?7, ?8, 1, ?9, ?10)", sends)
        db.executemany(
            "INSERT INTO attempts (send_id, n, at, status, duration_ms, worker)"
            " VALUES (?1, 1, ?2, ?3, 12.5, 'bench')", attempts)
        db.execute("COMMIT")
        print(f"  filled {min(first + BATCH, count)} of {count}", end="\r", file=sys.stderr)
    db.execute("ANALYZE")
    db.close()
    print(file=sys.stderr)


async def _migrate(path: Path) -> None:
    store = await open_store(f"sqlite:///{path}")
    await store.close()


Ask = Callable[[aiohttp.ClientSession], Awaitable[None]]


async def timed(session: aiohttp.ClientSession, ask: Ask, times: int) -> list[float]:
    spent = []
    for _ in range(times):
        started = time.perf_counter()
        await ask(session)
        spent.append((time.perf_counter() - started) * 1000)
    return spent


async def get(session: aiohttp.ClientSession, url: str) -> dict[str, object]:
    async with session.get(url, headers=ADMIN) as answer:
        if answer.status != 200:
            raise SystemExit(f"GET {url} answered {answer.status}: {await answer.text()}")
        result: dict[str, object] = await answer.json()
        return result


async def measure(base: str, ids: list[str], times: int) -> dict[str, list[float]]:
    rng = random.Random(7)

    def listing(query: str) -> Ask:
        async def ask(session: aiohttp.ClientSession) -> None:
            await get(session, f"{base}/history{query}")
        return ask

    async def by_id(session: aiohttp.ClientSession) -> None:
        await get(session, f"{base}/history/{rng.choice(ids)}")

    async def walk(session: aiohttp.ClientSession) -> None:
        cursor: object = None
        for _ in range(20):
            started = time.perf_counter()
            page = await get(session, f"{base}/history?limit=50"
                                      + (f"&cursor={cursor}" if cursor else ""))
            pages.append((time.perf_counter() - started) * 1000)
            cursor = page["next_cursor"]

    pages: list[float] = []
    queries = {
        "newest page": listing(""),
        "one chain": listing(f"?chain={CHAINS[1]}"),
        "one state (1 % of all)": listing("?state=failure"),
        "one repository (2 %)": listing(f"?repository={REPOSITORIES[3]}"),
        "one tag (5 %)": listing(f"?tag={TAGS[4]}"),
        "a delivery by id": by_id,
    }
    results: dict[str, list[float]] = {}
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        await timed(session, listing(""), 20)  # warm the caches
        for name, ask in queries.items():
            results[name] = await timed(session, ask, times)
        await timed(session, walk, max(1, times // 20))
        results["cursor walk, each of 20 pages"] = pages
    return results


async def bare_p99(body: bytes, times: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        canned = Path(folder) / "page.json"
        canned.write_bytes(body)
        port = free_port()
        process = start_server([sys.executable, str(Path(__file__).parent / "bare.py"),
                                "page", str(port), str(canned)], port)
        try:
            connector = aiohttp.TCPConnector(limit=1)
            async with aiohttp.ClientSession(connector=connector) as session:
                async def ask(session: aiohttp.ClientSession) -> None:
                    async with session.get(f"http://127.0.0.1:{port}/history") as answer:
                        await answer.read()
                await timed(session, ask, 20)
                return quantile(await timed(session, ask, times), 0.99)
        finally:
            process.terminate()
            process.wait(10)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def run(folder: Path, args: argparse.Namespace) -> None:
    path = folder / "data" / "relay.db"
    marker = folder / f"filled-{args.deliveries}"
    if not marker.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        started = time.perf_counter()
        await _migrate(path)
        fill(path, args.deliveries)
        marker.touch()
        print(f"filled {args.deliveries} deliveries in {time.perf_counter() - started:.0f} s",
              file=sys.stderr)
    size = sum(p.stat().st_size for p in path.parent.glob("relay.db*")) / 1e9
    with sqlite3.connect(path) as db:
        ids = [row[0] for row in db.execute(
            "SELECT id FROM deliveries ORDER BY random() LIMIT 1000")]
    process, port = start_relay(folder, ["http://127.0.0.1:9/hook"], log_level="warning")
    try:
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session, session.get(
                f"{base}/history", headers=ADMIN) as answer:
            newest = await answer.read()
        results = await measure(base, ids, args.requests)
    finally:
        stop(process)
    bare = await bare_p99(newest, args.requests)
    print(f"\nhistory of {args.deliveries} deliveries ({size:.2f} GB store), "
          f"{args.requests} requests each, one at a time (ms)")
    print(f"{'query':<34}{'p50':>8}{'p99':>8}{'p99/bare':>10}")
    for name, spent in results.items():
        print(f"{name:<34}{statistics.median(spent):>8.2f}{quantile(spent, 0.99):>8.2f}"
              f"{quantile(spent, 0.99) / bare:>10.1f}")
    print(f"{'bare aiohttp, the same bytes':<34}{'':>8}{bare:>8.2f}")
    worst = max(quantile(spent, 0.99) for spent in results.values())
    print(f"worst p99: {worst:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--folder", type=Path, help="keep the filled store here")
    args = parser.parse_args()
    if args.folder is not None:
        args.folder.mkdir(parents=True, exist_ok=True)
        asyncio.run(run(args.folder, args))
        return
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(run(Path(folder), args))


if __name__ == "__main__":
    main()
