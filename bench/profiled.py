"""Run a command of relay's under cProfile and write the profile when it exits.

    python bench/profiled.py OUT relay-args...     e.g. OUT serve --config relay.toml

`relay serve` stops on SIGTERM by returning from main(), so the profile is written then.
Only the event loop's thread is profiled: the one where relay spends its CPU (the SQLite
fsync and the reads run in threads, mostly waiting).
"""

from __future__ import annotations

import cProfile
import sys

from relay import cli


def main() -> int:
    out, argv = sys.argv[1], sys.argv[2:]
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        return cli.main(argv)
    finally:
        profiler.disable()
        profiler.dump_stats(out)


if __name__ == "__main__":
    sys.exit(main())
