"""The web UI's login session: a signed, expiring cookie, and the CSRF token derived from it.

Nothing is kept on the server. The cookie is `v1.<issued>.<nonce>.<mac>`, signed with a key
derived from the admin token, so every relay process that shares a store accepts it, and a
new admin_token logs everybody out. The admin token itself never leaves the login request.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets

COOKIE = "relay_session"
LIFETIME = 12 * 3600
"""Seconds a login lasts (a working day); then the UI asks for the token again."""
CLOCK_SKEW = 60
"""Seconds a cookie issued by another relay process may seem to come from the future."""
CSRF_HEADER = "X-Relay-CSRF"


@functools.lru_cache(maxsize=4)
def key(admin_token: str) -> bytes:
    return hmac.new(admin_token.encode(), b"relay ui session v1", hashlib.sha256).digest()


def issue(signing_key: bytes, now: float) -> str:
    body = f"v1.{int(now)}.{secrets.token_urlsafe(16)}"
    return f"{body}.{_mac(signing_key, body)}"


def valid(signing_key: bytes, value: str, now: float) -> bool:
    parts = value.split(".")
    if len(parts) != 4 or parts[0] != "v1" or not parts[1].isdigit():
        return False
    if not hmac.compare_digest(_mac(signing_key, ".".join(parts[:3])), parts[3]):
        return False
    issued = int(parts[1])
    return issued - CLOCK_SKEW <= now < issued + LIFETIME


def expires(value: str) -> float:
    """When a valid session ends (epoch seconds)."""
    return int(value.split(".")[1]) + LIFETIME


def csrf(signing_key: bytes, value: str) -> str:
    """The token the page must echo in X-Relay-CSRF on every POST of this session."""
    return _mac(signing_key, "csrf." + value)


def _mac(signing_key: bytes, text: str) -> str:
    return hmac.new(signing_key, text.encode(), hashlib.sha256).hexdigest()
