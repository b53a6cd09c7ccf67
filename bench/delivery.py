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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cpu
from chainload import HEADER, ChainRun, Targets, drive, summary
from loadgen import free_port, pin_self, start_server
from subject import PAYLOAD, hook_url, start_relay, stop


async def measured(process: subprocess.Popen[bytes], urls: list[str], targets: Targets,
                   seconds: float, inflight: int) -> ChainRun:
    """A run, and the CPU the server spent per chain in it."""
    before, own = cpu.cpu_seconds(process.pid), time.process_time()
    run = await drive(urls, targets, PAYLOAD, seconds, inflight)
    run.cpu_ms = (cpu.cpu_seconds(process.pid) - before) * 1000 / max(run.done, 1)
    run.load_busy = (time.process_time() - own) / run.seconds
    return run


async def run_relay(targets: Targets, seconds: float, inflight: int) -> ChainRun:
    with tempfile.TemporaryDirectory() as folder:
        process, port = start_relay(Path(folder), [targets.url("ci"), targets.url("deploy")],
                                    concurrency=max(inflight, 1), log_level="warning")
        try:
            return await measured(process, [hook_url(port)], targets, seconds, inflight)
        finally:
            stop(process)


async def run_bare(targets: Targets, seconds: float, inflight: int) -> ChainRun:
    port = free_port()
    process = start_server([sys.executable, str(Path(__file__).parent / "bare.py"), "chain",
                            str(port), targets.url("ci"), targets.url("deploy")], port)
    try:
        return await measured(process, [f"http://127.0.0.1:{port}/hooks/bench"], targets,
                              seconds, inflight)
    finally:
        process.terminate()
        process.wait(10)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--inflight", type=int, default=32)
    args = parser.parse_args()
    pin_self()
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
        print(f"  CPU per chain: relay {relay.cpu_ms:.2f} ms, bare {bare.cpu_ms:.2f} ms "
              f"({relay.cpu_ms / bare.cpu_ms:.2f}x); the load generator and targets were busy "
              f"{bare.load_busy:.0%} of the bare run, {relay.load_busy:.0%} of relay's")


if __name__ == "__main__":
    asyncio.run(main())
