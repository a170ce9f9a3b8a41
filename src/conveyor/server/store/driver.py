"""The driver seam: what the shared SQL store needs from a backend, and its migrations.

A :class:`Driver` runs ``?``-placeholder statements in transactions (:class:`Tx`) and names
the few dialect fragments that differ (:class:`Dialect`); ``sqlite.py`` and ``postgres.py``
implement it. Migrations are the numbered SQL files of each backend.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from conveyor.server.store.base import Subscription
from conveyor.server.store.records import Event

T = TypeVar("T")
Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    #: Appended to a claim's inner SELECT so concurrent claimers pass over each other's rows.
    skip_locked: str
    #: Appended to a SELECT that must lock its rows until commit.
    for_update: str
    #: An expression that publishes one event (its JSON the one parameter) on commit, where
    #: the dialect can inside any statement; else ``None`` (events go with ``Tx.emit``).
    notify: str | None = None


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(dialect: str) -> list[Migration]:
    """The numbered ``NNNN_name.sql`` files of a backend, in order."""
    folder = Path(__file__).parent / "migrations" / dialect
    found = []
    for path in sorted(folder.glob("[0-9][0-9][0-9][0-9]_*.sql")):
        found.append(Migration(int(path.name[:4]), path.stem[5:], path.read_text()))
    return found


class Tx(Protocol):
    """Statements inside one transaction (or, for reads, one connection)."""

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    async def execute_each(self, sql: str, rows: Sequence[Sequence[Any]]) -> list[list[Row]]:
        """Run ``sql`` once per parameter row; the rows each run returned, in order."""

    def emit(self, event: Event) -> None:
        """Publish ``event`` if and when the transaction commits."""


class Driver(Protocol):
    dialect: Dialect

    async def open(self, migrations: Sequence[Migration]) -> None: ...

    async def close(self) -> None: ...

    async def write(self, fn: Callable[[Tx], Awaitable[T]], *, quick: bool = False) -> T:
        """Run ``fn`` in a write transaction (retried on transient conflicts). ``quick``: a
        few small statements, which a driver may run without handing them to a thread."""

    async def read(self, fn: Callable[[Tx], Awaitable[T]], *, quick: bool = False) -> T: ...

    async def statement(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run one write statement as its own transaction, in one round trip where the
        backend has them (PostgreSQL: autocommit); it emits no events, so a statement that
        needs some sends them itself (``pg_notify`` in its SQL)."""

    def subscribe(self) -> Subscription: ...
