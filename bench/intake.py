"""Durable intake (POST /hooks/...) beside a bare aiohttp handler, in one run.

    python bench/intake.py [--seconds 10] [--rounds 3]

Each round loads the bare handler (parse the JSON, answer 202) and then relay (parse,
validate against the schema, commit to SQLite, answer 202) with the same 2 KB Docker Hub
payload, and prints req/s, p50 and p99 for both and the ratio relay/bare (medians over the
rounds). Afterwards it counts the deliveries in relay's database: every 202 that the load
generator counted must be there, or the run fails.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
from pathlib import Path

from loadgen import Load, free_port, post_load, start_server
from subject import UNREACHABLE, hook_url, payload, start_relay, stop


def run_relay(body: bytes, seconds: float) -> Load:
    with tempfile.TemporaryDirectory() as folder:
        process, port = start_relay(Path(folder), [UNREACHABLE])
        try:
            load = post_load(hook_url(port), body, seconds)
        finally:
            stop(process)
        with sqlite3.connect(Path(folder) / "data" / "relay.db") as db:
            stored = db.execute("SELECT count(*) FROM deliveries").fetchone()[0]
    if stored < load.ok:
        raise SystemExit(f"DURABILITY FAILURE: {load.ok} answers were 202 but only {stored} "
                         "deliveries are in the database")
    print(f"  relay: {load.ok} accepted, {stored} stored: every 202 is durable")
    return load


def run_bare(body: bytes, seconds: float) -> Load:
    port = free_port()
    process = start_server([sys.executable, str(Path(__file__).parent / "bare.py"),
                            "intake", str(port)], port)
    try:
        return post_load(f"http://127.0.0.1:{port}/hooks", body, seconds)
    finally:
        process.terminate()
        process.wait(10)


def median(loads: list[Load], field: str) -> float:
    return float(statistics.median(getattr(load, field) for load in loads))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    body = payload()
    bare: list[Load] = []
    relay: list[Load] = []
    for round_ in range(1, args.rounds + 1):
        print(f"round {round_}/{args.rounds}", file=sys.stderr)
        bare.append(run_bare(body, args.seconds))
        relay.append(run_relay(body, args.seconds))
    print(f"\nintake, {len(body)} B payload, 50 connections, {args.seconds:g} s x "
          f"{args.rounds} rounds (medians)")
    print(f"{'server':<28}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for name, loads in (("bare aiohttp (parse, 202)", bare),
                        ("relay (validate, commit)", relay)):
        print(f"{name:<28}{median(loads, 'requests_per_second'):>10.0f}"
              f"{median(loads, 'p50_ms'):>10.2f}{median(loads, 'p99_ms'):>10.2f}")
    ratio = median(relay, "requests_per_second") / median(bare, "requests_per_second")
    print(f"ratio relay/bare: {ratio:.2f}")


if __name__ == "__main__":
    main()
