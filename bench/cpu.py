"""Where a server's CPU goes: its process CPU time (from /proc), and a cProfile summary by
component (json, log, middleware, store, schema...), for bench/intake.py and friends."""

from __future__ import annotations

import os
import pstats
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU of a process (all its threads), or of one of its threads, so far
    (0 when it is gone). A process's first thread, its event loop's, has the process's id."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    try:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


# (component, what a function's file or C name contains), first match wins. cProfile names a
# C function by its method, e.g. "<method 'execute' of 'sqlite3.Connection' objects>".
_COMPONENTS: list[tuple[str, tuple[str, ...]]] = [
    ("log (structlog, redaction)", ("structlog/", "/relay/logs.py", "/relay/redaction.py",
                                    "logging/")),
    ("json (orjson, json)", ("orjson", "json/", "'loads'", "'dumps'")),
    ("schema (jsonschema-rs)", ("jsonschema", "/relay/schemas.py")),
    ("store: sqlite3 (C)", ("sqlite3",)),
    ("store: relay/store", ("/relay/store/",)),
    ("ids, models", ("/relay/models.py", "posix.urandom", "base64", "secrets.py",
                     "'to_bytes'", "'from_bytes'", "b32")),
    ("metrics (prometheus)", ("prometheus_client", "/relay/metrics.py")),
    ("middleware", ("/relay/http/middleware.py", "web_middlewares")),
    ("relay http (intake, bodies, answers)", ("/relay/http/", "/relay/registries/",
                                              "/relay/config/", "fnmatch")),
    ("aiohttp, multidict, yarl", ("aiohttp/", "multidict", "yarl/", "propcache")),
    ("sockets, epoll (C)", ("socket", "epoll", "'send'", "'recv'", "transport")),
    ("event loop (asyncio)", ("asyncio/", "selectors.py", "contextvars", "'run'",
                              "concurrent/", "threading.py")),
]


def component(filename: str, name: str) -> str:
    where = f"{filename}:{name}"
    for label, marks in _COMPONENTS:
        if any(mark in where for mark in marks):
            return label
    return "other"


_WAITING = "<method 'poll' of 'select.epoll' objects>"
"""cProfile measures wall time: the event loop's wait for sockets is idle, not CPU."""


def by_component(stats_file: Path) -> dict[str, float]:
    """Self time (seconds) per component, the wait in epoll left out."""
    stats = pstats.Stats(str(stats_file))
    totals: dict[str, float] = defaultdict(float)
    for (filename, _, name), row in stats.stats.items():  # type: ignore[attr-defined]
        if name != _WAITING:
            totals[component(filename, name)] += row[2]
    return totals


def top_functions(stats_file: Path, count: int = 12) -> list[tuple[str, float]]:
    """The functions with the most self time (the wait in epoll left out)."""
    stats = pstats.Stats(str(stats_file))
    rows = [(f"{Path(filename).name}:{line}({name})", row[2])
            for (filename, line, name), row in stats.stats.items()  # type: ignore[attr-defined]
            if name != _WAITING]
    return sorted(rows, key=lambda item: -item[1])[:count]


@dataclass(frozen=True)
class Profiled:
    """A server's profile and what one request cost it without the profiler."""

    stats: Path
    cpu_per_request_us: float
    loop_per_request_us: float
    """Of that, the event loop's thread (the one profiled)."""

    def per_request(self) -> dict[str, float]:
        """µs of one request's measured CPU, per component (profile shares scaled)."""
        parts = by_component(self.stats)
        total = sum(parts.values()) or 1.0
        shares = {label: seconds / total * self.loop_per_request_us
                  for label, seconds in parts.items()}
        threads = self.cpu_per_request_us - self.loop_per_request_us
        if threads > 0.5:
            shares[_THREADS] = threads
        return shares


_THREADS = "other threads (SQLite COMMIT + fsync)"


def print_profiles(relay: Profiled, bare: Profiled) -> None:
    """Each component's µs per request in relay and in the bare handler, side by side."""
    mine, theirs = relay.per_request(), bare.per_request()
    print("\nwhere a 202's CPU goes: cProfile self time of the event loop's thread by "
          "component, scaled to the CPU per request measured without the profiler (µs);\n"
          "  the profiler costs small Python functions most, so read it as a rough split")
    print(f"  {'component':<40}{'relay':>8}{'bare':>8}{'more':>8}")
    for label in sorted(mine.keys() | theirs.keys(), key=lambda k: -mine.get(k, 0.0)):
        ours, base = mine.get(label, 0.0), theirs.get(label, 0.0)
        print(f"  {label:<40}{ours:>8.1f}{base:>8.1f}{ours - base:>+8.1f}")
    print(f"  {'all (threads too)':<40}{relay.cpu_per_request_us:>8.1f}"
          f"{bare.cpu_per_request_us:>8.1f}"
          f"{relay.cpu_per_request_us - bare.cpu_per_request_us:>+8.1f}")
    total = sum(seconds for seconds in by_component(relay.stats).values()) or 1.0
    print("  relay's top functions by self time:")
    for name, seconds in top_functions(relay.stats):
        print(f"    {seconds / total:>6.1%}  {name}")
