"""Load generation for the benchmarks: wrk when installed, else a small aiohttp client.

Servers run pinned to CPU 0 and the load generator to CPU 1 (with taskset, when present), as
as bench/README.md describes, so that the two do not fight over one core.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

SERVER_CPU = "0"
LOAD_CPU = "1"


@dataclass(frozen=True)
class Load:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    ok: int
    """Answers with a 2xx status."""
    failed: int


def pinned(cpu: str, command: list[str]) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", cpu, *command]
    return command


def pin_self() -> None:
    """Run this process (the load generator, the targets) on the load's CPU, as wrk is run,
    so that it does not take the server's."""
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {int(LOAD_CPU)})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def start_server(command: list[str], port: int, **kwargs: object) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(pinned(SERVER_CPU, command), **kwargs)  # type: ignore[call-overload]
    try:
        wait_for_port(port)
    except RuntimeError:
        process.kill()
        raise
    return process  # type: ignore[no-any-return]


def post_load(url: str, body: bytes, seconds: float, connections: int = 50) -> Load:
    if shutil.which("wrk"):
        return _wrk(url, body, seconds, connections)
    print("  (wrk is not installed: using the slower built-in load generator; "
          "apt-get install wrk for sharper figures)", file=sys.stderr)
    return _python_load(url, body, seconds, connections)


_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("{path}", "rb")
wrk.body = f:read("*a")
f:close()
"""


def _wrk(url: str, body: bytes, seconds: float, connections: int) -> Load:
    with tempfile.TemporaryDirectory() as folder:
        payload = Path(folder) / "payload.json"
        payload.write_bytes(body)
        script = Path(folder) / "post.lua"
        script.write_text(_LUA.replace("{path}", str(payload)))
        output = subprocess.run(
            pinned(LOAD_CPU, ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s",
                              "--latency", "-s", str(script), url]),
            capture_output=True, text=True, check=True).stdout
    total = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       output)
    failed = (int(non_2xx.group(1)) if non_2xx else 0) + (
        sum(int(g) for g in errors.groups()) if errors else 0)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    return Load(rate, _percentile(output, "50"), _percentile(output, "99"),
                total - (int(non_2xx.group(1)) if non_2xx else 0), failed)


def _percentile(output: str, which: str) -> float:
    match = re.search(rf"^\s+{which}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    if match is None:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def _python_load(url: str, body: bytes, seconds: float, connections: int) -> Load:
    return asyncio.run(_python_load_async(url, body, seconds, connections))


async def _python_load_async(url: str, body: bytes, seconds: float, connections: int) -> Load:
    latencies: list[float] = []
    failed = 0
    deadline = time.perf_counter() + seconds
    headers = {"Content-Type": "application/json"}

    async def one(session: aiohttp.ClientSession) -> None:
        nonlocal failed
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if 200 <= response.status < 300:
                        latencies.append((time.perf_counter() - started) * 1000)
                    else:
                        failed += 1
            except aiohttp.ClientError:
                failed += 1

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(one(session) for _ in range(connections)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return Load(len(latencies) / elapsed, statistics.median(latencies),
                latencies[int(len(latencies) * 0.99) - 1], len(latencies), failed)
