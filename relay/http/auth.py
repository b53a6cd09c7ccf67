"""Who may call what: the admin token as a Bearer credential, compared in constant time."""

from __future__ import annotations

import hmac

from aiohttp import web

from relay import config, errors
from relay.http.appkeys import CONFIG


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison, so that timing tells nothing about how much matched."""
    return hmac.compare_digest(given.encode(), expected.encode())


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return None
    return credential.strip()


def admin_chain(request: web.Request) -> config.Chain:
    """The admin token, then the configured chain that the path's {chain} names (404)."""
    settings = request.app[CONFIG].current
    require_admin(request)
    name = request.match_info["chain"]
    chain = settings.chain(name)
    if chain is None:
        raise errors.HTTPError(404, f"no chain is named {name!r}")
    return chain


def require_admin(request: web.Request) -> None:
    given = bearer(request)
    if given is None or not same_secret(given, request.app[CONFIG].current.server.admin_token):
        raise errors.HTTPError(401, "this needs Authorization: Bearer <admin_token>",
                               headers={"WWW-Authenticate": 'Bearer realm="relay"'})
