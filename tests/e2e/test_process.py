"""relay as users run it: a subprocess that stops cleanly on signals and survives SIGKILL."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support import (
    ADMIN_TOKEN,
    CHAIN_TOKEN,
    SEED_TAG_PUSH,
    RelayProcess,
    Reply,
    StartTarget,
    Target,
    free_socket,
    render_config,
    wait_until,
)


def _process(tmp_path: Path, chains: list[dict[str, Any]], **sections: Any) -> RelayProcess:
    with free_socket() as sock:
        port = sock.getsockname()[1]
    path = tmp_path / "relay.toml"
    path.write_text(render_config(port=port, store_url="sqlite:///data/relay.db",
                                  chains=chains, **sections))
    return RelayProcess(path, port, tmp_path / "relay.log")


async def _push(relay: RelayProcess, chain: str = "main") -> str:
    async with aiohttp.ClientSession() as session, session.post(
            f"{relay.url}/hooks/{chain}/{CHAIN_TOKEN}", json=SEED_TAG_PUSH) as response:
        assert response.status == 202
        return str((await response.json())["id"])


async def _delivery(relay: RelayProcess, delivery_id: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(
            f"{relay.url}/history/{delivery_id}",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as response:
        assert response.status == 200
        return dict(await response.json())


async def _finished(relay: RelayProcess, delivery_id: str, timeout: float = 20.0
                    ) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        found = await _delivery(relay, delivery_id)
        return found if found["state"] in ("success", "failure", "error") else None

    return await wait_until(done, timeout=timeout, what=f"delivery {delivery_id} to end")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_serve_stops_cleanly_on_signals(tmp_path: Path, start_target: StartTarget,
                                              signum: int) -> None:
    target = await start_target()
    relay = _process(tmp_path, [{"name": "main", "targets": [{"name": "ci",
                                                              "url": target.url}]}])
    await relay.start().ready()
    assert (await _finished(relay, await _push(relay)))["state"] == "success"

    assert await relay.signal(signum) == 0
    assert '"event":"relay.stopped"' in relay.log()
    assert "Traceback" not in relay.log()


async def test_a_202_survives_sigkill_right_after_it(tmp_path: Path) -> None:
    # The target is down (bound but not listening) while relay accepts and dies.
    sock = free_socket()
    port = sock.getsockname()[1]
    relay = _process(tmp_path, [{"name": "main", "targets": [
        {"name": "ci", "url": f"http://127.0.0.1:{port}/hook", "backoff_initial": 0.05,
         "backoff_max": 0.2, "attempts": 100}]}])
    await relay.start().ready()

    ids = [await _push(relay) for _ in range(5)]
    await relay.kill()

    target = await Target().start(sock=sock)
    try:
        await relay.start().ready()
        for delivery_id in ids:
            assert (await _finished(relay, delivery_id))["state"] == "success"
        assert len({r.headers["webhook-id"] for r in target.requests}) == 5
    finally:
        await relay.terminate()
        await target.stop()


async def test_sigkill_mid_chain_loses_nothing(tmp_path: Path,
                                               start_target: StartTarget) -> None:
    first = await start_target()
    manual = await start_target(default=Reply(callback=None))
    down = free_socket()  # the second target of `main` is down until after the restart
    fast_retries = {"backoff_initial": 0.05, "backoff_max": 0.3, "attempts": 100}
    relay = _process(tmp_path, [
        {"name": "main", "concurrency": 5, "order": "chain", "targets": [
            {"name": "ci", "url": first.url},
            {"name": "deploy", "url": f"http://127.0.0.1:{down.getsockname()[1]}/hook",
             **fast_retries}]},
        {"name": "manual", "targets": [{"name": "approve", "url": manual.url}]},
    ])
    await relay.start().ready()
    ids = [await _push(relay) for _ in range(5)]
    waiting = await _push(relay, chain="manual")

    async def all_retrying_step_two() -> bool:
        for delivery_id in ids:
            step = (await _delivery(relay, delivery_id))["steps"][1]
            if step["state"] != "sending" or not step["attempts"]:
                return False
        state = (await _delivery(relay, waiting))["steps"][0]["state"]
        return bool(state == "awaiting_callback")

    await wait_until(all_retrying_step_two, timeout=20, what="every step 2 to be retrying")
    callback_url = manual.requests[0].json["callback_url"]
    await relay.kill()

    second = await Target().start(sock=down)
    try:
        await relay.start().ready()
        # A callback URL handed out before the crash still works after it.
        async with aiohttp.ClientSession() as session, session.post(
                callback_url, json={"state": "success"}) as response:
            assert response.status == 200
        for delivery_id in [*ids, waiting]:
            assert (await _finished(relay, delivery_id))["state"] == "success"
        # Step 1 had been answered before the crash: it is not sent again.
        assert len(first.requests) == 5
        assert len(second.requests) >= 5
        assert len({r.headers["webhook-id"] for r in second.requests}) == 5
    finally:
        await relay.terminate()
        await second.stop()


async def test_sigterm_lets_an_attempt_in_flight_finish_and_keeps_the_rest(
        tmp_path: Path, start_target: StartTarget) -> None:
    slow = await start_target(Reply(delay=1.5, callback=None), default=Reply(callback=None))
    relay = _process(tmp_path, [{"name": "main", "targets": [
        {"name": "ci", "url": slow.url}]}], server={"shutdown_grace": 10})
    await relay.start().ready()
    first = await _push(relay)
    second = await _push(relay)  # waits behind the first (concurrency 1)
    await wait_until(lambda: _some(slow.requests), what="the first POST to be in flight")

    assert await relay.terminate() == 0

    await relay.start().ready()
    try:
        kept = await _delivery(relay, first)
        # The answer that came in during the grace period was recorded before exit.
        assert [a["status"] for a in kept["steps"][0]["attempts"]] == [200]
        assert kept["steps"][0]["state"] == "awaiting_callback"
        assert (await _delivery(relay, second))["state"] == "pending"
    finally:
        await relay.terminate()


async def _some(items: list[Any]) -> bool:
    return bool(items)
