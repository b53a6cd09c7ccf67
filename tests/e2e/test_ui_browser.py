"""The history page in a real headless Chromium: log in, watch a chain walk, redeliver."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from support import ADMIN_TOKEN, Reply, StartRelay, StartTarget
from support.browser import artifact, chromium

from relay import models
from relay.http.ui import session

# The page does not depend on the store: one backend is enough here.
pytestmark = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)

HOSTILE = '<img src=x onerror="window.pwned=1">Deployed <b>v1</b> to prod'
RESULTS = "https://ci.example.com/results/afd339c1c3d27"


async def test_an_operator_watches_a_chain_walk_and_redelivers_it(
        start_relay: StartRelay, start_target: StartTarget, tmp_path: Path) -> None:
    ci = await start_target(default=Reply(description="387 tests PASSED"))
    # The deploy target answers the first delivery's callback only when the test says so.
    deploy = await start_target(Reply(callback=None), default=Reply(description="deployed"))
    relay = await start_relay(chains=[{"name": "main", "targets": [
        {"name": "unit-tests", "url": ci.url}, {"name": "deploy", "url": deploy.url}]}],
        upstream={"allowed_hosts": []})

    async with chromium(tmp_path / "profile") as browser:
        from playwright.async_api import expect

        expect.set_options(timeout=15_000)
        page = await browser.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("console", lambda message: _policy_violation(message, problems))

        await page.goto(relay.url + "/ui")
        await page.fill("#token", "not-the-admin-token-0123")
        await page.click("#login-form button[type=submit]")
        await expect(page.locator("#login-error")).to_have_text(
            "that is not relay's admin token")
        await page.fill("#token", ADMIN_TOKEN)
        await page.click("#login-form button[type=submit]")
        await expect(page.locator("#history")).to_be_visible()
        await expect(page.locator("#empty")).to_be_visible()

        # A push while the page is open shows up without a reload.
        first = await relay.push()
        row = page.locator(f'tr[data-delivery-id="{first}"]')
        await expect(row).to_be_visible()
        await expect(row.locator(".pip")).to_have_count(2)
        await row.locator("td").nth(2).click()
        await expect(page).to_have_url(f"{relay.url}/ui/deliveries/{first}")

        steps = page.locator(".chain .step")
        await expect(steps).to_have_count(2)
        await expect(steps.nth(0)).to_have_attribute("data-state", "success")
        await expect(steps.nth(0).locator(".target")).to_have_text("unit-tests")
        await expect(steps.nth(0).locator(".description")).to_have_text("387 tests PASSED")
        await expect(steps.nth(0).locator(".attempts .status")).to_have_text("200")
        await expect(steps.nth(0).locator(".attempts .duration")).to_have_text(
            re.compile(r"^\d+\.\d ms$"))
        await expect(steps.nth(1)).to_have_attribute("data-state", "awaiting_callback")
        await expect(page.locator("#live")).to_be_visible()
        await page.screenshot(path=artifact("ui-walking.png"), full_page=True)

        # The deploy target calls back with hostile text: it is shown as text, and the
        # page follows the delivery to its end without a reload.
        callback_url = deploy.requests[0].json["callback_url"]
        status, _ = await relay.post(callback_url.removeprefix(relay.url), {
            "state": "success", "description": HOSTILE, "context": "Acme deploy",
            "target_url": RESULTS})
        assert status == 200
        await expect(steps.nth(1)).to_have_attribute("data-state", "success")
        await expect(steps.nth(1).locator(".description")).to_have_text(HOSTILE)
        assert await steps.nth(1).locator(".description img, .description b").count() == 0
        link = steps.nth(1).locator(".target-url a")
        assert await link.get_attribute("href") == RESULTS
        assert await link.get_attribute("rel") == "noopener noreferrer"
        await expect(page.locator(".head .badge")).to_have_attribute("data-state", "success")
        await expect(page.locator(".head .summary")).to_have_text("all 2 steps succeeded")
        await expect(page.locator(".facts")).to_contain_text(models.service_uuid("main"))
        await expect(page.locator("#live")).to_be_hidden()
        await page.screenshot(path=artifact("ui-delivery.png"), full_page=True)

        # Redeliver: the page moves to the new delivery and follows it too.
        await page.click("#redeliver")
        await expect(page).not_to_have_url(f"{relay.url}/ui/deliveries/{first}")
        again = page.url.rsplit("/", 1)[1]
        await expect(page.locator(".facts")).to_contain_text(first)  # "Redelivery of"
        await expect(page.locator(".head .badge")).to_have_attribute("data-state", "success")
        await expect(steps.nth(1).locator(".description")).to_have_text("deployed")
        await page.screenshot(path=artifact("ui-redelivery.png"), full_page=True)

        # Back in the history: both, newest first; the filters narrow it down.
        await page.click("text=← History")
        rows = page.locator("#rows tr")
        await expect(rows).to_have_count(2)
        assert await rows.nth(0).get_attribute("data-delivery-id") == again
        await page.select_option("#filters select[name=state]", "success")
        await page.fill("#filters input[name=tag]", "latest")
        await page.click("#filters button[type=submit]")
        await expect(page).to_have_url(f"{relay.url}/ui?state=success&tag=latest")
        await expect(rows).to_have_count(2)
        await page.screenshot(path=artifact("ui-history.png"), full_page=True)
        await page.fill("#filters input[name=repository]", "someone/else")
        await page.click("#filters button[type=submit]")
        await expect(page.locator("#empty")).to_be_visible()

        cookie = next(c for c in await browser.cookies() if c["name"] == session.COOKIE)
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Strict"
        assert ADMIN_TOKEN not in cookie["value"]
        assert await page.evaluate("document.cookie") == ""  # HttpOnly: not for scripts
        assert await page.evaluate("window.pwned") is None

        await page.click("#logout")
        await expect(page.locator("#login")).to_be_visible()
        await page.reload()
        await expect(page.locator("#login")).to_be_visible()
        assert problems == []

    _, listing = await relay.get("/history")
    assert [item["id"] for item in listing["items"]] == [again, first]


def _policy_violation(message: Any, problems: list[str]) -> None:
    # A blocked request (the 401 before logging in) is logged too; only the policy matters.
    if message.type == "error" and "Content Security Policy" in message.text:
        problems.append(message.text)


async def test_the_overview_shows_the_day_and_the_targets_and_acts_on_them(
        start_relay: StartRelay, start_target: StartTarget, tmp_path: Path) -> None:
    ci = await start_target(default=Reply(callback=None))
    flaky = await start_target(default=Reply(status=503, callback=None))
    fast = {"await_callback": False, "schedule": ["10ms"], "attempts": 2, "pause_after": 0}
    relay = await start_relay(chains=[{"name": "main", "order": "none", "targets": [
        {"name": "ci", "url": ci.url, **fast}, {"name": "deploy", "url": flaky.url, **fast}]}],
        upstream={"allowed_hosts": []})
    failed = [await relay.push() for _ in range(3)]
    for delivery_id in failed:
        assert (await relay.wait_for(delivery_id))["state"] == "error"

    async with chromium(tmp_path / "profile") as browser:
        from playwright.async_api import expect

        expect.set_options(timeout=15_000)
        page = await browser.new_page()
        await page.set_viewport_size({"width": 1280, "height": 900})
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("console", lambda message: _policy_violation(message, problems))
        await page.goto(relay.url + "/ui")
        await page.fill("#token", ADMIN_TOKEN)
        await page.click("#login-form button[type=submit]")

        # The day's bars, drawn by the page: this hour holds the three errors.
        bars = page.locator("#chart svg g.hour")
        await expect(bars).to_have_count(24)
        await expect(bars.last).to_have_attribute("data-total", "3")
        await expect(bars.last.locator("rect.bar-error")).to_have_count(1)
        deploy = page.locator('#target-rows tr[data-target="deploy"]')
        await expect(deploy.locator("td").nth(3)).to_have_text("0.0 %")
        await expect(deploy.locator(".error-text")).to_have_text("target answered HTTP 503")
        await expect(page.locator('#target-rows tr[data-target="ci"] td').nth(3)).to_have_text(
            "100.0 %")
        await page.screenshot(path=artifact("ui-overview.png"), full_page=True)

        # Pause and resume a target from the table.
        await deploy.locator("button[data-action=pause]").click()
        await expect(deploy).to_have_attribute("data-state", "paused")
        assert (await relay.get("/api/targets"))[1]["items"][1]["paused_by"] == "operator"
        await deploy.locator("button[data-action=resume]").click()
        await expect(deploy).to_have_attribute("data-state", "active")

        # The outage is over: redeliver the failed ones from the filtered list.
        flaky.default = Reply(callback=None)
        await page.select_option("#filters select[name=state]", "error")
        await page.click("#filters button[type=submit]")
        await expect(page.locator("#redeliver-these")).to_be_visible()
        await page.click("#redeliver-these")
        await expect(page.locator("#bulk-text")).to_have_text(
            "Redeliver 3 deliveries (state error), oldest first?")
        await page.click("#bulk-yes")
        await expect(page.locator("#bulk-done")).to_have_text("Redelivered 3 deliveries.")
    _, page_of = await relay.get("/history?limit=10")
    redone = [item for item in page_of["items"] if item["redelivery_of"] in failed]
    assert len(redone) == 3
    for item in redone:
        assert (await relay.wait_for(item["id"]))["state"] == "success"
    assert problems == []
