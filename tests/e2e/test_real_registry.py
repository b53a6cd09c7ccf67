"""A real distribution registry (2.8.2, v1 envelopes) notifies relay as its docs advise, with
`Authorization: Bearer <chain token>`: images pushed with skopeo walk relay's chain."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from support import CHAIN_TOKEN, Relay, StartRelay, StartTarget, serve
from support.registry_peer import Layout, registry, require_programs

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


@pytest.fixture
def programs() -> None:
    require_programs()


@pytest.fixture
async def layout(programs: None, tmp_path: Path) -> Layout:
    return await Layout(tmp_path / "images").create()


async def _deliveries(relay: Relay) -> list[dict[str, Any]]:
    status, body = await relay.get("/history?limit=500")
    assert status == 200
    return list(body["items"])


async def test_a_pushed_tag_is_one_delivery_and_pulls_and_deletes_none(
        start_relay: StartRelay, start_target: StartTarget, layout: Layout,
        tmp_path: Path) -> None:
    target = await start_target()
    relay = await start_relay(target)
    digest = await layout.image("base", "hello")
    pushed = time.time()

    async with registry(tmp_path, f"{relay.url}/hooks/main", CHAIN_TOKEN) as hub:
        await hub.push(layout.path, "base", "team/app:v1")
        metrics = await hub.notified()
        # The layer, the config and the manifest: three events, one delivery.
        assert metrics["Events"] == 3
        (delivery,) = await _deliveries(relay)
        done = await relay.wait_for(delivery["id"], timeout=20)

        await hub.pull("team/app:v1")
        await hub.delete(f"team/app@{digest}")
        metrics = await hub.notified()
        assert metrics["Events"] > 3
        assert [d["id"] for d in await _deliveries(relay)] == [delivery["id"]]

    assert done["state"] == "success"
    push_data = done["payload"]["push_data"]
    assert push_data["tag"] == "v1"
    assert push_data["digest"] == digest
    assert push_data["media_type"] == OCI_MANIFEST
    assert push_data["resource_url"] == f"{hub.host}/team/app:v1"
    assert abs(push_data["pushed_at"] - pushed) < 60
    assert done["payload"]["repository"] == {
        "name": "app", "namespace": "team", "owner": "team", "repo_name": "team/app",
        "repo_url": f"http://{hub.host}/v2/team/app/tags/list", "registry": hub.host}
    (sent,) = target.requests
    assert sent.json["push_data"] == push_data
    assert sent.json["callback_url"].startswith(f"{relay.url}/callbacks/")


async def test_a_multi_platform_push_is_one_delivery_of_the_index(
        start_relay: StartRelay, start_target: StartTarget, layout: Layout,
        tmp_path: Path) -> None:
    target = await start_target()
    relay = await start_relay(target)
    await layout.image("amd64", "built for amd64", "amd64")
    await layout.image("arm64", "built for arm64", "arm64")
    index = layout.index("multi", {"amd64": "amd64", "arm64": "arm64"})

    async with registry(tmp_path, f"{relay.url}/hooks/main", CHAIN_TOKEN) as hub:
        await hub.push(layout.path, "multi", "team/app:v2", all_platforms=True)
        metrics = await hub.notified()

    # Two layers, two configs, two platform manifests by digest, and the index by tag.
    assert metrics["Events"] == 7
    (delivery,) = await _deliveries(relay)
    done = await relay.wait_for(delivery["id"], timeout=20)
    assert done["tag"] == "v2"
    assert done["payload"]["push_data"]["digest"] == index
    assert done["payload"]["push_data"]["media_type"] == OCI_INDEX
    assert len(target.requests) == 1


class SlowProxy:
    """Between the registry and relay: passes each request on, but answers the first copy
    of every body only after the registry's timeout, so that the registry sends it again."""

    def __init__(self, upstream: str, delay: float) -> None:
        self.upstream = upstream
        self.delay = delay
        self.seen: dict[bytes, list[tuple[int, Any]]] = {}
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> SlowProxy:
        self.runner, self.url = await serve(self.handle, "/hooks/main")
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items()
                   if k in ("Authorization", "Content-Type")}
        async with aiohttp.ClientSession() as session, session.post(
                self.upstream, data=body, headers=headers) as response:
            answer = (response.status, await response.json())
        copies = self.seen.setdefault(body, [])
        copies.append(answer)
        if len(copies) == 1:
            await asyncio.sleep(self.delay)
        return web.json_response(answer[1], status=answer[0])


@pytest.fixture
async def slow_proxy() -> AsyncIterator[list[SlowProxy]]:
    started: list[SlowProxy] = []
    yield started
    for proxy in started:
        await proxy.stop()


async def test_the_registrys_resends_give_back_the_first_delivery(
        start_relay: StartRelay, start_target: StartTarget, layout: Layout,
        tmp_path: Path, slow_proxy: list[SlowProxy]) -> None:
    target = await start_target()
    relay = await start_relay(target)
    proxy = await SlowProxy(f"{relay.url}/hooks/main", delay=1.5).start()
    slow_proxy.append(proxy)
    await layout.image("base", "hello")

    async with registry(tmp_path, proxy.url, CHAIN_TOKEN, timeout="500ms") as hub:
        await hub.push(layout.path, "base", "team/app:v1")
        await hub.notified(timeout=60)

    (copies,) = [copies for body, copies in proxy.seen.items()
                 if any(event["target"].get("tag") == "v1"
                        for event in json.loads(body)["events"])]
    assert len(copies) >= 2
    (first_status, first), *repeats = copies
    assert first_status == 202
    assert all(status == 200 and body["duplicate"] is True and body["id"] == first["id"]
               for status, body in repeats)
    (delivery,) = await _deliveries(relay)
    assert delivery["id"] == first["id"]
    await relay.wait_for(first["id"], timeout=20)
    assert len(target.requests) == 1
