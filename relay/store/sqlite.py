"""The embedded store: one SQLite file in WAL mode, written by one thread with group commit.

sqlite3 blocks, so no SQLite call runs on the event loop. Writes go to a single writer
thread that takes every unit queued while the previous commit was syncing and commits them
together (each in its own SAVEPOINT, so one failing unit does not undo the others). A unit's
awaiter is answered only after that COMMIT returned, so "written" always means "durable".
Reads run on their own connections (WAL readers do not block the writer).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import queue
import re
import sqlite3
import threading
from collections.abc import Coroutine, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO, TypeVar

from relay import errors
from relay.store import migrations
from relay.store.base import Row, Unit

T = TypeVar("T")

_MAX_GROUP = 512
_PLACEHOLDER = re.compile(r"\$(\d+)")
_ROW_LOCK = re.compile(r"\s+FOR UPDATE( SKIP LOCKED)?", re.IGNORECASE)


@functools.lru_cache(maxsize=512)
def translate(sql: str) -> str:
    """PostgreSQL's `$1` becomes SQLite's `?1`; row locks go (there is one writer)."""
    return _ROW_LOCK.sub("", _PLACEHOLDER.sub(r"?\1", sql))


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    # WAL: readers never block the writer and a commit is one append to the log.
    conn.execute("PRAGMA journal_mode = WAL")
    # FULL: fsync the log at every commit, so a 202 survives a power cut, not only a crash.
    # Group commit pays one fsync for every unit in the group.
    conn.execute("PRAGMA synchronous = FULL")
    # Another process (a backup, `relay history`, a second relay) may hold the lock briefly.
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def drive(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a unit to completion on this thread: SqliteTx never really suspends."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("a store unit awaited something other than its transaction")


class SqliteTx:
    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.woken = False

    async def execute(self, sql: str, *args: Any) -> int:
        return self.conn.execute(translate(sql), args).rowcount

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.conn.executemany(translate(sql), rows)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        cursor = self.conn.execute(translate(sql), args)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        cursor = self.conn.execute(translate(sql), args)
        row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip([column[0] for column in cursor.description], row, strict=True))

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = self.conn.execute(translate(sql), args).fetchone()
        return None if row is None else row[0]

    async def lock(self, name: str) -> None:
        """Nothing to do: BEGIN IMMEDIATE already made this the only writer."""

    def wake(self) -> None:
        self.woken = True


class _Job:
    __slots__ = ("error", "future", "result", "unit", "woken")

    def __init__(self, unit: Unit[Any], future: asyncio.Future[Any]) -> None:
        self.unit = unit
        self.future = future
        self.result: Any = None
        self.error: BaseException | None = None
        self.woken = False


class SqliteStore:
    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="relay-sqlite-read")
        self._local = threading.local()
        self._work = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock_file: TextIO | None = None

    @classmethod
    async def open(cls, path: Path) -> SqliteStore:
        store = cls(path)
        await store._start()
        return store

    async def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_file = self._take_lock()
            conn = await asyncio.to_thread(connect, self.path)
        except (OSError, sqlite3.Error) as exc:
            raise errors.StoreError(f"cannot open SQLite database {self.path}: {exc}") from exc
        self._writer = threading.Thread(target=self._write_loop, args=(conn,),
                                        name="relay-sqlite-writer", daemon=True)
        self._writer.start()
        await self.write(migrations.migrate)

    def _take_lock(self) -> TextIO:
        """One relay process per SQLite file: a second one would take over live leases."""
        lock_file = open(f"{self.path}.lock", "w")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.close()
            raise errors.StoreError(
                f"another relay process is using {self.path}; one SQLite file serves one "
                "process (use PostgreSQL to run several)") from None
        return lock_file

    async def write(self, unit: Unit[T]) -> T:
        assert self._loop is not None, "store is not open"
        future: asyncio.Future[T] = self._loop.create_future()
        self._jobs.put(_Job(unit, future))
        return await future

    async def read(self, unit: Unit[T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._read_sync, unit)

    async def wait_for_work(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._work.wait(), timeout)
        self._work.clear()

    def wake_local(self) -> None:
        self._work.set()

    async def ping(self) -> None:
        async def one(tx: Any) -> Any:
            return await tx.fetchval("SELECT 1")

        await self.read(one)

    async def close(self) -> None:
        if self._writer is not None:
            self._jobs.put(None)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        self._readers.shutdown(wait=True)
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # -- threads ---------------------------------------------------------------------

    def _read_sync(self, unit: Unit[T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        try:
            if conn is None:
                conn = self._local.conn = connect(self.path)
            conn.execute("BEGIN")
            try:
                return drive(unit(SqliteTx(conn)))  # type: ignore[arg-type]
            finally:
                conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise errors.StoreError(f"reading the SQLite database failed: {exc}") from exc

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        try:
            while True:
                first = self._jobs.get()
                if first is None:
                    return
                group = [first]
                stop = False
                while len(group) < _MAX_GROUP:
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stop = True
                        break
                    group.append(job)
                self._commit_group(conn, group)
                if stop:
                    return
        finally:
            conn.close()

    def _commit_group(self, conn: sqlite3.Connection, group: list[_Job]) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in group:
                conn.execute("SAVEPOINT unit")
                tx = SqliteTx(conn)
                try:
                    job.result = drive(job.unit(tx))  # type: ignore[arg-type]
                    job.woken = tx.woken
                except Exception as exc:  # noqa: BLE001 - handed to the unit's awaiter
                    conn.execute("ROLLBACK TO unit")
                    job.error = exc
                conn.execute("RELEASE unit")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failure = errors.StoreError(f"writing to the SQLite database failed: {exc}")
            failure.__cause__ = exc
            for job in group:
                job.error, job.result = failure, None
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._settle, group)

    def _settle(self, group: list[_Job]) -> None:
        for job in group:
            if job.woken and job.error is None:
                self._work.set()
            if job.future.done():
                continue
            if job.error is not None:
                job.future.set_exception(job.error)
            else:
                job.future.set_result(job.result)
