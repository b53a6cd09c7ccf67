"""Keeping the history bounded: `[history] retention` in the background, `relay prune` by
hand. Deletes go in small batches, each its own short transaction, so that intake and
delivery never wait long behind one."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable

from relay import config, errors, logs, metrics
from relay.store import Store, retention

BATCH = 500
PASS_SECONDS = 60.0
"""How often each process looks for deliveries past their retention."""
BATCHES_PER_PASS = 40


async def prune(store: Store, cutoff: float, *, batches: int | None = None) -> int:
    """Delete deliveries that ended before `cutoff`, a batch at a time; how many."""
    deleted, done = 0, 0
    while batches is None or done < batches:
        count = await store.write(functools.partial(
            retention.delete_ended_before, cutoff=cutoff, limit=BATCH))
        deleted += count
        done += 1
        if count < BATCH:
            break
        await asyncio.sleep(0)  # let the group commit take other work in between
    return deleted


async def count(store: Store, cutoff: float) -> int:
    return await store.read(functools.partial(retention.count_ended_before, cutoff=cutoff))


async def run(live: config.Live, store: Store, clock: Callable[[], float],
              observe: metrics.Metrics, stopping: asyncio.Event) -> None:
    """The background pass: every PASS_SECONDS, prune past `[history] retention`."""
    while not stopping.is_set():
        keep = live.current.history.retention
        if keep > 0:
            try:
                deleted = await prune(store, clock() - keep, batches=BATCHES_PER_PASS)
            except errors.StoreError as exc:
                logs.get().warning("history.prune_failed", error=str(exc))
            else:
                if deleted:
                    observe.pruned.inc(deleted)
                    logs.get().info("history.pruned", deliveries=deleted)
        # A short retention (a test's, say) is looked at more often than once a minute.
        interval = min(PASS_SECONDS, max(keep / 10, 0.1)) if keep > 0 else PASS_SECONDS
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval)
