"""GET /metrics (Prometheus) and the probes /healthz and /readyz."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import (
    CHAIN_TOKEN,
    SEED_TAG_PUSH,
    Relay,
    Reply,
    StartRelay,
    StartTarget,
    free_socket,
    seed_push,
    tcp_proxy,
    wait_until,
)

HOOK = f"/hooks/main/{CHAIN_TOKEN}"


async def scrape(relay: Relay) -> str:
    async with relay.http.get(relay.url + "/metrics") as answer:  # no token: see README
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain")
        return await answer.text()


def sample(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                return float(found.value)
    return None


async def wait_for_sample(relay: Relay, name: str, value: float, **labels: str) -> str:
    async def reached() -> str | None:
        text = await scrape(relay)
        return text if sample(text, name, **labels) == value else None

    return await wait_until(reached, what=f"{name}{labels} to be {value}")


async def test_pushes_are_counted_by_chain_and_outcome(start_relay: StartRelay,
                                                       start_target: StartTarget) -> None:
    ci = await start_target()
    relay = await start_relay(chains=[{"name": "main", "repositories": ["svendowideit/*"],
                                       "targets": [{"name": "ci", "url": ci.url}]},
                                      {"name": "quiet", "targets": [{"name": "ci",
                                                                     "url": ci.url}]}])
    before = await scrape(relay)
    assert sample(before, "relay_pushes_total", chain="quiet", outcome="accepted") == 0

    await relay.push()
    await relay.push()
    elsewhere = seed_push()
    elsewhere["repository"]["repo_name"] = "someone/else"
    assert (await relay.post(HOOK, elsewhere))[0] == 200
    assert (await relay.post(HOOK, {"push_data": {}})
            )[0] == 422
    assert (await relay.post(HOOK, data=b"{nope")
            )[0] == 400
    assert (await relay.post("/hooks/main/wrong-token-0123456789", SEED_TAG_PUSH)
            )[0] == 404  # not a push of any chain: not counted

    text = await scrape(relay)
    assert sample(text, "relay_pushes_total", chain="main", outcome="accepted") == 2
    assert sample(text, "relay_pushes_total", chain="main", outcome="ignored") == 1
    assert sample(text, "relay_pushes_total", chain="main", outcome="rejected") == 2
    assert sample(text, "relay_pushes_total", chain="quiet", outcome="accepted") == 0


async def test_attempts_latency_and_chain_durations(start_relay: StartRelay,
                                                    start_target: StartTarget) -> None:
    ci = await start_target(Reply(status=503), default=Reply(delay=0.05))
    down = free_socket()  # bound, not listening: connection refused
    relay = await start_relay(chains=[
        {"name": "main", "targets": [{"name": "ci", "url": ci.url, "backoff_initial": 0.01}]},
        {"name": "broken", "targets": [{"name": "gone", "attempts": 2, "backoff_initial": 0.01,
                                        "url": f"http://127.0.0.1:{down.getsockname()[1]}/"}]},
    ], upstream={"allowed_hosts": []})

    ok = await relay.push()
    bad = await relay.push(chain="broken")
    assert (await relay.wait_for(ok))["state"] == "success"
    assert (await relay.wait_for(bad))["state"] == "error"

    text = await wait_for_sample(relay, "relay_attempts_total", 1, chain="main", target="ci",
                                 status_class="2xx")
    assert sample(text, "relay_attempts_total", chain="main", target="ci",
                  status_class="5xx") == 1
    assert sample(text, "relay_attempts_total", chain="broken", target="gone",
                  status_class="none") == 2
    assert sample(text, "relay_attempt_duration_seconds_count", chain="main",
                  target="ci") == 2
    slowest = sample(text, "relay_attempt_duration_seconds_sum", chain="main", target="ci")
    assert slowest is not None
    assert slowest >= 0.05
    assert sample(text, "relay_chain_duration_seconds_count", chain="main",
                  state="success") == 1
    assert sample(text, "relay_chain_duration_seconds_count", chain="broken",
                  state="error") == 1
    took = sample(text, "relay_chain_duration_seconds_sum", chain="main", state="success")
    assert took is not None
    assert 0.05 <= took < 10
    down.close()


async def test_gauges_show_what_waits_in_the_store(start_relay: StartRelay,
                                                   start_target: StartTarget) -> None:
    manual = await start_target(default=Reply(callback=None))
    down = free_socket()
    relay = await start_relay(chains=[
        {"name": "main", "targets": [{"name": "approve", "url": manual.url}]},
        {"name": "later", "targets": [{"name": "gone", "backoff_initial": 3600,
                                       "url": f"http://127.0.0.1:{down.getsockname()[1]}/"}]},
    ])
    idle = await scrape(relay)
    assert sample(idle, "relay_steps_awaiting_callback") == 0
    assert sample(idle, "relay_deliveries_unfinished", chain="main", state="pending") == 0
    assert sample(idle, "relay_sends_queued", kind="step") == 0

    first = await relay.push()
    await relay.push()  # waits behind the first: concurrency 1
    retrying = await relay.push(chain="later")
    await relay.wait_for_step(first, 0, "awaiting_callback")
    await relay.wait_for_attempts(retrying, 0, 1)

    text = await scrape(relay)
    assert sample(text, "relay_steps_awaiting_callback") == 1
    assert sample(text, "relay_deliveries_unfinished", chain="main", state="running") == 1
    assert sample(text, "relay_deliveries_unfinished", chain="main", state="pending") == 1
    assert sample(text, "relay_deliveries_unfinished", chain="later", state="running") == 1
    assert sample(text, "relay_sends_queued", kind="step") == 1  # the retry, an hour away
    lag = sample(text, "relay_send_lag_seconds")
    assert lag is not None
    assert lag < 5
    down.close()


async def test_metrics_speak_openmetrics_when_asked(start_relay: StartRelay,
                                                    start_target: StartTarget) -> None:
    relay = await start_relay(await start_target())

    async with relay.http.get(relay.url + "/metrics", headers={
            "Accept": "application/openmetrics-text; version=1.0.0"}) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("application/openmetrics-text")
        assert (await answer.text()).rstrip().endswith("# EOF")


async def test_healthz_and_readyz_on_a_working_store(start_relay: StartRelay,
                                                     start_target: StartTarget) -> None:
    relay = await start_relay(await start_target())

    assert await relay.get("/healthz", admin=False) == (200, {"status": "ok"})
    assert await relay.get("/readyz", admin=False) == (200, {"status": "ready"})


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
async def test_readyz_says_503_while_postgresql_is_unreachable(
        start_relay: StartRelay, start_target: StartTarget, store_url: str) -> None:
    async with tcp_proxy(store_url) as proxy:
        cut = proxy.cut
        relay = await start_relay(await start_target(), store=proxy.url)
        assert (await relay.get("/readyz", admin=False))[0] == 200

        cut.set()
        async with relay.http.get(relay.url + "/readyz") as answer:
            assert answer.status == 503
            assert answer.headers["Retry-After"] == "5"
            assert (await answer.json())["error"] == "the store is unavailable; try again later"
        assert (await relay.get("/healthz", admin=False))[0] == 200  # alive all the same

        cut.clear()
        assert (await relay.get("/readyz", admin=False))[0] == 200


