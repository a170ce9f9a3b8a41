"""The sweep of the SQL store: what no container or client will write any more.

Expired leases (the container is gone) become RETRY or FAILED, tasks waiting past their ttl
become EXPIRED, and silent containers are removed. An attempt whose lease ran out is kept as
``LOST``. Each pass handles a bounded batch and is
safe to run from many processes at once; terminal transitions queue their callbacks in the
same transaction (``outbox.py``).
"""

from __future__ import annotations

from conveyor import clock
from conveyor.error_info import ErrorInfo
from conveyor.policy import backoff_s, should_retry
from conveyor.server.store.base import CONTAINER_STALE_S
from conveyor.server.store.driver import Driver, Tx
from conveyor.server.store.guards import guard_sql
from conveyor.server.store.history import attempt_row, insert_attempts
from conveyor.server.store.outbox import insert_callbacks
from conveyor.server.store.records import Event, SweepReport
from conveyor.server.store.row_mapping import WAITING_SQL, now_us
from conveyor.tasks import TaskStatus

#: Rows one sweep pass handles per kind; a sweeper runs periodically, so the rest wait a turn.
SWEEP_BATCH = 1000
#: Error recorded on an attempt whose lease ran out.
LEASE_LOST_ERROR = ErrorInfo(
    "ContainerLost", "the container running this attempt stopped renewing its lease"
).to_json()


class SweepMixin:
    """The sweep methods of ``SqlStore``."""

    driver: Driver
    _skip_locked: str

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
            "SELECT id, fence, attempt, max_retries, retry_backoff_s, container_id,"
            " COALESCE(attempt_started_at, started_at) FROM tasks"
            " WHERE status = 'RUNNING' AND lease_expires_at < ? ORDER BY lease_expires_at"
            f" LIMIT {SWEEP_BATCH}{self._skip_locked}",
            [t],
        )
        retry, fail = [], []
        lost = {row[0]: row for row in rows}
        for task_id, fence, attempt, max_retries, base_s, _, _ in rows:
            if should_retry(int(attempt), int(max_retries), True):
                retry.append((task_id, int(fence), t + clock.to_us(backoff_s(base_s, attempt))))
            else:
                fail.append((task_id, int(fence)))
        retried = failed = 0
        ended: list[str] = []
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
                    ended.append(task_id)
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
                    ended.append(task_id)
                    stub_id, callback_url, workspace_id = found[0]
                    tx.emit(Event("task", stub_id, task_id, TaskStatus.FAILED))
                    if callback_url:
                        callbacks.append(
                            (task_id, workspace_id, callback_url, TaskStatus.FAILED, None)
                        )
            await insert_callbacks(tx, callbacks, t)
        await insert_attempts(
            tx,
            [
                attempt_row(i, lost[i][2], lost[i][5], lost[i][6], t, "LOST", LEASE_LOST_ERROR)
                for i in ended
            ],
        )
        return retried, failed
