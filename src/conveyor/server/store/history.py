"""A task's input and its attempts in the SQL store (DESIGN A8).

An attempt that does not end its task (RETRY), whose process died (CRASHED, with its exit) or
whose lease ran out (LOST) is kept as a row by the same transaction that ends it (``finish``,
the lease sweep), so no later attempt overwrites an earlier one's error. The attempt that runs,
and the one that ended its task as the task's status says, are read from the task row: the
common case, one attempt that completes, writes nothing more than before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from conveyor.server.store.driver import Driver, Row, Tx
from conveyor.server.store.records import AttemptInfo, AttemptOutcome, ProcessExit
from conveyor.server.store.row_mapping import canonical_id
from conveyor.tasks import TaskStatus

#: Statuses an attempt ends its task with (a cancel kills the attempt that runs). Such an
#: attempt keeps no row: the task row tells its end, outcome and error.
_ENDED_BY_AN_ATTEMPT = frozenset(
    {TaskStatus.COMPLETE, TaskStatus.FAILED, TaskStatus.TIMEOUT, TaskStatus.CANCELLED}
)
#: A ``task_attempts`` row: task id, attempt, container id, started at, ended at, outcome,
#: error (JSON text), exit code, exit signal.
AttemptRow = tuple[str, int, str, int, int, str, str | None, int | None, str | None]


def attempt_row(
    task_id: str,
    attempt: int,
    container_id: str,
    started_at: int | None,
    ended_at: int,
    outcome: AttemptOutcome,
    error: str | None,
    exit: ProcessExit | None = None,
) -> AttemptRow:
    return (
        task_id,
        attempt,
        container_id,
        ended_at if started_at is None else started_at,  # claimed before schema 9
        ended_at,
        outcome,
        error,
        exit.code if exit else None,
        exit.signal if exit else None,
    )


async def insert_attempts(tx: Tx, rows: Sequence[AttemptRow]) -> None:
    """Keep ended attempts; one already kept (a write repeated after a lost answer) stays."""
    if rows:
        await tx.executemany(
            "INSERT INTO task_attempts (task_id, attempt, container_id, started_at, ended_at,"
            " outcome, error, exit_code, exit_signal) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            rows,
        )


class HistoryMixin:
    """``task_input`` and ``task_attempts`` of ``SqlStore``."""

    driver: Driver

    async def task_input(self, task_id: str, workspace_id: str) -> str | None:
        key = canonical_id(task_id)
        if key is None:
            return None
        rows = await self.driver.read(
            lambda tx: tx.execute(
                "SELECT payload FROM tasks WHERE id = ? AND workspace_id = ?", [key, workspace_id]
            )
        )
        return str(rows[0][0]) if rows else None

    async def task_attempts(self, task_id: str, workspace_id: str) -> list[AttemptInfo] | None:
        key = canonical_id(task_id)
        if key is None:
            return None

        async def op(tx: Tx) -> list[AttemptInfo] | None:
            found = await tx.execute(
                "SELECT status, attempt, container_id, COALESCE(attempt_started_at, started_at),"
                " ended_at, error FROM tasks WHERE id = ? AND workspace_id = ?",
                [key, workspace_id],
            )
            if not found:
                return None
            rows = await tx.execute(
                "SELECT attempt, container_id, started_at, ended_at, outcome, error, exit_code,"
                " exit_signal FROM task_attempts WHERE task_id = ? ORDER BY attempt",
                [key],
            )
            attempts = [_to_attempt(row) for row in rows]
            status, attempt, container_id, started_at, ended_at, error = found[0]
            last = _last_attempt(TaskStatus(status), int(attempt), container_id, ended_at, error)
            if last is not None and started_at is not None and last[0] not in {
                a.attempt for a in attempts
            }:
                number, outcome, ended, error = last
                attempts.append(
                    AttemptInfo(number, container_id, int(started_at), ended, outcome, error, None)
                )
            return attempts

        return await self.driver.read(op)


def _last_attempt(
    status: TaskStatus, attempt: int, container_id: str, ended_at: int | None, error: str | None
) -> tuple[int, AttemptOutcome | None, int | None, str | None] | None:
    """The task's last attempt as its own row tells it, when no row of the attempt was kept:
    the one running, or the one that ended the task as its status says."""
    if attempt < 1:
        return None
    if status is TaskStatus.RUNNING:
        return attempt, None, None, None
    if status in _ENDED_BY_AN_ATTEMPT and ended_at is not None:
        # (a cancel leaves the error of an attempt before in the task row: not this one's)
        own_error = None if status is TaskStatus.CANCELLED else error
        return attempt, cast(AttemptOutcome, status.value), int(ended_at), own_error
    return None


def _to_attempt(row: Row) -> AttemptInfo:
    attempt, container_id, started_at, ended_at, outcome, error, code, signal = row
    exit = None if code is None and signal is None else ProcessExit(code, signal)
    return AttemptInfo(
        int(attempt),
        container_id,
        int(started_at),
        int(ended_at),
        cast(AttemptOutcome, outcome),
        error,
        exit,
    )
