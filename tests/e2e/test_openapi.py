"""GET /openapi.json: it describes every route there is, is valid OpenAPI 3.1, and relay's
answers conform to it (schemathesis against a running `relay serve`)."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from openapi_spec_validator import validate
from schemathesis import checks
from support import (
    ADMIN_TOKEN,
    CHAIN_TOKEN,
    RelayProcess,
    StartRelay,
    StartTarget,
    free_socket,
    minimal_config,
    render_config,
)

from relay import config
from relay.http import openapi
from relay.http.app import make_app

CONFIG = minimal_config(server='public_url = "https://relay.example.com"')


def _routes() -> set[tuple[str, str]]:
    app = make_app(config.parse(CONFIG))
    found = set()
    for route in app.router.routes():
        resource = route.resource
        if route.method == "HEAD" or resource is None:
            continue  # aiohttp adds HEAD beside every GET
        found.add((route.method, resource.canonical))
    return found


def test_every_route_is_in_the_document() -> None:
    routes = _routes()

    missing = routes - set(openapi.OPERATIONS)
    assert not missing, f"describe these routes in relay/http/openapi.py OPERATIONS: {missing}"
    stale = set(openapi.OPERATIONS) - routes
    assert not stale, f"these entries of relay/http/openapi.py OPERATIONS are no route: {stale}"


def test_the_document_is_valid_openapi_3_1() -> None:
    document = openapi.document(config.parse(CONFIG))

    validate(document)
    assert document["openapi"] == "3.1.0"
    assert document["servers"] == [{"url": "https://relay.example.com"}]
    assert document["components"]["schemas"]["Push"]["title"] == "Docker Hub push notification"
    assert "$id" not in document["components"]["schemas"]["Callback"]


async def test_the_document_is_served_without_credentials(start_relay: StartRelay,
                                                          start_target: StartTarget) -> None:
    relay = await start_relay(await start_target())

    status, served = await relay.get("/openapi.json", admin=False)

    assert status == 200
    assert served == openapi.document(relay.settings)
    assert ADMIN_TOKEN not in str(served)
    assert CHAIN_TOKEN not in str(served)


# -- schemathesis against a running relay ---------------------------------------------------


def _wait_for_health(url: str, process: RelayProcess, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.process is not None
        if process.process.poll() is not None:
            raise AssertionError(f"relay exited:\n{process.log()}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as answer:  # noqa: S310
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"relay did not serve /healthz within {timeout} s")


@pytest.fixture(scope="module")
def served_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`relay serve` in a subprocess: schemathesis calls it synchronously, which an in-process
    relay on the test's event loop could not answer."""
    folder: Path = tmp_path_factory.mktemp("openapi")
    with free_socket() as sock:
        port = sock.getsockname()[1]
    path = folder / "relay.toml"
    path.write_text(render_config(
        port=port, store_url="sqlite:///data/relay.db",
        chains=[{"name": "main", "targets": [
            {"name": "ci", "url": "http://127.0.0.1:9/hook", "backoff_initial": 3600}]}]))
    relay = RelayProcess(path, port, folder / "relay.log").start()
    try:
        _wait_for_health(relay.url, relay)
        yield relay.url
    finally:
        assert relay.process is not None
        relay.process.terminate()
        relay.process.wait(30)


@pytest.fixture(scope="module")
def api_schema(served_relay: str) -> Any:
    return schemathesis.openapi.from_url(f"{served_relay}/openapi.json")


_HTTP_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_FRAMING = {"content-length", "transfer-encoding"}
CHECKS = [checks.not_a_server_error, checks.status_code_conformance,
          checks.content_type_conformance, checks.response_schema_conformance,
          checks.response_headers_conformance]


# schemathesis' own pytest plugin does not run under pytest 9: hypothesis drives each
# operation's strategy here instead.
@pytest.mark.parametrize(("method", "path"), sorted(openapi.OPERATIONS))
def test_answers_conform_to_the_document(api_schema: Any, method: str, path: str) -> None:
    operation = api_schema[path][method]

    valid_or_not = hypothesis.strategies.one_of(
        operation.as_strategy(generation_mode=schemathesis.GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=schemathesis.GenerationMode.NEGATIVE))

    @hypothesis.given(case=valid_or_not)
    def conforms(case: Any) -> None:
        if case.headers:
            # A header whose name is no HTTP token ("content-length;"), or a message framing
            # header of its own making ("content-length: %"), is refused by aiohttp's parser
            # with its plain-text 400 before relay sees the request, as the README says:
            # that would test aiohttp, not this document.
            case.headers = {k: v for k, v in case.headers.items()
                            if _HTTP_TOKEN.match(k) and k.lower() not in _FRAMING}
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        # Half of the pushes go to the real hook, so that 202s are checked, not only 404s.
        if path.startswith("/hooks/") and hash(repr(case.body)) % 2 == 0:
            case.path_parameters = {**(case.path_parameters or {}), "chain": "main"}
            if "token" in case.path_parameters:
                case.path_parameters["token"] = CHAIN_TOKEN
            else:
                headers = {"Authorization": f"Bearer {CHAIN_TOKEN}"}
        case.call_and_validate(headers=headers, checks=CHECKS)

    conforms()
