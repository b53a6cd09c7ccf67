"""The relay under test, for every benchmark: its payload, its relay.toml, starting it as
`python -m relay serve` (pinned like the baselines) and stopping it with SIGTERM."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from loadgen import free_port, start_server

from relay.cli import seed

TOKEN = "bench-chain-token-0123456789"
SEED: dict[str, Any] = seed.seed_push()
# No callback_url: the upstream report would go to Docker Hub, which is not reachable here.
PAYLOAD: dict[str, Any] = {k: v for k, v in SEED.items() if k != "callback_url"}
UNREACHABLE = "http://127.0.0.1:9/hook"
"""A target nobody answers; retried hourly, so the worker stays quiet while intake is
measured alone and the deliveries pile up as the backlog."""


def payload(size: int = 2048) -> bytes:
    """The seed push, its description padded so that the body is `size` bytes."""
    document = copy.deepcopy(SEED)
    base = len(json.dumps(document).encode())
    document["repository"]["full_description"] += " " * max(0, size - base)
    return json.dumps(document).encode()


def server_and_store(port: int, store_url: str) -> str:
    """The [server] and [store] sections of every benchmark's relay.toml."""
    return f"""
[server]
port = {port}
public_url = "http://127.0.0.1:{port}"
admin_token = "bench-admin-token-0123456789"
[store]
url = "{store_url}"
"""


def relay_config(port: int, targets: list[str], concurrency: int, store_url: str) -> str:
    """Chain `bench` walking `targets` (URLs) in order."""
    steps = "".join(f"""
  [[chain.target]]
  name = "t{index}"
  url = "{url}"
  backoff_initial = {3600 if url == UNREACHABLE else 1}
""" for index, url in enumerate(targets))
    return f"""{server_and_store(port, store_url)}
[delivery]
max_connections = 200
[[chain]]
name = "bench"
token = "{TOKEN}"
concurrency = {concurrency}
{steps}"""


def hook_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/hooks/bench/{TOKEN}"


def start_relay(folder: Path, targets: list[str], *, concurrency: int = 1,
                store_url: str = "sqlite:///data/relay.db", port: int | None = None,
                log_level: str = "info", profile: Path | None = None,
                tree: Path | None = None) -> tuple[subprocess.Popen[bytes], int]:
    """A relay serving from `folder` (its config and log are there); its process and port.
    With `profile`, it runs under cProfile (bench/profiled.py), which writes there; with
    `tree`, the relay package of that checkout runs (an A/B against another commit)."""
    port = port or free_port()
    config = folder / f"relay-{port}.toml"
    config.write_text(relay_config(port, targets, concurrency, store_url))
    with open(folder / f"relay-{port}.log", "wb") as log:
        command = [sys.executable, "-m", "relay"] if profile is None else [
            sys.executable, str(Path(__file__).parent / "profiled.py"), str(profile)]
        env = None if tree is None else {**os.environ, "PYTHONPATH": str(tree)}
        process = start_server([*command, "serve", "--config", str(config), "--log-level",
                                log_level], port, cwd=folder, stdout=log, stderr=log, env=env)
    return process, port


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(30)
