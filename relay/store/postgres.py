"""The shared store: PostgreSQL through asyncpg, for several relay processes on one database.

Processes coordinate only through the database: row claims with FOR UPDATE SKIP LOCKED and a
lease (see deliveries.claim), advisory locks for per-chain admission, and LISTEN/NOTIFY so an
idle process wakes as soon as another one commits work for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from relay import errors
from relay.store import migrations
from relay.store.base import Row, Unit

T = TypeVar("T")

CHANNEL = "relay_work"
_RETRIES = 5
_RETRYABLE = (asyncpg.exceptions.DeadlockDetectedError,
              asyncpg.exceptions.SerializationError)
_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


class PostgresTx:
    dialect = "postgres"

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.woken = False
        self.appended: dict[str, list[Sequence[Any]]] = {}

    async def execute(self, sql: str, *args: Any) -> int:
        status: str = await self.conn.execute(sql, *args)
        count = status.rsplit(" ", 1)[-1]
        return int(count) if count.isdigit() else 0

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self.conn.executemany(sql, rows)

    def append(self, sql: str, row: Sequence[Any]) -> None:
        self.appended.setdefault(sql, []).append(row)

    async def flush(self) -> None:
        for sql, rows in self.appended.items():
            await self.conn.executemany(sql, rows)
        self.appended.clear()

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return [dict(record) for record in await self.conn.fetch(sql, *args)]

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        record = await self.conn.fetchrow(sql, *args)
        return None if record is None else dict(record)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self.conn.fetchval(sql, *args)

    async def lock(self, name: str) -> None:
        await self.conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key(name))

    def wake(self) -> None:
        self.woken = True


def lock_key(name: str) -> int:
    """A stable 64-bit advisory lock key for a name (hashing is stable across processes)."""
    return zlib.crc32(b"relay:" + name.encode()) | (0x7E1A << 32)


def split_schema(url: str) -> tuple[str, str | None]:
    """relay's own `?schema=NAME` option, taken out of the DSN asyncpg gets."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((value for key, value in query if key == "schema"), None)
    rest = urlencode([(key, value) for key, value in query if key != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema


class PostgresStore:
    dialect = "postgres"

    def __init__(self, pool: asyncpg.Pool, listener: asyncpg.Connection | None) -> None:
        self.pool = pool
        self.listener = listener
        self._work = asyncio.Event()

    @classmethod
    async def open(cls, url: str, pool_size: int = 10) -> PostgresStore:
        dsn, schema = split_schema(url)
        settings = {"search_path": schema} if schema else {}
        try:
            if schema:
                conn = await asyncpg.connect(dsn)
                try:
                    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                finally:
                    await conn.close()
            pool = await asyncpg.create_pool(dsn, min_size=1, max_size=pool_size,
                                             server_settings=settings)
            listener = await asyncpg.connect(dsn, server_settings=settings)
        except _DRIVER_ERRORS as exc:
            raise errors.StoreError(f"cannot connect to PostgreSQL: {exc}") from exc
        store = cls(pool, listener)
        await listener.add_listener(CHANNEL, store._notified)
        await store.write(migrations.migrate)
        return store

    def _notified(self, *_: object) -> None:
        self._work.set()

    async def write(self, unit: Unit[T]) -> T:
        for attempt in range(_RETRIES):
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    tx = PostgresTx(conn)
                    result = await unit(tx)
                    await tx.flush()
                    if tx.woken:
                        await conn.execute(f"NOTIFY {CHANNEL}")
                if tx.woken:
                    self._work.set()
                return result
            except _RETRYABLE as exc:
                if attempt == _RETRIES - 1:
                    raise errors.StoreError(f"PostgreSQL kept aborting: {exc}") from exc
            except _DRIVER_ERRORS as exc:
                raise errors.StoreError(f"writing to PostgreSQL failed: {exc}") from exc
        raise AssertionError("unreachable")

    async def read(self, unit: Unit[T]) -> T:
        try:
            async with self.pool.acquire() as conn, conn.transaction(
                    isolation="repeatable_read", readonly=True):
                return await unit(PostgresTx(conn))
        except _DRIVER_ERRORS as exc:
            raise errors.StoreError(f"reading from PostgreSQL failed: {exc}") from exc

    async def wait_for_work(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._work.wait(), timeout)
        self._work.clear()

    def wake_local(self) -> None:
        self._work.set()

    async def ping(self) -> None:
        try:
            async with self.pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
        except _DRIVER_ERRORS as exc:
            raise errors.StoreError(f"PostgreSQL does not answer: {exc}") from exc

    async def close(self) -> None:
        if self.listener is not None:
            await self.listener.close()
        await self.pool.close()
