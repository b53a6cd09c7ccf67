"""Who may call what: the admin token as a Bearer credential (or, for Docker Cloud's
clients, as the password of Basic authentication), compared in constant time."""

from __future__ import annotations

import base64
import binascii
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


def basic_password(request: web.Request) -> str | None:
    """The password of `Authorization: Basic base64(user:password)`; the user is not read."""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credential.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _user, colon, password = decoded.partition(":")
    return password if colon else None


def require_api_key(request: web.Request) -> None:
    """Docker Cloud's credential, `Basic base64(username:apikey)`, where relay's admin token
    is the API key and any user name goes; a Bearer admin token goes too."""
    given = bearer(request) or basic_password(request)
    if given is None or not same_secret(given, request.app[CONFIG].current.server.admin_token):
        raise errors.HTTPError(
            401, "this needs Authorization: Basic base64(username:apikey) with relay's "
                 "admin_token as the apikey, or Bearer <admin_token>",
            headers={"WWW-Authenticate": 'Basic realm="relay"'})
