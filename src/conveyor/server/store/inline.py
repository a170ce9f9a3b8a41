"""Drivers that run each transaction inline, in the caller's thread, with no event loop; and
writes inside a transaction the caller holds. Both are the direct producer's
(``conveyor.direct``).

The shared SQL code is coroutines. Against a blocking connection their ``await tx.…`` never
suspend, so :func:`drive` runs each to completion in the caller's thread, exactly as the SQLite
driver already does on its own thread. A ``SqlStore`` over an inline driver is the store
itself (same statements, same guards, same transaction per call), and a direct ``put`` costs
one transaction with no thread hand-over and no event loop. Each thread gets its own
connection; ``close`` closes them all and the next call in a thread opens a new one.

Events: PostgreSQL sends them with ``pg_notify`` inside the transaction, as the pool driver
does, so agents wake on commit. SQLite has no cross-process events: agents in other processes
(and this one's) see the commit through ``PRAGMA data_version``, as for any other writer.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import psycopg
from psycopg.conninfo import make_conninfo

from conveyor.errors import ConfigError, StoreError, StoreUnavailable
from conveyor.server.store import postgres, sqlite
from conveyor.server.store.base import Subscription
from conveyor.server.store.driver import Migration, Row
from conveyor.server.store.events import Broadcaster
from conveyor.server.store.records import Event
from conveyor.server.store.sqlite import drive

__all__ = [
    "InlinePostgresDriver", "InlineSqliteDriver", "drive", "write_within", "write_within_async",
]

T = TypeVar("T")
C = TypeVar("C")
TxFn = Callable[[Any], Awaitable[T]]


class _PerThread(Generic[C]):
    """One connection per thread, opened on first use; ``close_all`` closes every one."""

    def __init__(self, connect: Callable[[], C], close: Callable[[C], None]) -> None:
        self._connect = connect
        self._close = close
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list[C] = []
        self._generation = 0

    def get(self) -> C:
        held = getattr(self._local, "held", None)
        if held is not None and held[0] == self._generation:
            return cast(C, held[1])
        conn = self._connect()
        with self._lock:
            self._open.append(conn)
            self._local.held = (self._generation, conn)
        return conn

    def drop(self, conn: C) -> None:
        """Forget a broken connection: this thread's next call opens a new one."""
        self._local.held = None
        with self._lock:
            if conn in self._open:
                self._open.remove(conn)
        self._close(conn)

    def close_all(self) -> None:
        with self._lock:
            conns, self._open = self._open, []
            self._generation += 1
        for conn in conns:
            self._close(conn)


def _schema_error(where: str, found: int, wanted: int) -> StoreUnavailable:
    return StoreUnavailable(
        f"the store at {where} has schema version {found}, this conveyor needs {wanted}: "
        "start `conveyor server` (or `serve`) on it once, which migrates it"
    )


class _Inline:
    """What both inline drivers share: ``Driver``'s lifecycle (no migrations: a server
    migrates the store; ``open`` only checks that it did)."""

    def __init__(self, where: str) -> None:
        self._where = where
        self._broadcaster = Broadcaster()

    async def open(self, migrations: Sequence[Migration]) -> None:
        wanted = max((m.version for m in migrations), default=0)
        try:
            rows = await self.read(
                lambda tx: tx.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            )
        except StoreUnavailable:
            raise
        except StoreError:  # no schema_version table: never migrated
            raise _schema_error(self._where, 0, wanted) from None
        found = int(rows[0][0])
        if found < wanted:
            raise _schema_error(self._where, found, wanted)

    def subscribe(self) -> Subscription:
        """Events of this driver's writes are not published in this process (see the module
        docstring); a subscription here stays silent."""
        return self._broadcaster.subscribe()

    async def read(self, fn: TxFn[T], *, quick: bool = False) -> T:
        raise NotImplementedError

    async def statement(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        raise NotImplementedError


class InlineSqliteDriver(_Inline):
    dialect = sqlite.DIALECT

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        super().__init__(str(self.path))
        self._conns: _PerThread[sqlite3.Connection] = _PerThread(self._connect, _close_sqlite)

    def _connect(self) -> sqlite3.Connection:
        if not self.path.is_file():  # sqlite3 would create an empty file
            raise StoreUnavailable(f"no SQLite store at {self.path}")
        return sqlite.guarded(sqlite.connect, self.path)

    async def close(self) -> None:
        self._conns.close_all()

    async def write(self, fn: TxFn[T], *, quick: bool = False) -> T:
        done: tuple[T, list[Event]] = sqlite.guarded(sqlite.write_on, self._conns.get(), fn)
        return done[0]

    async def read(self, fn: TxFn[T], *, quick: bool = False) -> T:
        result: T = sqlite.guarded(sqlite.read_on, self._conns.get(), fn)
        return result

    async def statement(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        rows: list[Row] = await self.write(lambda tx: tx.execute(sql, params))
        return rows


class _BlockingTx:
    """``Tx`` over a blocking psycopg cursor; its coroutines never suspend."""

    def __init__(self, cur: psycopg.Cursor[Row]) -> None:
        self._cur = cur
        self.events: list[Event] = []

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self._cur.execute(postgres.to_pyformat(sql), list(params))
        return self._cur.fetchall() if postgres.returns_rows(self._cur) else []

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._cur.executemany(postgres.to_pyformat(sql), rows)

    async def execute_each(self, sql: str, rows: Sequence[Sequence[Any]]) -> list[list[Row]]:
        if not rows:
            return []
        self._cur.executemany(postgres.to_pyformat(sql), rows, returning=True)
        results = [self._cur.fetchall()]
        while self._cur.nextset():
            results.append(self._cur.fetchall())
        return results

    def emit(self, event: Event) -> None:
        self.events.append(event)


def _run_in(cur: psycopg.Cursor[Row], fn: TxFn[T]) -> T:
    """``fn`` on ``cur``, then its events as ``pg_notify`` in the same transaction."""
    tx = _BlockingTx(cur)
    result = _drive(fn, tx)
    if tx.events:
        cur.execute(postgres.NOTIFY, postgres.notify_params(tx.events))
    return result


class InlinePostgresDriver(_Inline):
    dialect = postgres.DIALECT

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._conninfo = make_conninfo(url, **postgres.SESSION)
        self._conns: _PerThread[psycopg.Connection[Row]] = _PerThread(self._connect, _close_pg)

    def _connect(self) -> psycopg.Connection[Row]:
        try:
            return psycopg.Connection.connect(
                self._conninfo, autocommit=True,
                connect_timeout=int(postgres.CONNECT_TIMEOUT_S),
            )
        except psycopg.Error as exc:
            raise postgres.translate(exc) from exc

    async def close(self) -> None:
        self._conns.close_all()

    async def write(self, fn: TxFn[T], *, quick: bool = False) -> T:
        for attempt in range(postgres.CONFLICT_RETRIES):
            conn = self._conns.get()
            try:
                with conn.transaction(), conn.cursor() as cur:
                    return _run_in(cur, fn)
            except postgres.TRANSIENT as exc:
                if attempt == postgres.CONFLICT_RETRIES - 1:
                    raise postgres.translate(exc) from exc
                # Never on an event loop: this driver is driven synchronously (see above).
                time.sleep(random.uniform(0.001, 0.02) * (attempt + 1))  # noqa: ASYNC251
            except psycopg.Error as exc:
                self._forget_if_broken(conn)
                raise postgres.translate(exc) from exc
        raise AssertionError("unreachable")

    async def read(self, fn: TxFn[T], *, quick: bool = False) -> T:
        conn = self._conns.get()
        try:
            with conn.cursor() as cur:
                return _drive(fn, _BlockingTx(cur))
        except psycopg.Error as exc:
            self._forget_if_broken(conn)
            raise postgres.translate(exc) from exc

    async def statement(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        # The connection is in autocommit: one statement, one implicit transaction.
        return await self.read(lambda tx: tx.execute(sql, params))

    def _forget_if_broken(self, conn: psycopg.Connection[Row]) -> None:
        if conn.broken or conn.closed:
            self._conns.drop(conn)


def write_within(conn: psycopg.Connection[Any], fn: TxFn[T]) -> T:
    """Run the write ``fn`` inside the transaction ``conn`` holds: no BEGIN, no COMMIT, no
    ROLLBACK here; its events are ``pg_notify``-ed in that transaction, so they go out if and
    when the caller commits. ``ConfigError`` for an autocommit connection outside a
    transaction block (each statement would commit on its own)."""
    _check_within(conn.autocommit, conn.info.transaction_status)
    try:
        with conn.cursor() as cur:
            return _run_in(cast(psycopg.Cursor[Row], cur), fn)
    except psycopg.Error as exc:
        raise postgres.translate(exc) from exc


async def write_within_async(conn: psycopg.AsyncConnection[Any], fn: TxFn[T]) -> T:
    """:func:`write_within` for an ``AsyncConnection``: the pool driver's own ``Tx``."""
    _check_within(conn.autocommit, conn.info.transaction_status)
    try:
        async with conn.cursor() as cur:
            tx = postgres.PgTx(cast(psycopg.AsyncCursor[Row], cur))
            result = await fn(tx)
            if tx.events:
                await cur.execute(postgres.NOTIFY, postgres.notify_params(tx.events))
            return result
    except psycopg.Error as exc:
        raise postgres.translate(exc) from exc


def _check_within(autocommit: bool, status: psycopg.pq.TransactionStatus) -> None:
    if status == psycopg.pq.TransactionStatus.INERROR:
        raise ConfigError("the connection's transaction has failed: roll it back first")
    if autocommit and status == psycopg.pq.TransactionStatus.IDLE:
        raise ConfigError(
            "within(conn) needs a transaction to join: use `with conn.transaction():` "
            "(an autocommit connection outside one would commit each statement on its own)"
        )


def _drive(fn: TxFn[T], tx: Any) -> T:
    return drive(cast(Coroutine[Any, Any, T], fn(tx)))


def _close_sqlite(conn: sqlite3.Connection) -> None:
    conn.close()


def _close_pg(conn: psycopg.Connection[Row]) -> None:
    conn.close()
