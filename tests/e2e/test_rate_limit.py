"""Rate limits over HTTP: a chain's (pushes and trigger calls) and each trigger's, 429 with
Retry-After, and the bucket refills."""

from __future__ import annotations

from typing import Any

from support import CHAIN_TOKEN, SEED_TAG_PUSH, Relay, StartRelay, StartTarget, wait_until


async def _two_chains(start_relay: StartRelay, start_target: StartTarget,
                      rate: str, burst: int) -> Relay:
    target = await start_target()
    return await start_relay(chains=[
        {"name": "main", "rate_limit": rate, "rate_burst": burst, "concurrency": 10,
         "targets": [{"name": "ci", "url": target.url}]},
        {"name": "other", "targets": [{"name": "ci", "url": target.url}]},
    ])


async def test_a_chain_over_its_limit_gets_429_with_retry_after(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    relay = await _two_chains(start_relay, start_target, rate="2/m", burst=3)
    # Strangers cannot spend the chain's allowance: they never get past the token.
    for _ in range(10):
        assert (await relay.post("/hooks/main/wrong-token-0123456789", SEED_TAG_PUSH))[0] \
            == 404

    accepted = [await relay.push() for _ in range(3)]
    async with relay.http.post(relay.hook_url(), json=SEED_TAG_PUSH) as response:
        status, body = response.status, await response.json()
        retry_after = response.headers["Retry-After"]
    header_form = await relay.post("/hooks/main", SEED_TAG_PUSH,
                                   headers={"Authorization": f"Bearer {CHAIN_TOKEN}"})

    assert status == 429
    assert retry_after == "30"
    assert body == {"error": "too many pushes to chain main; try again in 30 s",
                    "details": []}
    assert header_form[0] == 429
    # Another chain's bucket is its own: five pushes in a row all get their 202.
    for _ in range(5):
        await relay.push(chain="other")
    _, listing = await relay.get("/history?chain=main")
    assert [item["id"] for item in listing["items"]] == list(reversed(accepted))


async def test_the_bucket_refills(start_relay: StartRelay,
                                  start_target: StartTarget) -> None:
    relay = await _two_chains(start_relay, start_target, rate="4/s", burst=1)
    await relay.push()
    status, _ = await relay.post(relay.hook_url().removeprefix(relay.url), SEED_TAG_PUSH)
    assert status == 429

    async def accepted_again() -> bool:
        status, _ = await relay.post(relay.hook_url().removeprefix(relay.url), SEED_TAG_PUSH)
        return status == 202

    await wait_until(accepted_again, timeout=5, what="the bucket to refill")


async def _trigger_url(relay: Relay, name: str) -> str:
    status, made = await relay.post("/api/chains/main/triggers/", {"name": name},
                                    headers=relay.admin)
    assert status == 201
    return str(made["url"])


async def _call(relay: Relay, url: str) -> tuple[int, Any, str | None]:
    async with relay.http.post(url) as response:  # a trigger's URL is its own credential
        return response.status, await response.json(), response.headers.get("Retry-After")


async def test_a_trigger_has_a_limit_of_its_own_and_spends_its_chains(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    target = await start_target()
    relay = await start_relay(chains=[
        {"name": "main", "rate_limit": "4/m", "trigger_rate_limit": "2/m", "order": "none",
         "targets": [{"name": "ci", "url": target.url}]}])
    await relay.push()  # the chain has 3 left
    button, cron = await _trigger_url(relay, "button"), await _trigger_url(relay, "cron")

    calls = [await _call(relay, button) for _ in range(3)]

    assert [status for status, _, _ in calls] == [202, 202, 429]
    assert calls[2][1:] == ({"error": "too many calls of trigger button; try again in 30 s",
                             "details": []}, "30")
    # Another trigger has its own allowance, but the chain's is used up after one more.
    assert (await _call(relay, cron))[0] == 202
    status, body, retry_after = await _call(relay, cron)
    assert (status, retry_after) == (429, "15")
    assert body["error"] == ("too many pushes and trigger calls to chain main; "
                             "try again in 15 s")
    assert (await relay.post("/hooks/main/" + CHAIN_TOKEN, SEED_TAG_PUSH))[0] == 429
    # Unknown ids spend nothing: they never get past the lookup.
    assert (await _call(relay, button.replace("/triggers/", "/triggers/x")))[0] == 404
    _, listing = await relay.get("/history?chain=main")
    assert [item["source"] for item in listing["items"]] == ["trigger"] * 3 + ["push"]
