"""Reloading relay.toml without a restart: POST /api/reload, SIGHUP and `relay reload`."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
from support import (
    ADMIN_TOKEN,
    CHAIN_TOKEN,
    SEED_TAG_PUSH,
    Relay,
    RelayProcess,
    Reply,
    StartRelay,
    StartTarget,
    Target,
    free_socket,
    render_config,
    seed_push,
    wait_until,
)


def _chain(name: str, *targets: Target, **keys: Any) -> dict[str, Any]:
    return {"name": name, **keys, "targets": [
        {"name": f"t{i}", "url": t.url} for i, t in enumerate(targets)]}


def _rewrite(relay: Relay, chains: list[dict[str, Any]], **sections: Any) -> None:
    port = relay.settings.server.port
    relay.config_path.write_text(render_config(
        port=port, store_url=relay.settings.store.url, chains=chains, **sections))


async def _reload(relay: Relay) -> tuple[int, Any]:
    return await relay.post("/api/reload", headers=relay.admin, data=b"")


async def _call_back(relay: Relay, target: Target, index: int) -> None:
    url = target.requests[index].json["callback_url"]
    assert (await relay.post(url.removeprefix(relay.url), {"state": "success"}))[0] == 200


async def _requests(target: Target, count: int) -> None:
    async def enough() -> bool:
        return len(target.requests) >= count

    await wait_until(enough, what=f"{count} requests at {target.url}")


async def test_a_new_chain_takes_pushes_after_a_reload(start_relay: StartRelay,
                                                       start_target: StartTarget,
                                                       log_lines: io.StringIO) -> None:
    ci = await start_target(default=Reply(callback=None))
    relay = await start_relay(chains=[_chain("main", ci)])
    assert (await relay.post(f"/hooks/new/{CHAIN_TOKEN}", SEED_TAG_PUSH))[0] == 404

    _rewrite(relay, [_chain("main", ci), _chain("new", ci)])
    status, answer = await _reload(relay)

    assert status == 200
    assert answer["changed"] is True
    assert answer["chains"] == ["main", "new"]
    assert answer["restart_needed"] == []
    assert (await relay.post(f"/hooks/new/{CHAIN_TOKEN}", SEED_TAG_PUSH))[0] == 202
    assert '"event":"config.reloaded"' in log_lines.getvalue().replace(" ", "")
    status, again = await _reload(relay)
    assert (status, again["changed"], again["version"]) == (200, False, answer["version"])


async def test_running_deliveries_keep_their_chain_and_new_ones_take_the_new_one(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    ci = await start_target(default=Reply(callback=None))
    old_deploy = await start_target(default=Reply(callback=None))
    new_deploy = await start_target(default=Reply(callback=None))
    relay = await start_relay(chains=[_chain("main", ci, old_deploy, order="chain",
                                             concurrency=1)])
    running = await relay.push(seed_push(tag="v1"))
    waiting = await relay.push(seed_push(tag="v2"))  # pending: order "chain", one at a time
    await _requests(ci, 1)

    _rewrite(relay, [_chain("main", ci, new_deploy, order="chain", concurrency=1)])
    assert (await _reload(relay))[0] == 200
    await _call_back(relay, ci, 0)
    await _requests(old_deploy, 1)
    await _call_back(relay, old_deploy, 0)
    finished = await relay.wait_for(running)

    # The delivery that waited starts after the reload: it walks the chain as it is now.
    await _requests(ci, 2)
    await _call_back(relay, ci, 1)
    await _requests(new_deploy, 1)
    await _call_back(relay, new_deploy, 0)
    later = await relay.wait_for(waiting)

    assert [s["url"] for s in finished["steps"]] == [ci.url, old_deploy.url]
    assert [s["url"] for s in later["steps"]] == [ci.url, new_deploy.url]
    assert (finished["state"], later["state"]) == ("success", "success")


async def test_a_removed_chain_refuses_pushes_while_its_delivery_finishes(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    ci = await start_target(default=Reply(callback=None))
    relay = await start_relay(chains=[_chain("main", ci), _chain("gone", ci)])
    delivery_id = await relay.push(chain="gone")
    await _requests(ci, 1)

    _rewrite(relay, [_chain("main", ci)])
    assert (await _reload(relay))[0] == 200

    assert (await relay.post(f"/hooks/gone/{CHAIN_TOKEN}", SEED_TAG_PUSH))[0] == 404
    await _call_back(relay, ci, 0)
    assert (await relay.wait_for(delivery_id))["state"] == "success"


async def test_a_broken_file_keeps_the_old_config_serving(start_relay: StartRelay,
                                                         start_target: StartTarget,
                                                         log_lines: io.StringIO) -> None:
    ci = await start_target(default=Reply(callback=None))
    relay = await start_relay(chains=[_chain("main", ci)])
    good = relay.config_path.read_text()
    relay.config_path.write_text(good.replace('name = "t0"', 'name = "t0"\ntimeout = "soon"'))

    status, answer = await _reload(relay)

    assert status == 422
    assert "chain[0].target[0].timeout: must be a positive number of seconds" in \
        answer["error"]
    assert (await relay.post(f"/hooks/main/{CHAIN_TOKEN}", SEED_TAG_PUSH))[0] == 202
    failures = [json.loads(line) for line in log_lines.getvalue().splitlines()
                if '"config.reload_failed"' in line]
    assert len(failures) == 1
    assert "chain[0].target[0].timeout" in failures[0]["error"]


async def test_keys_that_need_a_restart_are_reported_and_kept(start_relay: StartRelay,
                                                             start_target: StartTarget) -> None:
    ci = await start_target(default=Reply(callback=None))
    relay = await start_relay(chains=[_chain("main", ci)])
    _rewrite(relay, [_chain("main", ci)], server={"max_body_bytes": 2048},
             delivery={"max_connections": 7})

    status, answer = await _reload(relay)

    assert status == 200
    assert answer["restart_needed"] == ["server.max_body_bytes", "delivery.max_connections"]
    assert relay.settings.server.max_body_bytes == 1048576
    assert relay.settings.delivery.max_connections == 100


async def test_reload_needs_the_admin_token(start_relay: StartRelay,
                                            start_target: StartTarget) -> None:
    relay = await start_relay(await start_target())

    status, _ = await relay.post("/api/reload", data=b"")

    assert status == 401


async def test_nothing_is_refused_while_reloading(start_relay: StartRelay,
                                                  start_target: StartTarget) -> None:
    ci = await start_target(default=Reply(callback=None))
    relay = await start_relay(chains=[_chain("main", ci, concurrency=100)])
    configs = [[_chain("main", ci, concurrency=100)],
               [_chain("main", ci, concurrency=100), _chain("other", ci)]]
    statuses: list[int] = []

    async def traffic() -> None:
        for n in range(40):
            statuses.append((await relay.post(f"/hooks/main/{CHAIN_TOKEN}",
                                              seed_push(tag=f"t{n}")))[0])
            async with relay.http.get(relay.url + "/healthz") as answer:
                statuses.append(answer.status)

    async def reloads() -> None:
        for n in range(20):
            _rewrite(relay, configs[n % 2])
            assert (await _reload(relay))[0] == 200
            await asyncio.sleep(0)

    await asyncio.gather(traffic(), reloads())

    assert set(statuses) == {200, 202}
    assert statuses.count(202) == 40


def _config(tmp_path: Path, port: int, chains: list[dict[str, Any]]) -> Path:
    path = tmp_path / "relay.toml"
    path.write_text(render_config(port=port, store_url=f"sqlite:///{tmp_path}/relay.db",
                                  chains=chains))
    return path


async def _accepts(url: str, chain: str) -> bool:
    async with aiohttp.ClientSession() as session, session.post(
            f"{url}/hooks/{chain}/{CHAIN_TOKEN}", json=SEED_TAG_PUSH) as answer:
        return answer.status == 202


async def test_sighup_and_relay_reload_read_the_file_again(tmp_path: Path,
                                                           start_target: StartTarget) -> None:
    ci = await start_target(default=Reply(callback=None))
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    path = _config(tmp_path, port, [_chain("main", ci)])
    relay = RelayProcess(path, port, tmp_path / "relay.log").start()
    try:
        await relay.ready()
        assert not await _accepts(relay.url, "second")

        _config(tmp_path, port, [_chain("main", ci), _chain("second", ci)])
        assert relay.process is not None
        relay.process.send_signal(signal.SIGHUP)

        async def second_accepted() -> bool:
            return await _accepts(relay.url, "second")

        await wait_until(second_accepted, what="the chain added by SIGHUP to take pushes")

        _config(tmp_path, port, [_chain("main", ci), _chain("second", ci), _chain("third", ci)])
        result = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "relay", "reload", "--config", str(path)],
            capture_output=True, text=True, timeout=30,
            env={**os.environ, "RELAY_ADMIN_TOKEN": ADMIN_TOKEN})
        assert result.returncode == 0, result.stderr
        assert "chains: main, second, third" in result.stdout
        assert await _accepts(relay.url, "third")
        assert relay.process.poll() is None  # SIGHUP did not stop it
    finally:
        assert await relay.terminate() == 0
