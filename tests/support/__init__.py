"""Test helpers: real relays (in-process or as a subprocess) and real targets on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiohttp import web

from relay import config
from relay.cli import seed
from relay.http.app import make_app, server_options

T = TypeVar("T")

POSTGRES_URL = os.environ.get("RELAY_TEST_POSTGRES",
                              "postgresql://postgres@127.0.0.1:5432/test")
"""The PostgreSQL that tests/conftest.py's store_url fixture makes a schema in per test."""

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
CHAIN_TOKEN = "chain-token-for-tests-abcdef0123"
SIGNING_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

# The two payload shapes of the seeds: the tag shape (docker-hub-webhooks.zh.txt) and the
# automated-build shape with images and a float pushed_at (...automated-build.ja.txt).
SEED_TAG_PUSH: dict[str, Any] = seed.seed_push()
SEED_IMAGES_PUSH: dict[str, Any] = {
    **seed.seed_push(),
    "push_data": {
        "images": ["27d47432a69bca5f2700e4dff7de0388ed65f9d3fb1ec645e2bc24c223dc1cc3",
                   "51a9c7c1f8bb2fa19bcd09789a34e63f35abb80044bc10196e304f6634cc582c"],
        "pushed_at": 1.417566161e09,
        "pusher": "trustedbuilder",
    },
}
SEED_IMAGES_PUSH["repository"]["date_created"] = 1.417494799e09


def nested_push(levels: int) -> bytes:
    """The seed push with one more key, whose value nests so that the whole body is
    `levels` deep (the push object itself is level 1)."""
    extra = levels - 1
    return (json.dumps(SEED_TAG_PUSH)[:-1]
            + f', "deep": {"[" * extra + "]" * extra}}}').encode()


def seed_push(**push_data: Any) -> dict[str, Any]:
    payload = copy.deepcopy(SEED_TAG_PUSH)
    payload["push_data"].update(push_data)
    return payload


async def wait_until(check: Callable[[], Awaitable[T | None]], *, timeout: float = 10.0,
                     what: str = "the condition") -> T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


# -- configuration ---------------------------------------------------------------------


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table, such as a target's headers
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}"
                                for k, v in value.items()) + " }"
    raise TypeError(value)


def render_config(*, port: int, store_url: str, chains: list[dict[str, Any]],
                  server: dict[str, Any] | None = None, delivery: dict[str, Any] | None = None,
                  upstream: dict[str, Any] | None = None,
                  outbound: dict[str, Any] | None = None,
                  history: dict[str, Any] | None = None) -> str:
    """A relay.toml; each chain dict has its keys plus `targets`, a list of target dicts."""
    lines = ["[server]", 'host = "127.0.0.1"', f"port = {port}",
             f'public_url = "http://127.0.0.1:{port}"', f'admin_token = "{ADMIN_TOKEN}"']
    lines += [f"{k} = {toml_value(v)}" for k, v in (server or {}).items()]
    lines += ["[store]", f"url = {toml_value(store_url)}", "[delivery]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in (delivery or {}).items()]
    # The seed payloads' callback_url is Docker Hub's: a test reports upstream only to the
    # hosts it allows itself (on loopback), never to the default Docker Hub hosts.
    upstream = {"allowed_hosts": []} if upstream is None else upstream
    lines += ["[upstream]"] + [f"{k} = {toml_value(v)}" for k, v in upstream.items()]
    if outbound is not None:
        lines += ["[outbound]"] + [f"{k} = {toml_value(v)}" for k, v in outbound.items()]
    if history is not None:
        lines += ["[history]"] + [f"{k} = {toml_value(v)}" for k, v in history.items()]
    for chain in chains:
        chain = {"token": CHAIN_TOKEN, **chain}
        targets = chain.pop("targets")
        lines.append("[[chain]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in chain.items()]
        for target in targets:
            lines.append("[[chain.target]]")
            lines += [f"{k} = {toml_value(v)}" for k, v in target.items()]
    return "\n".join(lines) + "\n"


def raw_request(method: str, path: str, *, headers: dict[str, str] | None = None,
                body: bytes = b"") -> bytes:
    """An HTTP/1.1 request as bytes on the wire, asking the server to close afterwards."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close",
             f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def exchange(url: str, request: bytes, *, timeout: float = 10.0) -> bytes:
    """Send `request` as it is to the server at `url` and read its answer until it closes."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(timeout):
            return await reader.read()
    finally:
        writer.close()


def minimal_config(*, server: str = "", chain: str = "") -> str:
    """The smallest valid relay.toml (one chain, one target), with extra lines for the
    `[server]` and `[[chain]]` tables: for tests of the configuration itself."""
    return f"""
[server]
admin_token = "admin-token-0123456789"
{server}
[[chain]]
name = "main"
token = "chain-token-0123456789"
{chain}
  [[chain.target]]
  name = "ci"
  url = "http://127.0.0.1:9001/hook"
"""


async def serve(handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                path: str, *, sock: socket.socket | None = None,
                ssl_context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, str]:
    """An aiohttp server on loopback answering POSTs to `path`; its runner and URL."""
    app = web.Application()
    app.router.add_route("*", path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = sock or free_socket()
    await web.SockSite(runner, sock, ssl_context=ssl_context).start()
    scheme = "https" if ssl_context is not None else "http"
    return runner, f"{scheme}://127.0.0.1:{sock.getsockname()[1]}{path}"


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


# -- targets -----------------------------------------------------------------------------


@dataclass
class Reply:
    """How a fake target answers one POST, and what it then posts to its callback_url."""

    status: int = 200
    callback: str | None = "success"
    description: str | None = None
    early: bool = False
    """Post the callback before answering relay's POST."""
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float
    method: str = "POST"

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Target:
    """A CI stand-in on 127.0.0.1: records every POST and answers from a script."""

    def __init__(self, *script: Reply, default: Reply | None = None) -> None:
        self.script = list(script)
        self.default = default or Reply()
        self.requests: list[Received] = []
        self.callback_answers: list[int] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self, path: str = "/hook", sock: socket.socket | None = None,
                    ssl_context: ssl.SSLContext | None = None) -> Target:
        """Serve on `sock` (a free port by default); HTTPS with `ssl_context`."""
        self._runner, self.url = await serve(self._handle, path, sock=sock,
                                             ssl_context=ssl_context)
        self._session = aiohttp.ClientSession()
        return self

    async def stop(self) -> None:
        for task in list(self._tasks):
            await task
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(Received(dict(request.headers), body, time.time(),
                                      request.method))
        reply = self.script.pop(0) if self.script else self.default
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.callback is not None and 200 <= reply.status < 300:
            callback_url = json.loads(body)["callback_url"]
            if reply.early:
                await self._call_back(callback_url, reply)
            else:
                task = asyncio.create_task(self._call_back(callback_url, reply))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return web.json_response({"ok": reply.status < 300}, status=reply.status,
                                 headers=reply.headers)

    async def _call_back(self, url: str, reply: Reply) -> None:
        assert self._session is not None
        body: dict[str, Any] = {"state": reply.callback, "context": "fake CI"}
        if reply.description is not None:
            body["description"] = reply.description
        async with self._session.post(url, json=body) as response:
            self.callback_answers.append(response.status)


# -- relay -------------------------------------------------------------------------------


class Relay:
    """A relay serving on loopback inside the test's event loop."""

    def __init__(self, source: config.Settings | config.Live, sock: socket.socket) -> None:
        self.live = source if isinstance(source, config.Live) else config.Live(source)
        self.sock = sock
        self.url = self.settings.server.public_url
        self.runner: web.AppRunner | None = None
        self.http = aiohttp.ClientSession()
        self.admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    @property
    def settings(self) -> config.Settings:
        return self.live.current

    @property
    def config_path(self) -> Path:
        """The relay.toml it serves (and reloads) from."""
        assert self.live.path is not None
        return self.live.path

    async def start(self) -> Relay:
        self.runner = web.AppRunner(make_app(self.live), access_log=None,
                                    **server_options(self.settings))
        try:
            await self.runner.setup()
            await web.SockSite(self.runner, self.sock).start()
        except BaseException:
            await self.stop()  # a relay that cannot start leaks no client session
            raise
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        await self.http.close()

    def hook_url(self, chain: str = "main", token: str = CHAIN_TOKEN) -> str:
        return f"{self.url}/hooks/{chain}/{token}"

    async def post(self, path: str, body: Any = None, *, data: bytes | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        payload = data if data is not None else json.dumps(body).encode()
        async with self.http.post(self.url + path, data=payload, headers=headers) as response:
            return response.status, await _body(response)

    async def get(self, path: str, *, admin: bool = True) -> tuple[int, Any]:
        async with self.http.get(self.url + path,
                                 headers=self.admin if admin else None) as response:
            return response.status, await _body(response)

    async def delete(self, path: str, *, admin: bool = True) -> tuple[int, Any]:
        async with self.http.delete(self.url + path,
                                    headers=self.admin if admin else None) as response:
            return response.status, await _body(response)

    async def push(self, payload: dict[str, Any] | None = None, chain: str = "main") -> str:
        status, body = await self.post(f"/hooks/{chain}/{CHAIN_TOKEN}",
                                       payload if payload is not None else SEED_TAG_PUSH)
        assert status == 202, (status, body)
        return str(body["id"])

    async def delivery(self, delivery_id: str) -> dict[str, Any]:
        status, body = await self.get(f"/history/{delivery_id}")
        assert status == 200, (status, body)
        return dict(body)

    async def wait_for(self, delivery_id: str, *states: str,
                       timeout: float = 10.0) -> dict[str, Any]:
        wanted = states or ("success", "failure", "error")

        async def finished() -> dict[str, Any] | None:
            found = await self.delivery(delivery_id)
            return found if found["state"] in wanted else None

        return await wait_until(finished, timeout=timeout,
                                what=f"delivery {delivery_id} to be {'/'.join(wanted)}")

    async def wait_for_attempts(self, delivery_id: str, index: int, count: int,
                                timeout: float = 10.0) -> dict[str, Any]:
        """Until step `index` has `count` attempts recorded: a callback can settle a step
        (and end the delivery) before relay has recorded the answer to its own POST."""
        async def recorded() -> dict[str, Any] | None:
            found = await self.delivery(delivery_id)
            return found if len(found["steps"][index]["attempts"]) >= count else None

        return await wait_until(recorded, timeout=timeout,
                                what=f"{count} attempts of step {index} of {delivery_id}")

    async def wait_for_step(self, delivery_id: str, index: int, state: str,
                            timeout: float = 10.0) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            found = await self.delivery(delivery_id)
            return found if found["steps"][index]["state"] == state else None

        return await wait_until(reached, timeout=timeout,
                                what=f"step {index} of {delivery_id} to be {state}")


async def _body(response: aiohttp.ClientResponse) -> Any:
    text = await response.text()
    try:
        return json.loads(text)
    except ValueError:
        return text


class RelayProcess:
    """`python -m relay serve` in a subprocess, for crashes, signals and the CLI."""

    def __init__(self, config_path: Path, port: int, log_path: Path) -> None:
        self.config_path = config_path
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def in_folder(cls, folder: Path) -> RelayProcess:
        """One of several processes: its relay.toml (to be written) and log in `folder`, on
        a free port."""
        folder.mkdir(parents=True, exist_ok=True)
        with free_socket() as sock:
            port = sock.getsockname()[1]
        return cls(folder / "relay.toml", port, folder / "relay.log")

    def start(self) -> RelayProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(
            [sys.executable, "-m", "relay", "serve", "--config", str(self.config_path)],
            stdout=log, stderr=log, cwd=self.config_path.parent,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()
        return self

    async def ready(self, timeout: float = 15.0) -> RelayProcess:
        async def healthy() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"relay exited with {self.process.returncode}:\n"
                                     + self.log_path.read_text())
            try:
                async with aiohttp.ClientSession() as session, session.get(
                        f"{self.url}/healthz") as response:
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        await wait_until(healthy, timeout=timeout, what="relay to serve /healthz")
        return self

    async def kill(self) -> None:
        await self.signal(signal.SIGKILL)

    async def terminate(self) -> int:
        return await self.signal(signal.SIGTERM)

    async def signal(self, signum: int, timeout: float = 30.0) -> int:
        """Send `signum` and wait for the exit without blocking this test's targets."""
        assert self.process is not None
        self.process.send_signal(signum)
        return await asyncio.to_thread(self.process.wait, timeout)

    def log(self) -> str:
        return self.log_path.read_text()


@dataclass
class Proxy:
    url: str
    cut: asyncio.Event
    """While set, every connection is dropped, as a database host that went away would."""
    dropped: int = 0
    """Connections dropped so far."""


@contextlib.asynccontextmanager
async def tcp_proxy(url: str) -> AsyncIterator[Proxy]:
    """A loopback TCP proxy in front of `url`'s server."""
    parts = urlsplit(url)
    cut = asyncio.Event()
    open_writers: set[asyncio.StreamWriter] = set()
    proxy = Proxy("", cut)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if cut.is_set():
                    break
                writer.write(data)
                await writer.drain()
        writer.close()

    async def serve(client_reader: asyncio.StreamReader,
                    client_writer: asyncio.StreamWriter) -> None:
        if cut.is_set():
            client_writer.close()
            return
        server_reader, server_writer = await asyncio.open_connection(parts.hostname,
                                                                     parts.port)
        open_writers.update((client_writer, server_writer))
        await asyncio.gather(pipe(client_reader, server_writer),
                             pipe(server_reader, client_writer))
        open_writers.difference_update((client_writer, server_writer))

    async def cutter() -> None:
        while True:
            await cut.wait()
            for writer in list(open_writers):
                writer.close()
                proxy.dropped += 1
            while cut.is_set():
                await asyncio.sleep(0.05)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    netloc = parts.netloc.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{port}")
    task = asyncio.create_task(cutter())
    try:
        proxy.url = urlunsplit(parts._replace(netloc=netloc))
        yield proxy
    finally:
        task.cancel()
        server.close()
        for writer in list(open_writers):
            writer.close()


StartTarget = Callable[..., Awaitable[Target]]
"""The start_target fixture (tests/conftest.py): a Target on loopback, stopped after the test."""
StartRelay = Callable[..., Awaitable[Relay]]
"""The start_relay fixture: a Relay on this test's store, stopped after the test."""
