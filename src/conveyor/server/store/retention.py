"""Retention (DESIGN A11): finished tasks older than the retention go, with every row that hangs
off them, a bounded batch per transaction.

A batch is at most ``PRUNE_BATCH`` tasks and about ``PRUNE_ROWS`` rows with their log lines, so
no transaction holds the SQLite writer long (about 10 ms): enqueues and claims, of this process
or another, wait at most one batch. The
oldest finished tasks go first, along the ``tasks_ended`` index. A task whose callback is still
to be delivered is kept until it is delivered or has failed for good. Safe from many processes:
PostgreSQL sweepers skip each other's locked rows, SQLite's are serialized by its writer.
"""

from __future__ import annotations

from collections.abc import Sequence

from conveyor.server.store.driver import Driver, Tx
from conveyor.server.store.records import Pruned
from conveyor.server.store.row_mapping import now_us, placeholders

#: Tasks one transaction deletes at most.
PRUNE_BATCH = 200
#: Rows one transaction deletes, about: each task counts 3 rows (itself, its attempt, its log
#: totals) and its log lines. A batch stops before the task that would pass it; a first task
#: past it alone loses ``PRUNE_ROWS`` of its lines, and goes in a later batch.
PRUNE_ROWS = 2_000
#: Tables whose rows belong to one task, by ``task_id``.
_HANGING = (
    "outputs", "task_logs", "task_log_totals", "task_attempts", "callbacks", "idempotency_keys",
)  # fmt: skip


async def delete_tasks(tx: Tx, task_ids: Sequence[str]) -> int:
    """Delete finished tasks of ``task_ids`` and what hangs off them; how many went. A task
    that is not finished is left whole."""
    if not task_ids:
        return 0
    gone = await tx.execute(
        f"DELETE FROM tasks WHERE id IN {placeholders(len(task_ids))} AND ended_at IS NOT NULL"
        " RETURNING id",
        list(task_ids),
    )
    ids = [row[0] for row in gone]
    if ids:
        for table in _HANGING:
            await tx.execute(f"DELETE FROM {table} WHERE task_id IN {placeholders(len(ids))}", ids)
    return len(ids)


async def delete_some(tx: Tx, task_ids: Sequence[str]) -> Pruned:
    """Delete the first of ``task_ids`` (finished tasks) within ``PRUNE_ROWS``; or, when the
    first alone is past it, ``PRUNE_ROWS`` of its log lines."""
    if not task_ids:
        return Pruned()
    rows = await tx.execute(
        "SELECT task_id, lines FROM task_log_totals"
        f" WHERE task_id IN {placeholders(len(task_ids))}",
        list(task_ids),
    )
    lines = {row[0]: int(row[1]) for row in rows}
    taken: list[str] = []
    cost = 0
    for task_id in task_ids:
        rows_of = 3 + lines.get(task_id, 0)
        if cost + rows_of > PRUNE_ROWS:
            break
        cost += rows_of
        taken.append(task_id)
    if taken:
        deleted = await delete_tasks(tx, taken)
        return Pruned(deleted, cost if deleted else 0)
    first = task_ids[0]
    gone = await tx.execute(
        "DELETE FROM task_logs WHERE id IN (SELECT id FROM task_logs WHERE task_id = ?"
        f" ORDER BY id LIMIT {PRUNE_ROWS}) RETURNING id",
        [first],
    )
    await tx.execute(
        "UPDATE task_log_totals SET lines = lines - ? WHERE task_id = ?", [len(gone), first]
    )
    return Pruned(0, len(gone))


class RetentionMixin:
    """The retention method of ``SqlStore``."""

    driver: Driver
    _skip_locked: str

    async def prune(self, ended_before: float, limit: int = PRUNE_BATCH) -> Pruned:
        cutoff = now_us(ended_before)

        async def op(tx: Tx) -> Pruned:
            rows = await tx.execute(
                "SELECT t.id FROM tasks t WHERE t.ended_at IS NOT NULL AND t.ended_at < ?"
                " AND NOT EXISTS (SELECT 1 FROM callbacks c WHERE c.task_id = t.id"
                " AND c.state = 'PENDING')"
                f" ORDER BY t.ended_at LIMIT {int(limit)}{self._skip_locked}",
                [cutoff],
            )
            return await delete_some(tx, [row[0] for row in rows])

        return await self.driver.write(op)
