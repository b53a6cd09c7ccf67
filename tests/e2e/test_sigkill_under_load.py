"""bench/sigkill.py, small: `relay serve` SIGKILLed half-way through a stream of pushes, in
the middle of intake and of sending, and started again on the same store. Every push that
was answered 202 reaches the target (at least once)."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from pathlib import Path

import aiohttp
from support import (
    CHAIN_TOKEN,
    RelayProcess,
    Reply,
    StartTarget,
    render_config,
    seed_push,
    wait_until,
)

PUSHES = 300
IN_FLIGHT = 32


async def test_every_202_reaches_the_target_after_a_sigkill_at_full_load(
        tmp_path: Path, store_url: str, start_target: StartTarget) -> None:
    target = await start_target(default=Reply(callback=None))
    relay = RelayProcess.in_folder(tmp_path)
    relay.config_path.write_text(render_config(
        port=relay.port, store_url=store_url, delivery={"timeout": 2},
        chains=[{"name": "main", "concurrency": 1000, "targets": [
            {"name": "ci", "url": target.url, "await_callback": False}]}]))
    accepted: set[str] = set()
    statuses: Counter[int | None] = Counter()
    numbers = iter(range(PUSHES))
    answered = itertools.count(1)
    half = asyncio.Event()
    up = asyncio.Event()

    async def client(session: aiohttp.ClientSession) -> None:
        for number in numbers:
            await up.wait()
            tag = f"k{number}"
            try:
                async with session.post(f"{relay.url}/hooks/main/{CHAIN_TOKEN}",
                                        json=seed_push(tag=tag)) as response:
                    await response.read()
                    statuses[response.status] += 1
                    if response.status == 202:
                        accepted.add(tag)
            except aiohttp.ClientError:
                statuses[None] += 1  # in flight when relay was killed
            if next(answered) == PUSHES // 2:
                half.set()

    async def killer() -> None:
        await half.wait()
        up.clear()
        await relay.kill()
        await relay.start().ready()
        up.set()

    try:
        await relay.start().ready()
        up.set()
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await asyncio.gather(killer(), *(client(session) for _ in range(IN_FLIGHT)))

        def received() -> Counter[str]:
            return Counter(json.loads(r.body)["push_data"]["tag"] for r in target.requests)

        async def all_received() -> bool:
            return received().keys() >= accepted

        await wait_until(all_received, timeout=90,
                         what=f"the target to receive all {len(accepted)} pushes answered 202")
        duplicates = sum(count - 1 for count in received().values() if count > 1)
        print(f"answers: {dict(statuses)}; duplicates at the target: {duplicates}")
        assert set(statuses) <= {202, None}, statuses
        assert len(accepted) >= PUSHES - IN_FLIGHT
        assert '"event":"http.failed"' not in relay.log()
    finally:
        if relay.process is not None and relay.process.poll() is None:
            await relay.terminate()
