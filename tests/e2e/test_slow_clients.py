"""Slow clients cannot hold connections: head and body each have a deadline."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from support import (
    CHAIN_TOKEN,
    SEED_TAG_PUSH,
    Relay,
    RelayProcess,
    StartRelay,
    StartTarget,
    free_socket,
    render_config,
    wait_until,
)

HEAD = f"POST /hooks/main/{CHAIN_TOKEN} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()


class Dribbler:
    """A client that opens a connection and sends one byte every `pause` seconds, for ever."""

    def __init__(self, url: str, start: bytes, drip: bytes, pause: float = 0.2) -> None:
        self.url = url
        self.start = start
        self.drip = drip
        self.pause = pause
        self.sent = 0

    async def run(self, limit: float = 30.0) -> tuple[float, bytes]:
        """Seconds until the server closed the connection, and what it answered."""
        host, port = self.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        opened = time.monotonic()
        writer.write(self.start)
        dripping = asyncio.create_task(self._drip(writer))
        try:
            async with asyncio.timeout(limit):
                answer = await reader.read()
            return time.monotonic() - opened, answer
        finally:
            dripping.cancel()
            writer.close()

    async def _drip(self, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await asyncio.sleep(self.pause)
                writer.write(self.drip)
                await writer.drain()
                self.sent += 1
        except OSError:
            return  # the server closed the connection


async def _relay(start_relay: StartRelay, start_target: StartTarget, **server: float) -> Relay:
    return await start_relay(await start_target(), server=server)


async def test_a_head_dribbled_byte_by_byte_is_cut_off(start_relay: StartRelay,
                                                       start_target: StartTarget) -> None:
    relay = await _relay(start_relay, start_target, header_timeout=1)
    slow = Dribbler(relay.url, HEAD + b"X-Slow: ", b"a")

    held, answer = await slow.run()

    assert 0.8 <= held < 6, held
    assert slow.sent >= 3  # it kept sending, and was closed all the same
    assert answer == b""


async def test_a_connection_that_sends_nothing_is_closed(start_relay: StartRelay,
                                                         start_target: StartTarget) -> None:
    relay = await _relay(start_relay, start_target, header_timeout=1)

    held, answer = await Dribbler(relay.url, b"", b"", pause=60).run()

    assert 0.8 <= held < 6, held
    assert answer == b""


async def test_a_body_dribbled_byte_by_byte_is_408(start_relay: StartRelay,
                                                   start_target: StartTarget) -> None:
    relay = await _relay(start_relay, start_target, read_timeout=1)
    slow = Dribbler(relay.url, HEAD + b"Content-Length: 2000\r\n\r\n{", b" ", pause=0.1)

    held, answer = await slow.run()

    assert 0.8 <= held < 6, held
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert answer.endswith(b'{"error":"the body did not arrive within 1 s","details":[]}')
    assert (await relay.get("/history"))[1]["items"] == []


async def test_slow_clients_do_not_keep_others_out(start_relay: StartRelay,
                                                   start_target: StartTarget) -> None:
    relay = await _relay(start_relay, start_target, header_timeout=1.5, read_timeout=1.5)
    slow = [Dribbler(relay.url, HEAD + b"X-Slow: ", b"a") for _ in range(20)]
    slow += [Dribbler(relay.url, HEAD + b"Content-Length: 900\r\n\r\n", b"{")
             for _ in range(20)]
    held = asyncio.gather(*(client.run() for client in slow))

    async def all_dripping() -> bool:
        return all(client.sent for client in slow)

    await wait_until(all_dripping, what="every slow client connected and dripping")
    started = time.monotonic()
    delivery_id = await relay.push()

    assert time.monotonic() - started < 1.0
    assert (await relay.delivery(delivery_id))["payload"] == SEED_TAG_PUSH
    assert all(seconds < 8 for seconds, _ in await held)


async def test_relay_serve_applies_the_head_deadline(tmp_path: Path) -> None:
    with free_socket() as sock:
        port = sock.getsockname()[1]
    path = tmp_path / "relay.toml"
    path.write_text(render_config(port=port, store_url="sqlite:///data/relay.db",
                                  server={"header_timeout": 1},
                                  chains=[{"name": "main", "targets": [
                                      {"name": "t", "url": "http://127.0.0.1:9/hook"}]}]))
    relay = await RelayProcess(path, port, tmp_path / "relay.log").start().ready()
    try:
        held, answer = await Dribbler(relay.url, HEAD + b"X-Slow: ", b"a").run()
    finally:
        assert await relay.terminate() == 0

    assert 0.8 <= held < 6, held
    assert answer == b""
