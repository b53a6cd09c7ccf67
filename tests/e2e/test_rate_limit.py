"""Per-chain intake rate limits over HTTP: 429 with Retry-After, and the bucket refills."""

from __future__ import annotations

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
