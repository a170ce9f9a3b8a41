"""PostgreSQL driver: psycopg 3 async over a connection pool, plus one LISTEN connection.

Events are sent with ``pg_notify`` inside the writing transaction, so they go out on commit and
never for a rolled-back write; every store process (this one included) receives them through
its LISTEN connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import errors, pq
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from conveyor import clock
from conveyor.errors import StoreError, StoreUnavailable
from conveyor.server.store.base import Subscription
from conveyor.server.store.driver import Dialect, Migration, Row
from conveyor.server.store.events import CHANNEL, Broadcaster, event_from_json, event_to_json
from conveyor.server.store.records import Event

T = TypeVar("T")
log = logging.getLogger(__name__)

DIALECT = Dialect(
    name="postgres",
    skip_locked=" FOR UPDATE SKIP LOCKED",
    for_update=" FOR UPDATE",
    notify=f"pg_notify('{CHANNEL}', ?)",
)
#: Advisory lock key held while migrating, so concurrent openers apply each migration once.
MIGRATION_LOCK = 0x636F6E76  # "conv"
CONNECT_TIMEOUT_S = 10.0
#: Deadlocks and serialization failures are retried this many times before giving up.
CONFLICT_RETRIES = 5
TRANSIENT = (errors.DeadlockDetected, errors.SerializationFailure)


@functools.lru_cache(maxsize=512)
def to_pyformat(sql: str) -> str:
    """``?`` placeholders to psycopg's ``%s`` (literal ``%`` doubled first)."""
    return sql.replace("%", "%%").replace("?", "%s")


def returns_rows(cur: psycopg.AsyncCursor[Any] | psycopg.Cursor[Any]) -> bool:
    """The last statement returned rows. (``cursor.description`` says so too, but builds a
    column object per column to say it: a tenth of a status read's CPU, profiled.)"""
    result = cur.pgresult
    return result is not None and result.status == pq.ExecStatus.TUPLES_OK


def translate(exc: Exception) -> StoreError:
    if isinstance(exc, PoolTimeout) or (
        isinstance(exc, psycopg.OperationalError)
        and (exc.sqlstate is None or exc.sqlstate.startswith(("08", "57P")))
    ):
        return StoreUnavailable(f"PostgreSQL store unavailable: {exc}")
    return StoreError(f"PostgreSQL error: {exc}")


#: Connection settings that bound how long a vanished client (a lost machine, a network
#: cut) can hold row locks: the server aborts a transaction left idle for 30 s and notices a
#: dead peer within ~11 s; the client side notices a dead server as fast. Without this, a
#: partitioned agent's open transaction hides its rows from every ``SKIP LOCKED`` sweep.
SESSION = {
    "options": "-c idle_in_transaction_session_timeout=30000 -c tcp_keepalives_idle=5"
    " -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3",
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "3",
}


#: Sends events (``notify_params``) on commit: inside the writing transaction, so a rolled-back
#: write sends nothing.
NOTIFY = "SELECT pg_notify(%s, x) FROM unnest(%s::text[]) AS x"


def notify_params(events: Sequence[Event]) -> list[Any]:
    return [CHANNEL, [event_to_json(event) for event in events]]


class PgTx:
    """``Tx`` over an async psycopg cursor."""

    def __init__(self, cur: psycopg.AsyncCursor[Row]) -> None:
        self._cur = cur
        self.events: list[Event] = []

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        await self._cur.execute(to_pyformat(sql), list(params))
        return await self._cur.fetchall() if returns_rows(self._cur) else []

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._cur.executemany(to_pyformat(sql), rows)

    async def execute_each(self, sql: str, rows: Sequence[Sequence[Any]]) -> list[list[Row]]:
        if not rows:
            return []
        await self._cur.executemany(to_pyformat(sql), rows, returning=True)
        results = [await self._cur.fetchall()]
        while self._cur.nextset():
            results.append(await self._cur.fetchall())
        return results

    def emit(self, event: Event) -> None:
        self.events.append(event)


class PostgresDriver:
    dialect = DIALECT

    def __init__(self, url: str, *, max_connections: int = 10) -> None:
        self.url = url
        self._conninfo = make_conninfo(url, **SESSION)
        self._max_connections = max_connections
        self._pool: AsyncConnectionPool | None = None
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._broadcaster = Broadcaster()
        #: Kept out of the pool for quick calls (see ``_quick``); replaced when it breaks.
        self._held: psycopg.AsyncConnection[Row] | None = None
        self._held_busy = False
        self._holding: asyncio.Task[None] | None = None
        self._next_hold_at = 0.0

    async def open(self, migrations: Sequence[Migration]) -> None:
        if self._pool is not None:
            return
        pool = AsyncConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=self._max_connections,
            kwargs={"autocommit": True},
            timeout=CONNECT_TIMEOUT_S,
            open=False,
        )
        try:
            # One connection first: a refused or rejected one fails at once, with its cause
            # (the pool only logs causes while it retries, then times out).
            probe = await psycopg.AsyncConnection.connect(
                self._conninfo, connect_timeout=int(CONNECT_TIMEOUT_S)
            )
            await probe.close()
            await pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
            self._pool = pool
            await self._migrate(migrations)
            await self._hold()
        except BaseException as exc:
            await pool.close()
            self._pool = None
            if isinstance(exc, psycopg.Error | PoolTimeout):
                raise translate(exc) from exc
            raise
        self._listener = asyncio.create_task(self._listen(), name="conveyor-pg-listen")
        # Subscribers expect events of writes made after open() returns.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), CONNECT_TIMEOUT_S)

    async def _migrate(self, migrations: Sequence[Migration]) -> None:
        async with self._connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT PRIMARY KEY,"
                " name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
            )
            cur = await conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            row = await cur.fetchone()
            done = int(row[0]) if row else 0
            for migration in migrations:
                if migration.version <= done:
                    continue
                await conn.execute(migration.sql.encode())
                await conn.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (%s, %s, %s)",
                    [migration.version, migration.name, clock.to_us(clock.now())],
                )

    def _connection(self) -> contextlib.AbstractAsyncContextManager[psycopg.AsyncConnection[Row]]:
        if self._pool is None:
            raise StoreUnavailable("the PostgreSQL store is not open")
        return self._pool.connection()

    async def _listen(self) -> None:
        delay = 0.1
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, connect_timeout=int(CONNECT_TIMEOUT_S)
                )
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._listening.set()
                    delay = 0.1
                    async for notify in conn.notifies():
                        try:
                            event = event_from_json(notify.payload)
                        except (ValueError, KeyError):
                            log.warning("ignoring a malformed notification %r", notify.payload)
                            continue
                        self._broadcaster.publish(event)
            except psycopg.Error as exc:
                log.warning("LISTEN connection lost (%s); reconnecting in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        holding, self._holding = self._holding, None
        if holding is not None:
            holding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await holding
        held, self._held = self._held, None
        if held is not None:
            await held.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _hold(self, replacing: psycopg.AsyncConnection[Row] | None = None) -> None:
        if replacing is not None:
            with contextlib.suppress(psycopg.Error):
                await replacing.close()
        try:
            self._held = await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, connect_timeout=int(CONNECT_TIMEOUT_S)
            )
        except psycopg.Error as exc:  # quick calls use the pool meanwhile
            log.warning("cannot open the connection of quick calls (%s); using the pool", exc)

    @contextlib.asynccontextmanager
    async def _quick(self) -> AsyncIterator[psycopg.AsyncConnection[Row]]:
        """The held connection while no other quick call uses it, else one of the pool.
        A pool connection costs a tenth of a status read's CPU to take and give back
        (profiled), more than the statement itself; the held one costs a flag."""
        held = self._held
        if held is None or self._held_busy or held.broken or held.closed:
            if held is None or held.broken or held.closed:
                self._rehold()
            async with self._connection() as conn:
                yield conn
            return
        self._held_busy = True
        try:
            yield held
        finally:
            self._held_busy = False
            if held.broken or held.closed or (
                held.info.transaction_status != pq.TransactionStatus.IDLE
            ):
                self._rehold()

    def _rehold(self) -> None:
        if self._pool is None or (self._holding is not None and not self._holding.done()):
            return  # closing (``close`` closes it), or being replaced already
        now = time.monotonic()
        if now < self._next_hold_at:
            return  # the store is down: try again in a second, the pool serves meanwhile
        self._next_hold_at = now + 1.0
        held, self._held = self._held, None
        self._holding = asyncio.create_task(self._hold(replacing=held))

    async def write(self, fn: Callable[[Any], Awaitable[T]], *, quick: bool = False) -> T:
        async def once() -> T:
            connection = self._quick() if quick else self._connection()
            async with connection as conn, conn.transaction(), conn.cursor() as cur:
                tx = PgTx(cur)
                result = await fn(tx)
                if tx.events:
                    await cur.execute(NOTIFY, notify_params(tx.events))
            return result

        return await _retried(once)

    async def statement(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        async def once() -> list[Row]:
            async with self._quick() as conn:  # autocommit: the statement commits
                cur = await conn.execute(to_pyformat(sql), list(params))
                return await cur.fetchall() if returns_rows(cur) else []

        return await _retried(once)

    async def read(self, fn: Callable[[Any], Awaitable[T]], *, quick: bool = False) -> T:
        try:
            connection = self._quick() if quick else self._connection()
            async with connection as conn, conn.cursor() as cur:
                return await fn(PgTx(cur))
        except (psycopg.Error, PoolTimeout) as exc:
            raise translate(exc) from exc

    def subscribe(self) -> Subscription:
        return self._broadcaster.subscribe()


async def _retried(once: Callable[[], Awaitable[T]]) -> T:
    """``once()``, again after a deadlock or serialization failure (with a short random
    pause), ``CONFLICT_RETRIES`` times at most; driver errors become store errors."""
    for attempt in range(CONFLICT_RETRIES):
        try:
            return await once()
        except TRANSIENT as exc:
            if attempt == CONFLICT_RETRIES - 1:
                raise translate(exc) from exc
            await asyncio.sleep(random.uniform(0.001, 0.02) * (attempt + 1))
        except (psycopg.Error, PoolTimeout) as exc:
            raise translate(exc) from exc
    raise AssertionError("unreachable")
