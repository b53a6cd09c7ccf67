"""What relay needs of a database: transactions that run units of work, and wake-ups.

A unit is an `async def unit(tx) -> T` written once against `Tx` in PostgreSQL's dialect
(`$1` placeholders, `FOR UPDATE SKIP LOCKED`); each backend runs it in one transaction. The
SQL of relay lives in the units (`deliveries.py`, `sends.py` and friends), not in the
backends, so SQLite and PostgreSQL behave alike by construction.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

Row = dict[str, Any]
T = TypeVar("T")


class Tx(Protocol):
    """One open transaction."""

    dialect: str
    skip_locked: bool
    """Whether a row lock another transaction holds must not be waited for (a unit of a
    group on a shared database): `deliveries.lock` then raises RowBusy."""

    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; the number of rows it touched."""
        ...

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    def append(self, sql: str, row: Sequence[Any]) -> None:
        """Insert `row` when the transaction commits, batched with other units' rows.

        For inserts nothing in the same transaction reads back: intake's rows. A backend
        may run them all as one executemany per statement, in the order first appended.
        """
        ...

    def defer(self, sql: str, *args: Any) -> None:
        """Run the write `sql` together with the unit's next statement (or at its end).

        PostgreSQL sends both as one statement, the write as a data-modifying WITH clause:
        one round trip less. Both then see the database as it was before either ran, so
        the next statement must not read or write the row(s) `sql` changes; SQLite simply
        runs `sql` at once.
        """
        ...

    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...

    async def fetchval(self, sql: str, *args: Any) -> Any: ...

    async def lock(self, name: str) -> None:
        """Hold a named lock until the transaction ends (serialises e.g. one chain's admission)."""
        ...

    def wake(self) -> None:
        """Tell every relay process sharing this store, once committed, that work is due."""
        ...


Unit = Callable[[Tx], Awaitable[T]]


class Store(Protocol):
    dialect: str

    @property
    def statements(self) -> int:
        """Statements this store has sent to its database so far (a row of an executemany,
        BEGIN and COMMIT each count one): what a chain costs the database."""
        ...

    async def write(self, unit: Unit[T], *, alone: bool = False, key: str | None = None) -> T:
        """Run `unit` in a write transaction; return once it is durably committed.

        Units are committed in groups. A unit that takes a chain's lock (admission) runs
        `alone`, in a transaction of its own, so that no group ever holds both a chain's
        lock and a delivery's row lock (which would deadlock two groups against each other
        on a shared database). Units with the same `key` (the delivery they lock) are
        never in two groups committing at once, where one would wait for the other."""
        ...

    async def read(self, unit: Unit[T]) -> T:
        """Run `unit` on a consistent snapshot."""
        ...

    async def wait_for_work(self, timeout: float) -> None:
        """Return when a committed write called `wake()` or after `timeout` seconds."""
        ...

    def wake_local(self) -> None:
        """Wake this process's `wait_for_work` (a worker slot came free, or it is stopping)."""
        ...

    def wake_others_when(self, needed: Callable[[], bool]) -> None:
        """Wake the other processes sharing the store only while `needed()`: a process whose
        worker can take the work it commits need not make every other one look for it (the
        others still look at least every few seconds). By default they are always woken."""
        ...

    async def ping(self) -> None:
        """Raise StoreError unless the database answers."""
        ...

    async def close(self) -> None: ...


class Job:
    """A unit waiting to be committed, and the future its writer awaits."""

    __slots__ = ("busy", "future", "key", "unit")

    def __init__(self, unit: Unit[Any], future: asyncio.Future[Any],
                 key: str | None = None) -> None:
        self.unit = unit
        self.future = future
        self.key = key
        self.busy = 0
        """How many groups it found a row locked in (errors.RowBusy)."""


Outcome = tuple[Job, Any, BaseException | None]


Appended = dict[str, list[Sequence[Any]]]
"""Rows that units appended, by INSERT statement, in the order first appended."""


def gather(into: Appended, more: Appended) -> None:
    """Add one unit's appended rows to its group's."""
    for sql, rows in more.items():
        into.setdefault(sql, []).extend(rows)


class WakeUps:
    """The in-process half of Store.wait_for_work and Store.wake_local."""

    def __init__(self) -> None:
        self._work = asyncio.Event()
        self.others_needed: Callable[[], bool] = lambda: True
        """See Store.wake_others_when."""

    async def wait_for_work(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._work.wait(), timeout)
        self._work.clear()

    def wake_local(self) -> None:
        self._work.set()

    def wake_others_when(self, needed: Callable[[], bool]) -> None:
        self.others_needed = needed


def resolve(outcomes: Iterable[Outcome]) -> None:
    """Answer each job's writer with its result or error (unless it stopped waiting)."""
    for job, result, error in outcomes:
        if job.future.done():
            continue
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)


def placeholders(start: int, count: int) -> str:
    """`$3, $4, $5` for an IN list of `count` values starting at parameter `start`."""
    return ", ".join(f"${n}" for n in range(start, start + count))
