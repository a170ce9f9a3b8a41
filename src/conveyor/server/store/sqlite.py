"""SQLite driver: stdlib ``sqlite3``, a writer thread and a reader thread (``Lane``s).

A whole transaction runs on its thread in one hop: the shared SQL code is written as
coroutines for PostgreSQL, but against SQLite its ``await tx.…`` calls never suspend, so
``drive`` runs such a coroutine to completion synchronously. ``connect``, ``write_on`` and
``read_on`` are that transaction on any connection and thread: the direct producer
(``conveyor.direct``) runs them in its caller's thread. One hop per transaction keeps
the event loop free and makes latency independent of how busy the loop is.

A *quick* call (a status read, a queue look-up, one enqueue, a claim: tens of µs of SQLite)
runs on the event loop's own thread instead, because the hand-over to a thread and back costs
several times more than the statement (about 150–200 µs of latency per hop, profiled). It does
so only when it cannot wait: a quick write takes the writer connection only while the writer
thread is idle, and both take the file's locks without a busy timeout; when the file is busy
(another process writing, a checkpoint) the call goes over to its thread as any other.

Writes take ``BEGIN IMMEDIATE``, so a transaction holds the file's write lock from its first
statement: a count-then-insert is atomic even across processes sharing the file. Reads use a
second connection, which in WAL mode sees only committed data and never waits for writers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

from conveyor import clock
from conveyor.errors import StoreError, StoreUnavailable
from conveyor.server.store.base import Subscription
from conveyor.server.store.driver import Dialect, Migration, Row
from conveyor.server.store.events import Broadcaster
from conveyor.server.store.lane import Lane, LaneClosed
from conveyor.server.store.records import Event

T = TypeVar("T")

BUSY_TIMEOUT_S = 10.0
#: How often to look for commits by other processes (``PRAGMA data_version``).
WATCH_S = 0.1
#: Page cache per connection; the default 2 MiB makes reads of a million-task table miss.
CACHE_KIB = 32 * 1024
DIALECT = Dialect(name="sqlite", skip_locked="", for_update="")

#: Store objects on the same file in one process share their events.
_broadcasters: weakref.WeakValueDictionary[str, Broadcaster] = weakref.WeakValueDictionary()


def split_statements(script: str) -> list[str]:
    """The complete SQL statements of ``script``, in order."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not all(
        part.strip().startswith("--") or not part.strip() for part in buffer.splitlines()
    ):
        raise StoreError(f"incomplete SQL statement in migration: {buffer.strip()[:80]!r}")
    return statements


def _translate(exc: sqlite3.Error) -> StoreError:
    message = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and (
        "locked" in message or "busy" in message or "unable to open" in message
    ):
        return StoreUnavailable(f"SQLite store unavailable: {message}")
    return StoreError(f"SQLite error: {message}")


class _Busy(Exception):
    """A quick call found the file locked; it goes over to its thread instead."""


class _Tx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.events: list[Event] = []

    # These run on the driver's thread and never suspend (see the module docstring).
    async def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._conn.execute(sql, params).fetchall()

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)

    async def execute_each(self, sql: str, rows: Sequence[Sequence[Any]]) -> list[list[Row]]:
        return [self._conn.execute(sql, row).fetchall() for row in rows]

    def emit(self, event: Event) -> None:
        self.events.append(event)


def drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends to completion, synchronously."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()
    raise StoreError("a SQLite transaction awaited something other than its statements")


def _create_private(path: Path) -> None:
    """Create the store file 0600 before SQLite opens it (its -wal and -shm files take the
    database file's mode), and take group and other bits off an existing one (DESIGN A13)."""
    if str(path) == ":memory:":
        return
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    except OSError as exc:
        raise StoreUnavailable(f"cannot create {path}: {exc}") from None
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        with contextlib.suppress(OSError):  # gone, or another user's: SQLite will say
            if name.stat().st_mode & 0o077:
                name.chmod(0o600)


class SqliteDriver:
    dialect = DIALECT

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._writer: Lane | None = None
        self._reader: Lane | None = None
        self._write_conn: sqlite3.Connection | None = None
        self._read_conn: sqlite3.Connection | None = None
        #: Reads of quick calls, on the event loop's thread (no busy timeout).
        self._quick_conn: sqlite3.Connection | None = None
        self._watcher: asyncio.Task[None] | None = None
        key = str(self.path.resolve())
        broadcaster = _broadcasters.get(key)
        if broadcaster is None:
            broadcaster = _broadcasters[key] = Broadcaster()
        self._broadcaster = broadcaster

    async def call(self, fn: Callable[..., T], *args: Any, reader: bool = False) -> T:
        """Run ``fn(*args)`` on the writer (or reader) thread; sqlite3 errors become store
        errors."""
        lane = self._reader if reader else self._writer
        if lane is None:
            raise StoreUnavailable("the SQLite store is not open")
        try:
            return await lane.call(partial(guarded, fn, *args))
        except LaneClosed:
            raise StoreUnavailable("the SQLite store is closed") from None

    async def open(self, migrations: Sequence[Migration]) -> None:
        if self._writer is not None:
            return
        self._writer = Lane("conveyor-sqlite")
        self._reader = Lane("conveyor-sqlite-read")
        try:
            await self.call(self._connect)
            await self.call(self._migrate, migrations)
        except BaseException:
            await self.close()
            raise
        self._watcher = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        """Publish a ``changed`` event when another connection commits: events of other
        processes never reach this one, so their subscribers re-read instead."""
        last = None
        while True:
            try:
                version = await self.call(_data_version, self._conn())
            except StoreError:
                return
            if last is not None and version != last:
                self._broadcaster.publish(Event("changed", ""))
            last = version
            await asyncio.sleep(WATCH_S)

    def _connect(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"cannot create the folder of {self.path}: {exc}") from None
        _create_private(self.path)
        self._write_conn = connect(self.path)
        self._read_conn = connect(self.path)
        self._quick_conn = connect(self.path)
        self._quick_conn.execute("PRAGMA busy_timeout = 0")

    def _migrate(self, migrations: Sequence[Migration]) -> None:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
                " name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
            )
            current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            done = int(current.fetchone()[0])
            for migration in migrations:
                if migration.version <= done:
                    continue
                for statement in split_statements(migration.sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                    [migration.version, migration.name, clock.to_us(clock.now())],
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.rollback()
            raise

    def _conn(self) -> sqlite3.Connection:
        if self._write_conn is None:
            raise StoreUnavailable("the SQLite store is not open")
        return self._write_conn

    async def close(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        if self._writer is None:
            return

        def shut() -> None:
            for conn in (self._write_conn, self._read_conn, self._quick_conn):
                if conn is not None:
                    conn.close()
            self._write_conn = self._read_conn = self._quick_conn = None

        # Both threads finish what they hold; then the writer closes both connections.
        reader, self._reader = self._reader, None
        if reader is not None:
            await asyncio.to_thread(reader.shutdown)
        writer = self._writer
        await writer.call(shut)
        self._writer = None
        await asyncio.to_thread(writer.shutdown)

    async def write(self, fn: Callable[[Any], Awaitable[T]], *, quick: bool = False) -> T:
        writer = self._writer
        done: tuple[T, list[Event]]
        try:
            if not (quick and writer is not None and writer.idle):
                raise _Busy
            done = guarded(write_on, self._conn(), fn, False)
        except _Busy:
            done = await self.call(lambda: write_on(self._conn(), fn))
        result, events = done
        for event in events:
            self._broadcaster.publish(event)
        return result

    async def read(self, fn: Callable[[Any], Awaitable[T]], *, quick: bool = False) -> T:
        def query(conn: sqlite3.Connection | None) -> T:
            if conn is None:
                raise StoreUnavailable("the SQLite store is not open")
            return read_on(conn, fn)

        if quick and self._quick_conn is not None:
            try:
                found: T = guarded(_no_wait, query, self._quick_conn)
                return found
            except _Busy:
                pass
        return await self.call(lambda: query(self._read_conn), reader=True)

    async def statement(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        rows: list[Row] = await self.write(lambda tx: tx.execute(sql, params), quick=True)
        return rows

    def subscribe(self) -> Subscription:
        return self._broadcaster.subscribe()


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the store file as every store connection is set up: WAL, the busy
    timeout, ``synchronous = NORMAL``, foreign keys, a large page cache."""
    # Each connection is used by one thread at a time (its executor has one thread).
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    _set_wal(conn)
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    return conn


def write_on(
    conn: sqlite3.Connection, fn: Callable[[Any], Awaitable[T]], wait: bool = True
) -> tuple[T, list[Event]]:
    """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction on ``conn``, in this thread; its
    result and the events it emitted (to publish: they are not sent here). Without ``wait``,
    ``_Busy`` at once if another connection holds the write lock."""
    _begin(conn, wait)
    tx = _Tx(conn)
    try:
        result: T = drive(cast(Coroutine[Any, Any, T], fn(tx)))
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise
    return result, tx.events


def read_on(conn: sqlite3.Connection, fn: Callable[[Any], Awaitable[T]]) -> T:
    """Run the read ``fn`` on ``conn``, in this thread."""
    return drive(cast(Coroutine[Any, Any, T], fn(_Tx(conn))))


def _set_wal(conn: sqlite3.Connection) -> None:
    """Switch a new file to WAL. The switch needs the file to itself and ignores the busy
    timeout, so processes opening a new store at the same moment retry it."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _data_version(conn: sqlite3.Connection) -> int:
    """Changes whenever a connection other than ``conn`` commits to the file."""
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def _begin(conn: sqlite3.Connection, wait: bool) -> None:
    if wait:
        conn.execute("BEGIN IMMEDIATE")
        return
    conn.execute("PRAGMA busy_timeout = 0")  # for this one statement
    try:
        _no_wait(conn.execute, "BEGIN IMMEDIATE")
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")


def _no_wait(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, with SQLite's "database is locked/busy" as ``_Busy``."""
    try:
        return fn(*args)
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise _Busy from exc
        raise


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.rollback()


def guarded(fn: Callable[..., T], *args: Any) -> T:
    try:
        return fn(*args)
    except sqlite3.Error as exc:
        raise _translate(exc) from exc
