"""The SQLite store alone: CPU per push that intake's unit costs in group commits of N.

    python bench/groupcommit.py [--group 27] [--groups 300] [--rounds 3]

No HTTP, no load generator: N pushes are written at once (as N requests in flight would),
their group is committed, and so on. Prints the CPU per push of the whole process, of its
event loop's thread (the units, the INSERTs) and of the other threads (the COMMIT: WAL
writes and fsync). Steadier than bench/intake.py on a shared machine, so it is the one to
A/B a change of the store's settings with (run it pinned: `taskset -c 0 ...`).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import tempfile
import time
from pathlib import Path

from subject import UNREACHABLE, payload

from relay import models
from relay.http import bodies
from relay.store import deliveries
from relay.store.sqlite import SqliteStore


def _process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(group: int, groups: int) -> tuple[float, float]:
    """(process, event loop thread) CPU µs per push."""
    document, text = bodies.parse_object(payload(), 64)
    receipt = deliveries.Receipt([("t0", UNREACHABLE, None)])
    with tempfile.TemporaryDirectory() as folder:
        store = await SqliteStore.open(Path(folder) / "relay.db")

        async def push() -> deliveries.Stored:
            stored = models.Push("bench", document, text)
            return await store.write(
                lambda tx: deliveries.receive(tx, stored, receipt, time.time()))

        async def groups_of(count: int) -> None:
            for _ in range(count):
                await asyncio.gather(*[push() for _ in range(group)])

        await groups_of(50)  # warm: the first pages, the statement cache
        process, loop = _process_cpu(), time.thread_time()
        await groups_of(groups)
        process, loop = _process_cpu() - process, time.thread_time() - loop
        await store.close()
    pushes = group * groups
    return process * 1e6 / pushes, loop * 1e6 / pushes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--group", type=int, default=27, help="pushes per group commit")
    parser.add_argument("--groups", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    runs = [asyncio.run(measure(args.group, args.groups)) for _ in range(args.rounds)]
    process = statistics.median(run[0] for run in runs)
    loop = statistics.median(run[1] for run in runs)
    print(f"group commits of {args.group}: {process:.1f} µs CPU per push (event loop "
          f"{loop:.1f}, COMMIT thread {process - loop:.1f}; medians of {args.rounds})")


if __name__ == "__main__":
    main()
