"""[history] retention under load, beside a bare aiohttp handler, in one run.

    python bench/retention.py [--seconds 10] [--rounds 2] [--growth 60]

1. Intake with pruning running against intake without: relay serves a chain whose one target
   (a bare aiohttp sink) answers at once, so deliveries end as fast as relay walks them; once
   with retention off and once with `retention = "3s"`, so that the background pass deletes
   ended deliveries all through the load. Prints req/s of each beside the bare handler's,
   the ratios, and how many deliveries the pass deleted.
2. Growth: a steady stream of pushes (paced, below what relay takes) for `--growth` seconds
   with `retention = "10s"`: the database's size (file and WAL) and its deliveries, sampled
   every few seconds. With retention on they level off once the first window has passed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from loadgen import Load, free_port, post_load, start_server
from subject import TOKEN, hook_url, payload, stop

SINK_CONFIG = """
[server]
port = {port}
public_url = "http://127.0.0.1:{port}"
admin_token = "bench-admin-token-0123456789"
[store]
url = "sqlite:///data/relay.db"
[delivery]
max_connections = 200
[history]
retention = "{retention}"
[[chain]]
name = "bench"
token = "{token}"
order = "none"
concurrency = 64
  [[chain.target]]
  name = "sink"
  url = "{sink}"
  await_callback = false
"""


def start(folder: Path, sink: str, retention: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    config = folder / "relay.toml"
    config.write_text(SINK_CONFIG.format(port=port, retention=retention, token=TOKEN,
                                         sink=sink))
    with open(folder / "relay.log", "wb") as log:
        process = start_server([sys.executable, "-m", "relay", "serve", "--config",
                                str(config)], port, cwd=folder, stdout=log, stderr=log)
    return process, port


def pruned(folder: Path) -> int:
    """Deliveries the background pass deleted, from relay's log."""
    total = 0
    for line in (folder / "relay.log").read_text().splitlines():
        if '"history.pruned"' in line and '"deliveries":' in line:
            total += int(line.split('"deliveries":')[1].split(",")[0].split("}")[0])
    return total


def run_relay(body: bytes, seconds: float, sink: str, retention: str) -> tuple[Load, int]:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        process, port = start(folder, sink, retention)
        try:
            if retention != "0":
                # Fill the store past the window first, so that pruning has work from the
                # start of the measured load.
                post_load(hook_url(port), body, 4.0)
            load = post_load(hook_url(port), body, seconds)
        finally:
            stop(process)
        return load, pruned(folder)


def run_bare(body: bytes, seconds: float) -> Load:
    port = free_port()
    process = start_server([sys.executable, str(Path(__file__).parent / "bare.py"),
                            "intake", str(port)], port)
    try:
        return post_load(f"http://127.0.0.1:{port}/hooks", body, seconds)
    finally:
        process.terminate()
        process.wait(10)


async def paced(url: str, body: bytes, per_second: float, seconds: float,
                sample: float, database: Path) -> list[tuple[float, int, int]]:
    """Push at `per_second` for `seconds`; (elapsed, bytes on disk, deliveries) samples."""
    samples: list[tuple[float, int, int]] = []
    started = time.monotonic()
    next_sample = 0.0
    sent = 0
    async with aiohttp.ClientSession() as session:
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * per_second) - sent
            await asyncio.gather(*(
                session.post(url, data=body, headers={"Content-Type": "application/json"})
                for _ in range(due)))
            sent += due
            if elapsed >= next_sample:
                samples.append((elapsed, _size(database), _count(database)))
                next_sample += sample
            await asyncio.sleep(0.01)
    return samples


def _size(database: Path) -> int:
    return sum(p.stat().st_size for p in (database, database.with_name(database.name + "-wal"))
               if p.exists())


def _count(database: Path) -> int:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT count(*) FROM deliveries").fetchone()[0])


def growth(body: bytes, sink: str, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        process, port = start(folder, sink, "10s")
        try:
            samples = asyncio.run(paced(hook_url(port), body, 200, seconds, 5.0,
                                        folder / "data" / "relay.db"))
        finally:
            stop(process)
    print(f"\ngrowth: 200 pushes/s for {seconds:g} s, retention 10 s")
    print(f"{'at s':>6}{'MB on disk':>12}{'deliveries':>12}")
    for elapsed, size, count in samples:
        print(f"{elapsed:>6.0f}{size / 1e6:>12.2f}{count:>12}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--growth", type=float, default=60.0)
    args = parser.parse_args()
    # Without its callback_url: a delivery with an upstream report still to send (to Docker
    # Hub, unreachable here) is rightly never pruned.
    document = json.loads(payload())
    del document["callback_url"]
    body = json.dumps(document).encode()
    sink_port = free_port()
    sink = start_server([sys.executable, str(Path(__file__).parent / "bare.py"), "sink",
                         str(sink_port)], sink_port)
    sink_url = f"http://127.0.0.1:{sink_port}/hook"
    bare, off, on, deleted = [], [], [], []
    try:
        for round_ in range(1, args.rounds + 1):
            print(f"round {round_}/{args.rounds}", file=sys.stderr)
            bare.append(run_bare(body, args.seconds).requests_per_second)
            off.append(run_relay(body, args.seconds, sink_url, "0")[0].requests_per_second)
            load, count = run_relay(body, args.seconds, sink_url, "3s")
            on.append(load.requests_per_second)
            deleted.append(count)
        print(f"\nintake with a sink target, {len(body)} B, {args.seconds:g} s x "
              f"{args.rounds} rounds (medians)")
        print(f"{'server':<36}{'req/s':>10}{'ratio to bare':>15}")
        rows = (("bare aiohttp (parse, 202)", bare), ("relay, retention off", off),
                ("relay, pruning (retention 3 s)", on))
        for name, rates in rows:
            print(f"{name:<36}{statistics.median(rates):>10.0f}"
                  f"{statistics.median(rates) / statistics.median(bare):>15.2f}")
        print(f"with pruning / without: {statistics.median(on) / statistics.median(off):.2f}"
              f" ({int(statistics.median(deleted))} deliveries deleted during a round)")
        if args.growth > 0:
            growth(body, sink_url, args.growth)
    finally:
        sink.terminate()
        sink.wait(10)


if __name__ == "__main__":
    main()
