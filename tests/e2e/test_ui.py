"""The web UI's server side: its session cookie, CSRF protection and the page's files."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie

import pytest
from support import ADMIN_TOKEN, Relay, StartRelay, StartTarget

from relay import models
from relay.http.ui import session

KEY = session.key(ADMIN_TOKEN)
NOW = 1_800_000_000.0


def _tampered(value: str) -> str:
    """The value with its last character changed (to another one, whatever it was)."""
    return value[:-1] + ("1" if value.endswith("0") else "0")


@pytest.mark.parametrize(("value", "now", "valid"), [
    (session.issue(KEY, NOW), NOW, True),
    (session.issue(KEY, NOW), NOW + session.LIFETIME - 1, True),
    (session.issue(KEY, NOW), NOW + session.LIFETIME, False),        # expired
    (session.issue(KEY, NOW + 3600), NOW, False),                     # from the future
    (session.issue(session.key("another-admin-token-0123"), NOW), NOW, False),  # new token
    (_tampered(session.issue(KEY, NOW)), NOW, False),                 # tampered signature
    (session.issue(KEY, NOW).replace(f".{int(NOW)}.", f".{int(NOW) + 9}."), NOW, False),
    ("v1.1800000000.abc", NOW, False),
    ("", NOW, False),
    (ADMIN_TOKEN, NOW, False),
])
def test_a_session_is_valid_only_as_issued_and_for_its_lifetime(value: str, now: float,
                                                                 valid: bool) -> None:
    assert session.valid(KEY, value, now) is valid


async def _login(relay: Relay) -> tuple[str, str]:
    """Log in as the page does; the session cookie and the CSRF token."""
    async with relay.http.post(relay.url + "/ui/login", json={"token": ADMIN_TOKEN}) as answer:
        assert answer.status == 200
        cookie = SimpleCookie(answer.headers["Set-Cookie"])[session.COOKIE]
        body = await answer.json()
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/ui"
    assert int(cookie["max-age"]) == session.LIFETIME
    assert cookie["secure"] == ""  # plain http on loopback; Secure when reached over https
    assert ADMIN_TOKEN not in cookie.value
    return cookie.value, body["csrf"]


async def test_login_sets_a_signed_http_only_strict_cookie(start_relay: StartRelay,
                                                           start_target: StartTarget) -> None:
    relay = await start_relay(await start_target())

    value, csrf = await _login(relay)

    assert session.valid(KEY, value, time.time())
    async with relay.http.get(relay.url + "/ui/api/session",
                              headers={"Cookie": f"{session.COOKIE}={value}"}) as answer:
        assert answer.status == 200
        assert answer.headers["Cache-Control"] == "no-store"
        body = await answer.json()
    assert body["csrf"] == csrf
    assert body["chains"] == ["main"]
    assert body["services"] == {"main": models.service_uuid("main")}
    assert "success" in body["states"]


async def test_a_wrong_token_or_a_form_post_does_not_log_in(start_relay: StartRelay,
                                                            start_target: StartTarget,
                                                            ) -> None:
    relay = await start_relay(await start_target())

    status, body = await relay.post("/ui/login", {"token": "not-the-admin-token-0123"},
                                    headers={"Content-Type": "application/json"})
    assert (status, body["error"]) == (401, "that is not relay's admin token")
    # What a cross-site HTML form could send: refused before the token is even looked at.
    async with relay.http.post(relay.url + "/ui/login",
                               data={"token": ADMIN_TOKEN}) as answer:
        assert answer.status == 415
        assert "Set-Cookie" not in answer.headers
    status, _ = await relay.post("/ui/login", ["token"],
                                 headers={"Content-Type": "application/json"})
    assert status == 400


async def test_a_login_body_over_its_limit_is_413_even_when_chunked(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    relay = await start_relay(await start_target())

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"token": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    async with relay.http.post(relay.url + "/ui/login", data=chunks(),
                               headers={"Content-Type": "application/json"}) as answer:
        assert answer.status == 413
        assert "Set-Cookie" not in answer.headers


async def test_the_ui_api_needs_the_session_not_the_bearer_token(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    relay = await start_relay(await start_target())
    delivery_id = await relay.push()
    forged = session.issue(session.key("guessed-admin-token-0123"), time.time())

    for headers in ({}, relay.admin, {"Cookie": f"{session.COOKIE}={forged}"},
                    {"Cookie": f"{session.COOKIE}={ADMIN_TOKEN}"}):
        for path in ("/ui/api/session", "/ui/api/history", f"/ui/api/history/{delivery_id}"):
            async with relay.http.get(relay.url + path, headers=headers) as answer:
                assert answer.status == 401, (path, headers)
                assert "log in" in (await answer.json())["error"]


async def test_history_through_the_session_is_the_history(start_relay: StartRelay,
                                                          start_target: StartTarget) -> None:
    # No upstream report: its retries would change the delivery between the two reads.
    relay = await start_relay(await start_target(), upstream={"allowed_hosts": []})
    delivery_id = await relay.push()
    await relay.wait_for(delivery_id)
    await relay.wait_for_attempts(delivery_id, 0, 1)  # recorded after the callback, maybe
    value, _ = await _login(relay)
    cookie = {"Cookie": f"{session.COOKIE}={value}"}

    async with relay.http.get(relay.url + "/ui/api/history?state=success",
                              headers=cookie) as answer:
        listing = await answer.json()
    async with relay.http.get(relay.url + f"/ui/api/history/{delivery_id}",
                              headers=cookie) as answer:
        shown = await answer.json()

    assert [item["id"] for item in listing["items"]] == [delivery_id]
    assert shown == await relay.delivery(delivery_id)


async def test_redeliver_and_logout_need_the_csrf_token(start_relay: StartRelay,
                                                        start_target: StartTarget) -> None:
    relay = await start_relay(await start_target())
    delivery_id = await relay.push()
    value, csrf = await _login(relay)
    cookie = {"Cookie": f"{session.COOKIE}={value}"}
    redeliver = f"{relay.url}/ui/api/history/{delivery_id}/redeliver"

    for headers in (cookie, {**cookie, session.CSRF_HEADER: "0" * 64},
                    {**cookie, session.CSRF_HEADER: session.csrf(KEY, "v1.1.other.x")}):
        async with relay.http.post(redeliver, headers=headers) as answer:
            assert answer.status == 403
            assert session.CSRF_HEADER in (await answer.json())["error"]
    async with relay.http.post(relay.url + "/ui/logout", headers=cookie) as answer:
        assert answer.status == 403
    _, listing = await relay.get("/history")
    assert len(listing["items"]) == 1  # nothing was redelivered

    async with relay.http.post(redeliver, headers={**cookie, session.CSRF_HEADER: csrf}
                               ) as answer:
        assert answer.status == 202
        again = (await answer.json())["id"]
    assert (await relay.wait_for(again))["redelivery_of"] == delivery_id

    async with relay.http.post(relay.url + "/ui/logout",
                               headers={**cookie, session.CSRF_HEADER: csrf}) as answer:
        assert answer.status == 204
        gone = SimpleCookie(answer.headers["Set-Cookie"])[session.COOKIE]
    assert gone.value == ""
    assert gone["path"] == "/ui"


@pytest.mark.parametrize("path", ["/ui", "/ui/deliveries/06h0n515l6s04bbg7jp958vrf4"])
async def test_the_page_is_served_with_a_strict_content_security_policy(
        start_relay: StartRelay, start_target: StartTarget, path: str) -> None:
    relay = await start_relay(await start_target())

    async with relay.http.get(relay.url + path) as answer:
        assert answer.status == 200
        assert answer.content_type == "text/html"
        page = await answer.text()
        policy = answer.headers["Content-Security-Policy"]
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Referrer-Policy"] == "no-referrer"
        assert answer.headers["X-Frame-Options"] == "DENY"
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert "<script>" not in page  # no inline script: the policy would block it anyway
    for asset, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        assert f"/ui/static/{asset}" in page
        async with relay.http.get(f"{relay.url}/ui/static/{asset}") as answer:
            assert (answer.status, answer.content_type) == (200, kind)
            etag = answer.headers["ETag"]
        async with relay.http.get(f"{relay.url}/ui/static/{asset}",
                                  headers={"If-None-Match": etag}) as answer:
            assert answer.status == 304
    for missing in ("../handlers.py", "session.py", "nope.js"):
        async with relay.http.get(f"{relay.url}/ui/static/{missing}") as answer:
            assert answer.status == 404
