"""Scaling out: 1, 2 and 3 relay processes on one PostgreSQL, beside 1 process on SQLite.

    python bench/scale.py [--seconds 8] [--inflight 32] [--postgres URL]

For each setup it measures durable intake (wrk, or the built-in load generator, spread
evenly over the processes) and end-to-end chains per second through a two-target chain
(bench/chainload.py, pushes spread over the processes), then prints the scaling ratios
against one PostgreSQL process. Processes are not pinned here: they share the machine's
cores with PostgreSQL and the load generator, which is the point of the measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from chainload import Targets, drive
from loadgen import Load, post_load
from subject import PAYLOAD, UNREACHABLE, hook_url, payload, start_relay, stop

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass
class Setup:
    name: str
    processes: int
    postgres: bool


@dataclass
class Result:
    setup: Setup
    intake: float
    intake_p99: float
    chains: float


async def measure(setup: Setup, targets: Targets, seconds: float, inflight: int,
                  postgres: str) -> Result:
    # Intake alone (targets unreachable, retried hourly), then chains on a fresh store.
    async with cluster(setup, None, postgres) as urls:
        loads = await _intake(urls, seconds)
    async with cluster(setup, targets, postgres) as urls:
        chains = await drive(urls, targets, PAYLOAD, seconds, inflight)
    return Result(setup, sum(load.requests_per_second for load in loads),
                  max(load.p99_ms for load in loads), chains.per_second)


@contextlib.asynccontextmanager
async def cluster(setup: Setup, targets: Targets | None,
                  postgres: str) -> AsyncIterator[list[str]]:
    """`setup.processes` relays on one store; yields their hook URLs."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    store_url = f"{postgres}?schema={schema}" if setup.postgres else "sqlite:///data/relay.db"
    folder = Path(tempfile.mkdtemp(prefix="relay-scale-"))
    relays: list[tuple[subprocess.Popen[bytes], int]] = []
    try:
        for _ in range(setup.processes):
            urls = [targets.url("ci"), targets.url("deploy")] if targets else [UNREACHABLE] * 2
            relays.append(start_relay(folder, urls, concurrency=1000, store_url=store_url,
                                      log_level="warning"))
        yield [hook_url(port) for _, port in relays]
    finally:
        for process, _ in relays:
            stop(process)
        if setup.postgres:
            conn = await asyncpg.connect(postgres)
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await conn.close()


async def _intake(urls: list[str], seconds: float) -> list[Load]:
    body = payload()
    connections = max(1, 50 // len(urls))
    loop = asyncio.get_running_loop()
    with concurrent.futures.ThreadPoolExecutor(len(urls)) as pool:
        return list(await asyncio.gather(*(
            loop.run_in_executor(pool, post_load, url, body, seconds, connections)
            for url in urls)))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--inflight", type=int, default=32)
    parser.add_argument("--postgres", default=POSTGRES)
    args = parser.parse_args()
    setups = [Setup("SQLite, 1 process", 1, False)] + [
        Setup(f"PostgreSQL, {n} process{'es' if n > 1 else ''}", n, True) for n in (1, 2, 3)]
    targets = await Targets().start()
    try:
        results = [await measure(s, targets, args.seconds, args.inflight, args.postgres)
                   for s in setups]
    finally:
        await targets.stop()
    base = next(r for r in results if r.setup.postgres and r.setup.processes == 1)
    print(f"\nscaling out, {args.seconds:g} s per measurement, {args.inflight} chains in "
          "flight for end-to-end")
    print(f"{'setup':<26}{'intake/s':>10}{'p99 ms':>9}{'x':>6}{'chains/s':>10}{'x':>6}")
    for r in results:
        print(f"{r.setup.name:<26}{r.intake:>10.0f}{r.intake_p99:>9.1f}"
              f"{r.intake / base.intake:>6.2f}{r.chains:>10.0f}{r.chains / base.chains:>6.2f}")


if __name__ == "__main__":
    asyncio.run(main())
