"""Scaling out: 1, 2 and 3 relay processes on one PostgreSQL, beside 1 process on SQLite.

    python bench/scale.py [--seconds 8] [--inflight 32] [--postgres URL] [--processes 1,2,3]

For each setup it measures durable intake (wrk, or the built-in load generator, spread
evenly over the processes) and end-to-end chains per second through a two-target chain
(bench/chainload.py, pushes spread over the processes), then prints the scaling ratios
against one PostgreSQL process. For the chains it also prints what one chain cost: SQL
statements (relay_store_statements_total from each process's /metrics), relay's CPU (all
its processes) and PostgreSQL's CPU (the backends whose application_name is relay), and
the end-to-end p99. Processes are not pinned here: they share the machine's cores with
PostgreSQL and the load generator, which is the point of the measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import re
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import cpu
from chainload import ChainRun, Targets, drive
from loadgen import Load, post_load
from subject import PAYLOAD, UNREACHABLE, hook_url, payload, start_relay, stop

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass
class Setup:
    name: str
    processes: int
    postgres: bool


@dataclass
class Cluster:
    """Relay processes serving one store."""

    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)

    @property
    def hook_urls(self) -> list[str]:
        return [hook_url(port) for port in self.ports]


@dataclass
class Result:
    setup: Setup
    intake: float
    intake_p99: float
    chains: ChainRun
    statements: float
    """SQL statements per chain, all processes."""
    relay_cpu_ms: float
    """relay's CPU per chain, all processes."""
    postgres_cpu_ms: float | None
    """PostgreSQL's CPU per chain (relay's backends), on PostgreSQL."""


async def measure(setup: Setup, targets: Targets, seconds: float, inflight: int,
                  postgres: str) -> Result:
    # Intake alone (targets unreachable, retried hourly), then chains on a fresh store.
    async with cluster(setup, None, postgres) as relays:
        loads = await _intake(relays.hook_urls, seconds)
    async with cluster(setup, targets, postgres) as relays:
        statements = await _statements(relays.ports)
        relay_cpu = sum(cpu.cpu_seconds(p.pid) for p in relays.processes)
        backends = await _backends(postgres) if setup.postgres else {}
        chains = await drive(relays.hook_urls, targets, PAYLOAD, seconds, inflight)
        statements = await _statements(relays.ports) - statements
        relay_cpu = sum(cpu.cpu_seconds(p.pid) for p in relays.processes) - relay_cpu
        postgres_cpu = None
        if setup.postgres:
            after = await _backends(postgres)
            postgres_cpu = sum(after[pid] - backends.get(pid, 0.0) for pid in after)
    done = max(chains.done, 1)
    return Result(setup, sum(load.requests_per_second for load in loads),
                  max(load.p99_ms for load in loads), chains, statements / done,
                  relay_cpu * 1000 / done,
                  None if postgres_cpu is None else postgres_cpu * 1000 / done)


@contextlib.asynccontextmanager
async def cluster(setup: Setup, targets: Targets | None,
                  postgres: str) -> AsyncIterator[Cluster]:
    """`setup.processes` relays on one store."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    store_url = f"{postgres}?schema={schema}" if setup.postgres else "sqlite:///data/relay.db"
    folder = Path(tempfile.mkdtemp(prefix="relay-scale-"))
    relays = Cluster()
    try:
        for _ in range(setup.processes):
            urls = [targets.url("ci"), targets.url("deploy")] if targets else [UNREACHABLE] * 2
            process, port = start_relay(folder, urls, concurrency=1000, store_url=store_url,
                                        log_level="warning")
            relays.processes.append(process)
            relays.ports.append(port)
        yield relays
    finally:
        for process in relays.processes:
            stop(process)
        if setup.postgres:
            conn = await asyncpg.connect(postgres)
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await conn.close()


_STATEMENTS = re.compile(r"^relay_store_statements_total (\S+)$", re.MULTILINE)


async def _statements(ports: list[int]) -> float:
    """relay_store_statements_total, summed over the processes."""
    total = 0.0
    async with aiohttp.ClientSession() as session:
        for port in ports:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as answer:
                found = _STATEMENTS.search(await answer.text())
                total += float(found.group(1)) if found else 0.0
    return total


async def _backends(postgres: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend serving relay (application_name
    relay): other sessions on the same server (other test runs) are left out."""
    conn = await asyncpg.connect(postgres)
    try:
        pids = [row["pid"] for row in await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'relay'")]
    finally:
        await conn.close()
    return {pid: cpu.cpu_seconds(pid) for pid in pids}


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
    parser.add_argument("--processes", default="1,2,3",
                        help="the PostgreSQL setups, as numbers of processes")
    args = parser.parse_args()
    setups = [Setup("SQLite, 1 process", 1, False)] + [
        Setup(f"PostgreSQL, {n} process{'es' if n > 1 else ''}", n, True)
        for n in (int(n) for n in args.processes.split(","))]
    targets = await Targets().start()
    try:
        results = [await measure(s, targets, args.seconds, args.inflight, args.postgres)
                   for s in setups]
    finally:
        await targets.stop()
    # The ratios are to one PostgreSQL process (to the fewest, when 1 was not asked for).
    base = min((r for r in results if r.setup.postgres), key=lambda r: r.setup.processes,
               default=results[0])
    sqlite = results[0]
    print(f"\nscaling out, {args.seconds:g} s per measurement, {args.inflight} chains in "
          "flight for end to end")
    print(f"{'setup':<26}{'intake/s':>10}{'p99 ms':>9}{'x':>6}{'chains/s':>10}{'x':>6}"
          f"{'e2e p99':>9}{'stmts':>7}{'relay ms':>10}{'PG ms':>7}   (per chain)")
    for r in results:
        postgres_cpu = "" if r.postgres_cpu_ms is None else f"{r.postgres_cpu_ms:.2f}"
        print(f"{r.setup.name:<26}{r.intake:>10.0f}{r.intake_p99:>9.1f}"
              f"{r.intake / base.intake:>6.2f}{r.chains.per_second:>10.0f}"
              f"{r.chains.per_second / base.chains.per_second:>6.2f}"
              f"{r.chains.end_to_end(0.99):>9.1f}{r.statements:>7.1f}"
              f"{r.relay_cpu_ms:>10.2f}{postgres_cpu:>7}")
    print(f"relay CPU per chain, {base.setup.name} / SQLite: "
          f"{base.relay_cpu_ms / sqlite.relay_cpu_ms:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
