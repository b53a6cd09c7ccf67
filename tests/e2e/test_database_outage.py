"""A database outage under load, measured from outside: two `relay serve` processes on one
PostgreSQL (a private one, tests/support/private_postgres.py), 64 pushes in flight, the server
stopped (`pg_ctl stop -m fast`) for a few seconds and started again. Every push is answered
202 or 503 with Retry-After, never 500; both processes recover by themselves; and every push
answered 202 is stored and reaches the target."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from support import (
    ADMIN_TOKEN,
    CHAIN_TOKEN,
    RelayProcess,
    Reply,
    StartTarget,
    Target,
    render_config,
    seed_push,
    wait_until,
)
from support.private_postgres import PrivatePostgres, private_postgres

IN_FLIGHT = 64
OUTAGES = 2
OUTAGE_SECONDS = 3.0
PAUSE_AFTER_503 = 0.2
"""A client's pause after a 503 (it is told 5 s; the test would rather see recovery soon)."""


@dataclass(frozen=True)
class Answer:
    relay: int
    phase: str
    status: int | None
    retry_after: str | None
    delivery_id: str | None
    tag: str
    error: str = ""


class Load:
    """IN_FLIGHT clients, each pushing one push after another to the relays in turn."""

    def __init__(self, relays: list[RelayProcess]) -> None:
        self.relays = relays
        self.phase = "before"
        self.answers: list[Answer] = []
        self.stopping = asyncio.Event()
        self._numbers = itertools.count()

    def count(self, relay: int, phase: str, status: int) -> int:
        return sum(1 for a in self.answers
                   if a.relay == relay and a.phase == phase and a.status == status)

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await asyncio.gather(*(self._client(session) for _ in range(IN_FLIGHT)))

    async def _client(self, session: aiohttp.ClientSession) -> None:
        while not self.stopping.is_set():
            number = next(self._numbers)
            index = number % len(self.relays)
            tag = f"outage-{number}"
            phase = self.phase
            try:
                async with session.post(
                        f"{self.relays[index].url}/hooks/main/{CHAIN_TOKEN}",
                        json=seed_push(tag=tag)) as response:
                    body = await response.text()
                    delivery_id = json.loads(body).get("id") if response.status == 202 else None
                    answer = Answer(index, phase, response.status,
                                    response.headers.get("Retry-After"), delivery_id, tag,
                                    "" if response.status in (202, 503) else body)
            except (aiohttp.ClientError, TimeoutError) as exc:
                answer = Answer(index, phase, None, None, None, tag, repr(exc))
            self.answers.append(answer)
            if answer.status != 202:
                await asyncio.sleep(PAUSE_AFTER_503)


@pytest.mark.timeout(300)
async def test_two_processes_ride_out_a_postgresql_restart_under_load(
        tmp_path: Path, start_target: StartTarget) -> None:
    target = await start_target(default=Reply(callback=None))
    async with private_postgres() as server:
        relays = [RelayProcess.in_folder(tmp_path / f"relay{index}") for index in range(2)]
        for relay in relays:
            relay.config_path.write_text(render_config(
                port=relay.port, store_url=f"{server.url}?schema=relay",
                delivery={"timeout": 5},
                chains=[{"name": "main", "concurrency": 64, "targets": [
                    {"name": "ci", "url": target.url, "await_callback": False}]}]))
        try:
            for relay in relays:
                relay.start()
            for relay in relays:
                await relay.ready()
            load = Load(relays)
            await _restart_postgresql_under(load, server)
            _assert_answers(load.answers)
            await _assert_delivered(load.answers, relays[0], target)
            for relay in relays:
                log = relay.log()
                for event in ("http.failed", "worker.task_failed"):
                    assert f'"event":"{event}"' not in log, (event, log[-4000:])
        finally:
            for relay in relays:
                if relay.process is not None and relay.process.poll() is None:
                    await relay.terminate()


async def _restart_postgresql_under(load: Load, server: PrivatePostgres) -> None:
    """Push all along; stop PostgreSQL OUTAGES times for OUTAGE_SECONDS, once both relays
    take pushes (again)."""
    pushing = asyncio.create_task(load.run())

    async def both(phase: str, status: int, least: int) -> bool:
        if pushing.done():
            pushing.result()  # a client that failed says why
        return all(load.count(i, phase, status) >= least for i in range(len(load.relays)))

    async def down_for(seconds: float) -> None:
        """At least `seconds`, and until both relays have answered a 503."""
        over = time.monotonic() + seconds

        async def answered_503() -> bool:
            return await both(load.phase, 503, 1) and time.monotonic() >= over

        await wait_until(answered_503, timeout=60,
                         what="both relays to answer 503 while PostgreSQL is down")

    try:
        await wait_until(lambda: both("before", 202, 20), timeout=30,
                         what="both relays to take pushes")
        for outage in range(OUTAGES):
            load.phase = f"outage {outage}"
            try:
                await server.stop()
                await down_for(OUTAGE_SECONDS)
            finally:
                await server.start()
            load.phase = f"after {outage}"
            # Nobody restarts the relays: each must find the database again by itself.
            await wait_until(lambda: both(load.phase, 202, 20), timeout=60,
                             what="both relays to take pushes again")
    finally:
        load.stopping.set()
        with contextlib.suppress(Exception):
            await pushing


def _assert_answers(answers: list[Answer]) -> None:
    statuses = Counter((a.status, a.retry_after) for a in answers)
    print(f"answers (status, Retry-After): {dict(statuses)}")
    wrong = [a for a in answers if a.status != 202 and not (a.status == 503 and a.retry_after)]
    assert not wrong, wrong[:10]


async def _assert_delivered(answers: list[Answer], relay: RelayProcess, target: Target) -> None:
    """Every push answered 202 is in the history and reached the target."""
    accepted = {a.tag: a.delivery_id for a in answers if a.status == 202}

    async def all_received() -> bool:
        received = {json.loads(r.body)["push_data"]["tag"] for r in target.requests}
        return received >= accepted.keys()

    await wait_until(all_received, timeout=120,
                     what=f"the target to receive all {len(accepted)} accepted pushes")
    async with aiohttp.ClientSession() as session:
        for tag, delivery_id in accepted.items():
            async with session.get(
                    f"{relay.url}/history/{delivery_id}",
                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as response:
                assert response.status == 200, (tag, delivery_id)
                stored = await response.json()
            assert stored["payload"]["push_data"]["tag"] == tag
