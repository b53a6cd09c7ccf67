"""Durable intake (POST /hooks/...) beside a bare aiohttp handler, in one run.

    python bench/intake.py [--seconds 10] [--rounds 3] [--no-profile] [--against TREE]

Each round loads the bare handler (parse the JSON, answer 202) and then relay (parse,
validate against the schema, commit to SQLite, answer 202) with the same 2 KB Docker Hub
payload, and prints req/s, p50, p99 and the CPU each request cost the server (medians over
the rounds), and the ratio relay/bare. Afterwards it counts the deliveries in relay's
database: every 202 that the load generator counted must be there, or the run fails.
Last, one more relay run under cProfile says where a 202's CPU goes, by component.

With `--against TREE` (another checkout, e.g. a `git worktree` of the commit before a
change), each round also loads that tree's relay, the two relays' order alternating: a
before/after in one run, which is the only comparison that holds on a shared machine.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cpu
from loadgen import Load, free_port, post_load, start_server
from subject import UNREACHABLE, hook_url, payload, start_relay, stop


@dataclass(frozen=True)
class Run:
    load: Load
    cpu_us: float
    """The server's CPU (all threads) per answered request, in µs."""
    loop_us: float
    """Of that, its event loop's thread."""


def measured(process: subprocess.Popen[bytes], url: str, body: bytes, seconds: float) -> Run:
    before = cpu.cpu_seconds(process.pid), cpu.cpu_seconds(process.pid, process.pid)
    load = post_load(url, body, seconds)
    used = cpu.cpu_seconds(process.pid) - before[0]
    loop = cpu.cpu_seconds(process.pid, process.pid) - before[1]
    answered = max(load.ok, 1)
    return Run(load, used * 1e6 / answered, loop * 1e6 / answered)


def run_relay(body: bytes, seconds: float, profile: Path | None = None,
              tree: Path | None = None) -> Run:
    with tempfile.TemporaryDirectory() as folder:
        process, port = start_relay(Path(folder), [UNREACHABLE], profile=profile, tree=tree)
        try:
            run = measured(process, hook_url(port), body, seconds)
        finally:
            stop(process)
        with sqlite3.connect(Path(folder) / "data" / "relay.db") as db:
            stored = db.execute("SELECT count(*) FROM deliveries").fetchone()[0]
    if stored < run.load.ok:
        raise SystemExit(f"DURABILITY FAILURE: {run.load.ok} answers were 202 but only "
                         f"{stored} deliveries are in the database")
    print(f"  relay: {run.load.ok} accepted, {stored} stored: every 202 is durable",
          file=sys.stderr)
    return run


def run_bare(body: bytes, seconds: float, profile: Path | None = None) -> Run:
    port = free_port()
    profiler = [] if profile is None else ["-m", "cProfile", "-o", str(profile)]
    process = start_server([sys.executable, *profiler, str(Path(__file__).parent / "bare.py"),
                            "intake", str(port)], port)
    try:
        return measured(process, f"http://127.0.0.1:{port}/hooks", body, seconds)
    finally:
        process.terminate()
        process.wait(10)


def median(runs: list[Run], field: str) -> float:
    if field in ("cpu_us", "loop_us"):
        return float(statistics.median(getattr(run, field) for run in runs))
    return float(statistics.median(getattr(run.load, field) for run in runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-profile", dest="profile", action="store_false",
                        help="skip the profiled run")
    parser.add_argument("--against", type=Path, metavar="TREE",
                        help="also run the relay of this checkout, in the same rounds")
    args = parser.parse_args()
    body = payload()
    bare: list[Run] = []
    relay: list[Run] = []
    other: list[Run] = []
    for round_ in range(1, args.rounds + 1):
        print(f"round {round_}/{args.rounds}", file=sys.stderr)
        bare.append(run_bare(body, args.seconds))
        if args.against is not None and round_ % 2:
            other.append(run_relay(body, args.seconds, tree=args.against))
        relay.append(run_relay(body, args.seconds))
        if args.against is not None and not round_ % 2:
            other.append(run_relay(body, args.seconds, tree=args.against))
    print(f"\nintake, {len(body)} B payload, 50 connections, {args.seconds:g} s x "
          f"{args.rounds} rounds (medians)")
    print(f"{'server':<28}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'CPU µs/req':>12}")
    rows = [("bare aiohttp (parse, 202)", "bare", bare),
            ("relay (validate, commit)", "relay", relay)]
    if other:
        rows.append((f"relay of {args.against.name}", f"relay of {args.against.name}", other))
    for name, _, runs in rows:
        print(f"{name:<28}{median(runs, 'requests_per_second'):>10.0f}"
              f"{median(runs, 'p50_ms'):>10.2f}{median(runs, 'p99_ms'):>10.2f}"
              f"{median(runs, 'cpu_us'):>12.0f}")
    for _, short, runs in rows[1:]:
        ratio = median(runs, "requests_per_second") / median(bare, "requests_per_second")
        print(f"ratio {short}/bare: {ratio:.2f} req/s; CPU per request "
              f"{median(runs, 'cpu_us') / median(bare, 'cpu_us'):.2f}x the bare handler's")
    if args.profile:
        with tempfile.TemporaryDirectory() as folder:
            stats = Path(folder)
            run_relay(body, args.seconds, profile=stats / "relay.prof")
            run_bare(body, args.seconds, profile=stats / "bare.prof")
            cpu.print_profiles(
                cpu.Profiled(stats / "relay.prof", median(relay, "cpu_us"),
                             median(relay, "loop_us")),
                cpu.Profiled(stats / "bare.prof", median(bare, "cpu_us"),
                             median(bare, "loop_us")))


if __name__ == "__main__":
    main()
