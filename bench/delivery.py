"""End-to-end delivery through a two-target chain, beside a bare aiohttp chain walker.

    python bench/delivery.py [--seconds 10] [--inflight 32]

The targets answer 200 and call back at once. relay (SQLite, every step durable) and a bare
aiohttp walker that keeps nothing (bench/bare.py chain) are driven the same way: first with
`--inflight` pushes kept going (throughput), then with one at a time (the pure overhead of
a hop: from a callback leaving the first target to the payload reaching the second).
relay's target: a hop's p50 under 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from chainload import HEADER, ChainRun, Targets, drive, summary
from intake import SEED, TOKEN
from loadgen import free_port, start_server

# No callback_url: the upstream report would go to Docker Hub, which is not reachable here.
PAYLOAD = {k: v for k, v in SEED.items() if k != "callback_url"}


def relay_config(port: int, targets: Targets | None, concurrency: int, store_url: str) -> str:
    """With targets None, the chain's targets are unreachable and retried hourly: intake
    is measured alone (as in bench/intake.py)."""
    ci = targets.url("ci") if targets else "http://127.0.0.1:9/hook"
    deploy = targets.url("deploy") if targets else "http://127.0.0.1:9/hook"
    return f"""
[server]
port = {port}
public_url = "http://127.0.0.1:{port}"
admin_token = "bench-admin-token-0123456789"
[store]
url = "{store_url}"
[delivery]
max_connections = 200
[[chain]]
name = "bench"
token = "{TOKEN}"
concurrency = {concurrency}
  [[chain.target]]
  name = "ci"
  url = "{ci}"
  backoff_initial = {3600 if targets is None else 1}
  [[chain.target]]
  name = "deploy"
  url = "{deploy}"
"""


def start_relay(folder: Path, targets: Targets | None, concurrency: int,
                store_url: str = "sqlite:///data/relay.db",
                port: int | None = None) -> tuple[subprocess.Popen[bytes], int]:
    port = port or free_port()
    config = folder / f"relay-{port}.toml"
    config.write_text(relay_config(port, targets, concurrency, store_url))
    log = open(folder / f"relay-{port}.log", "wb")  # noqa: SIM115 - the child owns it
    process = start_server([sys.executable, "-m", "relay", "serve", "--config", str(config),
                            "--log-level", "warning"], port, cwd=folder, stdout=log,
                           stderr=log)
    return process, port


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(30)


async def run_relay(targets: Targets, seconds: float, inflight: int) -> ChainRun:
    with tempfile.TemporaryDirectory() as folder:
        process, port = start_relay(Path(folder), targets, max(inflight, 1))
        try:
            return await drive([f"http://127.0.0.1:{port}/hooks/bench/{TOKEN}"], targets,
                               PAYLOAD, seconds, inflight)
        finally:
            stop(process)


async def run_bare(targets: Targets, seconds: float, inflight: int) -> ChainRun:
    port = free_port()
    process = start_server([sys.executable, str(Path(__file__).parent / "bare.py"), "chain",
                            str(port), targets.url("ci"), targets.url("deploy")], port)
    try:
        return await drive([f"http://127.0.0.1:{port}/hooks/bench"], targets, PAYLOAD, seconds,
                           inflight)
    finally:
        process.terminate()
        process.wait(10)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--inflight", type=int, default=32)
    args = parser.parse_args()
    targets = await Targets().start()
    try:
        results = []
        for label, inflight in ((f"{args.inflight} in flight", args.inflight),
                                ("1 at a time", 1)):
            bare = await run_bare(targets, args.seconds, inflight)
            relay = await run_relay(targets, args.seconds, inflight)
            results.append((label, bare, relay))
    finally:
        await targets.stop()
    print(f"\ndelivery through a two-target chain, {args.seconds:g} s per run")
    print(HEADER)
    for label, bare, relay in results:
        print(summary(f"bare walker, {label}", bare))
        print(summary(f"relay (SQLite), {label}", relay))
        print(f"  ratio relay/bare chains/s: {relay.per_second / bare.per_second:.2f}; "
              f"relay hop overhead p50 {relay.hop(0.5) - bare.hop(0.5):+.2f} ms"
              + (f"; failures {relay.failed}" if relay.failed else ""))


if __name__ == "__main__":
    asyncio.run(main())
