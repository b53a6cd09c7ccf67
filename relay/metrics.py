"""Prometheus metrics for GET /metrics.

Counters and histograms are kept by this process as things happen (a dict look-up and an
increment on the hot path); gauges of what is waiting are read from the store when scraped,
so every relay process sharing a store reports the same, whole-store numbers for them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from relay import config, logs, models
from relay.store import Store, gauges

PUSH_OUTCOMES = ("accepted", "ignored", "rejected")
_ATTEMPT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_CHAIN_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200, 21600, 86400)


class _Statements:
    """relay_store_statements_total: read from the store's own count when scraped."""

    def __init__(self) -> None:
        self.value = 0

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "relay_store_statements", "SQL statements this process has sent to the store"
            " (each row of a batch, BEGIN and COMMIT count one)", value=self.value)


class Metrics:
    def __init__(self, chains: Iterable[str]) -> None:
        # One registry per app, not prometheus_client's global one: a process (a test run)
        # may hold several relays.
        self.registry = CollectorRegistry()
        self.chains = tuple(chains)
        self.pruned = Counter(
            "relay_deliveries_pruned", "Ended deliveries deleted past [history] retention",
            registry=self.registry)
        self.pushes = Counter(
            "relay_pushes", "Pushes received by an authorized hook, by chain and outcome:"
            " accepted (stored), ignored (repository filter or no tag push), rejected (400,"
            " 408, 413, 422, 429)",
            ["chain", "outcome"], registry=self.registry)
        self.attempts = Counter(
            "relay_attempts", "POSTs to targets (and end-of-chain notices) by status class:"
            " 2xx..5xx, or none when no answer came (refused, timed out)",
            ["chain", "target", "status_class"], registry=self.registry)
        self.attempt_seconds = Histogram(
            "relay_attempt_duration_seconds", "How long one POST to a target took",
            ["chain", "target"], buckets=_ATTEMPT_BUCKETS, registry=self.registry)
        self.chain_seconds = Histogram(
            "relay_chain_duration_seconds", "Seconds from a push's receipt to the end of its"
            " chain, by the delivery's final state", ["chain", "state"],
            buckets=_CHAIN_BUCKETS, registry=self.registry)
        self.deliveries = Gauge(
            "relay_deliveries_unfinished", "Deliveries not finished: pending (waiting for"
            " their chain's turn) or running (read from the store)", ["chain", "state"],
            registry=self.registry)
        self.awaiting = Gauge(
            "relay_steps_awaiting_callback", "Chain steps whose target answered and that wait"
            " for its callback (read from the store)", registry=self.registry)
        self.queued = Gauge(
            "relay_sends_queued", "Sends waiting to be sent or retried, or being sent, by"
            " kind: step, upstream... (read from the store)", ["kind"], registry=self.registry)
        self.lag = Gauge(
            "relay_send_lag_seconds", "How long the most overdue send has been due; stays"
            " near 0 unless the workers fall behind (read from the store)",
            registry=self.registry)
        self.paused = Gauge(
            "relay_targets_paused", "Targets paused, by relay after failing or by an operator"
            " (read from the store)", registry=self.registry)
        self.held = Gauge(
            "relay_steps_paused", "Chain steps waiting for their paused target (read from the"
            " store)", registry=self.registry)
        self.in_flight = Gauge("relay_sends_in_flight", "POSTs this process has in flight",
                               registry=self.registry)
        self.statements = _Statements()
        self.registry.register(self.statements)
        # Label look-ups done once: on intake's hot path a push costs a dict get and an inc.
        self._push_counters: dict[tuple[str, str], Counter] = {
            (chain, outcome): self.pushes.labels(chain, outcome)
            for chain in self.chains for outcome in PUSH_OUTCOMES}

    def configured(self, settings: config.Settings) -> None:
        """After a reload: the chains whose gauges are shown (even at 0)."""
        self.chains = tuple(chain.name for chain in settings.chains)

    def pushed(self, chain: str, outcome: str) -> None:
        counter = self._push_counters.get((chain, outcome))
        if counter is None:
            counter = self._push_counters[(chain, outcome)] = self.pushes.labels(chain, outcome)
        counter.inc()

    def attempted(self, chain: str, target: str, status: int | None,
                  duration_ms: float) -> None:
        status_class = f"{status // 100}xx" if status is not None else "none"
        self.attempts.labels(chain, target, status_class).inc()
        self.attempt_seconds.labels(chain, target).observe(duration_ms / 1000)

    def chain_ended(self, delivery_id: str, chain: str, state: str | None) -> None:
        """When a unit ended delivery `delivery_id` (`state` is not None): its log line and
        its duration, once per delivery, by whoever ended it (the worker or a callback)."""
        if state is None:
            return
        took = max(0.0, time.time() - models.delivery_time(delivery_id))
        self.chain_seconds.labels(chain, str(state)).observe(took)
        logs.get().info("chain.finished", delivery=delivery_id, chain=chain, state=state)

    async def render(self, store: Store, in_flight: int,
                     accept: str) -> tuple[bytes, str]:
        """The exposition text (or OpenMetrics, if `accept` asks for it) and its type."""
        waiting = await store.read(gauges.waiting)
        now = time.time()
        # From here to the end nothing awaits, so concurrent scrapes cannot interleave.
        self.deliveries.clear()
        for chain in self.chains:
            for state in ("pending", "running"):
                self.deliveries.labels(chain, state).set(0)
        for (chain, state), count in waiting.deliveries.items():
            self.deliveries.labels(chain, state).set(count)
        self.awaiting.set(sum(n for (kind, state), n in waiting.sends.items()
                              if kind == models.SendKind.STEP and state == "awaiting_callback"))
        self.queued.clear()
        self.queued.labels(models.SendKind.STEP.value).set(0)
        for (kind, state), count in waiting.sends.items():
            if state == models.StepState.SENDING:
                self.queued.labels(kind).inc(count)
        due = waiting.earliest_due
        self.lag.set(0.0 if due is None else max(0.0, now - due))
        self.paused.set(waiting.paused_targets)
        self.held.set(waiting.paused_steps)
        self.in_flight.set(in_flight)
        self.statements.value = store.statements
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type
