"""The shared store: PostgreSQL through asyncpg, for several relay processes on one database.

Processes coordinate only through the database: row claims with FOR UPDATE SKIP LOCKED and a
lease (see sends.claim), advisory locks for per-chain admission, and LISTEN/NOTIFY so that a
process with no room for the work it commits wakes the others (Store.wake_others_when).

What a chain costs here is mostly round trips (each costs the client tens of µs of CPU), so
units carry their writes into their next statement (Tx.defer, as WITH clauses) and the rows
they append go in one INSERT from arrays per group.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import secrets
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from relay import errors, logs
from relay.store import migrations
from relay.store.base import Appended, Job, Outcome, Row, Unit, WakeUps, gather, resolve

T = TypeVar("T")

CHANNEL = "relay_work"
_RETRIES = 5
_BUSY_TRIES = 3
"""Groups a unit may find its delivery locked in before it runs alone (and waits)."""
_RETRYABLE = (asyncpg.exceptions.DeadlockDetectedError,
              asyncpg.exceptions.SerializationError)
_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError,
                  asyncpg.exceptions.InternalClientError, OSError)
"""Everything the driver raises, turned into StoreError at the store's edge (which the HTTP
layer answers with 503 and Retry-After): the server's errors, asyncpg's own (its
InternalClientError is a plain Exception, under neither of the other two), and the
network's (OSError covers ConnectionError and TimeoutError, which asyncio.TimeoutError is)."""
_LOST = (asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError, OSError)
"""The connection was gone, or asyncpg gave up on it. As long as COMMIT was not sent, the
server rolled the transaction back, and it may run again on a new connection, once.

The case that makes this matter: PostgreSQL ends every session with `FATAL: terminating
connection due to administrator command` when it stops (or when one session is terminated).
A connection that reads it while idle (in the pool, or between two statements) has no
operation to give it to, so asyncpg puts its protocol in the state that waits out an error
(2), and marks the connection closed only when it reads the end of the stream, in a later
turn of the event loop. A statement in between, on a connection that looks open, gets
InternalClientError `cannot switch to state 15; another operation (2) is in progress` (15 is
a simple query, such as BEGIN or SAVEPOINT): nothing ran twice at once, and nothing of that
statement reached the server."""


class _Progress:
    """How far one transaction got, which says what a driver error means for it."""

    __slots__ = ("committed", "committing")

    def __init__(self) -> None:
        self.committing = False
        """COMMIT may have been sent: from here on a failure leaves the outcome unknown."""
        self.committed = False
        """COMMIT succeeded: a failure now is only in giving the connection back."""

    def again(self, exc: BaseException, fresh: bool) -> bool:
        """Whether to run the transaction again on a new connection (see _LOST)."""
        return not fresh and not self.committing and isinstance(exc, _LOST)


class PostgresTx:
    """One unit's view of a group's transaction; its SAVEPOINT opens on its first statement."""

    dialect = "postgres"

    def __init__(self, conn: asyncpg.Connection, tally: Tally, grouped: bool = False,
                 savepoint: bool = True) -> None:
        self.conn = conn
        self.tally = tally
        self.grouped = grouped
        self.skip_locked = grouped
        self.woken = False
        self.savepoint = not savepoint
        """Whether the unit's SAVEPOINT is open (or needs none: set from the start)."""
        self.wrote = False
        """Whether the unit ran a statement that may have changed a row."""
        self.appended: Appended = {}
        self.deferred: list[tuple[str, Sequence[Any]]] = []
        self.sent = 0
        """Statements the unit sent (a group stops taking units after GROUP_STATEMENTS)."""

    async def _begin(self, sql: str = "") -> None:
        self.tally.statements += 1
        self.sent += 1
        if not self.wrote and sql.lstrip()[:6].upper() != "SELECT":
            self.wrote = True
        if not self.savepoint:
            await self.conn.execute("SAVEPOINT unit")
            self.tally.statements += 1
            self.savepoint = True

    def _along(self, sql: str, args: Sequence[Any]) -> tuple[str, Sequence[Any]]:
        """`sql` with the deferred writes as its WITH clauses."""
        if not self.deferred:
            return sql, args
        writes, self.deferred = self.deferred, []
        return together(writes, sql, args)

    async def execute(self, sql: str, *args: Any) -> int:
        sql, values = self._along(sql, args)
        await self._begin(sql)
        status: str = await self.conn.execute(sql, *values)
        count = status.rsplit(" ", 1)[-1]
        return int(count) if count.isdigit() else 0

    def defer(self, sql: str, *args: Any) -> None:
        self.deferred.append((sql, args))

    async def flush(self) -> None:
        """Run what the unit deferred and no later statement took along."""
        if self.deferred:
            *writes, (sql, args) = self.deferred
            self.deferred = writes
            await self.execute(sql, *args)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self.flush()
        rows = list(rows)
        await self._begin(sql)
        self.tally.statements += len(rows) - 1
        await self.conn.executemany(sql, rows)

    def append(self, sql: str, row: Sequence[Any]) -> None:
        self.appended.setdefault(sql, []).append(row)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        sql, values = self._along(sql, args)
        await self._begin(sql)
        return [dict(record) for record in await self.conn.fetch(sql, *values)]

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        sql, values = self._along(sql, args)
        await self._begin(sql)
        record = await self.conn.fetchrow(sql, *values)
        return None if record is None else dict(record)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        sql, values = self._along(sql, args)
        await self._begin(sql)
        return await self.conn.fetchval(sql, *values)

    async def lock(self, name: str) -> None:
        if self.grouped:
            # A group may already hold row locks that the lock's holder waits for.
            raise RuntimeError(f"a unit that takes the lock {name!r} must be written with "
                               "store.write(unit, alone=True)")
        await self.flush()
        await self._begin("SELECT")
        await self.conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key(name))

    def wake(self) -> None:
        self.woken = True


class _ReadTx(PostgresTx):
    """A read-only snapshot needs no savepoints."""

    async def _begin(self, sql: str = "") -> None:
        self.tally.statements += 1


class _Redo(Exception):
    """A unit of a group run without savepoints failed after it may have written: the group
    runs again, each unit in its SAVEPOINT."""


class Tally:
    """Statements this store sent to PostgreSQL (each row of an executemany, BEGIN and
    COMMIT count): what bench/scale.py divides by the chains done (GET /metrics shows it)."""

    __slots__ = ("statements",)

    def __init__(self) -> None:
        self.statements = 0


_PLACEHOLDER = re.compile(r"\$(\d+)")


@functools.lru_cache(maxsize=512)
def _shifted(sql: str, by: int) -> str:
    """`sql` with its parameters renumbered from $1 + `by`."""
    return _PLACEHOLDER.sub(lambda found: f"${int(found[1]) + by}", sql) if by else sql


def together(writes: Sequence[tuple[str, Sequence[Any]]], sql: str,
             args: Sequence[Any]) -> tuple[str, list[Any]]:
    """One statement that runs `writes` (as data-modifying WITH clauses) and `sql`."""
    clauses: list[str] = []
    values: list[Any] = []
    for n, (write, write_args) in enumerate(writes):
        clauses.append(f"w{n} AS ({_shifted(write, len(values))})")
        values.extend(write_args)
    main = _shifted(sql, len(values))
    if main[:5].upper() == "WITH ":  # its own WITH clauses follow ours
        return f"WITH {', '.join(clauses)}, {main[5:]}", [*values, *args]
    return f"WITH {', '.join(clauses)} {main}", [*values, *args]


_VALUES = re.compile(r"(INSERT INTO \w+ \([\w, ]+\)) VALUES \([$\d, ]+\)")


def _columns(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """Rows as one list per column: the arrays an INSERT from unnest() takes."""
    return [list(column) for column in zip(*rows, strict=True)]


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


class PostgresStore(WakeUps):
    """Group commit as on SQLite: up to COMMITTERS transactions at once, each taking the
    units queued meanwhile (see _commit_group). Each commit waits for a WAL flush (and a
    NOTIFY serialises commits in PostgreSQL): both are paid once per group."""

    dialect = "postgres"
    COMMITTERS = 4
    GROUP_LIMIT = 256
    GROUP_STATEMENTS = 32
    """A group takes no more units once its units sent this many statements (see
    _commit_group); units that only append rows (intake's) send none."""

    def __init__(self, pool: asyncpg.Pool, dsn: str, settings: dict[str, str]) -> None:
        self.pool = pool
        self._dsn = dsn
        self._settings = settings
        super().__init__()
        self._queued: list[Job] = []
        self._committers: set[asyncio.Task[None]] = set()
        self._committing: set[str | None] = set()
        """The keys of the units in the groups being committed (see write)."""
        self._listening: asyncio.Task[None] | None = None
        self.tally = Tally()
        self._inserts: dict[str, str] = {}
        """Appended INSERTs and their form that takes arrays (see _from_arrays)."""
        self._name = secrets.token_hex(8)
        """What this store's NOTIFYs carry, so that it can tell its own from others'."""

    @property
    def statements(self) -> int:
        return self.tally.statements

    @classmethod
    async def open(cls, url: str, pool_size: int = 10) -> PostgresStore:
        dsn, schema = split_schema(url)
        # application_name: an operator (and bench/scale.py) can tell relay's backends apart.
        settings = {"application_name": "relay", **({"search_path": schema} if schema else {})}
        try:
            if schema:
                conn = await asyncpg.connect(dsn)
                try:
                    # IF NOT EXISTS alone races when several processes start together.
                    async with conn.transaction():
                        await conn.execute("SELECT pg_advisory_xact_lock($1)",
                                           lock_key(f"schema {schema}"))
                        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                finally:
                    await conn.close()
            pool = await asyncpg.create_pool(dsn, min_size=1, max_size=pool_size,
                                             server_settings=settings, reset=_kept_as_is)
        except _DRIVER_ERRORS as exc:
            raise errors.StoreError(f"cannot connect to PostgreSQL: {exc}") from exc
        store = cls(pool, dsn, settings)
        await store.write(migrations.migrate, alone=True)
        listening = asyncio.get_running_loop().create_future()
        store._listening = asyncio.create_task(store._listen(listening))
        await listening
        return store

    async def _listen(self, listening: asyncio.Future[None]) -> None:
        """Keep a LISTEN connection open for as long as the store is, reconnecting after a
        PostgreSQL restart. While it is down, workers still poll every few seconds."""
        delay = 0.5
        while True:
            closed = asyncio.Event()
            try:
                conn = await asyncpg.connect(self._dsn, server_settings=self._settings)
                try:
                    conn.add_termination_listener(_setter(closed))
                    await conn.add_listener(CHANNEL, self._notified)
                    if not listening.done():
                        listening.set_result(None)
                    self.wake_local()  # anything committed while we were not listening
                    delay = 0.5
                    await closed.wait()
                finally:
                    await conn.close()
            except _DRIVER_ERRORS as exc:
                if not listening.done():
                    listening.set_exception(errors.StoreError(
                        f"cannot LISTEN on PostgreSQL: {exc}"))
                    return
                logs.get().warning("store.listen_lost", error=str(exc), retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    def _notified(self, _conn: object, _pid: int, _channel: str, sender: str) -> None:
        if sender != self._name:  # this process woke itself already
            self.wake_local()

    async def write(self, unit: Unit[T], *, alone: bool = False, key: str | None = None) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        if alone:
            await self._commit_alone(Job(unit, future))
            return await future
        self._queued.append(Job(unit, future, key))
        if len(self._committers) < self.COMMITTERS:
            committer = asyncio.create_task(self._commit_queued())
            self._committers.add(committer)
            committer.add_done_callback(self._committers.discard)
        return await future

    async def _commit_queued(self) -> None:
        while group := self._next_group():
            keys = {job.key for job in group if job.key is not None}
            self._committing |= keys
            try:
                retry_alone, busy, left = await self._commit_group(group)
            except Exception as exc:  # noqa: BLE001 - no writer is left waiting, even on a bug
                resolve([(job, None, exc) for job in group])
                continue
            finally:
                self._committing -= keys
            self._queued[:0] = left  # first in the next group, as they came
            for job in busy:
                job.busy += 1
                if job.busy >= _BUSY_TRIES:
                    retry_alone.append(job)
                else:
                    # The next group: by then the transaction holding the lock may be done.
                    self._queued.append(job)
            for job in retry_alone:
                await self._commit_alone(job)

    def _next_group(self) -> list[Job]:
        """Up to GROUP_LIMIT queued units, leaving those whose key another group that is
        committing holds (they would wait for its row locks) to the committer of that group,
        which looks at the queue again when it is done."""
        group: list[Job] = []
        left: list[Job] = []
        for n, job in enumerate(self._queued):
            if len(group) == self.GROUP_LIMIT:
                left += self._queued[n:]
                break
            (left if job.key in self._committing else group).append(job)
        self._queued = left
        return group

    async def _commit_group(self, group: list[Job]) -> tuple[list[Job], list[Job], list[Job]]:
        """Commit a group; returned: the units that hit a deadlock or a serialization
        failure, to run again each in a transaction of its own, those that found their
        delivery locked by another transaction (errors.RowBusy), to run again later, and
        those left out once the group had sent GROUP_STATEMENTS statements.

        Units run one after another, and each statement waits a turn of the event loop,
        which is long while intake is busy: a group of many units that send statements
        would hold their writers (a worker's answers, callbacks) for seconds. Cut short, the
        rest go to the next groups, which the other committers run beside this one.

        A group runs first without savepoints (two round trips a unit fewer): units rarely
        fail, and those that do mostly fail before they write (an unknown callback token, a
        step already answered). Only when a unit fails after a write, or PostgreSQL refuses
        a statement (which aborts the whole transaction), is the group rolled back and run
        again with a SAVEPOINT around each unit, so that one unit's failure undoes only its
        own writes. Units are functions of their transaction alone, so running one twice
        is safe (a unit that hit a deadlock runs again already)."""
        try:
            return await self._commit_optimistic(group)
        except _Redo:
            return await self._commit_savepoints(group)

    async def _commit_optimistic(self, group: list[Job], *, fresh: bool = False
                                 ) -> tuple[list[Job], list[Job], list[Job]]:
        outcomes: list[Outcome] = []
        busy: list[Job] = []
        left: list[Job] = []
        woken = False
        progress = _Progress()
        try:
            async with self.pool.acquire() as conn:
                async with conn.transaction():
                    self.tally.statements += 2  # BEGIN, COMMIT (or ROLLBACK)
                    appended: Appended = {}
                    sent = 0
                    for n, job in enumerate(group):
                        if sent >= self.GROUP_STATEMENTS:
                            left = group[n:]
                            break
                        tx = PostgresTx(conn, self.tally, grouped=True, savepoint=False)
                        try:
                            result = await job.unit(tx)
                            await tx.flush()
                        except asyncpg.PostgresError as exc:
                            raise _Redo from exc
                        except _DRIVER_ERRORS:
                            raise
                        except errors.RowBusy as exc:
                            if tx.wrote:
                                raise _Redo from exc
                            busy.append(job)
                        except Exception as exc:
                            if tx.wrote:
                                raise _Redo from exc
                            outcomes.append((job, None, exc))
                        else:
                            outcomes.append((job, result, None))
                            woken = woken or tx.woken
                            gather(appended, tx.appended)
                        sent += tx.sent
                    await self._flush(conn, appended, woken)
                    progress.committing = True
                progress.committed = True
        except _DRIVER_ERRORS as exc:
            if progress.again(exc, fresh):
                return await self._commit_optimistic(group, fresh=True)
            if not progress.committed:
                failure = _write_failed(exc)
                outcomes = [(job, None, failure) for job in group if job not in left]
                busy = []
                woken = False
        if woken:
            self.wake_local()
        resolve(outcomes)
        return [], busy, left

    async def _commit_savepoints(self, group: list[Job], *, fresh: bool = False
                                 ) -> tuple[list[Job], list[Job], list[Job]]:
        """A group with a SAVEPOINT around each unit. A group whose connection was dead
        runs again, once, on a new one (see _LOST)."""
        outcomes: list[Outcome] = []
        retry_alone: list[Job] = []
        busy: list[Job] = []
        left: list[Job] = []
        woken = False
        progress = _Progress()
        try:
            async with self.pool.acquire() as conn:
                async with conn.transaction():
                    self.tally.statements += 2  # BEGIN, COMMIT
                    appended: Appended = {}
                    sent = 0
                    for n, job in enumerate(group):
                        if sent >= self.GROUP_STATEMENTS:
                            left = group[n:]
                            break
                        tx = PostgresTx(conn, self.tally, grouped=True)
                        try:
                            result = await job.unit(tx)
                            await tx.flush()
                        except _RETRYABLE:
                            await self._execute(conn, "ROLLBACK TO SAVEPOINT unit")
                            retry_alone.append(job)
                        except errors.RowBusy:
                            await self._execute(conn, "ROLLBACK TO SAVEPOINT unit")
                            busy.append(job)
                        except _DRIVER_ERRORS as exc:
                            if not isinstance(exc, asyncpg.PostgresError) or not tx.savepoint:
                                raise
                            await self._execute(conn, "ROLLBACK TO SAVEPOINT unit")
                            outcomes.append((job, None, _wrapped(exc)))
                        except Exception as exc:  # noqa: BLE001 - handed to the unit's awaiter
                            if tx.savepoint:
                                await self._execute(conn, "ROLLBACK TO SAVEPOINT unit")
                            outcomes.append((job, None, exc))
                        else:
                            if tx.savepoint:
                                await self._execute(conn, "RELEASE SAVEPOINT unit")
                            outcomes.append((job, result, None))
                            woken = woken or tx.woken
                            gather(appended, tx.appended)
                        sent += tx.sent
                    await self._flush(conn, appended, woken)
                    progress.committing = True
                progress.committed = True
        except _DRIVER_ERRORS as exc:
            if progress.again(exc, fresh):
                return await self._commit_savepoints(group, fresh=True)
            if not progress.committed:
                failure = _write_failed(exc)
                outcomes = [(job, None, failure) for job in group
                            if job not in retry_alone and job not in busy and job not in left]
                woken = False
        if woken:
            self.wake_local()
        resolve(outcomes)
        return retry_alone, busy, left

    async def _commit_alone(self, job: Job) -> None:
        conflicts = 0
        fresh = False
        while True:
            progress = _Progress()
            try:
                async with self.pool.acquire() as conn:
                    async with conn.transaction():
                        self.tally.statements += 2  # BEGIN, COMMIT
                        tx = PostgresTx(conn, self.tally)
                        result = await job.unit(tx)
                        await tx.flush()
                        await self._flush(conn, tx.appended, tx.woken)
                        progress.committing = True
                    progress.committed = True
            except _RETRYABLE as exc:
                conflicts += 1
                if conflicts < _RETRIES:
                    continue
                resolve([(job, None, _wrapped(exc))])
                return
            except _DRIVER_ERRORS as exc:
                if progress.again(exc, fresh):
                    fresh = True
                    continue
                if not progress.committed:
                    resolve([(job, None, _wrapped(exc))])
                    return
            except Exception as exc:  # noqa: BLE001 - handed to the unit's awaiter
                resolve([(job, None, exc)])
                return
            if tx.woken:
                self.wake_local()
            resolve([(job, result, None)])
            return

    async def _execute(self, conn: asyncpg.Connection, sql: str) -> None:
        self.tally.statements += 1
        await conn.execute(sql)

    async def _flush(self, conn: asyncpg.Connection, appended: Appended, woken: bool) -> None:
        """What a transaction does last: the rows its units appended, all in one statement
        (an INSERT from arrays per table), and the wake-up."""
        inserts = [(await self._from_arrays(conn, sql), _columns(rows))
                   for sql, rows in appended.items()]
        if inserts:
            *writes, (sql, args) = inserts
            statement, values = together(writes, sql, args) if writes else (sql, args)
            self.tally.statements += 1
            await conn.execute(statement, *values)
        if woken and self.others_needed():
            await self._execute(conn, f"NOTIFY {CHANNEL}, '{self._name}'")

    async def _from_arrays(self, conn: asyncpg.Connection, sql: str) -> str:
        """`INSERT INTO t (a, b) VALUES ($1, $2)` as `INSERT INTO t (a, b) SELECT * FROM
        unnest($1::text[], $2::int4[])`: any number of rows in one statement. The types are
        the ones PostgreSQL infers for the single-row statement (asked once)."""
        found = self._inserts.get(sql)
        if found is None:
            head = _VALUES.fullmatch(sql)
            numbers = [int(n) for n in _PLACEHOLDER.findall(sql)]
            if head is None or numbers != list(range(1, len(numbers) + 1)):
                raise ValueError(f"not an INSERT ... VALUES ($1, ...) statement: {sql}")
            types = [t.name for t in (await conn.prepare(sql)).get_parameters()]
            arrays = ", ".join(f"${n}::{name}[]" for n, name in enumerate(types, 1))
            found = self._inserts[sql] = f"{head[1]} SELECT * FROM unnest({arrays})"
        return found

    async def read(self, unit: Unit[T]) -> T:
        fresh = False
        while True:
            try:
                async with self.pool.acquire() as conn, conn.transaction(
                        isolation="repeatable_read", readonly=True):
                    self.tally.statements += 2  # BEGIN, COMMIT
                    return await unit(_ReadTx(conn, self.tally))
            except _DRIVER_ERRORS as exc:
                if fresh or not isinstance(exc, _LOST):
                    raise errors.StoreError(f"reading from PostgreSQL failed: {exc}") from exc
                fresh = True  # a connection that was dead already (see _LOST): once more

    async def ping(self) -> None:
        try:
            async with self.pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
        except _DRIVER_ERRORS as exc:
            raise errors.StoreError(f"PostgreSQL does not answer: {exc}") from exc

    async def close(self) -> None:
        if self._committers:
            await asyncio.gather(*self._committers)
        if self._listening is not None:
            self._listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listening
        await self.pool.close()


async def _kept_as_is(_conn: asyncpg.Connection) -> None:
    """A connection given back to the pool needs no reset query (asyncpg's default costs a
    round trip per transaction): relay sets no session state, takes only transaction-level
    advisory locks, and LISTENs on a connection of its own. asyncpg still rolls back an
    open transaction first."""


def _setter(event: asyncio.Event) -> Callable[[object], None]:
    return lambda _: event.set()


def _write_failed(exc: BaseException) -> errors.StoreError:
    """What every unit of a group that could not be committed is answered."""
    failure = errors.StoreError(f"writing to PostgreSQL failed: {exc}")
    failure.__cause__ = exc
    return failure


def _wrapped(exc: BaseException) -> BaseException:
    if isinstance(exc, _DRIVER_ERRORS):
        wrapped = errors.StoreError(f"PostgreSQL refused a write: {exc}")
        wrapped.__cause__ = exc
        return wrapped
    return exc
