"""The README's target recipes, as written there, against stand-ins of the APIs they call.

Each stand-in checks the request the way the real API documents it (GitHub's
repository_dispatch, GitLab's pipeline trigger, Jenkins' Generic Webhook Trigger, Slack's and
Mattermost's incoming webhooks) and, for the CI systems, then does what the README tells the
pipeline to do: POST the callback to the URL it was given.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web
from support import SEED_TAG_PUSH, StartRelay, seed_push, serve

ROOT = Path(__file__).resolve().parents[2]
GITHUB_TOKEN = "ghp_recipeTestToken0123456789abcdef"
GITLAB_TOKEN = "glptt-recipe-trigger-token-0123456789"
JENKINS_TOKEN = "jenkins-recipe-token-0123456789"


def recipe(name: str) -> dict[str, Any]:
    """The [[chain.target]] of the README's TOML block marked `# recipe: <name>`."""
    blocks = re.findall(r"```toml\n(# recipe: [a-z-]+\n.*?)```", (ROOT / "README.md").read_text(),
                        re.DOTALL)
    for block in blocks:
        if block.startswith(f"# recipe: {name}\n"):
            target: dict[str, Any] = tomllib.loads(block)["chain"]["target"][0]
            return target
    raise AssertionError(f"README.md has no recipe {name!r}")


class Stand:
    """A stand-in API: what it was sent, and the callbacks it posted afterwards."""

    def __init__(self) -> None:
        self.requests: list[tuple[web.Request, bytes]] = []
        self.callbacks: list[int] = []
        self.url = ""
        self._tasks: set[asyncio.Task[None]] = set()

    def call_back(self, url: str, body: dict[str, Any]) -> None:
        async def post() -> None:
            async with aiohttp.ClientSession() as session, session.post(url, json=body) as answer:
                self.callbacks.append(answer.status)

        task = asyncio.create_task(post())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait(self) -> None:
        await asyncio.gather(*self._tasks)


Handler = Callable[[Stand, web.Request, bytes], Awaitable[web.Response]]


@pytest.fixture
async def stand_in() -> AsyncIterator[Callable[[str, Handler], Awaitable[Stand]]]:
    runners: list[web.AppRunner] = []
    stands: list[Stand] = []

    async def start(path: str, handler: Handler) -> Stand:
        stand = Stand()

        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            stand.requests.append((request, body))
            return await handler(stand, request, body)

        runner, stand.url = await serve(handle, path)
        runners.append(runner)
        stands.append(stand)
        return stand

    yield start
    for stand in stands:
        await stand.wait()
    for runner in runners:
        await runner.cleanup()


async def _run(start_relay: StartRelay, target: dict[str, Any], stand: Stand,
               payload: dict[str, Any] | None = None) -> dict[str, Any]:
    target = {**target, "url": target["url"] if target["url"].startswith("${") else
              stand.url, "attempts": 1}
    relay = await start_relay(chains=[{"name": "main", "targets": [target]}])
    delivery_id = await relay.push(payload or SEED_TAG_PUSH)
    return await relay.wait_for(delivery_id)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


# -- GitHub ------------------------------------------------------------------------------


async def github(stand: Stand, request: web.Request, body: bytes) -> web.Response:
    """POST /repos/{owner}/{repo}/dispatches, as docs.github.com documents it."""
    if request.headers.get("Authorization") != f"Bearer {GITHUB_TOKEN}":
        return _error(401, "Bad credentials")
    if request.headers.get("Accept") != "application/vnd.github+json":
        return _error(415, "Unsupported 'Accept' header")
    document = json.loads(body)
    event_type = document.get("event_type")
    client_payload = document.get("client_payload", {})
    if not isinstance(event_type, str) or not 1 <= len(event_type) <= 100:
        return _error(422, "Invalid request. \"event_type\" is not a string of 1 to 100")
    if not isinstance(client_payload, dict) or len(client_payload) > 10:
        return _error(422, "client_payload: no more than 10 top-level properties")
    # The workflow runs; its last step posts the callback (README).
    stand.call_back(client_payload["callback_url"], {
        "state": "success", "context": "GitHub Actions",
        "target_url": "https://github.com/acme/app/actions/runs/1"})
    return web.Response(status=204)


async def test_github_repository_dispatch(start_relay: StartRelay, stand_in: Any,
                                          monkeypatch: pytest.MonkeyPatch,
                                          log_lines: io.StringIO) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", GITHUB_TOKEN)
    target = recipe("github")
    stand = await stand_in(urlsplit(target["url"]).path, github)

    delivery = await _run(start_relay, target, stand)

    assert delivery["state"] == "success", delivery
    (request, body), = stand.requests
    document = json.loads(body)
    assert document["event_type"] == "docker-push"
    assert {k: v for k, v in document["client_payload"].items() if k != "callback_url"} == {
        "repository": "svendowideit/testhook", "tag": "latest", "pusher": "trustedbuilder"}
    assert document["client_payload"]["callback_url"].startswith("http://127.0.0.1:")
    assert request.headers["X-GitHub-Api-Version"] == "2022-11-28"
    assert request.headers["Content-Type"] == "application/json"
    assert delivery["steps"][0]["callback"]["context"] == "GitHub Actions"
    assert stand.callbacks == [200]
    # The token is a secret: nowhere in what relay shows or logs.
    assert GITHUB_TOKEN not in json.dumps(delivery) + log_lines.getvalue()


# -- GitLab ------------------------------------------------------------------------------


async def gitlab(stand: Stand, request: web.Request, body: bytes) -> web.Response:
    """POST /api/v4/projects/:id/trigger/pipeline with a JSON body (docs.gitlab.com)."""
    document = json.loads(body)
    if document.get("token") != GITLAB_TOKEN:
        return _error(404, "404 Not Found")
    if not isinstance(document.get("ref"), str):
        return _error(400, "ref is missing")
    variables = document.get("variables", {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in variables.items()):
        return _error(400, "variables needs to be a map of key-valued strings")
    stand.call_back(variables["RELAY_CALLBACK_URL"], {
        "state": "success", "target_url": "https://gitlab.example.com/acme/app/-/pipelines/7"})
    return web.json_response({"id": 7, "ref": document["ref"], "status": "created",
                              "web_url": "https://gitlab.example.com/acme/app/-/pipelines/7"},
                             status=201)


@pytest.mark.parametrize(("payload", "image"), [
    (SEED_TAG_PUSH, "svendowideit/testhook:latest"),
    (seed_push(tag="v1.2.3"), "svendowideit/testhook:v1.2.3"),
])
async def test_gitlab_pipeline_trigger(start_relay: StartRelay, stand_in: Any,
                                       monkeypatch: pytest.MonkeyPatch, log_lines: io.StringIO,
                                       payload: dict[str, Any], image: str) -> None:
    monkeypatch.setenv("GITLAB_TRIGGER_TOKEN", GITLAB_TOKEN)
    target = recipe("gitlab")
    stand = await stand_in(urlsplit(target["url"]).path, gitlab)

    delivery = await _run(start_relay, target, stand, payload)

    assert delivery["state"] == "success", delivery
    (_, body), = stand.requests
    document = json.loads(body)
    assert document["ref"] == "main"
    assert document["variables"]["IMAGE"] == image
    assert delivery["steps"][0]["callback"]["target_url"].endswith("/pipelines/7")
    assert GITLAB_TOKEN not in json.dumps(delivery) + log_lines.getvalue()


# -- Jenkins -----------------------------------------------------------------------------


async def jenkins(stand: Stand, request: web.Request, body: bytes) -> web.Response:
    """The Generic Webhook Trigger plugin's invoke URL: the token as a `token` header (or
    `Authorization: Bearer`, or `?token=`); the job's variables from JSONPath."""
    token = (request.headers.get("token") or request.query.get("token")
             or request.headers.get("Authorization", "").removeprefix("Bearer "))
    if token != JENKINS_TOKEN:
        return web.json_response({"jobs": None, "message": "Did not find any jobs with "
                                  "GenericTrigger configured!"}, status=404)
    document = json.loads(body)
    variables = {"TAG": document["push_data"]["tag"], "CALLBACK_URL": document["callback_url"]}
    stand.call_back(variables["CALLBACK_URL"], {"state": "success"})
    return web.json_response({"jobs": {"app": {"triggered": True, "resolvedVariables":
                                               variables}}, "message": "Triggered jobs."})


async def test_jenkins_generic_webhook_trigger(start_relay: StartRelay, stand_in: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JENKINS_TRIGGER_TOKEN", JENKINS_TOKEN)
    target = recipe("jenkins")
    stand = await stand_in(urlsplit(target["url"]).path, jenkins)

    delivery = await _run(start_relay, target, stand)

    assert delivery["state"] == "success", delivery
    (request, body), = stand.requests
    assert json.loads(body)["push_data"] == SEED_TAG_PUSH["push_data"]  # the push as it is
    assert request.headers["token"] == JENKINS_TOKEN


# -- Slack and Mattermost ----------------------------------------------------------------


async def chat(stand: Stand, request: web.Request, body: bytes) -> web.Response:
    """An incoming webhook: a JSON object with a non-empty `text` answers 200 "ok"."""
    try:
        document = json.loads(body)
    except ValueError:
        return web.Response(status=400, text="invalid_payload")
    if not isinstance(document, dict) or not document.get("text"):
        return web.Response(status=400, text="no_text")
    return web.Response(text="ok")


@pytest.mark.parametrize("path", ["/services/T000/B000/XXXXXXXX", "/hooks/xyz123abc"])
async def test_a_chat_message(start_relay: StartRelay, stand_in: Any,
                              monkeypatch: pytest.MonkeyPatch, log_lines: io.StringIO,
                              path: str) -> None:
    stand = await stand_in(path, chat)
    monkeypatch.setenv("SLACK_WEBHOOK_URL", stand.url)

    delivery = await _run(start_relay, recipe("chat"), stand)

    assert delivery["state"] == "success", delivery
    (_, body), = stand.requests
    assert json.loads(body) == {
        "text": "Pushed svendowideit/testhook:latest by trustedbuilder"}
    # The webhook URL is the credential: it came from the environment, so it is hidden.
    assert path not in json.dumps(delivery)
    assert path not in log_lines.getvalue()
