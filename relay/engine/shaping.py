"""What a chain step's target receives: the push with the step's own callback_url, or what
the target's `body` (a JMESPath expression) makes of it."""

from __future__ import annotations

import json
from typing import Any

import jmespath.exceptions

from relay import config


class Unshaped(ValueError):
    """The target's `body` expression fails for this delivery, or yields nothing to send."""


def step_document(payload: str, callback_url: str) -> dict[str, Any]:
    """The stored payload with `callback_url` pointing at this step's own callback URL."""
    document = json.loads(payload)
    document.pop("callback_url", None)
    return {"callback_url": callback_url, **document}


def encode(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


def step_body(target: config.Target, payload: str, callback_url: str, *, delivery_id: str,
              chain: str, index: int) -> bytes:
    """The bytes the target receives (and that are signed)."""
    document = step_document(payload, callback_url)
    if target.body_expression is None:
        return encode(document)
    context = {"payload": document, "callback_url": callback_url,
               "delivery": {"id": delivery_id, "chain": chain},
               "step": {"index": index, "target": target.name}}
    try:
        shaped = target.body_expression.search(context)
    except jmespath.exceptions.JMESPathError as exc:
        raise Unshaped(f"the target's body expression failed: {exc}") from None
    if shaped is None:
        raise Unshaped("the target's body expression yields null for this delivery: nothing "
                       "to send")
    return encode(shaped)
