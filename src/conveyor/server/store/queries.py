"""The read side of the SQL store: task views, queue summaries, stub loads and outputs.

A task view carries its stub's queue depth and live containers. Counting a deep queue on every
status read would cost time in proportion to its depth, so :class:`StatsCache` reuses deep
counts briefly.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from conveyor import clock
from conveyor.server.store.base import CONTAINER_STALE_S
from conveyor.server.store.driver import Driver, Row, Tx
from conveyor.server.store.guards import sql_list
from conveyor.server.store.records import (
    OutputInfo,
    QueueSummary,
    StubLoad,
    TaskFilter,
    TaskView,
    VersionSummary,
)
from conveyor.server.store.row_mapping import (
    S_COLS,
    STUB_WIDTH,
    T_COLS,
    TASK_WIDTH,
    WAITING_SQL,
    canonical_id,
    decode_cursor,
    encode_cursor,
    now_us,
    placeholders,
    to_stub,
    to_task,
)
from conveyor.tasks import WAITING, TaskStatus

#: Waiting tasks ``stub_loads`` counts at most per stub and kind (not yet due, or due): a
#: stub with more delayed tasks than this reports at most this many runnable.
LOAD_COUNT_CAP = 1000


class QueriesMixin:
    """The read methods of ``SqlStore``."""

    driver: Driver
    _stats: StatsCache

    async def get_task(self, task_id: str, workspace_id: str | None = None) -> TaskView | None:
        key = canonical_id(task_id)
        if key is None:
            return None
        stale = now_us(None) - clock.to_us(CONTAINER_STALE_S)
        sql = (
            f"SELECT {T_COLS}, {S_COLS} FROM tasks t"
            " JOIN stubs s ON s.id = t.stub_id WHERE t.id = ?"
        )
        params: list[Any] = [key]
        if workspace_id is not None:
            sql += " AND t.workspace_id = ?"
            params.append(workspace_id)

        if self.driver.dialect.name == "postgres":
            return await self._get_task_in_one(key, workspace_id, stale)

        async def op(tx: Tx) -> TaskView | None:
            rows = await tx.execute(sql, params)
            if not rows:
                return None
            task = to_task(rows[0])
            outputs = await _outputs_of(tx, [key])
            depth, containers = await self._stats.get(tx, [task.stub_id], stale)
            return TaskView(
                task,
                to_stub(rows[0][TASK_WIDTH : TASK_WIDTH + STUB_WIDTH]),
                outputs.get(key, []),
                depth.get(task.stub_id, 0),
                containers.get(task.stub_id, 0),
            )

        return await self.driver.read(op, quick=True)

    async def _get_task_in_one(
        self, key: str, workspace_id: str | None, stale: int
    ) -> TaskView | None:
        """``get_task`` in one statement, so one round trip (PostgreSQL): its outputs as one
        JSON array, and its queue's depth from the stub's kept in-flight count less its
        running tasks (exact, and as cheap for a deep queue as for an empty one)."""
        sql = _TASK_IN_ONE + (" AND t.workspace_id = ?" if workspace_id is not None else "")
        params = [stale, key] + ([workspace_id] if workspace_id is not None else [])
        rows = await self.driver.read(lambda tx: tx.execute(sql, params), quick=True)
        if not rows:
            return None
        row = rows[0]
        end = TASK_WIDTH + STUB_WIDTH
        outputs, depth, live = row[end:]
        return TaskView(
            to_task(row),
            to_stub(row[TASK_WIDTH:end]),
            [OutputInfo(o[0], key, o[1], int(o[2]), int(o[3])) for o in outputs or ()],
            int(depth),
            int(live),
        )

    async def list_tasks(
        self,
        workspace_id: str,
        filter: TaskFilter,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[TaskView], str | None]:
        sql = (
            f"SELECT t.seq, {T_COLS}, {S_COLS} FROM tasks t"
            " JOIN stubs s ON s.id = t.stub_id WHERE t.workspace_id = ?"
        )
        params: list[Any] = [workspace_id]
        if filter.statuses is not None:
            if not filter.statuses:
                return [], None
            sql += f" AND t.status IN {sql_list(filter.statuses)}"
        for column, value in (
            ("s.name", filter.queue),
            ("t.stub_id", filter.stub_id),
            ("t.container_id", filter.container_id),
        ):
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
        stale = now_us(None) - clock.to_us(CONTAINER_STALE_S)

        async def op(tx: Tx) -> tuple[list[TaskView], str | None]:
            rows = await tx.execute(sql, params)
            more = len(rows) > max(1, limit)
            rows = rows[: max(1, limit)]
            if not rows:
                return [], None
            tasks = [to_task(row[1:]) for row in rows]
            stubs = {row[1 + TASK_WIDTH]: to_stub(row[1 + TASK_WIDTH :]) for row in rows}
            outputs = await _outputs_of(tx, [task.id for task in tasks])
            depth, containers = await self._stats.get(tx, list(stubs), stale)
            views = [
                TaskView(
                    task,
                    stubs[task.stub_id],
                    outputs.get(task.id, []),
                    depth.get(task.stub_id, 0),
                    containers.get(task.stub_id, 0),
                )
                for task in tasks
            ]
            return views, encode_cursor(int(rows[-1][0])) if more else None

        return await self.driver.read(op)

    async def queue_summaries(
        self, workspace_id: str, name: str | None = None
    ) -> list[QueueSummary]:
        stale = now_us(None) - clock.to_us(CONTAINER_STALE_S)
        where = " WHERE s.workspace_id = ?" + (" AND s.name = ?" if name is not None else "")
        params: list[Any] = [workspace_id] + ([name] if name is not None else [])

        async def op(tx: Tx) -> list[QueueSummary]:
            stubs = await tx.execute(
                "SELECT s.name, s.version, s.id, s.type, s.created_at, s.active, s.config"
                f" FROM stubs s{where}"
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
        t = now_us(now)
        # From the kept in-flight count less the running tasks and the waiting ones not yet
        # due (delayed, or retries in their backoff): the agent asks every tick, and counting
        # a deep queue's rows would cost time in proportion to its depth. The running are as
        # few as the work in hand; the ones not yet due are counted up to LOAD_COUNT_CAP.
        not_due = (
            "SELECT COUNT(*) FROM (SELECT 1 FROM tasks w WHERE w.stub_id = {stub}"
            f" AND w.status IN {WAITING_SQL} AND w.runnable_at {{op}} ? LIMIT {LOAD_COUNT_CAP}) n"
        )

        async def op(tx: Tx) -> dict[str, tuple[int, int]]:
            rows = await tx.execute(
                "SELECT s.id, s.in_flight,"
                " (SELECT COUNT(*) FROM tasks r WHERE r.stub_id = s.id AND r.status = 'RUNNING'),"
                f" ({not_due.format(stub='s.id', op='>')})"
                f" FROM stubs s WHERE s.id IN {placeholders(len(stub_ids))}",
                [t, *stub_ids],
            )
            found = {}
            for stub_id, in_flight, running, later in rows:
                runnable = int(in_flight) - int(running) - int(later)
                if later >= LOAD_COUNT_CAP:  # many delayed: count the due ones instead
                    due = await tx.execute(not_due.format(stub="?", op="<="), [stub_id, t])
                    runnable = int(due[0][0])
                found[stub_id] = (runnable, int(running))
            return found

        found = await self.driver.read(op)
        return [StubLoad(stub_id, *found.get(stub_id, (0, 0))) for stub_id in stub_ids]

    # -- outputs -----------------------------------------------------------------------------
    async def get_output(self, output_id: str) -> tuple[OutputInfo, bytes] | None:
        key = canonical_id(output_id)
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


_TASK_IN_ONE = (
    f"SELECT {T_COLS}, {S_COLS},"
    " (SELECT json_agg(json_build_array(o.id, o.name, o.size, o.created_at)"
    "  ORDER BY o.created_at, o.name) FROM outputs o WHERE o.task_id = t.id),"
    " s.in_flight - (SELECT COUNT(*) FROM tasks r WHERE r.stub_id = t.stub_id"
    "  AND r.status = 'RUNNING'),"
    " (SELECT COUNT(*) FROM containers c WHERE c.stub_id = t.stub_id AND c.heartbeat_at >= ?)"
    " FROM tasks t JOIN stubs s ON s.id = t.stub_id WHERE t.id = ?"
)


async def _outputs_of(tx: Tx, task_ids: Sequence[str]) -> dict[str, list[OutputInfo]]:
    rows = await tx.execute(
        "SELECT id, task_id, name, size, created_at FROM outputs"
        f" WHERE task_id IN {placeholders(len(task_ids))} ORDER BY created_at, name",
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
    marks = placeholders(len(stub_ids))
    depth = await tx.execute(
        f"SELECT stub_id, COUNT(*) FROM tasks WHERE stub_id IN {marks}"
        f" AND status IN {WAITING_SQL} GROUP BY stub_id",
        list(stub_ids),
    )
    live = await tx.execute(
        f"SELECT stub_id, COUNT(*) FROM containers WHERE stub_id IN {marks}"
        " AND heartbeat_at >= ? GROUP BY stub_id",
        [*stub_ids, stale],
    )
    return ({row[0]: int(row[1]) for row in depth}, {row[0]: int(row[1]) for row in live})


class StatsCache:
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
                    self._deep[stub_id] = (
                        now + self.DEEP_QUEUE_TTL_S,
                        depth[stub_id],
                        live[stub_id],
                    )
                else:
                    self._deep.pop(stub_id, None)
        return depth, live


def _summaries(
    stubs: Sequence[Row], counts: Sequence[Row], live: Mapping[str, int]
) -> list[QueueSummary]:
    versions: dict[str, list[VersionSummary]] = defaultdict(list)
    for name, version, stub_id, type_, created_at, active, config in stubs:
        image = orjson.loads(config).get("image")
        versions[name].append(
            VersionSummary(
                int(version), stub_id, type_, int(created_at), bool(active), image or None
            )
        )
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
