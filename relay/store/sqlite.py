"""The embedded store: one SQLite file in WAL mode, written with group commit.

Units are a few indexed statements (tens of µs), so they run on the event loop itself: a
writer thread would cost more in GIL hand-offs than the statements take. What blocks is the
COMMIT's fsync, and that runs in a thread. While one group is syncing, new units queue; they
form the next group, each in its own SAVEPOINT so one failing unit does not undo the others.
A unit's awaiter is answered only after its group's COMMIT returned: "written" means
"durable". Reads run in threads on their own connections (WAL readers never block writes).
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import re
import sqlite3
import threading
from collections.abc import Coroutine, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO, TypeVar

from relay import errors
from relay.store import migrations
from relay.store.base import Appended, Job, Outcome, Row, Unit, WakeUps, gather, resolve

T = TypeVar("T")

_MAX_GROUP = 512
_PLACEHOLDER = re.compile(r"\$(\d+)")
_ROW_LOCK = re.compile(r"\s+FOR (UPDATE|SHARE)( OF \w+(, \w+)*)?( SKIP LOCKED)?",
                       re.IGNORECASE)


@functools.lru_cache(maxsize=512)
def translate(sql: str) -> str:
    """PostgreSQL's `$1` becomes SQLite's `?1`; row locks go (there is one writer)."""
    return _ROW_LOCK.sub("", _PLACEHOLDER.sub(r"?\1", sql))


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    # 8 KiB pages in a new file (an existing one keeps its own; set before WAL, which fixes
    # it): a group commit of 2 KB pushes dirties fewer pages, so it writes fewer WAL frames
    # (intake: -4 µs of CPU a push against 4 KiB; 16 KiB is no better, 64 KiB worse).
    conn.execute("PRAGMA page_size = 8192")
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
    """One unit's view of the group's transaction; its SAVEPOINT opens on its first statement."""

    dialect = "sqlite"
    skip_locked = False  # one writer: no row is ever another transaction's

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.woken = False
        self.savepoint = False
        self.appended: Appended = {}
        self.statements = 0

    def _begin(self) -> None:
        self.statements += 1
        if not self.savepoint:
            self.conn.execute("SAVEPOINT unit")
            self.statements += 1
            self.savepoint = True

    def _run(self, sql: str, args: Sequence[Any]) -> sqlite3.Cursor:
        self._begin()
        return self.conn.execute(translate(sql), args)

    async def execute(self, sql: str, *args: Any) -> int:
        return self._run(sql, args).rowcount

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)
        self._begin()
        self.statements += len(rows) - 1
        self.conn.executemany(translate(sql), rows)

    def append(self, sql: str, row: Sequence[Any]) -> None:
        self.appended.setdefault(translate(sql), []).append(row)

    def defer(self, sql: str, *args: Any) -> None:
        self._run(sql, args)  # in-process: a round trip saved is worth nothing here

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        cursor = self._run(sql, args)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        cursor = self._run(sql, args)
        row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip([column[0] for column in cursor.description], row, strict=True))

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = self._run(sql, args).fetchone()
        return None if row is None else row[0]

    async def lock(self, name: str) -> None:
        """Nothing to do: BEGIN IMMEDIATE already made this the only writer."""

    def wake(self) -> None:
        self.woken = True


class _ReadTx(SqliteTx):
    """A read-only snapshot needs no savepoints."""

    def _begin(self) -> None:
        self.statements += 1


class SqliteStore(WakeUps):
    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._queued: list[Job] = []
        self._committer: asyncio.Task[None] | None = None
        self._last_group = 0
        self._syncer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-sqlite-sync")
        self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="relay-sqlite-read")
        self._local = threading.local()
        super().__init__()
        self._lock_file: TextIO | None = None
        self.statements = 0
        """Statements run on the writer's connection (as PostgresStore counts them)."""

    @classmethod
    async def open(cls, path: Path) -> SqliteStore:
        store = cls(path)
        await store._start()
        return store

    async def _start(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_file = self._take_lock()
            self._conn = await asyncio.to_thread(connect, self.path)
        except (OSError, sqlite3.Error) as exc:
            raise errors.StoreError(f"cannot open SQLite database {self.path}: {exc}") from exc
        await self.write(migrations.migrate, alone=True)

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

    async def write(self, unit: Unit[T], *, alone: bool = False, key: str | None = None) -> T:
        # One writer at a time: no lock is ever waited for, so `alone` and `key` change
        # nothing.
        if self._conn is None:
            raise errors.StoreError("the store is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queued.append(Job(unit, future))
        if self._committer is None:
            self._committer = asyncio.create_task(self._commit_queued())
        return await future

    async def read(self, unit: Unit[T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._read_sync, unit)

    async def ping(self) -> None:
        async def one(tx: Any) -> Any:
            return await tx.fetchval("SELECT 1")

        await self.read(one)

    async def close(self) -> None:
        if self._committer is not None:
            await self._committer
        conn, self._conn = self._conn, None
        self._syncer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        if conn is not None:
            conn.close()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # -- group commit ----------------------------------------------------------------

    async def _commit_queued(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queued:
                if self._last_group > 1:
                    # Under load, two turns of the loop before a group closes: the answers
                    # of the group just committed go out, and requests already read reach
                    # write() and join this group. One fsync and the index pages it writes
                    # are then shared by more units (intake: 20 -> 27 a group).
                    await asyncio.sleep(0)
                    await asyncio.sleep(0)
                group, self._queued = self._queued, []
                self._last_group = len(group)
                await self._commit_group(loop, group)
        finally:
            self._committer = None

    async def _commit_group(self, loop: asyncio.AbstractEventLoop, group: list[Job]) -> None:
        conn = self._conn
        assert conn is not None
        outcomes: list[Outcome] = []
        appended: Appended = {}
        woken = False
        try:
            conn.execute("BEGIN IMMEDIATE")
            statements = 2  # BEGIN, COMMIT
            for job in group:
                tx = SqliteTx(conn)
                try:
                    outcomes.append((job, drive(job.unit(tx)), None))  # type: ignore[arg-type]
                    woken = woken or tx.woken
                    gather(appended, tx.appended)
                except Exception as exc:  # noqa: BLE001 - handed to the unit's awaiter
                    if tx.savepoint:
                        conn.execute("ROLLBACK TO unit")
                        statements += 1
                    outcomes.append((job, None, _wrapped(exc)))
                if tx.savepoint:
                    conn.execute("RELEASE unit")
                    statements += 1
                statements += tx.statements
            for sql, rows in appended.items():
                conn.executemany(sql, rows)
                statements += len(rows)
            self.statements += statements
            await loop.run_in_executor(self._syncer, conn.execute, "COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failure = errors.StoreError(f"writing to the SQLite database failed: {exc}")
            failure.__cause__ = exc
            outcomes = [(job, None, failure) for job in group]
            woken = False
        if woken:
            self.wake_local()
        resolve(outcomes)

    # -- reads -----------------------------------------------------------------------

    def _read_sync(self, unit: Unit[T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        try:
            if conn is None:
                conn = self._local.conn = connect(self.path)
            conn.execute("BEGIN")
            try:
                return drive(unit(_ReadTx(conn)))  # type: ignore[arg-type]
            finally:
                conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise errors.StoreError(f"reading the SQLite database failed: {exc}") from exc


def _wrapped(exc: Exception) -> BaseException:
    if isinstance(exc, sqlite3.Error):
        wrapped = errors.StoreError(f"the SQLite database refused a write: {exc}")
        wrapped.__cause__ = exc
        return wrapped
    return exc
