"""The callbacks outbox: rows written with a task's terminal transition, then delivered.

A terminal write inserts its callback row in the same transaction (:func:`insert_callbacks`),
so the callback commits or rolls back with its transition. The deliverer leases due rows and
reports how each delivery went (:class:`OutboxMixin`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from conveyor import clock
from conveyor.server.store.driver import Driver, Tx
from conveyor.server.store.records import Callback
from conveyor.server.store.row_mapping import now_us
from conveyor.tasks import TaskStatus


class OutboxMixin:
    """The outbox methods of ``SqlStore``."""

    driver: Driver
    _skip_locked: str

    async def claim_callbacks(
        self,
        limit: int,
        lease_s: float,
        now: float | None = None,
        *,
        per_workspace: int | None = None,
    ) -> list[Callback]:
        """Due callbacks, leased for ``lease_s``; ``attempts`` counts this delivery too.

        With ``per_workspace``, a workspace gets only as many as it has slots free: its rows
        leased now (by any sender) and the ones claimed here together are at most that many,
        so one tenant's slow receivers never hold the slots of another's callbacks.
        """
        if limit <= 0:
            return []
        t = now_us(now)
        lease_until = t + clock.to_us(lease_s)
        if per_workspace is None:
            picked = (
                "SELECT id FROM callbacks WHERE state = 'PENDING'"
                " AND next_attempt_at <= ? AND (leased_until IS NULL OR leased_until <= ?)"
                f" ORDER BY next_attempt_at LIMIT ?{self._skip_locked}"
            )
            params: list[object] = [t, t, limit]
        else:
            # No row locks here (a window cannot take them): the UPDATE re-checks the lease,
            # so two senders racing for a row lease it once.
            picked = (
                "SELECT r.id FROM (SELECT id, workspace_id, next_attempt_at, ROW_NUMBER()"
                " OVER (PARTITION BY workspace_id ORDER BY next_attempt_at) AS n"
                " FROM callbacks WHERE state = 'PENDING' AND next_attempt_at <= ?"
                " AND (leased_until IS NULL OR leased_until <= ?)) r"
                " LEFT JOIN (SELECT workspace_id, COUNT(*) AS busy FROM callbacks"
                " WHERE state = 'PENDING' AND leased_until > ? GROUP BY workspace_id) b"
                " ON b.workspace_id = r.workspace_id"
                " WHERE r.n + COALESCE(b.busy, 0) <= ? ORDER BY r.next_attempt_at LIMIT ?"
            )
            params = [t, t, t, per_workspace, limit]
        rows = await self.driver.write(
            lambda tx: tx.execute(
                f"WITH picked AS MATERIALIZED ({picked})"
                " UPDATE callbacks SET leased_until = ?, attempts = attempts + 1"
                " WHERE id IN (SELECT id FROM picked) AND state = 'PENDING'"
                " AND (leased_until IS NULL OR leased_until <= ?)"
                " RETURNING id, task_id, workspace_id, url, status, body, attempts",
                [*params, lease_until, t],
            )
        )
        return [
            Callback(row[0], row[1], row[2], row[3], TaskStatus(row[4]), bytes(row[5]), int(row[6]))
            for row in rows
        ]

    async def callback_delivered(self, callback_id: str, now: float | None = None) -> None:
        t = now_us(now)
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
        next_at = clock.to_us(retry_at) if retry_at is not None else now_us(now)
        await self.driver.write(
            lambda tx: tx.execute(
                "UPDATE callbacks SET state = ?, next_attempt_at = ?, leased_until = NULL,"
                " last_error = ? WHERE id = ? AND state = 'PENDING'",
                [state, next_at, error[:2000], callback_id],
            )
        )


async def insert_callbacks(
    tx: Tx, callbacks: Iterable[tuple[str, str, str, TaskStatus, str | None]], t: int
) -> None:
    """Outbox rows for terminal transitions: (task id, workspace id, url, status, result)."""
    rows = [
        (
            str(uuid.uuid4()),
            task_id,
            workspace_id,
            url,
            status.value,
            _callback_body(status, result),
            t,
            t,
        )
        for task_id, workspace_id, url, status, result in callbacks
    ]
    if rows:
        await tx.executemany(
            "INSERT INTO callbacks (id, task_id, workspace_id, url, status, body, created_at,"
            " next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


def _callback_body(status: TaskStatus, result: str | None) -> bytes:
    """``{"data": <result>}`` for COMPLETE, ``{"data": {}}`` otherwise (DESIGN A6)."""
    data = result if status is TaskStatus.COMPLETE and result is not None else "{}"
    return b'{"data":' + data.encode() + b"}"
