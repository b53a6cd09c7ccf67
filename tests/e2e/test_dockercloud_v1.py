"""Docker Cloud's own Python client, python-dockercloud 1.0.12 from PyPI, against relay: a
chain is found as a service, its triggers are made, listed, called and deleted, and a call
walks the chain to a real target. Then the request shapes the client does not cover:
Basic and Bearer credentials, tastypie pages and filters, unknown services."""

from __future__ import annotations

import asyncio
import base64
import importlib
import sys
import warnings
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any
from urllib.parse import urljoin

import pytest
from support import ADMIN_TOKEN, Relay, StartRelay, StartTarget, Target, seed_push, wait_until

from relay import models

ClientLoader = Callable[..., ModuleType]


@pytest.fixture
def dockercloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[ClientLoader]:
    """Imports python-dockercloud afresh, configured by its environment variables as a user
    configures it. The package is Python 2 code in two places, and exactly those two calls
    get their Python 2 meaning (where str is bytes), nothing else: base64.b64encode of a
    str at import, and urljoin(str, bytes) in send_request."""
    loaded: list[ModuleType] = []

    def load(relay: Relay, *, apikey: str = ADMIN_TOKEN,
             namespace: str | None = None) -> ModuleType:
        monkeypatch.setenv("DOCKERCLOUD_REST_HOST", relay.url)
        monkeypatch.setenv("DOCKERCLOUD_USER", "ops-team")
        monkeypatch.setenv("DOCKERCLOUD_APIKEY", apikey)
        if namespace is None:
            monkeypatch.delenv("DOCKERCLOUD_NAMESPACE", raising=False)
        else:
            monkeypatch.setenv("DOCKERCLOUD_NAMESPACE", namespace)
        for name in [m for m in sys.modules if m.split(".")[0] == "dockercloud"]:
            monkeypatch.delitem(sys.modules, name)
        b64encode = base64.b64encode

        def py2_b64encode(text: Any, altchars: Any = None) -> Any:
            if isinstance(text, str):
                return b64encode(text.encode("latin-1"), altchars).decode("ascii")
            return b64encode(text, altchars)

        with monkeypatch.context() as during_import, warnings.catch_warnings():
            during_import.setattr(base64, "b64encode", py2_b64encode)
            # `future`, which the package imports, imports the deprecated `imp`.
            warnings.filterwarnings("ignore", "the imp module", DeprecationWarning)
            client = importlib.import_module("dockercloud")
        http = importlib.import_module("dockercloud.api.http")
        monkeypatch.setattr(http, "urljoin", lambda base, url: urljoin(
            base, url.decode("ascii") if isinstance(url, bytes) else url))
        loaded.append(http)
        return client

    yield load
    for http in loaded:
        http.close_session()


async def off_loop(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """The client blocks (requests); relay serves on this test's event loop."""
    return await asyncio.to_thread(call, *args, **kwargs)


def _trigger_uuid(trigger: dict[str, Any]) -> str:
    return str(trigger["resource_uri"].rstrip("/").rsplit("/", 1)[1])


async def _relay(start_relay: StartRelay, ci: Target) -> Relay:
    return await start_relay(chains=[
        {"name": "main", "repositories": ["svendowideit/*"],
         "targets": [{"name": "ci", "url": ci.url}]},
        {"name": "other", "targets": [{"name": "ci", "url": ci.url}]}])


async def test_the_client_finds_a_chain_as_a_service_and_redeploys_it(
        start_relay: StartRelay, start_target: StartTarget,
        dockercloud: ClientLoader) -> None:
    ci = await start_target()
    relay = await _relay(start_relay, ci)
    pushed = await relay.wait_for(await relay.push(seed_push(tag="v7")))
    client = dockercloud(relay)
    uuid = models.service_uuid("main")

    [found] = await off_loop(client.Service.list, name="main")
    assert (found.uuid, found.name, found.image_name) == (uuid, "main", "svendowideit/*")
    assert found.resource_uri == f"/api/app/v1/service/{uuid}/"
    assert len(await off_loop(client.Service.list)) == 2
    service = await off_loop(client.Service.fetch, uuid)
    assert (service.name, service.targets) == ("main", ["ci"])

    trigger = await off_loop(client.Trigger.fetch, service)
    assert await off_loop(trigger.list) == []
    trigger.add(name="deploy-button", operation="REDEPLOY")
    assert await off_loop(trigger.save)
    [made] = await off_loop(trigger.list)
    trigger_uuid = _trigger_uuid(made)
    resource = f"/api/app/v1/service/{uuid}/trigger/{trigger_uuid}/"
    assert {key: made[key] for key in ("url", "name", "operation", "resource_uri")} == {
        "url": f"{resource}call/", "name": "deploy-button", "operation": "REDEPLOY",
        "resource_uri": resource}

    assert await off_loop(trigger.call, trigger_uuid)

    async def redeployed() -> dict[str, Any] | None:
        items = (await relay.get("/history?chain=main"))[1]["items"]
        return items[0] if items[0]["source"] == "trigger" else None

    again = await relay.wait_for((await wait_until(redeployed, what="the call"))["id"])
    assert (again["state"], again["redelivery_of"]) == ("success", pushed["id"])
    assert [r.json["push_data"]["tag"] for r in ci.requests] == ["v7", "v7"]

    assert await off_loop(trigger.delete, trigger_uuid)
    assert await off_loop(trigger.list) == []
    with pytest.raises(client.ApiError, match="Status 404"):
        await off_loop(trigger.call, trigger_uuid)


async def test_the_client_shows_why_scaleup_is_refused(
        start_relay: StartRelay, start_target: StartTarget,
        dockercloud: ClientLoader) -> None:
    relay = await _relay(start_relay, await start_target())
    client = dockercloud(relay)
    trigger = await off_loop(client.Trigger.fetch,
                             await off_loop(client.Service.fetch, models.service_uuid("main")))

    trigger.add(name="more", operation="SCALEUP")
    with pytest.raises(client.ApiError) as refused:
        await off_loop(trigger.save)

    assert "Status 422" in str(refused.value)
    assert "no containers to scale; use REDEPLOY" in str(refused.value)
    trigger.clear()
    assert await off_loop(trigger.list) == []


async def test_the_client_works_in_a_namespace_and_pages_through_triggers(
        start_relay: StartRelay, start_target: StartTarget,
        dockercloud: ClientLoader) -> None:
    relay = await _relay(start_relay, await start_target())
    client = dockercloud(relay, namespace="acme")
    uuid = models.service_uuid("other")

    [service] = await off_loop(client.Service.list, name="other")
    assert service.resource_uri == f"/api/app/v1/acme/service/{uuid}/"
    trigger = await off_loop(client.Trigger.fetch, service)
    for name in ("one", "two", "three"):
        trigger.add(name=name)
        assert await off_loop(trigger.save)

    listed = await off_loop(trigger.list, limit=2)  # the client follows `next`

    assert [t["name"] for t in listed] == ["one", "two", "three"]
    assert all(t["resource_uri"].startswith(f"/api/app/v1/acme/service/{uuid}/trigger/")
               and t["operation"] == "REDEPLOY" for t in listed)
    status, page = await relay.get(f"/api/app/v1/service/{uuid}/trigger/?limit=2&offset=2")
    assert status == 200
    assert page["meta"] == {"limit": 2, "next": None, "offset": 2, "total_count": 3,
                            "previous": f"/api/app/v1/service/{uuid}/trigger/?limit=2&offset=0"}
    assert [t["name"] for t in page["objects"]] == ["three"]


async def test_a_wrong_api_key_is_the_clients_auth_error(
        start_relay: StartRelay, start_target: StartTarget,
        dockercloud: ClientLoader) -> None:
    relay = await _relay(start_relay, await start_target())
    client = dockercloud(relay, apikey="not-the-admin-token-0000")

    with pytest.raises(client.AuthError):
        await off_loop(client.Service.list)


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_basic_with_any_user_or_bearer_is_the_credential(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    relay = await _relay(start_relay, await start_target())
    services = relay.url + "/api/app/v1/service/"

    for headers, status in (({}, 401), (_basic("ops", "wrong-admin-token-0000"), 401),
                            ({"Authorization": "Basic !!not base64!!"}, 401),
                            (_basic("anyone", ADMIN_TOKEN), 200),
                            (_basic("", ADMIN_TOKEN), 200), (relay.admin, 200)):
        async with relay.http.get(services, headers=headers) as response:
            assert response.status == status, headers
            if status == 401:
                assert response.headers["WWW-Authenticate"] == 'Basic realm="relay"'


async def test_service_lists_filter_and_page_as_tastypie_does(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    relay = await _relay(start_relay, await start_target())
    main, other = models.service_uuid("main"), models.service_uuid("other")

    status, listed = await relay.get("/api/app/v1/service/")
    assert status == 200
    assert listed["meta"] == {"limit": 25, "next": None, "offset": 0, "previous": None,
                              "total_count": 2}
    assert [s["uuid"] for s in listed["objects"]] == [main, other]
    _, first = await relay.get("/api/app/v1/service/?limit=1")
    assert first["meta"]["next"] == "/api/app/v1/service/?limit=1&offset=1"
    assert [s["name"] for s in first["objects"]] == ["main"]
    _, by_prefix = await relay.get(f"/api/app/v1/service/?uuid__startswith={other[:8]}")
    assert [s["name"] for s in by_prefix["objects"]] == ["other"]
    _, by_name = await relay.get("/api/app/v1/someone/service/?name=nope")
    assert by_name["objects"] == []

    status, refused = await relay.get("/api/app/v1/service/?stack__name=web")
    assert status == 400
    assert refused["details"] == [{"path": "stack__name", "message":
                                   "does not allow filtering"}]
    assert (await relay.get("/api/app/v1/service/?limit=-1"))[0] == 400


async def test_unknown_services_and_triggers_are_404(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    relay = await _relay(start_relay, await start_target())
    unknown = "0224815a-c156-44e4-92d7-997c69354438"
    main = models.service_uuid("main")
    status, made = await relay.post(f"/api/app/v1/service/{main}/trigger/", {},
                                    headers=relay.admin)
    assert status == 201

    status, body = await relay.get(f"/api/app/v1/service/{unknown}/")
    assert (status, body["error"]) == (404, f"no service has UUID '{unknown}'")
    assert (await relay.get(f"/api/app/v1/service/{main}/trigger/{unknown}/"))[0] == 404
    # Calls need no credential: an unknown service answers as an unknown trigger does.
    elsewhere = made["url"].replace(main, unknown)
    for path in (elsewhere, f"/api/app/v1/service/{main}/trigger/{unknown}/call/"):
        status, body = await relay.post(path)
        assert (status, body["error"]) == (404, "no trigger at this URL")
    assert (await relay.get(made["resource_uri"], admin=False))[0] == 401
