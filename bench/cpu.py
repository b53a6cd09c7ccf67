"""Where a server's CPU goes: its process CPU time (from /proc), and a cProfile summary by
component (json, log, middleware, store, schema...), for bench/intake.py and friends."""

from __future__ import annotations

import os
import pstats
from collections import defaultdict
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads, so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
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


def by_component(stats_file: Path) -> list[tuple[str, float]]:
    """Self time (seconds) per component, largest first."""
    stats = pstats.Stats(str(stats_file))
    totals: dict[str, float] = defaultdict(float)
    for (filename, _, name), row in stats.stats.items():  # type: ignore[attr-defined]
        totals[component(filename, name)] += row[2]
    return sorted(totals.items(), key=lambda item: -item[1])


def top_functions(stats_file: Path, count: int = 12) -> list[tuple[str, float]]:
    """The functions with the most self time."""
    stats = pstats.Stats(str(stats_file))
    rows = [(f"{Path(filename).name}:{line}({name})", row[2])
            for (filename, line, name), row in stats.stats.items()]  # type: ignore[attr-defined]
    return sorted(rows, key=lambda item: -item[1])[:count]


def print_profile(stats_file: Path, requests: int, cpu_per_request_us: float) -> None:
    """The profile's components as shares, and as µs of one request's measured CPU."""
    parts = by_component(stats_file)
    total = sum(seconds for _, seconds in parts) or 1.0
    print(f"\nwhere a 202's CPU goes (cProfile self time of the event loop's thread, "
          f"{requests} requests; µs scaled to the {cpu_per_request_us:.0f} µs measured "
          "without the profiler)")
    for label, seconds in parts:
        share = seconds / total
        print(f"  {label:<40}{share:>7.1%}{share * cpu_per_request_us:>8.0f} µs")
    print("  top functions by self time:")
    for name, seconds in top_functions(stats_file):
        print(f"    {seconds / total:>6.1%}  {name}")
