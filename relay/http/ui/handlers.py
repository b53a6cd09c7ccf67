"""/ui: the page itself, login and logout, and the history API behind the session cookie.

The page (static/index.html, app.js, style.css) is plain HTML, CSS and JavaScript shipped
inside the package: no build step and nothing fetched from elsewhere at run time. It reads
the same JSON as /history, from /ui/api/..., where a session cookie stands in for the
Bearer token. The cookie is HttpOnly, SameSite=Strict and valid only under /ui; a POST also
needs the session's CSRF token in X-Relay-CSRF.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import time

from aiohttp import web

from relay import errors, logs, models
from relay.http import answers, auth, bodies, history, targets
from relay.http.appkeys import CONFIG, STORE
from relay.http.ui import overview, session

_ASSETS = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css",
           "favicon.svg": "image/svg+xml"}
_SECURITY_HEADERS = {
    # Only the page's own files; no inline script, so injected markup could not run.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self'; connect-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Links to a target_url must not tell the target which delivery was being looked at.
    "Referrer-Policy": "no-referrer",
}
_MAX_LOGIN_BYTES = 4096


@functools.cache
def _asset(name: str) -> tuple[bytes, str]:
    data = importlib.resources.files(__package__).joinpath("static", name).read_bytes()
    return data, '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def _secured(response: web.StreamResponse) -> web.StreamResponse:
    response.headers.update(_SECURITY_HEADERS)
    return response


async def page(request: web.Request) -> web.StreamResponse:
    """GET /ui and /ui/deliveries/{id}: the one page; it shows the login form when needed."""
    return _file("index.html", request)


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in _ASSETS:
        raise errors.HTTPError(404, "nothing is here")
    return _file(name, request)


def _file(name: str, request: web.Request) -> web.StreamResponse:
    data, etag = _asset(name)
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if request.headers.get("If-None-Match") == etag:
        return _secured(web.Response(status=304, headers=headers))
    response = web.Response(body=data, headers=headers, content_type=_ASSETS[name],
                            charset="utf-8")
    return _secured(response)


async def login(request: web.Request) -> web.StreamResponse:
    """POST /ui/login {"token": "<admin_token>"}: start a session."""
    settings = request.app[CONFIG].current
    if request.content_type != "application/json":
        # A cross-site form cannot send JSON without the browser asking first.
        raise errors.HTTPError(415, 'send the token as JSON: {"token": "..."}')
    body = await bodies.read_body(request, _MAX_LOGIN_BYTES)
    document, _ = bodies.parse_object(body, 4)
    token = document.get("token")
    if not isinstance(token, str) or not auth.same_secret(token,
                                                             settings.server.admin_token):
        logs.get().warning("ui.login_refused", remote=request.remote)
        raise errors.HTTPError(401, "that is not relay's admin token")
    signing_key = session.key(settings.server.admin_token)
    value = session.issue(signing_key, time.time())
    response = _session_answer(signing_key, value, request)
    response.set_cookie(session.COOKIE, value, path="/ui", max_age=session.LIFETIME,
                        httponly=True, samesite="Strict", secure=_secure(request))
    logs.get().info("ui.login", remote=request.remote)
    return _secured(response)


async def logout(request: web.Request) -> web.StreamResponse:
    """POST /ui/logout: forget the session in this browser."""
    _check_csrf(request, _session(request))
    response = web.Response(status=204)
    response.del_cookie(session.COOKIE, path="/ui", secure=_secure(request), httponly=True,
                        samesite="Strict")
    return _secured(response)


async def whoami(request: web.Request) -> web.StreamResponse:
    """GET /ui/api/session: the CSRF token and what the filters offer, or 401."""
    value = _session(request)
    signing_key = session.key(request.app[CONFIG].current.server.admin_token)
    return _secured(_session_answer(signing_key, value, request))


async def listing(request: web.Request) -> web.StreamResponse:
    _session(request)
    return _secured(_no_store(await history.answer_listing(request)))


async def show(request: web.Request) -> web.StreamResponse:
    _session(request)
    return _secured(_no_store(await history.answer_show(request)))


async def redeliver(request: web.Request) -> web.StreamResponse:
    _check_csrf(request, _session(request))
    return _secured(await history.answer_redeliver(request))


async def redeliver_matching(request: web.Request) -> web.StreamResponse:
    _check_csrf(request, _session(request))
    return _secured(await history.answer_redeliver_matching(request))


async def overview_page(request: web.Request) -> web.StreamResponse:
    """GET /ui/api/overview: the last day at a glance."""
    _session(request)
    settings = request.app[CONFIG].current
    found = await request.app[STORE].read(lambda tx: overview.read(tx, settings))
    return _secured(_no_store(answers.respond(found)))


async def pause(request: web.Request) -> web.StreamResponse:
    _check_csrf(request, _session(request))
    return _secured(await targets.answer_change(request, pause=True))


async def resume(request: web.Request) -> web.StreamResponse:
    _check_csrf(request, _session(request))
    return _secured(await targets.answer_change(request, pause=False))


def _session_answer(signing_key: bytes, value: str, request: web.Request) -> web.Response:
    settings = request.app[CONFIG].current
    return _no_store(answers.respond({
        "csrf": session.csrf(signing_key, value),
        "expires_at": models.iso(session.expires(value)),
        "chains": [chain.name for chain in settings.chains],
        "services": {chain.name: chain.service_uuid for chain in settings.chains},
        "states": [state.value for state in models.DeliveryState],
    }))


def _session(request: web.Request) -> str:
    value = request.cookies.get(session.COOKIE)
    signing_key = session.key(request.app[CONFIG].current.server.admin_token)
    if value is None or not session.valid(signing_key, value, time.time()):
        raise errors.HTTPError(401, "log in first: there is no session, or it has expired")
    return value


def _check_csrf(request: web.Request, value: str) -> None:
    signing_key = session.key(request.app[CONFIG].current.server.admin_token)
    given = request.headers.get(session.CSRF_HEADER, "")
    if not auth.same_secret(given, session.csrf(signing_key, value)):
        raise errors.HTTPError(403, f"this needs the session's CSRF token in "
                                    f"{session.CSRF_HEADER}")


def _secure(request: web.Request) -> bool:
    """Mark the cookie Secure whenever relay is reached over https."""
    return request.secure or request.app[CONFIG].current.server.public_url.startswith("https:")


def _no_store(response: web.Response) -> web.Response:
    response.headers["Cache-Control"] = "no-store"
    return response
