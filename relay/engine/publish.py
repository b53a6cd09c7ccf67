"""Kudu's publish (POST /api/hooks/publish/{event}): one event's body POSTed to every hook
subscribed to that event type, as Kudu does it: once, all at once, while the publisher
waits. Each hook's last_* fields then say how it went; a 410 Gone unsubscribes the hook.

Unlike a chain's notices, nothing here is a send of a delivery: it is not retried and not in
the history, just as Kudu neither retries nor keeps it.
"""

from __future__ import annotations

import asyncio
import time

from relay import logs
from relay.engine import notices
from relay.engine.chain import Answer
from relay.engine.worker import Worker
from relay.models import StepState, new_message_id
from relay.store import kudu_hooks
from relay.store.base import Row, Tx

GONE = 410


async def publish(worker: Worker, event: str, text: str) -> list[Row]:
    """POST `text` (JSON) to the hooks of `event`; the hooks as they are afterwards (without
    those that answered 410)."""
    settings = worker.live.current
    hooks = await worker.store.read(lambda tx: kudu_hooks.subscribed(tx, event))
    body = text.encode()
    answers = await asyncio.gather(*(
        worker.post(settings, hook["url"], body, outside=True, message_id=new_message_id(),
                    timeout=settings.delivery.policy.timeout, insecure=bool(hook["insecure"]))
        for hook in hooks))
    now = time.time()

    async def record(tx: Tx) -> list[Row]:
        kept = []
        for hook, answer in zip(hooks, answers, strict=True):
            if answer.status == GONE:
                await kudu_hooks.delete(tx, hook["id"], now)
                continue
            await kudu_hooks.record(tx, hook["id"], at=now, status=notices.kudu_status(
                answer.status), reason=_reason(answer), context=text)
            row = await kudu_hooks.get(tx, hook["id"])
            if row is not None:  # deleted meanwhile
                kept.append(row)
        return kept

    kept = await worker.store.write(record)
    logs.get().info("kudu.published", kudu_event=event,
                    hooks=[hook["id"] for hook in hooks],
                    statuses=[answer.status for answer in answers])
    return kept


def _reason(answer: Answer) -> str | None:
    """The status's reason phrase, as Kudu records it; why no answer came, else."""
    state = StepState.SUCCESS if answer.status is not None else StepState.ERROR
    return notices.kudu_reason(state, answer.status, answer.error)
