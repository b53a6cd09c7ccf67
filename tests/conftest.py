from __future__ import annotations

import io
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import hypothesis
import pytest
from support import (
    POSTGRES_URL,
    Relay,
    Reply,
    StartRelay,
    StartTarget,
    Target,
    free_socket,
    render_config,
)

from relay import config, logs

# Fuzzing budgets: a few seconds per test in `make test`; `make fuzz` sets RELAY_FUZZ=1.
hypothesis.settings.register_profile(
    "relay", max_examples=30, deadline=None, derandomize=False,
    suppress_health_check=[hypothesis.HealthCheck.too_slow,
                           hypothesis.HealthCheck.function_scoped_fixture])
hypothesis.settings.register_profile(
    "fuzz", parent=hypothesis.settings.get_profile("relay"), max_examples=1000)
hypothesis.settings.load_profile("fuzz" if os.environ.get("RELAY_FUZZ") == "1" else "relay")


@pytest.fixture(autouse=True)
def log_lines() -> io.StringIO:
    """Every test's relay logs go, as JSON lines, to a buffer the test may read."""
    buffer = io.StringIO()
    logs.configure(stream=buffer, json=True, level="debug")
    return buffer


_postgres_reachable: bool | None = None


async def _postgres_available() -> bool:
    global _postgres_reachable
    if _postgres_reachable is None:
        try:
            conn = await asyncpg.connect(POSTGRES_URL, timeout=3)
            await conn.close()
            _postgres_reachable = True
        except (OSError, asyncpg.PostgresError):
            _postgres_reachable = False
    return _postgres_reachable


@pytest.fixture(params=["sqlite", "postgres"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Every test that runs a relay runs on both stores: a new SQLite file, or a new schema
    in PostgreSQL's `test` database (skipped where no PostgreSQL answers, unless
    RELAY_REQUIRE_POSTGRES=1, as CI sets it)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/relay.db"
        return
    if not await _postgres_available():
        if os.environ.get("RELAY_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL does not answer at {POSTGRES_URL}")
        pytest.skip(f"PostgreSQL does not answer at {POSTGRES_URL}")
    schema = f"relay_test_{uuid.uuid4().hex[:12]}"
    yield f"{POSTGRES_URL}?schema={schema}"
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
async def start_target() -> AsyncIterator[StartTarget]:
    started: list[Target] = []

    async def start(*script: Reply, default: Reply | None = None, **options: Any) -> Target:
        """A target answering from `script`; `options` go to Target.start (path=,
        ssl_context=)."""
        target = await Target(*script, default=default).start(**options)
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
                    store: str | None = None, **sections: Any) -> Relay:
        """A relay whose chain `main` walks `targets` (or the given `chains`), on this
        test's store (or at the `store` URL)."""
        if chains is None:
            chains = [{"name": "main", "targets": [
                _target_entry(i, t) for i, t in enumerate(targets)]}]
        sock = free_socket()
        text = render_config(port=sock.getsockname()[1], store_url=store or store_url,
                             chains=chains, **sections)
        path = tmp_path / f"relay-{len(started)}.toml"
        path.write_text(text)
        settings = config.load(path)
        logs.configure(settings.secrets, stream=log_lines, json=True, level="debug")
        relay = await Relay(config.Live(settings, path), sock).start()
        started.append(relay)
        return relay

    yield start
    for relay in started:
        await relay.stop()


def _target_entry(index: int, target: Target | dict[str, Any]) -> dict[str, Any]:
    if isinstance(target, Target):
        return {"name": f"t{index}", "url": target.url}
    return {"name": f"t{index}", **target}
