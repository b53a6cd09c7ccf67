from __future__ import annotations

import io
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from support import Relay, Reply, Target, free_socket, render_config

from relay import config, logs


@pytest.fixture(autouse=True)
def log_lines() -> io.StringIO:
    """Every test's relay logs go, as JSON lines, to a buffer the test may read."""
    buffer = io.StringIO()
    logs.configure(stream=buffer, json=True, level="debug")
    return buffer


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/relay.db"


StartTarget = Callable[..., Awaitable[Target]]
StartRelay = Callable[..., Awaitable[Relay]]


@pytest.fixture
async def start_target() -> AsyncIterator[StartTarget]:
    started: list[Target] = []

    async def start(*script: Reply, default: Reply | None = None) -> Target:
        target = await Target(*script, default=default).start()
        started.append(target)
        return target

    yield start
    for target in started:
        await target.stop()


@pytest.fixture
async def start_relay(tmp_path: Path, store_url: str, log_lines: io.StringIO,
                      start_target: StartTarget) -> AsyncIterator[StartRelay]:
    # Depends on start_target so that relays stop before the targets they are sending to.
    started: list[Relay] = []

    async def start(*targets: Target | dict[str, Any], chains: list[dict[str, Any]] | None = None,
                    **sections: Any) -> Relay:
        """A relay whose chain `main` walks `targets` (or the given `chains`)."""
        if chains is None:
            chains = [{"name": "main", "targets": [
                _target_entry(i, t) for i, t in enumerate(targets)]}]
        sock = free_socket()
        text = render_config(port=sock.getsockname()[1], store_url=store_url, chains=chains,
                             **sections)
        path = tmp_path / f"relay-{len(started)}.toml"
        path.write_text(text)
        settings = config.load(path)
        logs.configure(settings.secrets, stream=log_lines, json=True, level="debug")
        relay = await Relay(settings, sock).start()
        started.append(relay)
        return relay

    yield start
    for relay in started:
        await relay.stop()


def _target_entry(index: int, target: Target | dict[str, Any]) -> dict[str, Any]:
    if isinstance(target, Target):
        return {"name": f"t{index}", "url": target.url}
    return {"name": f"t{index}", **target}
