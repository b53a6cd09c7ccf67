"""Standard Webhooks signatures (https://www.standardwebhooks.com/): pure, clock passed in."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable

PREFIX = "whsec_"


def decode_secret(secret: str) -> bytes:
    """The HMAC key inside a `whsec_<base64>` secret; ValueError says what is wrong."""
    if not secret.startswith(PREFIX):
        raise ValueError("must start with 'whsec_' (a Standard Webhooks secret)")
    try:
        key = base64.b64decode(secret.removeprefix(PREFIX), validate=True)
    except binascii.Error:
        raise ValueError("the part after 'whsec_' must be base64") from None
    if len(key) < 16:
        raise ValueError("the key must be at least 16 bytes (24 base64 characters)")
    return key


def sign(secrets: Iterable[str], message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: one `v1,<base64>` per secret, space separated.

    Several secrets let a target rotate: it accepts either signature while both are listed.
    """
    signed = f"{message_id}.{timestamp}.".encode() + body
    signatures = []
    for secret in secrets:
        digest = hmac.new(decode_secret(secret), signed, hashlib.sha256).digest()
        signatures.append("v1," + base64.b64encode(digest).decode("ascii"))
    return " ".join(signatures)


def headers(secrets: tuple[str, ...], message_id: str, timestamp: int,
            body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt."""
    result = {"webhook-id": message_id, "webhook-timestamp": str(timestamp)}
    if secrets:
        result["webhook-signature"] = sign(secrets, message_id, timestamp, body)
    return result
