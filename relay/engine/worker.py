"""The delivery loop: claim due sends -> POST -> record and decide, in one transaction each.

Any number of workers may share a store (one per relay process). A worker holds nothing
that the store does not also know: a send waiting to be retried, or a step waiting for its
callback, is a row with a due time, not a task.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import secrets
import socket
import time
from collections.abc import Callable, Sequence

import aiohttp

from relay import config, errors, logs, metrics
from relay.engine import apply, chain, delivery, outbound, pausing, retention, shaping
from relay.models import SendKind, StepState
from relay.store import Store, deliveries, idempotency, outlook, sends
from relay.store.base import Tx

POLL_SECONDS = apply.POLL_SECONDS
"""The longest a worker sleeps without looking at the store (a safety net: writes wake it)."""
NOTICE_SHARE = 0.25
"""End-of-chain notices (upstream reports, hooks) use at most this share of the POSTs in
flight, so that a slow or unreachable hook host never holds up chain steps."""

PRUNE_SECONDS = 600.0
"""How often a worker forgets idempotency keys past their window."""


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


class Worker:
    def __init__(self, live: config.Live | config.Settings, store: Store,
                 session: aiohttp.ClientSession, *,
                 outside_session: aiohttp.ClientSession | None = None,
                 clock: Callable[[], float] = time.time,
                 observe: metrics.Metrics | None = None) -> None:
        self.live = live if isinstance(live, config.Live) else config.Live(live)
        settings = self.live.current
        self.store = store
        self.session = session
        self.outside_session = outside_session or session
        """For sends to URLs from outside (outbound.OUTSIDE_URL_KINDS)."""
        self.guard = outbound.Guard(outbound.AddressPolicy(settings.outbound.allow_networks))
        """Checks the destination of a send from outside that goes through a proxy."""
        self.clock = clock
        self.metrics = observe or metrics.Metrics(c.name for c in settings.chains)
        self.id = worker_id()
        self.capacity = settings.delivery.max_connections
        self.notice_capacity = max(1, int(self.capacity * NOTICE_SHARE))
        self._posting = asyncio.Semaphore(self.capacity)
        """The hard cap on POSTs in flight: a step handed off by a callback (or by the
        dispatch running meanwhile) may be claimed while `capacity` sends are out."""
        self._claims: dict[asyncio.Task[None], sends.Claimed] = {}
        self._tokens: dict[str, str] = {}
        """Callback token -> delivery, of the steps in `_claims`."""
        self._leases = itertools.count(1)
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._retention_task: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self._next_prune = 0.0
        self._short_of_slots = False
        """The last pass left due work for want of a free slot: a finished send wakes it."""
        self.taken = 0
        """Sends this worker has taken on since it was made."""

    async def start(self, *, sole_process: bool) -> None:
        if sole_process:
            # Nobody else shares this store: every lease in it was left by a relay that died.
            await self.store.write(lambda tx: sends.recover(tx, self.clock()))
        await self.store.write(
            lambda tx: admit_unconfigured(tx, self.live, self.clock()), alone=True)
        self.store.wake_others_when(self._needs_help)
        self._loop_task = asyncio.create_task(self._run(), name="relay-worker")
        self._retention_task = asyncio.create_task(retention.run(
            self.live, self.store, self.clock, self.metrics, self._stopped),
            name="relay-retention")
        logs.get().info("worker.started", worker=self.id, capacity=self.capacity)

    async def stop(self, grace: float) -> None:
        """Stop claiming; let sends in flight finish within `grace`; give the rest back."""
        self._stopping = True
        self._stopped.set()
        self.store.wake_local()
        if self._loop_task is not None:
            await self._loop_task
        if self._retention_task is not None:
            await self._retention_task
        if not self._claims:
            return
        _, unfinished = await asyncio.wait(list(self._claims), timeout=grace)
        left = [self._claims[task] for task in unfinished]
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        for claimed in left:
            try:
                await self.store.write(functools.partial(
                    apply.release, claimed=claimed, now=self.clock()))
            except errors.StoreError as exc:
                logs.get().warning("worker.release_failed", delivery=claimed.delivery_id,
                                   error=str(exc))
        logs.get().info("worker.stopped", released=len(left))

    def _needs_help(self) -> bool:
        """Whether work this process commits may be left to other processes: it is stopping,
        or has no room for it."""
        return self._stopping or self._short_of_slots or len(self._claims) >= self.capacity

    @property
    def in_flight(self) -> int:
        return len(self._claims)

    def handoff_lease(self) -> str | None:
        """A lease under which a unit may start the next step for this worker directly, or
        None when the worker is full or stopping (the step then waits for a dispatch)."""
        if self._stopping or len(self._claims) >= self.capacity:
            return None
        return f"{self.id}#{next(self._leases)}"

    def take(self, claimed: Sequence[sends.Claimed]) -> None:
        """Send what a unit claimed for this worker."""
        self.taken += len(claimed)
        for item in claimed:
            task = asyncio.create_task(self._handle(item))
            self._claims[task] = item
            if item.token is not None:
                self._tokens[item.token] = item.delivery_id
            task.add_done_callback(self._done)

    def delivery_of(self, token: str) -> str | None:
        """The delivery of a step this worker is sending, by its callback token: the key
        under which a callback that races the POST's answer is written (see Store.write)."""
        return self._tokens.get(token)

    async def run_once(self) -> int:
        """Burst mode, for tests that step the engine: finish the sends in flight, then send
        everything due now (by `clock`) and what that hands on, until nothing is due; how many
        sends were handled. Only for a worker that was not started."""
        assert self._loop_task is None, "run_once() is for a worker that was not started"
        before = self.taken - len(self._claims)
        while True:
            while self._claims:
                await asyncio.gather(*list(self._claims))
            claimed, _ = await self.store.write(functools.partial(
                dispatch, live=self.live, lease=f"{self.id}#{next(self._leases)}",
                now=self.clock(), steps=self.capacity, notice_limit=self.notice_capacity),
                alone=True)
            if not claimed:
                return self.taken - before
            self.take(claimed)

    async def _run(self) -> None:
        while not self._stopping:
            notices = sum(c.kind is not SendKind.STEP for c in self._claims.values())
            free = self.capacity - len(self._claims)
            free_notices = min(free, self.notice_capacity - notices)
            lease = f"{self.id}#{next(self._leases)}"
            now = self.clock()
            try:
                claimed, next_due = await self.store.write(functools.partial(
                    dispatch, live=self.live, lease=lease, now=now,
                    steps=free, notice_limit=free_notices), alone=True)
            except errors.StoreError as exc:
                logs.get().error("worker.store_failed", error=str(exc))
                await self.store.wait_for_work(1.0)
                continue
            self.take(claimed)  # before the pruning: these are leased and their attempt begun
            notices_claimed = sum(c.kind is not SendKind.STEP for c in claimed)
            self._short_of_slots = (len(claimed) >= free or notices_claimed >= free_notices)
            if now >= self._next_prune:
                await self._prune(now)
            if claimed and len(claimed) >= free:
                continue
            if free <= 0 or next_due is None:
                wait = POLL_SECONDS
            else:
                wait = min(max(next_due - self.clock(), 0.0), POLL_SECONDS)
            logs.get().debug("worker.dispatched", lease=lease, free=free, claimed=len(claimed),
                             next_due=next_due and round(next_due - now, 3), wait=round(wait, 3))
            if wait > 0:
                await self.store.wait_for_work(wait)

    async def _prune(self, now: float) -> None:
        self._next_prune = now + PRUNE_SECONDS
        try:
            forgotten = await self.store.write(functools.partial(
                prune_keys, settings=self.live.current, now=now))
        except errors.StoreError as exc:
            logs.get().warning("worker.prune_failed", error=str(exc))
            return
        if forgotten:
            logs.get().debug("idempotency.pruned", keys=forgotten)

    def _done(self, task: asyncio.Task[None]) -> None:
        claimed = self._claims.pop(task, None)
        if claimed is not None and claimed.token is not None:
            self._tokens.pop(claimed.token, None)
        if not task.cancelled() and task.exception() is not None:
            logs.get().error("worker.task_failed", error=repr(task.exception()))
        if self._short_of_slots:
            self.store.wake_local()

    async def _handle(self, claimed: sends.Claimed) -> None:
        try:
            if claimed.state is StepState.AWAITING_CALLBACK:
                applied = await self.store.write(
                    lambda tx: apply.expire(tx, self.live, claimed, self.clock()))
                self.metrics.chain_ended(applied.delivery_id, applied.chain, applied.finished)
                return
            async with self._posting:
                at = self.clock()
                answer = await self._send(claimed, at)
            handoff = self.handoff_lease()
            applied = await self.store.write(lambda tx: apply.record_attempt(
                tx, self.live, claimed, answer, self.clock(), handoff),
                key=claimed.delivery_id)
            self.take(applied.handoff)
        except errors.StoreError as exc:
            # The lease runs out and the send becomes due again: nothing is lost.
            logs.get().error("worker.store_failed", delivery=claimed.delivery_id,
                             error=str(exc))
            return
        logs.get().info(
            "attempt" if claimed.kind is SendKind.STEP else f"notice.{claimed.kind}",
            delivery=claimed.delivery_id, chain=claimed.chain, step=claimed.idx,
            target=claimed.name, attempt=claimed.attempt, status=answer.status,
            duration_ms=round(answer.duration_ms, 1), error=answer.error,
            outcome=_outcome(applied.decision))
        self.metrics.attempted(claimed.chain, claimed.name, answer.status, answer.duration_ms)
        self.metrics.chain_ended(applied.delivery_id, applied.chain, applied.finished)

    async def _send(self, claimed: sends.Claimed, at: float) -> chain.Answer:
        settings = self.live.of(claimed.config)
        method = "POST"
        headers: tuple[tuple[str, str], ...] = ()
        if claimed.kind is SendKind.STEP:
            configured = settings.chain(claimed.chain)
            target = configured.target(claimed.name) if configured else None
            if target is None:
                return chain.Answer(None, f"target {claimed.name} is no longer in chain "
                                          f"{claimed.chain}", 0.0, permanent=True)
            assert claimed.payload is not None
            assert claimed.token is not None
            callback_url = f"{settings.server.public_url}/callbacks/{claimed.token}"
            try:
                body = shaping.step_body(target, claimed.payload, callback_url,
                                         delivery_id=claimed.delivery_id,
                                         chain=claimed.chain, index=claimed.idx)
            except shaping.Unshaped as exc:
                return chain.Answer(None, str(exc), 0.0, permanent=True)
            secrets_, timeout = target.secrets, target.policy.timeout
            method, headers = target.method, target.headers
        else:
            assert claimed.body is not None  # a notice's body is made when it is planned
            body = claimed.body.encode()
            secrets_, timeout = (), settings.delivery.policy.timeout
        return await self.post(settings, claimed.url, body,
                               outside=claimed.kind in outbound.OUTSIDE_URL_KINDS,
                               message_id=claimed.message_id, secrets=secrets_,
                               timeout=timeout, insecure=claimed.insecure, now=at,
                               method=method, headers=headers)

    async def post(self, settings: config.Settings, url: str, body: bytes, *, outside: bool,
                   message_id: str, timeout: float, secrets: tuple[str, ...] = (),
                   insecure: bool = False, now: float | None = None, method: str = "POST",
                   headers: Sequence[tuple[str, str]] = ()) -> chain.Answer:
        """One POST; a URL from outside (`outside`) may reach only allowed addresses."""
        session = self.outside_session if outside else self.session
        proxy = outbound.proxy_for(url, settings.outbound)
        if proxy is not None and outside:
            # The guarded session would refuse the proxy's own (often private) address:
            # the destination is checked here instead, and the POST goes through the proxy.
            refusal = await self.guard.refusal(url)
            if refusal is not None:
                return chain.Answer(None, delivery.refused(refusal), 0.0, permanent=True)
            session = self.session
        return await delivery.post(session, url, body, message_id=message_id,
                                   secrets=secrets, timeout=timeout, insecure=insecure,
                                   now=now, method=method, headers=headers, proxy=proxy)


def _outcome(decision: chain.Decision) -> str:
    match decision:
        case chain.Retry():
            return "retry"
        case chain.Hold():
            return "paused"
        case chain.Await():
            return "awaiting_callback"
        case chain.Settle(state=state):
            return str(state)
        case chain.Ignore(reason=reason):
            return reason


async def dispatch(tx: Tx, live: config.Live, lease: str, now: float,
                   steps: int, notice_limit: int = 0) -> tuple[list[sends.Claimed], float | None]:
    """One pass of a worker: admit waiting deliveries, claim up to `steps` due chain steps
    and `notice_limit` due notices, and say when to look next."""
    settings = live.current
    # With no room for notices, only the steps' times matter (a freed slot wakes the worker).
    ahead = await outlook.read(tx, now, steps_only=notice_limit <= 0)
    rules = {chain.name: deliveries.Admission(chain.concurrency, chain.order.value,
                                              live.version, chain.steps_for)
             for chain in settings.chains}
    await apply.finish_unstarted(
        tx, live, await deliveries.admit(tx, rules, now, limit=max(steps, 0)), now)
    next_probe = ahead.next_probe
    if next_probe is not None and next_probe <= now:
        next_probe = await pausing.probe(tx, settings, now)
    claimed = await sends.claim(tx, lease, now + settings.lease_seconds, now, steps,
                                notice_limit, any_paused=ahead.paused_targets > 0)
    due = [t for t in (ahead.next_send, ahead.next_hold, next_probe) if t is not None]
    return claimed, min(due) if due else None


async def admit_unconfigured(tx: Tx, live: config.Live, now: float) -> None:
    """Deliveries left waiting by chains no longer in the config: run them to their end,
    one at a time."""
    configured = {chain.name for chain in live.current.chains}
    for name in sorted(await deliveries.chains_pending(tx) - configured):
        await apply.finish_unstarted(
            tx, live, await deliveries.admit(tx, {name: deliveries.Admission(1)}, now), now)


async def prune_keys(tx: Tx, settings: config.Settings, now: float) -> int:
    """Forget idempotency keys past their chain's window (the longest window for chains no
    longer configured)."""
    windows = settings.idempotency_windows
    return await idempotency.prune(tx, windows, max(windows.values(),
                                                    default=config.IDEMPOTENCY_WINDOW), now)
