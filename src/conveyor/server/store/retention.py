"""Retention (DESIGN A11): finished tasks older than the retention go, with every row that hangs
off them, a bounded batch per transaction.

A batch is at most ``PRUNE_BATCH`` tasks and about ``PRUNE_ROWS`` rows with their log lines, so
no transaction holds the SQLite writer long: enqueues and claims wait at most one batch. The
oldest finished tasks go first, along the ``tasks_ended`` index. A task whose callback is still
to be delivered is kept until it is delivered or has failed for good. Safe from many processes:
PostgreSQL sweepers skip each other's locked rows, SQLite's are serialized by its writer.
"""

from __future__ import annotations

from collections.abc import Sequence

from conveyor.server.store.driver import Driver, Tx
from conveyor.server.store.row_mapping import now_us, placeholders

#: Tasks one transaction deletes at most.
PRUNE_BATCH = 500
#: Rows (tasks and their log lines) one transaction deletes, about: a batch stops before the
#: task that would pass it, but always takes one.
PRUNE_ROWS = 10_000
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


async def within_budget(tx: Tx, task_ids: Sequence[str]) -> list[str]:
    """The first of ``task_ids`` whose rows with their log lines stay within ``PRUNE_ROWS``."""
    if not task_ids:
        return []
    rows = await tx.execute(
        "SELECT task_id, lines FROM task_log_totals"
        f" WHERE task_id IN {placeholders(len(task_ids))}",
        list(task_ids),
    )
    lines = {row[0]: int(row[1]) for row in rows}
    taken: list[str] = []
    cost = 0
    for task_id in task_ids:
        cost += 1 + lines.get(task_id, 0)
        if taken and cost > PRUNE_ROWS:
            break
        taken.append(task_id)
    return taken


class RetentionMixin:
    """The retention method of ``SqlStore``."""

    driver: Driver
    _skip_locked: str

    async def prune(self, ended_before: float, limit: int = PRUNE_BATCH) -> int:
        cutoff = now_us(ended_before)

        async def op(tx: Tx) -> int:
            rows = await tx.execute(
                "SELECT t.id FROM tasks t WHERE t.ended_at IS NOT NULL AND t.ended_at < ?"
                " AND NOT EXISTS (SELECT 1 FROM callbacks c WHERE c.task_id = t.id"
                " AND c.state = 'PENDING')"
                f" ORDER BY t.ended_at LIMIT {int(limit)}{self._skip_locked}",
                [cutoff],
            )
            return await delete_tasks(tx, await within_budget(tx, [row[0] for row in rows]))

        return await self.driver.write(op)
