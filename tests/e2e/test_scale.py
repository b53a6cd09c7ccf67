"""Relay processes on one PostgreSQL: shared work, a SIGKILL half-way, nothing lost; order per
tag across processes."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from support import (
    ADMIN_TOKEN,
    CHAIN_TOKEN,
    POSTGRES_URL,
    SEED_TAG_PUSH,
    RelayProcess,
    render_config,
    serve,
    wait_until,
)

PUSHES = 200


@pytest.fixture
async def postgres_schema() -> AsyncIterator[str]:
    try:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=3)
    except (OSError, asyncpg.PostgresError):
        if os.environ.get("RELAY_REQUIRE_POSTGRES") == "1":
            raise
        pytest.skip(f"PostgreSQL does not answer at {POSTGRES_URL}")
    schema = f"relay_scale_{uuid.uuid4().hex[:12]}"
    try:
        yield schema
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


class Cluster:
    """The relays' ports, as a load balancer in front of them would know them."""

    def __init__(self, relays: list[RelayProcess]) -> None:
        self.relays = relays
        self.dead: set[int] = set()
        self._turn = itertools.count()

    def alive(self) -> list[RelayProcess]:
        return [r for r in self.relays if r.port not in self.dead]

    def other_than(self, port: int) -> list[RelayProcess]:
        alive = self.alive()
        others = [r for r in alive if r.port != port] or alive
        start = next(self._turn) % len(others)
        return others[start:] + others[:start]

    async def post(self, session: aiohttp.ClientSession, path: str, body: Any,
                   prefer_not: int = 0) -> tuple[int, Any]:
        """POST to the first relay that answers, as a load balancer would retry."""
        for relay in self.other_than(prefer_not):
            try:
                async with session.post(relay.url + path, json=body) as response:
                    return response.status, await response.json()
            except aiohttp.ClientConnectionError:
                continue
        raise AssertionError("no relay process answers")


def _worker(relay: RelayProcess) -> str:
    """The worker id relay logs for a process: host:pid:random."""
    assert relay.process is not None
    for line in relay.log().splitlines():
        if f":{relay.process.pid}:" in line and '"worker"' in line:
            return str(json.loads(line)["worker"])
    raise AssertionError("the relay never logged its worker id")


def _port(callback_url: str) -> int:
    """The port of the relay that handed out this callback URL (its public_url)."""
    return int(callback_url.split(":")[2].split("/")[0])


class CallingTarget:
    """Answers each step's first POST with a slow 503 (so relays retry, and a killed relay
    leaves sends in flight), later ones with 200; then posts its callback through a relay
    other than the one that sent."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.seen: Counter[str] = Counter()
        self.held: Counter[int] = Counter()
        """First POSTs being held, by the port of the relay that sent them."""
        self.tasks: set[asyncio.Task[None]] = set()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> CallingTarget:
        self.runner, self.url = await serve(self.handle, "/hook")
        self.session = aiohttp.ClientSession()
        return self

    async def handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        webhook_id = request.headers["webhook-id"]
        self.seen[webhook_id] += 1
        if self.seen[webhook_id] == 1:
            sender = _port(body["callback_url"])
            self.held[sender] += 1
            try:
                await asyncio.sleep(0.5)
            finally:
                self.held[sender] -= 1
            return web.json_response({"ok": False}, status=503)
        task = asyncio.create_task(self.call_back(body["callback_url"]))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return web.json_response({"ok": True})

    async def call_back(self, callback_url: str) -> None:
        sender_port = _port(callback_url)
        path = "/" + callback_url.split("/", 3)[3]
        status, _ = await self.cluster.post(self.session, path, {"state": "success"},
                                            prefer_not=sender_port)
        assert status in (200, 409), status

    async def stop(self) -> None:
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.session.close()
        if self.runner is not None:
            await self.runner.cleanup()


async def test_three_processes_share_the_work_and_survive_a_sigkill(
        tmp_path: Path, postgres_schema: str) -> None:
    store_url = f"{POSTGRES_URL}?schema={postgres_schema}"
    relays = [RelayProcess.in_folder(tmp_path / f"relay{index}") for index in range(3)]
    cluster = Cluster(relays)
    ci, deploy = await CallingTarget(cluster).start(), await CallingTarget(cluster).start()
    for relay in relays:
        relay.config_path.write_text(render_config(
            port=relay.port, store_url=store_url,
            # Every first attempt is a 503 (CallingTarget): relay would rightly pause the targets.
            delivery={"timeout": 2, "backoff_initial": 0.05, "backoff_max": 0.5,
                      "pause_after": 0},
            chains=[{"name": "main", "concurrency": 25, "order": "chain", "targets": [
                {"name": "ci", "url": ci.url}, {"name": "deploy", "url": deploy.url}]}]))
    try:
        for relay in relays:
            relay.start()
        for relay in relays:
            await relay.ready()
        victim = relays[1]
        accepted: list[str] = []
        async with aiohttp.ClientSession() as session:
            for batch in range(PUSHES // 20):
                pushes = asyncio.gather(*(
                    cluster.post(session, f"/hooks/main/{CHAIN_TOKEN}", SEED_TAG_PUSH)
                    for _ in range(20)))
                if batch == PUSHES // 40:
                    # Half-way, while the victim has POSTs in flight to the slow targets.
                    async def victim_sending() -> bool:
                        return ci.held[victim.port] + deploy.held[victim.port] >= 2

                    await wait_until(victim_sending, what="the victim to have POSTs in flight")
                    await victim.kill()
                    cluster.dead.add(victim.port)
                answers = await pushes
                assert all(status == 202 for status, _ in answers), answers
                accepted += [body["id"] for _, body in answers]

            survivor = relays[0]

            async def all_finished() -> bool:
                for delivery_id in accepted:
                    async with session.get(
                            f"{survivor.url}/history/{delivery_id}",
                            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as response:
                        if (await response.json())["state"] in ("pending", "running"):
                            return False
                return True

            await wait_until(all_finished, timeout=120,
                             what=f"all {len(accepted)} deliveries to end")
            # Stopped gracefully, the survivors record every answer still in flight.
            victim_worker = _worker(victim)
            for relay in cluster.alive():
                assert await relay.terminate() == 0
            await survivor.start().ready()
            finished = []
            for delivery_id in accepted:
                async with session.get(
                        f"{survivor.url}/history/{delivery_id}",
                        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as response:
                    finished.append(await response.json())

        assert len(set(accepted)) == PUSHES
        assert Counter(d["state"] for d in finished) == {"success": PUSHES}
        # The work was shared: the victim was sending when it died (the targets saw it),
        # and the survivors recorded attempts of their own.
        senders = [relay for relay in relays if '"event":"attempt"' in relay.log()]
        assert len(senders) >= 2
        taken_over = sent_twice = 0
        for target, index in ((ci, 0), (deploy, 1)):
            for delivery in finished:
                step = delivery["steps"][index]
                sends = target.seen[step["webhook_id"]]
                answered = [a for a in step["attempts"] if a["status"] is not None]
                unanswered = [a for a in step["attempts"] if a["status"] is None]
                assert step["state"] == "success"
                # Every send is in the history, recorded as it went out; only the killed
                # process's attempts lack an answer (one it had not sent yet is there too).
                assert len(answered) <= sends <= len(step["attempts"]), (step, sends)
                for attempt in unanswered:
                    assert attempt["error"] in (
                        f"no answer recorded: {victim_worker} stopped during this attempt"
                        " (its lease ran out)", "no answer recorded"), attempt
                taken_over += sum("lease ran out" in a["error"] for a in unanswered)
                sent_twice += sends - len(answered)
        print(f"sends taken over after the kill: {taken_over}; unanswered sends: {sent_twice}")
        assert taken_over >= 1
    finally:
        for relay in relays:
            if relay.process is not None and relay.process.poll() is None:
                await relay.terminate()
        await ci.stop()
        await deploy.stop()


async def test_order_per_tag_holds_across_two_processes(tmp_path: Path,
                                                        postgres_schema: str) -> None:
    """Pushes of one tag reach the target one at a time and in the order they were
    accepted, whichever process took each; other tags run beside them."""
    store_url = f"{POSTGRES_URL}?schema={postgres_schema}"
    arrivals: list[tuple[str, int, float, float]] = []  # tag, push number, start, end
    loop = asyncio.get_running_loop()

    async def slow(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        started = loop.time()
        await asyncio.sleep(0.05)
        arrivals.append((body["push_data"]["tag"], int(body["push_data"]["pusher"]),
                         started, loop.time()))
        return web.json_response({"ok": True})

    runner, url = await serve(slow, "/hook")
    relays = [RelayProcess.in_folder(tmp_path / f"relay{index}") for index in range(2)]
    for relay in relays:
        relay.config_path.write_text(render_config(
            port=relay.port, store_url=store_url, chains=[{"name": "main", "targets": [
                {"name": "ci", "url": url, "await_callback": False}]}]))
    pushes = 36
    try:
        for relay in relays:
            relay.start()
        for relay in relays:
            await relay.ready()
        async with aiohttp.ClientSession() as session:
            for number in range(pushes):
                body = {**SEED_TAG_PUSH, "push_data": {
                    **SEED_TAG_PUSH["push_data"], "tag": "abc"[number % 3],
                    "pusher": str(number)}}
                relay = relays[number % 2]
                async with session.post(f"{relay.url}/hooks/main/{CHAIN_TOKEN}",
                                        json=body) as answer:
                    assert answer.status == 202, await answer.text()

        async def all_arrived() -> bool:
            return len(arrivals) >= pushes

        await wait_until(all_arrived, timeout=60, what=f"{pushes} pushes at the target")
    finally:
        for relay in relays:
            if relay.process is not None and relay.process.poll() is None:
                await relay.terminate()
        await runner.cleanup()
    for tag in "abc":
        mine = sorted((a for a in arrivals if a[0] == tag), key=lambda a: a[2])
        assert [a[1] for a in mine] == sorted(a[1] for a in mine), f"tag {tag} out of order"
        assert all(later[2] >= earlier[3] for earlier, later in itertools.pairwise(mine)), (
            f"two pushes of tag {tag} at the target at once")
    overlapping = sum(1 for x, y in itertools.combinations(arrivals, 2)
                      if x[0] != y[0] and x[2] < y[3] and y[2] < x[3])
    assert overlapping > 0, "other tags never ran side by side"
