"""``Producer``: one token's enqueues and reads on one store, in the caller's thread.

Blocking by design: every store coroutine it calls runs on an inline driver whose awaits never
suspend, so ``drive`` completes it here (see ``server/store/inline.py``). No event loop, no
thread hand-over: a put is one transaction on this thread's own connection. ``put`` with
``within`` runs the same transaction body inside the caller's PostgreSQL transaction instead.

Cached, so that a put costs its transaction and little else: the token's workspace for
``TOKEN_CACHE_S`` (as the gateway), a queue's latest stub as the gateway keeps it (the
store's route cache: each put's write re-checks it, and a stale one is looked up again), the
output-link keys for ``KEYS_CACHE_S`` (as the gateway).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from conveyor import clock
from conveyor.errors import (
    ClientError,
    ConfigError,
    ConveyorError,
    HTTPError,
    NotFound,
    StaleRoute,
)
from conveyor.server.gateway.refusals import Unauthorized, status_of
from conveyor.server.gateway.signing import KEYS_REFRESH_S, LinkKeys
from conveyor.server.gateway.start_time import DELAY_HEADER, RUN_AT_HEADER, start_time
from conveyor.server.gateway.task_body import parse_batch, parse_call
from conveyor.server.gateway.views import task_json
from conveyor.server.store import sqlite_path
from conveyor.server.store.driver import Row, load_migrations
from conveyor.server.store.group_commit import EnqueueCall, write_alone, write_calls
from conveyor.server.store.inline import (
    InlinePostgresDriver,
    InlineSqliteDriver,
    drive,
    write_within,
    write_within_async,
)
from conveyor.server.store.records import NewTask, Stub, Workspace
from conveyor.server.store.sql import SqlStore

#: As the gateway's ``TOKEN_CACHE_S``: a valid token is trusted this long without asking again.
TOKEN_CACHE_S = 5.0
KEYS_CACHE_S = KEYS_REFRESH_S
#: As the gateway's default ``output_url_ttl_s``.
OUTPUT_URL_TTL_S = 3600
#: A call's headers, as the SDK builds them (one value each).
Headers = Mapping[str, str]


def _values(headers: Headers, name: str) -> list[str]:
    return [headers[name]] if name in headers else []


def _driver(url: str) -> InlineSqliteDriver | InlinePostgresDriver:
    if url.startswith("sqlite:"):
        return InlineSqliteDriver(sqlite_path(url))
    if url.startswith(("postgresql://", "postgres://")):
        return InlinePostgresDriver(url)
    raise ConfigError(
        f"unsupported store URL {url!r}; use sqlite:////absolute/path.db or "
        "postgresql://user@host:port/database"
    )


@contextmanager
def refused() -> Iterator[None]:
    """A refusal of the store or of the rules the gateway applies becomes the ``HTTPError``
    the HTTP client would raise for it (the status code the gateway answers)."""
    try:
        yield
    except (ClientError, ConfigError):
        raise
    except ConveyorError as exc:
        raise HTTPError(status_of(exc), exc.message) from exc


class Producer:
    """Enqueue and read as the token's workspace, through the store at ``url``."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url
        self._token = token
        self._driver = _driver(url)
        self._store = SqlStore(self._driver)
        self._checked = False
        self._workspace: tuple[float, Workspace] | None = None
        self._keys: tuple[float, LinkKeys] | None = None

    def close(self) -> None:
        """Close every thread's connection; the next call opens a new one."""
        drive(self._driver.close())

    # -- what a put needs ----------------------------------------------------------------------
    def workspace(self) -> Workspace:
        now = time.monotonic()
        cached = self._workspace
        if cached is not None and cached[0] > now:
            return cached[1]
        if not self._checked:
            drive(self._driver.open(load_migrations(self._driver.dialect.name)))
            self._checked = True
        if not self._token:
            raise Unauthorized("missing token: pass token= (or set CONVEYOR_TOKEN)")
        workspace = drive(self._store.authenticate(self._token))
        if workspace is None:
            raise Unauthorized("invalid token")
        self._workspace = (now + TOKEN_CACHE_S, workspace)
        return workspace

    def stub(self, name: str, cached: bool = True) -> Stub:
        """The latest stub of the queue ``name``, as ``POST /taskqueue/{name}`` resolves it
        (``cached``: from a recent look-up, which the put's write re-checks)."""
        workspace = self.workspace()
        stub = drive(self._store.resolve_stub(workspace.id, name, cached=cached))
        if stub is None:
            raise NotFound(f"unknown queue {name!r}")
        return stub

    def _stubs(self, name: str) -> Iterator[Stub]:
        """The stub to try a put on; again after ``StaleRoute``, the last time read afresh
        (not a kept look-up, so not re-checked: it cannot be stale)."""
        for cached in (True, True, False):
            yield self.stub(name, cached)

    # -- enqueue -------------------------------------------------------------------------------
    def put(
        self, name: str, body: Mapping[str, Any], headers: Headers, within: Any = None
    ) -> str:
        """``POST /taskqueue/{name}`` with ``body`` and ``headers`` (``Idempotency-Key``,
        ``Conveyor-Delay``, ``Conveyor-Run-At``)."""
        return self.put_batch(name, {"tasks": [body]}, headers, within, one=True)[0]

    def put_batch(
        self, name: str, body: Mapping[str, Any], headers: Headers, within: Any = None,
        *, one: bool = False,
    ) -> list[str]:
        """``POST /taskqueue/{name}/batch``: all tasks or none (``one``: the body of
        ``put``, its key as given)."""
        with refused():
            for stub in self._stubs(name):
                tasks = self._tasks(stub, body, headers, one)
                try:
                    return self._enqueue(stub, tasks, within) if tasks else []
                except StaleRoute:
                    continue
        raise AssertionError("unreachable: the last look-up is never stale")

    async def put_async(
        self, name: str, body: Mapping[str, Any], headers: Headers, within: Any
    ) -> list[str]:
        """``put`` (a one-element list) inside an ``AsyncConnection``'s transaction."""
        return await self.put_batch_async(name, {"tasks": [body]}, headers, within, one=True)

    async def put_batch_async(
        self, name: str, body: Mapping[str, Any], headers: Headers, within: Any,
        *, one: bool = False,
    ) -> list[str]:
        with refused():
            for stub in self._stubs(name):
                tasks = self._tasks(stub, body, headers, one)
                try:
                    return await self._enqueue_async(stub, tasks, within) if tasks else []
                except StaleRoute:
                    continue
        raise AssertionError("unreachable: the last look-up is never stale")

    @staticmethod
    def _tasks(stub: Stub, body: Mapping[str, Any], headers: Headers, one: bool) -> list[NewTask]:
        """The call's tasks, read as the gateway reads a request's body and headers."""
        callback_url = stub.queue_config.callback_url
        key = headers.get("Idempotency-Key") or None
        run_at = start_time(
            _values(headers, DELAY_HEADER), _values(headers, RUN_AT_HEADER),
            clock.to_us(clock.now()),
        )
        if one:
            return [parse_call(body["tasks"][0], callback_url, key, run_at=run_at)]
        return parse_batch(body, callback_url, key, run_at=run_at)

    def _call(self, stub: Stub, tasks: Sequence[NewTask]) -> EnqueueCall:
        t = clock.to_us(clock.now())
        return EnqueueCall(stub, tasks, stub.queue_config.max_pending_tasks, t,
                           latest=self._store.routes.holds(stub))

    def _enqueue(self, stub: Stub, tasks: Sequence[NewTask], within: Any) -> list[str]:
        call = self._call(stub, tasks)
        for_update = self._driver.dialect.for_update

        async def body(tx: Any) -> list[list[str] | Exception]:
            return await write_calls(tx, [call], for_update)

        notify = self._driver.dialect.notify
        if within is None:
            alone = drive(write_alone(notify, call, self._driver.statement))
            outcomes = [alone] if alone is not None else drive(self._driver.write(body))
        else:
            self._check_within(within)

            async def run(sql: str, params: Sequence[Any]) -> list[Row]:
                rows: list[Row] = write_within(within, lambda tx: tx.execute(sql, params))
                return rows

            alone = drive(write_alone(notify, call, run))  # one statement where it can
            outcomes = [alone] if alone is not None else write_within(within, body)
        return self._outcome(stub, outcomes[0])

    async def _enqueue_async(self, stub: Stub, tasks: Sequence[NewTask], within: Any) -> list[str]:
        call = self._call(stub, tasks)
        self._check_within(within)

        async def run(sql: str, params: Sequence[Any]) -> list[Row]:
            rows: list[Row] = await write_within_async(within, lambda tx: tx.execute(sql, params))
            return rows

        alone = await write_alone(self._driver.dialect.notify, call, run)
        if alone is not None:
            return self._outcome(stub, alone)
        outcomes = await write_within_async(
            within, lambda tx: write_calls(tx, [call], self._driver.dialect.for_update)
        )
        return self._outcome(stub, outcomes[0])

    def _check_within(self, conn: Any) -> None:
        if not isinstance(self._driver, InlinePostgresDriver):
            raise ConfigError(
                "within(conn) enqueues inside a PostgreSQL transaction; this store is SQLite "
                "(use put() on the client itself)"
            )
        import psycopg

        if not isinstance(conn, psycopg.Connection | psycopg.AsyncConnection):
            raise ConfigError(f"within() takes a psycopg connection, got {type(conn).__name__}")

    def _outcome(self, stub: Stub, outcome: list[str] | Exception) -> list[str]:
        if isinstance(outcome, Exception):
            if isinstance(outcome, NotFound | StaleRoute):  # resolve the name again
                self._store.routes.forget(stub)
            raise outcome
        return outcome

    # -- reads ---------------------------------------------------------------------------------
    def task(self, task_id: str, base_url: str) -> dict[str, Any]:
        """``GET /v2/task/{id}/``: the same JSON, output links under ``base_url``."""
        with refused():
            workspace = self.workspace()
            view = drive(self._store.get_task(task_id, workspace.id))
            if view is None:
                raise NotFound(f"unknown task {task_id!r}")
            return task_json(view, base_url, self._link_keys(), OUTPUT_URL_TTL_S, clock.now())

    def cancel(self, task_ids: Sequence[str]) -> dict[str, list[str]]:
        """``POST /v2/task/cancel/``."""
        with refused():
            workspace = self.workspace()
            result = drive(self._store.cancel(workspace.id, list(dict.fromkeys(task_ids))))
            return {
                "cancelled": result.cancelled,
                "already_finished": result.already_finished,
                "not_found": result.not_found,
            }

    def _link_keys(self) -> LinkKeys:
        now = time.monotonic()
        cached = self._keys
        if cached is None or cached[0] <= now:
            cached = self._keys = (now + KEYS_CACHE_S, LinkKeys(drive(self._store.server_keys())))
        return cached[1]


_producers: dict[tuple[str, str | None], Producer] = {}
_producers_lock = threading.Lock()


def producer_for(url: str, token: str | None) -> Producer:
    """The process's producer for this store and token: clients made per call (as
    ``square.put`` does) share its connections and caches."""
    with _producers_lock:
        producer = _producers.get((url, token))
        if producer is None:
            producer = _producers[(url, token)] = Producer(url, token)
        return producer
