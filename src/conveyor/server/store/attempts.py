"""Task attempts in the SQL store: claim, heartbeat, release and cancel.

An attempt starts when a container claims a task (``fence`` goes up by one, and
``attempt_started_at`` is set) and ends by one of these guarded writes, by ``finish``
(``finish.py``) or by the sweep (``sweep.py``). Each write from the attempt is fenced, so a
container that lost its lease can no longer change the task; terminal transitions queue their
callbacks in the same transaction (``outbox.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

from conveyor import clock
from conveyor.server.store.driver import Driver, Row, Tx
from conveyor.server.store.events import CHANNEL
from conveyor.server.store.guards import guard_sql
from conveyor.server.store.outbox import insert_callbacks
from conveyor.server.store.records import CancelResult, Event, TaskRecord
from conveyor.server.store.row_mapping import (
    TASK_COLS,
    WAITING_SQL,
    canonical_id,
    now_us,
    placeholders,
    to_task,
)
from conveyor.tasks import TaskStatus, sources_of

_CANCELLABLE = sources_of(TaskStatus.CANCELLED)


class AttemptsMixin:
    """The attempt methods of ``SqlStore`` but ``finish`` (``finish.py``) and ``sweep``
    (``sweep.py``)."""

    driver: Driver
    _skip_locked: str
    _for_update: str

    async def claim(
        self, stub_id: str, container_id: str, limit: int, lease_s: float, now: float | None = None
    ) -> list[TaskRecord]:
        if limit <= 0:
            return []
        t = now_us(now)
        # Along the tasks_runnable index, in the order tasks became runnable: the delayed
        # ones and the retries not yet due lie past ``t`` and are never read.
        picked = (
            "WITH picked AS MATERIALIZED (SELECT id FROM tasks WHERE stub_id = ?"
            f" AND status IN {WAITING_SQL} AND runnable_at <= ?"
            f" ORDER BY runnable_at, seq LIMIT ?{self._skip_locked})"
        )
        update = (
            "UPDATE tasks SET status = 'RUNNING', attempt = attempt + 1, fence = fence + 1,"
            " started_at = COALESCE(started_at, ?), container_id = ?, lease_expires_at = ?,"
            " expires_at = NULL, updated_at = ?, attempt_started_at = ?"
            " WHERE id IN (SELECT id FROM picked)"
            f" AND status IN {guard_sql(TaskStatus.RUNNING)} RETURNING seq, {TASK_COLS}"
        )
        params = [stub_id, t, limit, t, container_id, t + clock.to_us(lease_s), t, t]
        if self.driver.dialect.name == "postgres":
            # One statement in one round trip (autocommit) instead of four (BEGIN, the
            # claim, its NOTIFY, COMMIT): the pickup path. Its events go out with it.
            rows = await self.driver.statement(
                f"{picked}, claimed AS ({update}) SELECT claimed.*, pg_notify('{CHANNEL}',"
                " json_build_object('k', 'task', 's', claimed.stub_id, 't', claimed.id,"
                " 'st', 'RUNNING', 'c', claimed.container_id)::text) FROM claimed",
                params,
            )
            return [to_task(row[1:-1]) for row in sorted(rows, key=lambda row: int(row[0]))]

        async def op(tx: Tx) -> list[TaskRecord]:
            rows = await tx.execute(f"{picked} {update}", params)
            claimed = [to_task(row[1:]) for row in sorted(rows, key=lambda row: int(row[0]))]
            for task in claimed:
                tx.emit(Event("task", stub_id, task.id, TaskStatus.RUNNING, container_id))
            return claimed

        # Quick: a claim is the pickup path, and takes as many tasks as free workers.
        return await self.driver.write(op, quick=True)

    async def heartbeat(
        self,
        container_id: str,
        running: Sequence[tuple[str, int]],
        lease_s: float,
        now: float | None = None,
    ) -> list[str]:
        t = now_us(now)

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

    async def release(self, running: Sequence[tuple[str, int]], now: float | None = None) -> int:
        if not running:
            return 0
        t = now_us(now)

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
        t = now_us(now)
        given: dict[str, str | None] = {}
        for task_id in task_ids:
            given.setdefault(task_id, canonical_id(task_id))
        keys = sorted({key for key in given.values() if key is not None})

        async def op(tx: Tx) -> CancelResult:
            before: dict[str, Row] = {}
            if keys:
                rows = await tx.execute(
                    "SELECT id, status, stub_id, container_id FROM tasks"
                    f" WHERE workspace_id = ? AND id IN {placeholders(len(keys))}"
                    f" ORDER BY id{self._for_update}",
                    [workspace_id, *keys],
                )
                before = {row[0]: row for row in rows}
            live = sorted(k for k, row in before.items() if TaskStatus(row[1]) in _CANCELLABLE)
            done: set[str] = set()
            if live:
                rows = await tx.execute(
                    "UPDATE tasks SET status = 'CANCELLED', ended_at = ?, updated_at = ?,"
                    " expires_at = NULL, lease_expires_at = NULL"
                    f" WHERE workspace_id = ? AND id IN {placeholders(len(live))}"
                    f" AND status IN {guard_sql(TaskStatus.CANCELLED)}"
                    " RETURNING id, callback_url",
                    [t, t, workspace_id, *live],
                )
                done = {row[0] for row in rows}
                callbacks = [
                    (row[0], workspace_id, row[1], TaskStatus.CANCELLED, None)
                    for row in rows
                    if row[1]
                ]
                await insert_callbacks(tx, callbacks, t)
                for task_id in sorted(done):
                    _, status, stub_id, container_id = before[task_id]
                    if status == TaskStatus.RUNNING:
                        tx.emit(
                            Event("cancel", stub_id, task_id, TaskStatus.CANCELLED, container_id)
                        )
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
