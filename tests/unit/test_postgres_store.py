"""PostgreSQL's store when the server ends a session: what a pooled connection is told while
it sits idle (`FATAL: terminating connection due to administrator command`, as on a restart
of the server) must cost no unit its commit, and no writer an error other than StoreError."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from support import wait_until

from relay.store import Tx
from relay.store.postgres import PostgresStore, split_schema

pytestmark = pytest.mark.parametrize("store_url", ["postgres"], indirect=True)


@dataclass
class LateEof:
    """A TCP proxy in front of PostgreSQL that passes every byte at once but, while `eof` is
    clear, holds back the end of a connection the server closed: the client reads the
    server's last message (the FATAL) well before it sees the connection end, as it may under
    load, where the event loop reads the two in different turns."""

    url: str = ""
    eof: asyncio.Event = field(default_factory=asyncio.Event)
    client_ports: list[int] = field(default_factory=list)
    ended_by_server: int = 0
    """Connections the server closed (all their bytes passed on to the client)."""


def _unread(port: int) -> int:
    """Bytes waiting in the receive queue of this process's loopback socket on `port`, from
    /proc/net/tcp: 0 once the client has read everything sent to it."""
    local = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if fields[1] == local:
                return int(fields[4].split(":")[1], 16)
    return 0


@contextlib.asynccontextmanager
async def late_eof(url: str) -> AsyncIterator[LateEof]:
    parts = urlsplit(url)
    proxy = LateEof()
    proxy.eof.set()
    tasks: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   from_server: bool) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        if from_server:
            proxy.ended_by_server += 1
            await proxy.eof.wait()
        writer.close()

    async def serve(client_reader: asyncio.StreamReader,
                    client_writer: asyncio.StreamWriter) -> None:
        proxy.client_ports.append(client_writer.get_extra_info("peername")[1])
        server_reader, server_writer = await asyncio.open_connection(parts.hostname,
                                                                     parts.port)
        await asyncio.gather(pipe(client_reader, server_writer, False),
                             pipe(server_reader, client_writer, True))

    def start(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(serve(reader, writer))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(start, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    netloc = parts.netloc.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{port}")
    proxy.url = urlunsplit(parts._replace(netloc=netloc))
    try:
        yield proxy
    finally:
        proxy.eof.set()
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _backend(tx: Tx) -> int:
    return int(await tx.fetchval("SELECT pg_backend_pid()"))


async def _terminate_pooled_connection(store: PostgresStore, proxy: LateEof,
                                       store_url: str) -> None:
    """End the session of the store's one pooled connection from the server's side, and
    wait until relay's process has read the server's FATAL (but not yet the end)."""
    pid = await store.read(_backend)
    proxy.eof.clear()
    ended = proxy.ended_by_server
    admin = await asyncpg.connect(split_schema(store_url)[0])
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1, 10000)", pid)
    finally:
        await admin.close()

    async def read_by_relay() -> bool:
        return (proxy.ended_by_server > ended
                and all(_unread(port) == 0 for port in proxy.client_ports))

    await wait_until(read_by_relay, what="relay to read the server's FATAL")


@pytest.fixture
async def store_behind_proxy(store_url: str) -> AsyncIterator[tuple[PostgresStore, LateEof]]:
    async with late_eof(store_url) as proxy:
        store = await PostgresStore.open(proxy.url, pool_size=1)
        try:
            yield store, proxy
        finally:
            proxy.eof.set()
            await store.close()


async def _create(tx: Tx) -> None:
    await tx.execute("CREATE TABLE IF NOT EXISTS outage_probe (n int)")


def _insert(n: int) -> Callable[[Tx], Awaitable[int]]:
    async def insert(tx: Tx) -> int:
        return await tx.execute("INSERT INTO outage_probe VALUES ($1)", n)
    return insert


async def _rows(tx: Tx) -> list[int]:
    return [row["n"] for row in await tx.fetch("SELECT n FROM outage_probe ORDER BY n")]


@pytest.mark.parametrize("alone", [False, True])
async def test_a_write_on_a_connection_the_server_ended_commits_on_a_new_one(
        store_behind_proxy: tuple[PostgresStore, LateEof], store_url: str,
        alone: bool) -> None:
    store, proxy = store_behind_proxy
    await store.write(_create, alone=True)
    await _terminate_pooled_connection(store, proxy, store_url)

    # The connection looks open to asyncpg but refuses every statement (InternalClientError
    # "cannot switch to state 15; another operation (2) is in progress"); nothing of the
    # unit reached the server, so it runs again on a new connection, once.
    async with asyncio.timeout(10):
        assert await store.write(_insert(1), alone=alone) == 1
    proxy.eof.set()
    assert await store.read(_rows) == [1]


async def test_a_read_on_a_connection_the_server_ended_runs_on_a_new_one(
        store_behind_proxy: tuple[PostgresStore, LateEof], store_url: str) -> None:
    store, proxy = store_behind_proxy
    first = await store.read(_backend)
    await _terminate_pooled_connection(store, proxy, store_url)

    async with asyncio.timeout(10):
        assert await store.read(_backend) != first
