"""The store over SQL: one implementation of ``Store`` for both backends.

Statements are written once with ``?`` placeholders; a :class:`Driver` runs them (translating
placeholders) and supplies the few dialect fragments that differ. Every status write is a
guarded ``UPDATE … WHERE status IN <sources>`` built from ``conveyor.tasks``; writes from an
attempt are also fenced (``AND fence = ?``), so a refused write matches no row and changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import orjson

from conveyor import clock
from conveyor.errors import NotFound, OutputTooLarge, StoreError
from conveyor.policy import backoff_s, should_retry
from conveyor.store.base import (
    CONTAINER_STALE_S,
    DEFAULT_MAX_OUTPUT_BYTES,
    Subscription,
)
from conveyor.store.enqueues import Enqueuer
from conveyor.store.records import (
    DEPLOYMENT,
    SERVE,
    Callback,
    CancelResult,
    Event,
    NewTask,
    Outcome,
    OutputInfo,
    QueueSummary,
    Stub,
    StubLoad,
    StubType,
    SweepReport,
    TaskFilter,
    TaskRecord,
    TaskView,
    VersionSummary,
    Workspace,
)
from conveyor.tasks import IN_FLIGHT, WAITING, TaskStatus, guard_sql, sources_of, sql_list

T = TypeVar("T")
Row = tuple[Any, ...]

#: Rows one sweep pass handles per kind; a sweeper runs periodically, so the rest wait a turn.
SWEEP_BATCH = 1000
#: Error recorded on an attempt whose lease ran out.
LEASE_LOST_ERROR = orjson.dumps(
    {
        "type": "ContainerLost",
        "message": "the container running this attempt stopped renewing its lease",
        "traceback": None,
    }
).decode()

_TASK_COLUMNS = (
    "id", "workspace_id", "stub_id", "status", "payload", "callback_url", "attempt", "fence",
    "max_retries", "timeout_s", "ttl_s", "retry_backoff_s", "container_id", "created_at",
    "started_at", "ended_at", "updated_at", "result", "error",
)
_STUB_COLUMNS = (
    "id", "workspace_id", "name", "type", "version", "config", "config_version", "object_id",
    "created_at", "updated_at",
)
_WORKSPACE_COLUMNS = "id, name, signing_secret, created_at"
_WAITING = sql_list(WAITING)
_TERMINAL_OUTCOMES = (TaskStatus.COMPLETE, TaskStatus.FAILED, TaskStatus.TIMEOUT)
_CANCELLABLE = sources_of(TaskStatus.CANCELLED)


def _columns(names: Sequence[str], alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + name for name in names)


TASK_COLS = _columns(_TASK_COLUMNS)
_T_COLS = _columns(_TASK_COLUMNS, "t")
_S_COLS = _columns(_STUB_COLUMNS, "s")
_NT, _NS = len(_TASK_COLUMNS), len(_STUB_COLUMNS)


def _now_us(now: float | None) -> int:
    return clock.to_us(clock.now() if now is None else now)


def _canonical_id(text: str) -> str | None:
    """The stored form of a task/stub/output id, or None when ``text`` is not a UUID."""
    try:
        return str(uuid.UUID(str(text)))
    except ValueError:
        return None


def _in(n: int) -> str:
    return "(" + ",".join("?" * n) + ")"


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, number = text.partition(":")
        if prefix != "seq" or not number.isdigit():
            raise ValueError
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValueError(f"malformed cursor {cursor!r}") from None


def _task(row: Sequence[Any]) -> TaskRecord:
    return TaskRecord(
        id=row[0], workspace_id=row[1], stub_id=row[2], status=TaskStatus(row[3]),
        payload=row[4], callback_url=row[5], attempt=int(row[6]), fence=int(row[7]),
        max_retries=int(row[8]), timeout_s=float(row[9]), ttl_s=float(row[10]),
        retry_backoff_s=float(row[11]), container_id=row[12], created_at=int(row[13]),
        started_at=row[14], ended_at=row[15], updated_at=int(row[16]), result=row[17],
        error=row[18],
    )


def _stub(row: Sequence[Any]) -> Stub:
    return Stub(
        id=row[0], workspace_id=row[1], name=row[2], type=row[3], version=int(row[4]),
        config=row[5], config_version=int(row[6]), object_id=int(row[7]),
        created_at=int(row[8]), updated_at=int(row[9]),
    )


def _workspace(row: Sequence[Any]) -> Workspace:
    return Workspace(id=row[0], name=row[1], signing_secret=row[2], created_at=int(row[3]))


def _callback_body(status: TaskStatus, result: str | None) -> bytes:
    """``{"data": <result>}`` for COMPLETE, ``{"data": {}}`` otherwise (DESIGN A6)."""
    data = result if status is TaskStatus.COMPLETE and result is not None else "{}"
    return b'{"data":' + data.encode() + b"}"


def _config_text(config: Mapping[str, Any]) -> str:
    return orjson.dumps(dict(config), option=orjson.OPT_SORT_KEYS).decode()


# -- the driver seam ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    #: Appended to a claim's inner SELECT so concurrent claimers pass over each other's rows.
    skip_locked: str
    #: Appended to a SELECT that must lock its rows until commit.
    for_update: str


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

    async def write(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        """Run ``fn`` in a write transaction (retried on transient conflicts)."""

    async def read(self, fn: Callable[[Tx], Awaitable[T]]) -> T: ...

    def subscribe(self) -> Subscription: ...


# -- the store ----------------------------------------------------------------------------------


class SqlStore:
    """``conveyor.store.base.Store`` over a :class:`Driver`."""

    def __init__(self, driver: Driver, *, max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES) -> None:
        self._stats = _StatsCache()
        self.driver = driver
        self.max_output_bytes = max_output_bytes
        d = driver.dialect
        self._skip_locked = d.skip_locked
        self._for_update = d.for_update
        self._enqueuer = Enqueuer(driver, d.for_update)

    # -- lifecycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        await self.driver.open(load_migrations(self.driver.dialect.name))

    async def close(self) -> None:
        await self.driver.close()

    async def ping(self) -> None:
        await self.driver.read(lambda tx: tx.execute("SELECT 1"))

    async def schema_version(self) -> int:
        rows = await self.driver.read(
            lambda tx: tx.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        )
        return int(rows[0][0])

    # -- workspaces and tokens ---------------------------------------------------------------
    async def ensure_workspace(self, name: str) -> Workspace:
        async def op(tx: Tx) -> Workspace:
            await tx.execute(
                "INSERT INTO workspaces (id, name, signing_secret, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (name) DO NOTHING",
                [str(uuid.uuid4()), name, secrets.token_hex(32), _now_us(None)],
            )
            rows = await tx.execute(
                f"SELECT {_WORKSPACE_COLUMNS} FROM workspaces WHERE name = ?", [name]
            )
            return _workspace(rows[0])

        return await self.driver.write(op)

    async def get_workspace(self, workspace_id: str) -> Workspace | None:
        rows = await self.driver.read(
            lambda tx: tx.execute(
                f"SELECT {_WORKSPACE_COLUMNS} FROM workspaces WHERE id = ?", [workspace_id]
            )
        )
        return _workspace(rows[0]) if rows else None

    async def create_token(self, workspace_id: str, token: str | None = None) -> str:
        clear = token if token is not None else secrets.token_urlsafe(32)
        digest = hashlib.sha256(clear.encode()).hexdigest()

        async def op(tx: Tx) -> None:
            if not await tx.execute("SELECT 1 FROM workspaces WHERE id = ?", [workspace_id]):
                raise NotFound(f"workspace {workspace_id} not found")
            await tx.execute(
                "INSERT INTO tokens (hash, workspace_id, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT (hash) DO NOTHING",
                [digest, workspace_id, _now_us(None)],
            )
            owner = await tx.execute("SELECT workspace_id FROM tokens WHERE hash = ?", [digest])
            if owner[0][0] != workspace_id:
                raise StoreError("this token already belongs to another workspace")

        await self.driver.write(op)
        return clear

    async def authenticate(self, token: str) -> Workspace | None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        rows = await self.driver.read(
            lambda tx: tx.execute(
                "SELECT w.id, w.name, w.signing_secret, w.created_at FROM tokens k"
                " JOIN workspaces w ON w.id = k.workspace_id WHERE k.hash = ?",
                [digest],
            )
        )
        return _workspace(rows[0]) if rows else None

    # -- stubs, deployments, code objects ----------------------------------------------------
    async def _store_object(self, tx: Tx, workspace_id: str, code: bytes, t: int) -> int:
        digest = hashlib.sha256(code).hexdigest()
        await tx.execute(
            "INSERT INTO objects (workspace_id, sha256, data, created_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (workspace_id, sha256) DO NOTHING",
            [workspace_id, digest, code, t],
        )
        rows = await tx.execute(
            "SELECT id FROM objects WHERE workspace_id = ? AND sha256 = ?", [workspace_id, digest]
        )
        return int(rows[0][0])

    async def _insert_stub(
        self, tx: Tx, workspace_id: str, name: str, type_: StubType, config: str, code: bytes
    ) -> Stub:
        t = _now_us(None)
        if not await tx.execute("SELECT 1 FROM workspaces WHERE id = ?", [workspace_id]):
            raise NotFound(f"workspace {workspace_id} not found")
        object_id = await self._store_object(tx, workspace_id, code, t)
        # A concurrent deploy may take the same version first (PostgreSQL): take the next one.
        for _ in range(20):
            rows = await tx.execute(
                f"INSERT INTO stubs ({_columns(_STUB_COLUMNS)})"
                " SELECT ?, ?, ?, ?, COALESCE(MAX(version), 0) + 1, ?, 1, ?, ?, ?"
                " FROM stubs WHERE workspace_id = ? AND name = ?"
                " ON CONFLICT (workspace_id, name, version) DO NOTHING"
                f" RETURNING {_columns(_STUB_COLUMNS)}",
                [str(uuid.uuid4()), workspace_id, name, type_, config, object_id, t, t,
                 workspace_id, name],
            )
            if rows:
                return _stub(rows[0])
        raise StoreError(f"could not allocate a version for queue {name!r}")

    async def deploy_stub(
        self, workspace_id: str, name: str, config: Mapping[str, Any], code: bytes
    ) -> Stub:
        text = _config_text(config)
        return await self.driver.write(
            lambda tx: self._insert_stub(tx, workspace_id, name, DEPLOYMENT, text, code)
        )

    async def upsert_serve_stub(
        self, workspace_id: str, name: str, config: Mapping[str, Any], code: bytes
    ) -> Stub:
        text = _config_text(config)

        async def op(tx: Tx) -> Stub:
            rows = await tx.execute(
                f"SELECT {_columns(_STUB_COLUMNS)} FROM stubs"
                " WHERE workspace_id = ? AND name = ? AND type = ?"
                f" ORDER BY version DESC LIMIT 1{self._for_update}",
                [workspace_id, name, SERVE],
            )
            if not rows:
                return await self._insert_stub(tx, workspace_id, name, SERVE, text, code)
            stub = _stub(rows[0])
            t = _now_us(None)
            object_id = await self._store_object(tx, workspace_id, code, t)
            if stub.config == text and stub.object_id == object_id:
                return stub
            bump = 1 if stub.config != text else 0
            updated = await tx.execute(
                "UPDATE stubs SET config = ?, object_id = ?, config_version = config_version + ?,"
                f" updated_at = ? WHERE id = ? RETURNING {_columns(_STUB_COLUMNS)}",
                [text, object_id, bump, t, stub.id],
            )
            return _stub(updated[0])

        return await self.driver.write(op)

    async def get_stub(self, stub_id: str) -> Stub | None:
        key = _canonical_id(stub_id)
        if key is None:
            return None
        rows = await self.driver.read(
            lambda tx: tx.execute(
                f"SELECT {_columns(_STUB_COLUMNS)} FROM stubs WHERE id = ?", [key]
            )
        )
        return _stub(rows[0]) if rows else None

    async def resolve_stub(
        self, workspace_id: str, name: str, version: int | None = None
    ) -> Stub | None:
        sql = f"SELECT {_columns(_STUB_COLUMNS)} FROM stubs WHERE workspace_id = ? AND name = ?"
        params: list[Any] = [workspace_id, name]
        if version is None:
            sql += " ORDER BY version DESC LIMIT 1"
        else:
            sql += " AND version = ?"
            params.append(version)
        rows = await self.driver.read(lambda tx: tx.execute(sql, params))
        return _stub(rows[0]) if rows else None

    async def list_stubs(
        self, workspace_id: str | None = None, types: Sequence[StubType] | None = None
    ) -> list[Stub]:
        sql = f"SELECT {_columns(_STUB_COLUMNS)} FROM stubs WHERE 1 = 1"
        params: list[Any] = []
        if workspace_id is not None:
            sql += " AND workspace_id = ?"
            params.append(workspace_id)
        if types is not None:
            if not types:
                return []
            sql += f" AND type IN {_in(len(types))}"
            params.extend(types)
        sql += " ORDER BY created_at, name, version"
        rows = await self.driver.read(lambda tx: tx.execute(sql, params))
        return [_stub(row) for row in rows]

    async def get_object(self, object_id: int) -> bytes:
        rows = await self.driver.read(
            lambda tx: tx.execute("SELECT data FROM objects WHERE id = ?", [object_id])
        )
        if not rows:
            raise NotFound(f"code object {object_id} not found")
        return bytes(rows[0][0])

    # -- tasks: enqueue and claim ------------------------------------------------------------
    async def enqueue(
        self, stub: Stub, tasks: Sequence[NewTask], max_pending: int, now: float | None = None
    ) -> list[str]:
        if not tasks:
            return []
        return await self._enqueuer.enqueue(stub, tasks, max_pending, _now_us(now))

    async def claim(
        self, stub_id: str, container_id: str, limit: int, lease_s: float, now: float | None = None
    ) -> list[TaskRecord]:
        if limit <= 0:
            return []
        t = _now_us(now)

        async def op(tx: Tx) -> list[TaskRecord]:
            rows = await tx.execute(
                "WITH picked AS MATERIALIZED (SELECT id FROM tasks WHERE stub_id = ?"
                f" AND status IN {_WAITING} AND (status = 'PENDING' OR runnable_at <= ?)"
                f" ORDER BY seq LIMIT ?{self._skip_locked})"
                " UPDATE tasks SET status = 'RUNNING', attempt = attempt + 1, fence = fence + 1,"
                " started_at = COALESCE(started_at, ?), container_id = ?, lease_expires_at = ?,"
                " expires_at = NULL, updated_at = ? WHERE id IN (SELECT id FROM picked)"
                f" AND status IN {guard_sql(TaskStatus.RUNNING)} RETURNING seq, {TASK_COLS}",
                [stub_id, t, limit, t, container_id, t + clock.to_us(lease_s), t],
            )
            claimed = [_task(row[1:]) for row in sorted(rows, key=lambda row: int(row[0]))]
            for task in claimed:
                tx.emit(Event("task", stub_id, task.id, TaskStatus.RUNNING, container_id))
            return claimed

        return await self.driver.write(op)

    # -- tasks: attempts ---------------------------------------------------------------------
    async def heartbeat(
        self,
        container_id: str,
        running: Sequence[tuple[str, int]],
        lease_s: float,
        now: float | None = None,
    ) -> list[str]:
        t = _now_us(now)

        async def op(tx: Tx) -> list[str]:
            await tx.execute(
                "UPDATE containers SET heartbeat_at = ? WHERE id = ?", [t, container_id]
            )
            if not running:
                return []
            results = await tx.execute_each(
                "UPDATE tasks SET lease_expires_at = ? WHERE id = ? AND fence = ?"
                " AND status = 'RUNNING' RETURNING id",
                [(t + clock.to_us(lease_s), task_id, fence) for task_id, fence in running],
            )
            return [tid for (tid, _), rows in zip(running, results, strict=True) if not rows]

        return await self.driver.write(op)

    async def finish(self, outcomes: Sequence[Outcome], now: float | None = None) -> list[bool]:
        for outcome in outcomes:
            if outcome.status not in _TERMINAL_OUTCOMES:
                raise ValueError(f"an attempt cannot end as {outcome.status}")
            for name, data in outcome.outputs:
                if len(data) > self.max_output_bytes:
                    raise OutputTooLarge(
                        f"output {name!r} is {len(data)} bytes; the limit is "
                        f"{self.max_output_bytes}"
                    )
        if not outcomes:
            return []
        t = _now_us(now)

        async def op(tx: Tx) -> list[bool]:
            # Retryable failures need the task's attempt count to choose RETRY or FAILED.
            plan: dict[int, TaskStatus] = {}
            retry_at: dict[int, int] = {}
            retryable = [i for i, o in enumerate(outcomes)
                         if o.status is TaskStatus.FAILED and o.retryable]
            if retryable:
                rows = await tx.execute(
                    "SELECT id, fence, attempt, max_retries, retry_backoff_s FROM tasks"
                    f" WHERE status = 'RUNNING' AND id IN {_in(len(retryable))}",
                    [outcomes[i].task_id for i in retryable],
                )
                state = {(row[0], int(row[1])): row[2:] for row in rows}
                for i in retryable:
                    found = state.get((outcomes[i].task_id, outcomes[i].fence))
                    if found is not None and should_retry(int(found[0]), int(found[1]), True):
                        plan[i] = TaskStatus.RETRY
                        retry_at[i] = t + clock.to_us(backoff_s(float(found[2]), int(found[0])))
            applied = [False] * len(outcomes)
            by_status: dict[TaskStatus, list[int]] = defaultdict(list)
            for i, outcome in enumerate(outcomes):
                by_status[plan.get(i, outcome.status)].append(i)
            for status, indexes in by_status.items():
                if status is TaskStatus.RETRY:
                    results = await tx.execute_each(
                        "UPDATE tasks SET status = 'RETRY', error = ?, runnable_at = ?,"
                        " expires_at = ? + CAST(ttl_s * 1000000 AS BIGINT),"
                        " lease_expires_at = NULL, updated_at = ? WHERE id = ? AND fence = ?"
                        f" AND status IN {guard_sql(status)}"
                        " RETURNING stub_id, container_id, callback_url, workspace_id",
                        [(outcomes[i].error, retry_at[i], retry_at[i], t, outcomes[i].task_id,
                          outcomes[i].fence) for i in indexes],
                    )
                else:
                    results = await tx.execute_each(
                        f"UPDATE tasks SET status = '{status.value}', result = ?, error = ?,"
                        " ended_at = ?, lease_expires_at = NULL, updated_at = ?"
                        f" WHERE id = ? AND fence = ? AND status IN {guard_sql(status)}"
                        " RETURNING stub_id, container_id, callback_url, workspace_id",
                        [(outcomes[i].result, outcomes[i].error, t, t, outcomes[i].task_id,
                          outcomes[i].fence) for i in indexes],
                    )
                callbacks = []
                for i, rows in zip(indexes, results, strict=True):
                    if not rows:
                        continue
                    applied[i] = True
                    stub_id, container_id, callback_url, workspace_id = rows[0]
                    tx.emit(Event("task", stub_id, outcomes[i].task_id, status, container_id))
                    if status is TaskStatus.RETRY:
                        tx.emit(Event("enqueued", stub_id))
                    elif callback_url:
                        callbacks.append((outcomes[i].task_id, workspace_id, callback_url,
                                          status, outcomes[i].result))
                await _insert_callbacks(tx, callbacks, t)
            outputs = [
                (str(uuid.uuid4()), o.task_id, name, len(data), data, t)
                for i, o in enumerate(outcomes) if applied[i] for name, data in o.outputs
            ]
            if outputs:
                await tx.executemany(
                    "INSERT INTO outputs (id, task_id, name, size, data, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    outputs,
                )
            return applied

        return await self.driver.write(op)

    async def release(self, running: Sequence[tuple[str, int]], now: float | None = None) -> int:
        if not running:
            return 0
        t = _now_us(now)

        async def op(tx: Tx) -> int:
            results = await tx.execute_each(
                "UPDATE tasks SET status = 'RETRY', attempt = attempt - 1, runnable_at = ?,"
                " expires_at = ? + CAST(ttl_s * 1000000 AS BIGINT), lease_expires_at = NULL,"
                " updated_at = ? WHERE id = ? AND fence = ?"
                f" AND status IN {guard_sql(TaskStatus.RETRY)} RETURNING stub_id",
                [(t, t, t, task_id, fence) for task_id, fence in running],
            )
            moved = 0
            for (task_id, _), rows in zip(running, results, strict=True):
                if rows:
                    moved += 1
                    tx.emit(Event("task", rows[0][0], task_id, TaskStatus.RETRY))
                    tx.emit(Event("enqueued", rows[0][0]))
            return moved

        return await self.driver.write(op)

    async def cancel(
        self, workspace_id: str, task_ids: Sequence[str], now: float | None = None
    ) -> CancelResult:
        t = _now_us(now)
        given: dict[str, str | None] = {}
        for task_id in task_ids:
            given.setdefault(task_id, _canonical_id(task_id))
        keys = sorted({key for key in given.values() if key is not None})

        async def op(tx: Tx) -> CancelResult:
            before: dict[str, Row] = {}
            if keys:
                rows = await tx.execute(
                    "SELECT id, status, stub_id, container_id FROM tasks"
                    f" WHERE workspace_id = ? AND id IN {_in(len(keys))}"
                    f" ORDER BY id{self._for_update}",
                    [workspace_id, *keys],
                )
                before = {row[0]: row for row in rows}
            live = sorted(k for k, row in before.items()
                          if TaskStatus(row[1]) in _CANCELLABLE)
            done: set[str] = set()
            if live:
                rows = await tx.execute(
                    "UPDATE tasks SET status = 'CANCELLED', ended_at = ?, updated_at = ?,"
                    " expires_at = NULL, lease_expires_at = NULL"
                    f" WHERE workspace_id = ? AND id IN {_in(len(live))}"
                    f" AND status IN {guard_sql(TaskStatus.CANCELLED)}"
                    " RETURNING id, callback_url",
                    [t, t, workspace_id, *live],
                )
                done = {row[0] for row in rows}
                callbacks = [(row[0], workspace_id, row[1], TaskStatus.CANCELLED, None)
                             for row in rows if row[1]]
                await _insert_callbacks(tx, callbacks, t)
                for task_id in sorted(done):
                    _, status, stub_id, container_id = before[task_id]
                    if status == TaskStatus.RUNNING:
                        tx.emit(Event("cancel", stub_id, task_id, TaskStatus.CANCELLED,
                                      container_id))
                    tx.emit(Event("task", stub_id, task_id, TaskStatus.CANCELLED, container_id))
            result = CancelResult()
            for task_id, key in given.items():
                if key is None or key not in before:
                    result.not_found.append(task_id)
                elif key in done:
                    result.cancelled.append(task_id)
                else:
                    result.already_finished.append(task_id)
            return result

        return await self.driver.write(op)

    async def sweep(self, now: float | None = None) -> SweepReport:
        t = _now_us(now)

        async def op(tx: Tx) -> SweepReport:
            retried, failed = await self._sweep_leases(tx, t)
            expired = await tx.execute(
                "WITH picked AS MATERIALIZED (SELECT id FROM tasks WHERE expires_at <= ?"
                f" AND status IN {_WAITING} LIMIT {SWEEP_BATCH}{self._skip_locked})"
                " UPDATE tasks SET status = 'EXPIRED', ended_at = ?, updated_at = ?,"
                " expires_at = NULL WHERE id IN (SELECT id FROM picked)"
                f" AND status IN {guard_sql(TaskStatus.EXPIRED)}"
                " RETURNING id, stub_id, callback_url, workspace_id",
                [t, t, t],
            )
            for task_id, stub_id, _, _ in expired:
                tx.emit(Event("task", stub_id, task_id, TaskStatus.EXPIRED))
            await _insert_callbacks(
                tx,
                [(row[0], row[3], row[2], TaskStatus.EXPIRED, None) for row in expired if row[2]],
                t,
            )
            removed = await tx.execute(
                "DELETE FROM containers WHERE heartbeat_at < ? RETURNING id",
                [t - clock.to_us(CONTAINER_STALE_S)],
            )
            return SweepReport(len(expired), retried, failed, len(removed))

        return await self.driver.write(op)

    async def _sweep_leases(self, tx: Tx, t: int) -> tuple[int, int]:
        """Expired leases: the container is gone, which counts as a retryable failure.

        Oldest lease first, along the ``tasks_lease`` index: ordering by anything else let
        SQLite walk every stored task (1.5 s at a million, holding the write lock)."""
        rows = await tx.execute(
            "SELECT id, fence, attempt, max_retries, retry_backoff_s FROM tasks"
            " WHERE status = 'RUNNING' AND lease_expires_at < ? ORDER BY lease_expires_at"
            f" LIMIT {SWEEP_BATCH}{self._skip_locked}",
            [t],
        )
        retry, fail = [], []
        for task_id, fence, attempt, max_retries, base_s in rows:
            if should_retry(int(attempt), int(max_retries), True):
                retry.append((task_id, int(fence), t + clock.to_us(backoff_s(base_s, attempt))))
            else:
                fail.append((task_id, int(fence)))
        retried = failed = 0
        if retry:
            results = await tx.execute_each(
                "UPDATE tasks SET status = 'RETRY', error = ?, runnable_at = ?,"
                " expires_at = ? + CAST(ttl_s * 1000000 AS BIGINT), lease_expires_at = NULL,"
                " updated_at = ? WHERE id = ? AND fence = ?"
                f" AND status IN {guard_sql(TaskStatus.RETRY)} RETURNING stub_id",
                [(LEASE_LOST_ERROR, at, at, t, task_id, fence) for task_id, fence, at in retry],
            )
            for (task_id, _, _), found in zip(retry, results, strict=True):
                if found:
                    retried += 1
                    tx.emit(Event("task", found[0][0], task_id, TaskStatus.RETRY))
                    tx.emit(Event("enqueued", found[0][0]))
        if fail:
            results = await tx.execute_each(
                "UPDATE tasks SET status = 'FAILED', error = ?, ended_at = ?,"
                " lease_expires_at = NULL, updated_at = ? WHERE id = ? AND fence = ?"
                f" AND status IN {guard_sql(TaskStatus.FAILED)}"
                " RETURNING stub_id, callback_url, workspace_id",
                [(LEASE_LOST_ERROR, t, t, task_id, fence) for task_id, fence in fail],
            )
            callbacks = []
            for (task_id, _), found in zip(fail, results, strict=True):
                if found:
                    failed += 1
                    stub_id, callback_url, workspace_id = found[0]
                    tx.emit(Event("task", stub_id, task_id, TaskStatus.FAILED))
                    if callback_url:
                        callbacks.append((task_id, workspace_id, callback_url,
                                          TaskStatus.FAILED, None))
            await _insert_callbacks(tx, callbacks, t)
        return retried, failed

    # -- queries -----------------------------------------------------------------------------
    async def get_task(self, task_id: str, workspace_id: str | None = None) -> TaskView | None:
        key = _canonical_id(task_id)
        if key is None:
            return None
        stale = _now_us(None) - clock.to_us(CONTAINER_STALE_S)
        sql = (f"SELECT {_T_COLS}, {_S_COLS} FROM tasks t"
               " JOIN stubs s ON s.id = t.stub_id WHERE t.id = ?")
        params: list[Any] = [key]
        if workspace_id is not None:
            sql += " AND t.workspace_id = ?"
            params.append(workspace_id)

        async def op(tx: Tx) -> TaskView | None:
            rows = await tx.execute(sql, params)
            if not rows:
                return None
            task = _task(rows[0])
            outputs = await _outputs_of(tx, [key])
            depth, containers = await self._stats.get(tx, [task.stub_id], stale)
            return TaskView(task, _stub(rows[0][_NT:_NT + _NS]), outputs.get(key, []),
                            depth.get(task.stub_id, 0), containers.get(task.stub_id, 0))

        return await self.driver.read(op)

    async def list_tasks(
        self,
        workspace_id: str,
        filter: TaskFilter,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[TaskView], str | None]:
        sql = (f"SELECT t.seq, {_T_COLS}, {_S_COLS} FROM tasks t"
               " JOIN stubs s ON s.id = t.stub_id WHERE t.workspace_id = ?")
        params: list[Any] = [workspace_id]
        if filter.statuses is not None:
            if not filter.statuses:
                return [], None
            sql += f" AND t.status IN {sql_list(filter.statuses)}"
        for column, value in (("s.name", filter.queue), ("t.stub_id", filter.stub_id),
                              ("t.container_id", filter.container_id)):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        if filter.created_after is not None:
            sql += " AND t.created_at > ?"
            params.append(filter.created_after)
        if filter.created_before is not None:
            sql += " AND t.created_at < ?"
            params.append(filter.created_before)
        if cursor is not None:
            sql += " AND t.seq < ?"
            params.append(decode_cursor(cursor))
        sql += " ORDER BY t.seq DESC LIMIT ?"
        params.append(max(1, limit) + 1)
        stale = _now_us(None) - clock.to_us(CONTAINER_STALE_S)

        async def op(tx: Tx) -> tuple[list[TaskView], str | None]:
            rows = await tx.execute(sql, params)
            more = len(rows) > max(1, limit)
            rows = rows[: max(1, limit)]
            if not rows:
                return [], None
            tasks = [_task(row[1:]) for row in rows]
            stubs = {row[1 + _NT]: _stub(row[1 + _NT:]) for row in rows}
            outputs = await _outputs_of(tx, [task.id for task in tasks])
            depth, containers = await self._stats.get(tx, list(stubs), stale)
            views = [
                TaskView(task, stubs[task.stub_id], outputs.get(task.id, []),
                         depth.get(task.stub_id, 0), containers.get(task.stub_id, 0))
                for task in tasks
            ]
            return views, encode_cursor(int(rows[-1][0])) if more else None

        return await self.driver.read(op)

    async def queue_summaries(
        self, workspace_id: str, name: str | None = None
    ) -> list[QueueSummary]:
        stale = _now_us(None) - clock.to_us(CONTAINER_STALE_S)
        where = " WHERE s.workspace_id = ?" + (" AND s.name = ?" if name is not None else "")
        params: list[Any] = [workspace_id] + ([name] if name is not None else [])

        async def op(tx: Tx) -> list[QueueSummary]:
            stubs = await tx.execute(
                f"SELECT s.name, s.version, s.id, s.type, s.created_at FROM stubs s{where}"
                " ORDER BY s.name, s.version",
                params,
            )
            # Grouped by stub along the (stub_id, status) index: no sort of the whole table.
            by_stub = await tx.execute(
                "SELECT t.stub_id, t.status, COUNT(*) FROM tasks t"
                f" WHERE t.stub_id IN (SELECT s.id FROM stubs s{where})"
                " GROUP BY t.stub_id, t.status",
                params,
            )
            name_of = {row[2]: row[0] for row in stubs}
            counts = [(name_of[stub_id], status, n) for stub_id, status, n in by_stub]
            live = await tx.execute(
                "SELECT s.name, COUNT(*) FROM containers c JOIN stubs s ON s.id = c.stub_id"
                f"{where} AND c.heartbeat_at >= ? GROUP BY s.name",
                [*params, stale],
            )
            return _summaries(stubs, counts, dict(live))

        return await self.driver.read(op)

    async def stub_loads(self, stub_ids: Sequence[str], now: float | None = None) -> list[StubLoad]:
        if not stub_ids:
            return []
        t = _now_us(now)
        rows = await self.driver.read(
            lambda tx: tx.execute(
                "SELECT stub_id,"
                " SUM(CASE WHEN status = 'PENDING' OR (status = 'RETRY' AND runnable_at <= ?)"
                " THEN 1 ELSE 0 END), SUM(CASE WHEN status = 'RUNNING' THEN 1 ELSE 0 END)"
                f" FROM tasks WHERE stub_id IN {_in(len(stub_ids))}"
                f" AND status IN {sql_list(IN_FLIGHT)} GROUP BY stub_id",
                [t, *stub_ids],
            )
        )
        found = {row[0]: (int(row[1]), int(row[2])) for row in rows}
        return [StubLoad(stub_id, *found.get(stub_id, (0, 0))) for stub_id in stub_ids]

    # -- containers --------------------------------------------------------------------------
    async def register_container(
        self, container_id: str, stub_id: str, agent_id: str, now: float | None = None
    ) -> None:
        t = _now_us(now)
        await self.driver.write(
            lambda tx: tx.execute(
                "INSERT INTO containers (id, stub_id, agent_id, started_at, heartbeat_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE"
                " SET heartbeat_at = excluded.heartbeat_at",
                [container_id, stub_id, agent_id, t, t],
            )
        )

    async def deregister_container(self, container_id: str) -> None:
        await self.driver.write(
            lambda tx: tx.execute("DELETE FROM containers WHERE id = ?", [container_id])
        )

    async def active_containers(self, stub_id: str, now: float | None = None) -> int:
        stale = _now_us(now) - clock.to_us(CONTAINER_STALE_S)
        rows = await self.driver.read(
            lambda tx: tx.execute(
                "SELECT COUNT(*) FROM containers WHERE stub_id = ? AND heartbeat_at >= ?",
                [stub_id, stale],
            )
        )
        return int(rows[0][0])

    # -- outputs -----------------------------------------------------------------------------
    async def get_output(self, output_id: str) -> tuple[OutputInfo, bytes] | None:
        key = _canonical_id(output_id)
        if key is None:
            return None
        rows = await self.driver.read(
            lambda tx: tx.execute(
                "SELECT id, task_id, name, size, created_at, data FROM outputs WHERE id = ?",
                [key],
            )
        )
        if not rows:
            return None
        row = rows[0]
        return OutputInfo(row[0], row[1], row[2], int(row[3]), int(row[4])), bytes(row[5])

    # -- callbacks outbox --------------------------------------------------------------------
    async def claim_callbacks(
        self, limit: int, lease_s: float, now: float | None = None
    ) -> list[Callback]:
        """Due callbacks, leased for ``lease_s``; ``attempts`` counts this delivery too."""
        if limit <= 0:
            return []
        t = _now_us(now)
        rows = await self.driver.write(
            lambda tx: tx.execute(
                "WITH picked AS MATERIALIZED (SELECT id FROM callbacks WHERE state = 'PENDING'"
                " AND next_attempt_at <= ? AND (leased_until IS NULL OR leased_until <= ?)"
                f" ORDER BY next_attempt_at LIMIT ?{self._skip_locked})"
                " UPDATE callbacks SET leased_until = ?, attempts = attempts + 1"
                " WHERE id IN (SELECT id FROM picked) AND state = 'PENDING'"
                " RETURNING id, task_id, workspace_id, url, status, body, attempts",
                [t, t, limit, t + clock.to_us(lease_s)],
            )
        )
        return [Callback(row[0], row[1], row[2], row[3], TaskStatus(row[4]), bytes(row[5]),
                         int(row[6])) for row in rows]

    async def callback_delivered(self, callback_id: str, now: float | None = None) -> None:
        t = _now_us(now)
        await self.driver.write(
            lambda tx: tx.execute(
                "UPDATE callbacks SET state = 'DELIVERED', delivered_at = ?, leased_until = NULL"
                " WHERE id = ? AND state = 'PENDING'",
                [t, callback_id],
            )
        )

    async def callback_failed(
        self, callback_id: str, error: str, retry_at: float | None, now: float | None = None
    ) -> None:
        state = "PENDING" if retry_at is not None else "FAILED"
        next_at = clock.to_us(retry_at) if retry_at is not None else _now_us(now)
        await self.driver.write(
            lambda tx: tx.execute(
                "UPDATE callbacks SET state = ?, next_attempt_at = ?, leased_until = NULL,"
                " last_error = ? WHERE id = ? AND state = 'PENDING'",
                [state, next_at, error[:2000], callback_id],
            )
        )

    async def request_warmup(self, stub_id: str) -> None:
        async def op(tx: Tx) -> None:
            tx.emit(Event("warmup", stub_id))

        await self.driver.write(op)

    # -- notifications -----------------------------------------------------------------------
    def subscribe(self) -> Subscription:
        return self.driver.subscribe()


async def _insert_callbacks(
    tx: Tx, callbacks: Iterable[tuple[str, str, str, TaskStatus, str | None]], t: int
) -> None:
    """Outbox rows for terminal transitions: (task id, workspace id, url, status, result)."""
    rows = [
        (str(uuid.uuid4()), task_id, workspace_id, url, status.value,
         _callback_body(status, result), t, t)
        for task_id, workspace_id, url, status, result in callbacks
    ]
    if rows:
        await tx.executemany(
            "INSERT INTO callbacks (id, task_id, workspace_id, url, status, body, created_at,"
            " next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


async def _outputs_of(tx: Tx, task_ids: Sequence[str]) -> dict[str, list[OutputInfo]]:
    rows = await tx.execute(
        "SELECT id, task_id, name, size, created_at FROM outputs"
        f" WHERE task_id IN {_in(len(task_ids))} ORDER BY created_at, name",
        list(task_ids),
    )
    found: dict[str, list[OutputInfo]] = defaultdict(list)
    for row in rows:
        found[row[1]].append(OutputInfo(row[0], row[1], row[2], int(row[3]), int(row[4])))
    return found


async def _stub_stats(
    tx: Tx, stub_ids: Sequence[str], stale: int
) -> tuple[dict[str, int], dict[str, int]]:
    """Queue depth and live containers of each stub, two grouped queries for all of them."""
    marks = _in(len(stub_ids))
    depth = await tx.execute(
        f"SELECT stub_id, COUNT(*) FROM tasks WHERE stub_id IN {marks}"
        f" AND status IN {_WAITING} GROUP BY stub_id",
        list(stub_ids),
    )
    live = await tx.execute(
        f"SELECT stub_id, COUNT(*) FROM containers WHERE stub_id IN {marks}"
        " AND heartbeat_at >= ? GROUP BY stub_id",
        [*stub_ids, stale],
    )
    return ({row[0]: int(row[1]) for row in depth}, {row[0]: int(row[1]) for row in live})


class _StatsCache:
    """Stub stats for task reads. Counting a deep queue costs time proportional to its depth,
    so a depth over ``DEEP_QUEUE`` is reused for up to ``DEEP_QUEUE_TTL_S``: status reads stay
    flat however deep the queue, and ``queue_depth`` is exact below that depth."""

    DEEP_QUEUE = 1000
    DEEP_QUEUE_TTL_S = 0.5

    def __init__(self) -> None:
        self._deep: dict[str, tuple[float, int, int]] = {}

    async def get(
        self, tx: Tx, stub_ids: Sequence[str], stale: int
    ) -> tuple[dict[str, int], dict[str, int]]:
        now = time.monotonic()
        depth: dict[str, int] = {}
        live: dict[str, int] = {}
        missing = []
        for stub_id in stub_ids:
            cached = self._deep.get(stub_id)
            if cached is not None and cached[0] > now:
                depth[stub_id], live[stub_id] = cached[1], cached[2]
            else:
                missing.append(stub_id)
        if missing:
            counted, running = await _stub_stats(tx, missing, stale)
            for stub_id in missing:
                depth[stub_id] = counted.get(stub_id, 0)
                live[stub_id] = running.get(stub_id, 0)
                if depth[stub_id] > self.DEEP_QUEUE:
                    self._deep[stub_id] = (now + self.DEEP_QUEUE_TTL_S, depth[stub_id],
                                           live[stub_id])
                else:
                    self._deep.pop(stub_id, None)
        return depth, live


def _summaries(
    stubs: Sequence[Row], counts: Sequence[Row], live: Mapping[str, int]
) -> list[QueueSummary]:
    versions: dict[str, list[VersionSummary]] = defaultdict(list)
    for name, version, stub_id, type_, created_at in stubs:
        versions[name].append(VersionSummary(int(version), stub_id, type_, int(created_at)))
    per_status: dict[str, dict[TaskStatus, int]] = {
        name: dict.fromkeys(TaskStatus, 0) for name in versions
    }
    for name, status, count in counts:
        per_status[name][TaskStatus(status)] += int(count)
    return [
        QueueSummary(
            name=name,
            versions=found,
            queue_depth=sum(per_status[name][s] for s in WAITING),
            active_containers=int(live.get(name, 0)),
            counts=per_status[name],
        )
        for name, found in versions.items()
    ]
