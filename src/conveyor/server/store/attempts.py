"""Task attempts in the SQL store: claim, heartbeat, finish, release, cancel and sweep.

An attempt starts when a container claims a task (``fence`` goes up by one) and ends by one of
these guarded writes. Each write from the attempt is fenced, so a container that lost its lease
can no longer change the task; terminal transitions queue their callbacks in the same
transaction (``outbox.py``).
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence

from conveyor import clock
from conveyor.error_info import ErrorInfo
from conveyor.errors import OutputTooLarge, StoreUnavailable
from conveyor.policy import backoff_s, should_retry
from conveyor.server.store.base import CONTAINER_STALE_S
from conveyor.server.store.driver import Driver, Row, Tx
from conveyor.server.store.guards import guard_sql
from conveyor.server.store.outbox import insert_callbacks
from conveyor.server.store.records import CancelResult, Event, Outcome, SweepReport, TaskRecord
from conveyor.server.store.row_mapping import (
    TASK_COLS,
    WAITING_SQL,
    canonical_id,
    now_us,
    placeholders,
    to_task,
)
from conveyor.tasks import TaskStatus, sources_of

#: Rows one sweep pass handles per kind; a sweeper runs periodically, so the rest wait a turn.
SWEEP_BATCH = 1000
#: Error recorded on an attempt whose lease ran out.
LEASE_LOST_ERROR = ErrorInfo(
    "ContainerLost", "the container running this attempt stopped renewing its lease"
).to_json()

log = logging.getLogger("conveyor.server.store")

_TERMINAL_OUTCOMES = (TaskStatus.COMPLETE, TaskStatus.FAILED, TaskStatus.TIMEOUT)
_CANCELLABLE = sources_of(TaskStatus.CANCELLED)


class AttemptsMixin:
    """The attempt methods of ``SqlStore``."""

    driver: Driver
    max_output_bytes: int
    _skip_locked: str
    _for_update: str

    async def claim(
        self, stub_id: str, container_id: str, limit: int, lease_s: float, now: float | None = None
    ) -> list[TaskRecord]:
        if limit <= 0:
            return []
        t = now_us(now)

        async def op(tx: Tx) -> list[TaskRecord]:
            rows = await tx.execute(
                "WITH picked AS MATERIALIZED (SELECT id FROM tasks WHERE stub_id = ?"
                f" AND status IN {WAITING_SQL} AND (status = 'PENDING' OR runnable_at <= ?)"
                f" ORDER BY seq LIMIT ?{self._skip_locked})"
                " UPDATE tasks SET status = 'RUNNING', attempt = attempt + 1, fence = fence + 1,"
                " started_at = COALESCE(started_at, ?), container_id = ?, lease_expires_at = ?,"
                " expires_at = NULL, updated_at = ? WHERE id IN (SELECT id FROM picked)"
                f" AND status IN {guard_sql(TaskStatus.RUNNING)} RETURNING seq, {TASK_COLS}",
                [stub_id, t, limit, t, container_id, t + clock.to_us(lease_s), t],
            )
            claimed = [to_task(row[1:]) for row in sorted(rows, key=lambda row: int(row[0]))]
            for task in claimed:
                tx.emit(Event("task", stub_id, task.id, TaskStatus.RUNNING, container_id))
            return claimed

        return await self.driver.write(op)

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
        t = now_us(now)
        try:
            return await self._write_outcomes(outcomes, t)
        except StoreUnavailable:
            raise  # the whole batch is retried later
        except Exception as exc:
            # A value one outcome carries cannot be written: it fails alone, never the
            # batch (whose other outcomes may be other workspaces' tasks).
            if len(outcomes) == 1:
                return [await self._write_unstorable(outcomes[0], exc, t)]
            return [await self._write_alone(outcome, t) for outcome in outcomes]

    async def _write_alone(self, outcome: Outcome, t: int) -> bool:
        try:
            (applied,) = await self._write_outcomes([outcome], t)
        except StoreUnavailable:
            raise
        except Exception as exc:
            return await self._write_unstorable(outcome, exc, t)
        return applied

    async def _write_unstorable(self, outcome: Outcome, exc: Exception, t: int) -> bool:
        """End the attempt FAILED with why its own outcome could not be stored."""
        log.error("task %s: its outcome cannot be stored: %r", outcome.task_id, exc)
        error = ErrorInfo(
            "OutcomeNotStored", f"the attempt's outcome could not be stored: {exc!r}"[:2000]
        ).to_json()
        failed = Outcome(outcome.task_id, outcome.fence, TaskStatus.FAILED, error=error)
        try:
            (applied,) = await self._write_outcomes([failed], t)
        except StoreUnavailable:
            raise
        except Exception:  # nothing left to write: the lease expires, the sweep retries it
            log.exception("task %s: not even its failure can be stored", outcome.task_id)
            return False
        return applied

    async def _write_outcomes(self, outcomes: Sequence[Outcome], t: int) -> list[bool]:
        async def op(tx: Tx) -> list[bool]:
            # Retryable failures need the task's attempt count to choose RETRY or FAILED.
            plan: dict[int, TaskStatus] = {}
            retry_at: dict[int, int] = {}
            retryable = [
                i for i, o in enumerate(outcomes) if o.status is TaskStatus.FAILED and o.retryable
            ]
            if retryable:
                rows = await tx.execute(
                    "SELECT id, fence, attempt, max_retries, retry_backoff_s FROM tasks"
                    f" WHERE status = 'RUNNING' AND id IN {placeholders(len(retryable))}",
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
                        [
                            (
                                outcomes[i].error,
                                retry_at[i],
                                retry_at[i],
                                t,
                                outcomes[i].task_id,
                                outcomes[i].fence,
                            )
                            for i in indexes
                        ],
                    )
                else:
                    results = await tx.execute_each(
                        f"UPDATE tasks SET status = '{status.value}', result = ?, error = ?,"
                        " ended_at = ?, lease_expires_at = NULL, updated_at = ?"
                        f" WHERE id = ? AND fence = ? AND status IN {guard_sql(status)}"
                        " RETURNING stub_id, container_id, callback_url, workspace_id",
                        [
                            (
                                outcomes[i].result,
                                outcomes[i].error,
                                t,
                                t,
                                outcomes[i].task_id,
                                outcomes[i].fence,
                            )
                            for i in indexes
                        ],
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
                        callbacks.append(
                            (
                                outcomes[i].task_id,
                                workspace_id,
                                callback_url,
                                status,
                                outcomes[i].result,
                            )
                        )
                await insert_callbacks(tx, callbacks, t)
            outputs = [
                (str(uuid.uuid4()), o.task_id, name, len(data), data, t)
                for i, o in enumerate(outcomes)
                if applied[i]
                for name, data in o.outputs
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

    async def sweep(self, now: float | None = None) -> SweepReport:
        t = now_us(now)

        async def op(tx: Tx) -> SweepReport:
            retried, failed = await self._sweep_leases(tx, t)
            expired = await tx.execute(
                "WITH picked AS MATERIALIZED (SELECT id FROM tasks WHERE expires_at <= ?"
                f" AND status IN {WAITING_SQL} LIMIT {SWEEP_BATCH}{self._skip_locked})"
                " UPDATE tasks SET status = 'EXPIRED', ended_at = ?, updated_at = ?,"
                " expires_at = NULL WHERE id IN (SELECT id FROM picked)"
                f" AND status IN {guard_sql(TaskStatus.EXPIRED)}"
                " RETURNING id, stub_id, callback_url, workspace_id",
                [t, t, t],
            )
            for task_id, stub_id, _, _ in expired:
                tx.emit(Event("task", stub_id, task_id, TaskStatus.EXPIRED))
            await insert_callbacks(
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
                        callbacks.append(
                            (task_id, workspace_id, callback_url, TaskStatus.FAILED, None)
                        )
            await insert_callbacks(tx, callbacks, t)
        return retried, failed
