"""Pausing a failing target instead of failing every push sent to it.

After `pause_after` consecutive failed attempts (no answer, 5xx, 408, 429) relay pauses the
target: its steps stop spending attempts and wait as `paused`. Every `probe_interval` the
oldest waiting step is let through; the first success resumes the target and sends all its
waiting steps in their deliveries' order. An operator may pause and resume by hand; a target
paused by an operator is never probed. The state lives in the store (store/targets.py), so
all processes on one store agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from relay import config, logs
from relay.engine import chain, retry
from relay.store import targets
from relay.store.base import Tx

RELAY = "relay"
OPERATOR = "operator"


@dataclass(frozen=True)
class TargetState:
    """What GET /api/targets shows of one target."""

    chain: str
    target: str
    paused_by: str | None
    since: float | None
    consecutive_failures: int
    last_error: str | None
    waiting: int

    @property
    def state(self) -> str:
        return "paused" if self.paused_by else "active"


@dataclass(frozen=True)
class Known:
    """The target's record as the unit read it, under its delivery's lock."""

    failures: int
    paused_by: str | None


async def counted(tx: Tx, policy: config.SendPolicy, chain_name: str, target: str,
                  answer: chain.Answer, now: float, known: Known | None = None) -> bool:
    """Count one attempt's answer in its target's record; whether the target is paused now
    (a success resumes a target that relay paused). With `known`, a success of a target
    with no failures to forget costs no statement (the common case)."""
    if retry.is_success(answer.status):
        if known is not None and not known.failures and known.paused_by is None:
            return False
        row = await targets.succeeded(tx, chain_name, target)
        if row is not None and row["paused_by"] == RELAY:
            await resume(tx, chain_name, target, now, by=RELAY)
            return False
        return row is not None and row["paused_by"] is not None
    if answer.permanent or not retry.is_retryable(answer.status):
        return False  # the step is an error whatever the target's state
    row = await targets.failed(tx, chain_name, target, chain.describe(answer))
    if row["paused_by"] is not None:
        return True
    if policy.pause_after and row["failures"] >= policy.pause_after:
        await pause(tx, chain_name, target, now, by=RELAY, probe_in=policy.probe_interval)
        logs.get().warning("target.paused", chain=chain_name, target=target, by=RELAY,
                           failures=row["failures"], last_error=row["last_error"])
        return True
    return False


async def pause(tx: Tx, chain_name: str, target: str, now: float, *, by: str,
                probe_in: float | None = None) -> None:
    await targets.pause(tx, chain_name, target, by, now,
                        None if probe_in is None else now + probe_in)
    await targets.hold_steps(tx, chain_name, target)
    tx.wake()


async def resume(tx: Tx, chain_name: str, target: str, now: float, *, by: str) -> int:
    """Resume the target; how many waiting steps are sent again."""
    await targets.resume(tx, chain_name, target, now)
    released = await targets.release_held(tx, chain_name, target, now)
    tx.wake()
    logs.get().info("target.resumed", chain=chain_name, target=target, by=by,
                    released=released)
    return released


async def probe(tx: Tx, settings: config.Settings, now: float) -> float | None:
    """Let the oldest waiting step through to each target whose probe is due; when the next
    probe is due."""
    for row in await targets.due_probes(tx, now):
        name, target = row["chain"], row["target"]
        send_id = await targets.oldest_held(tx, name, target)
        await targets.probing(tx, name, target, send_id,
                              now + policy_of(settings, name, target).probe_interval)
        if send_id is not None:
            await targets.release_held(tx, name, target, now, only=send_id)
            logs.get().info("target.probe", chain=name, target=target, send=send_id)
    return await targets.next_probe(tx)


async def states(tx: Tx, settings: config.Settings) -> list[TargetState]:
    """Every configured target, in config order, with what the store knows of it."""
    rows = {(row["chain"], row["target"]): row for row in await targets.all_rows(tx)}
    waiting = await targets.held_counts(tx)
    found = []
    for configured in settings.chains:
        for target in configured.targets:
            key = (configured.name, target.name)
            row = rows.get(key)
            found.append(TargetState(
                chain=configured.name, target=target.name,
                paused_by=row["paused_by"] if row else None,
                since=row["since"] if row else None,
                consecutive_failures=int(row["failures"]) if row else 0,
                last_error=row["last_error"] if row else None,
                waiting=waiting.get(key, 0)))
    return found


def policy_of(settings: config.Settings, chain_name: str, target: str) -> config.SendPolicy:
    configured = settings.chain(chain_name)
    found = configured.target(target) if configured else None
    return found.policy if found else settings.delivery.policy
