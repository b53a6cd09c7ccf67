"""GET /history and friends: what an operator sees, newest first, paged and filtered."""

from __future__ import annotations

import copy

from support import SEED_TAG_PUSH, Relay, Reply, StartRelay, StartTarget

from relay.redaction import without_credentials


async def _two_chains(start_relay: StartRelay, start_target: StartTarget) -> Relay:
    ok = await start_target()
    failing = await start_target(default=Reply(callback="failure"))
    return await start_relay(chains=[
        {"name": "main", "concurrency": 4, "order": "chain",
         "targets": [{"name": "ci", "url": ok.url}]},
        {"name": "other", "concurrency": 4, "order": "chain",
         "targets": [{"name": "ci", "url": failing.url}]},
    ])


async def test_pages_newest_first_with_an_opaque_cursor(start_relay: StartRelay,
                                                        start_target: StartTarget) -> None:
    relay = await _two_chains(start_relay, start_target)
    ids = [await relay.push() for _ in range(7)]

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = "/history?limit=3" + (f"&cursor={cursor}" if cursor else "")
        status, body = await relay.get(query)
        assert status == 200
        seen += [item["id"] for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert cursor not in ids  # opaque, not the bare id

    assert seen == list(reversed(ids))
    assert pages == 3


async def test_filters_by_chain_and_state(start_relay: StartRelay,
                                          start_target: StartTarget) -> None:
    relay = await _two_chains(start_relay, start_target)
    good = [await relay.push(chain="main") for _ in range(2)]
    bad = [await relay.push(chain="other") for _ in range(3)]
    for delivery_id in good + bad:
        await relay.wait_for(delivery_id)

    _, main = await relay.get("/history?chain=main")
    _, failed = await relay.get("/history?state=failure")
    _, both = await relay.get("/history?chain=main&state=failure")

    assert [i["id"] for i in main["items"]] == list(reversed(good))
    assert [i["id"] for i in failed["items"]] == list(reversed(bad))
    assert both["items"] == []
    item = failed["items"][0]
    assert item["chain"] == "other"
    assert item["repository"] == "svendowideit/testhook"
    assert item["tag"] == "latest"
    assert item["steps"] == [{"index": 0, "target": "ci", "state": "failure"}]


async def test_bad_query_parameters_are_400_naming_them(start_relay: StartRelay,
                                                        start_target: StartTarget) -> None:
    relay = await start_relay(await start_target())

    status, body = await relay.get("/history?limit=0&state=done&cursor=zzz")

    assert status == 400
    assert [d["path"] for d in body["details"]] == ["limit", "state", "cursor"]
    for digits in ("%C2%B2", "%D9%A5"):  # a superscript 2 and an Arabic-Indic 5: not ASCII
        status, body = await relay.get(f"/history?limit={digits}")
        assert (status, [d["path"] for d in body["details"]]) == (400, ["limit"])


async def test_history_needs_the_admin_token(start_relay: StartRelay,
                                             start_target: StartTarget) -> None:
    relay = await start_relay(await start_target())
    delivery_id = await relay.push()

    for method, path in (("GET", "/history"), ("GET", f"/history/{delivery_id}"),
                         ("POST", f"/history/{delivery_id}/redeliver")):
        for headers in ({}, {"Authorization": "Bearer wrong-admin-token-123456"},
                        {"Authorization": "Basic YWRtaW46YWRtaW4="}):
            async with relay.http.request(method, relay.url + path,
                                          headers=headers) as response:
                assert response.status == 401, (method, path, headers)
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
                assert "admin_token" in (await response.json())["error"]


async def test_a_delivery_shows_every_attempt_and_callback(start_relay: StartRelay,
                                                           start_target: StartTarget) -> None:
    ci = await start_target(Reply(callback="success", description="387 tests PASSED"))
    relay = await start_relay(ci)

    delivery_id = await relay.push()
    await relay.wait_for(delivery_id)
    done = await relay.wait_for_attempts(delivery_id, 0, 1)

    assert set(done) >= {"id", "chain", "state", "received_at", "finished_at", "payload",
                         "steps", "upstream"}
    step = done["steps"][0]
    assert set(step) >= {"index", "target", "url", "state", "attempts", "callback"}
    assert step["url"] == ci.url
    attempt = step["attempts"][0]
    assert set(attempt) == {"at", "status", "duration_ms", "error", "response"}
    assert attempt["status"] == 200
    assert attempt["error"] is None
    assert attempt["duration_ms"] >= 0
    assert set(step["callback"]) == {"state", "description", "context", "target_url",
                                     "received_at"}


async def test_unknown_delivery_is_404(start_relay: StartRelay,
                                       start_target: StartTarget) -> None:
    relay = await start_relay(await start_target())

    assert (await relay.get("/history/01aaaaaaaaaaaaaaaaaaaaaaaa"))[0] == 404
    assert (await relay.post("/history/nope/redeliver", headers=relay.admin))[0] == 404


async def test_redeliver_makes_a_new_delivery_of_the_same_payload(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    ci = await start_target()
    relay = await start_relay(ci)
    payload = copy.deepcopy(SEED_TAG_PUSH)
    payload["push_data"]["tag"] = "v1.2.3"
    first = await relay.wait_for(await relay.push(payload))

    status, body = await relay.post(f"/history/{first['id']}/redeliver", headers=relay.admin)

    assert status == 202
    assert body["id"] != first["id"]
    again = await relay.wait_for(body["id"])
    assert again["state"] == "success"
    assert again["payload"] == first["payload"]
    assert again["redelivery_of"] == first["id"]
    assert again["source"] == "redeliver"
    assert [r.json["push_data"]["tag"] for r in ci.requests] == ["v1.2.3", "v1.2.3"]
    assert ci.requests[0].headers["webhook-id"] != ci.requests[1].headers["webhook-id"]


def test_history_shows_urls_without_credentials() -> None:
    assert without_credentials("https://ci:s3cret@ci.example.com/hook?token=abc&x=1") == (
        "https://ci.example.com/hook?token=[redacted]&x=1")
    assert without_credentials("http://u:p@[::1]:8080/hook") == "http://[::1]:8080/hook"
    assert without_credentials("http://host:9001/hook") == "http://host:9001/hook"
    for as_written in ("HTTPS://host/hook", "https://host/hook?", "https://host/hook#"):
        assert without_credentials(as_written) == as_written


BEYOND_64_BITS = 2**64 + 1


async def test_a_delivery_shows_any_payload_relay_accepted(start_relay: StartRelay,
                                                           start_target: StartTarget) -> None:
    ci = await start_target()
    relay = await start_relay(ci)
    payload = {**SEED_TAG_PUSH, "build": {"number": BEYOND_64_BITS, "ratio": 0.25},
               "callback_url": "https://hub:s3cret@hub.example/hook/x?sig=abc&keep=1"}

    delivery = await relay.wait_for(await relay.push(payload))

    assert delivery["state"] == "success"
    assert delivery["payload"]["build"] == {"number": BEYOND_64_BITS, "ratio": 0.25}
    assert ci.requests[0].json["build"]["number"] == BEYOND_64_BITS
    # The history shows the report's address without its credentials, as it shows any URL.
    assert delivery["payload"]["callback_url"] == "https://hub.example/hook/x?sig=[redacted]&keep=1"
    assert {k: v for k, v in delivery["payload"].items() if k != "callback_url"} == {
        k: v for k, v in payload.items() if k != "callback_url"}


async def test_filters_by_repository(start_relay: StartRelay,
                                     start_target: StartTarget) -> None:
    relay = await _two_chains(start_relay, start_target)
    app = copy.deepcopy(SEED_TAG_PUSH)
    app["repository"]["repo_name"] = "acme/app"
    app_of_main = await relay.push(app, chain="main")
    seed_of_main = await relay.push(chain="main")
    app_of_other = await relay.push(app, chain="other")
    seed_of_other = await relay.push(chain="other")

    _, apps = await relay.get("/history?repository=acme/app")
    _, seeds = await relay.get("/history?repository=svendowideit/testhook")
    _, apps_of_main = await relay.get("/history?repository=acme/app&chain=main")
    _, prefix = await relay.get("/history?repository=acme")

    assert [i["id"] for i in apps["items"]] == [app_of_other, app_of_main]
    assert {i["repository"] for i in apps["items"]} == {"acme/app"}
    assert [i["id"] for i in seeds["items"]] == [seed_of_other, seed_of_main]
    assert [i["id"] for i in apps_of_main["items"]] == [app_of_main]
    assert prefix["items"] == []  # the whole name, not a prefix of it
