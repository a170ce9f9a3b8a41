"""Finishing attempts in the SQL store: each outcome's guarded write, its outputs, its callback.

An outcome is applied only while its task is RUNNING at the outcome's fence, so a container
that lost its lease can no longer change the task; a refused outcome writes nothing, outputs
included. Terminal transitions queue their callbacks in the same transaction (``outbox.py``),
and every applied outcome keeps its attempt's row (``history.py``).
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import cast

from conveyor import clock
from conveyor.error_info import ErrorInfo
from conveyor.errors import OutputTooLarge, StoreUnavailable
from conveyor.policy import backoff_s, should_retry
from conveyor.server.store.driver import Driver, Row, Tx
from conveyor.server.store.guards import guard_sql
from conveyor.server.store.history import AttemptRow, attempt_row, insert_attempts
from conveyor.server.store.outbox import insert_callbacks
from conveyor.server.store.records import AttemptOutcome, Event, Outcome
from conveyor.server.store.row_mapping import now_us, placeholders
from conveyor.tasks import TaskStatus

log = logging.getLogger("conveyor.server.store")

_TERMINAL_OUTCOMES = (TaskStatus.COMPLETE, TaskStatus.FAILED, TaskStatus.TIMEOUT)

#: A callback row for ``insert_callbacks``: task id, workspace id, url, status, result.
_CallbackRow = tuple[str, str, str, TaskStatus, str | None]


class FinishMixin:
    """The ``finish`` method of ``SqlStore``."""

    driver: Driver
    max_output_bytes: int

    async def finish(self, outcomes: Sequence[Outcome], now: float | None = None) -> list[bool]:
        _check(outcomes, self.max_output_bytes)
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
            retry_at = await _retry_times(tx, outcomes, t)
            applied = [False] * len(outcomes)
            by_status: dict[TaskStatus, list[int]] = defaultdict(list)
            for i, outcome in enumerate(outcomes):
                by_status[TaskStatus.RETRY if i in retry_at else outcome.status].append(i)
            batched = self.driver.dialect.name == "postgres"
            for status, indexes in by_status.items():
                write = _batched_writes if batched else _guarded_writes
                results = await write(tx, status, outcomes, indexes, retry_at, t)
                callbacks, ended = _mark_applied(tx, status, outcomes, indexes, results, applied, t)
                await insert_callbacks(tx, callbacks, t)
                if not batched:  # the batched write kept them itself
                    await insert_attempts(tx, ended)
            await _insert_outputs(tx, outcomes, applied, t)
            return applied

        return await self.driver.write(op)


def _check(outcomes: Sequence[Outcome], max_output_bytes: int) -> None:
    """Refuse the whole batch, before any write, for a status or an output no attempt may end
    with."""
    for outcome in outcomes:
        if outcome.status not in _TERMINAL_OUTCOMES:
            raise ValueError(f"an attempt cannot end as {outcome.status}")
        for name, data in outcome.outputs:
            if len(data) > max_output_bytes:
                raise OutputTooLarge(
                    f"output {name!r} is {len(data)} bytes; the limit is "
                    f"{max_output_bytes}"
                )


async def _retry_times(tx: Tx, outcomes: Sequence[Outcome], t: int) -> dict[int, int]:
    """Index → ``runnable_at`` of each retryable failure whose task has retries left (it
    becomes RETRY); the other outcomes end as they say. Retryable failures need the task's
    attempt count to choose RETRY or FAILED."""
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
                retry_at[i] = t + clock.to_us(backoff_s(float(found[2]), int(found[0])))
    return retry_at


async def _guarded_writes(
    tx: Tx,
    status: TaskStatus,
    outcomes: Sequence[Outcome],
    indexes: Sequence[int],
    retry_at: dict[int, int],
    t: int,
) -> list[list[Row]]:
    """Move the tasks of ``outcomes[indexes]`` to ``status``, each fenced; per outcome, the
    row its write matched (none when refused)."""
    if status is TaskStatus.RETRY:
        return await tx.execute_each(
            "UPDATE tasks SET status = 'RETRY', error = ?, runnable_at = ?,"
            " expires_at = ? + CAST(ttl_s * 1000000 AS BIGINT),"
            " lease_expires_at = NULL, updated_at = ? WHERE id = ? AND fence = ?"
            f" AND status IN {guard_sql(status)}"
            " RETURNING stub_id, container_id, callback_url, workspace_id, attempt,"
            " COALESCE(attempt_started_at, started_at)",
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
    return await tx.execute_each(
        f"UPDATE tasks SET status = '{status.value}', result = ?, error = ?,"
        " ended_at = ?, lease_expires_at = NULL, updated_at = ?"
        f" WHERE id = ? AND fence = ? AND status IN {guard_sql(status)}"
        " RETURNING stub_id, container_id, callback_url, workspace_id, attempt,"
            " COALESCE(attempt_started_at, started_at)",
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


async def _batched_writes(
    tx: Tx,
    status: TaskStatus,
    outcomes: Sequence[Outcome],
    indexes: Sequence[int],
    retry_at: dict[int, int],
    t: int,
) -> list[list[Row]]:
    """``_guarded_writes`` as one statement over arrays (PostgreSQL): one round trip and one
    firing of the in-flight trigger for the whole batch, not one per task; the attempt rows
    (``history.py``) are kept by the same statement."""
    ids = [outcomes[i].task_id for i in indexes]
    picked = [outcomes[i] for i in indexes]
    arrays = [
        ids,
        [o.fence for o in picked],
        [o.error for o in picked],
        [_attempt_outcome(status, o) for o in picked],
        [o.exit.code if o.exit else None for o in picked],
        [o.exit.signal if o.exit else None for o in picked],
        [keeps_row(status, o) for o in picked],
    ]
    values = (
        "unnest(?::text[], ?::bigint[], ?::text[], ?::text[], ?::int[], ?::text[],"
        " ?::boolean[], {}) AS v(id, fence, error, outcome, exit_code, exit_signal, keep, {})"
    )
    if status is TaskStatus.RETRY:
        arrays.append([retry_at[i] for i in indexes])
        update = (
            "UPDATE tasks SET status = 'RETRY', error = v.error, runnable_at = v.at,"
            " expires_at = v.at + CAST(ttl_s * 1000000 AS BIGINT),"
            " lease_expires_at = NULL, updated_at = ?"
            f" FROM {values.format('?::bigint[]', 'at')}"
        )
        params: list[object] = [t, *arrays]
    else:
        arrays.append([o.result for o in picked])
        update = (
            f"UPDATE tasks SET status = '{status.value}', result = v.result, error = v.error,"
            " ended_at = ?, lease_expires_at = NULL, updated_at = ?"
            f" FROM {values.format('?::text[]', 'result')}"
        )
        params = [t, t, *arrays]
    rows = await tx.execute(
        f"WITH done AS ({update}"
        f" WHERE tasks.id = v.id AND tasks.fence = v.fence AND status IN {guard_sql(status)}"
        " RETURNING tasks.id, stub_id, container_id, callback_url, workspace_id, tasks.attempt,"
        " COALESCE(tasks.attempt_started_at, tasks.started_at) AS started, v.outcome, v.error,"
        " v.exit_code, v.exit_signal, v.keep),"
        " kept AS (INSERT INTO task_attempts (task_id, attempt, container_id, started_at,"
        " ended_at, outcome, error, exit_code, exit_signal) SELECT id, attempt, container_id,"
        " COALESCE(started, ?), ?, outcome, error, exit_code, exit_signal FROM done"
        " WHERE keep ON CONFLICT DO NOTHING)"
        " SELECT id, stub_id, container_id, callback_url, workspace_id, attempt, started"
        " FROM done",
        [*params, t, t],
    )
    matched = {row[0]: list(row[1:]) for row in rows}
    results: list[list[Row]] = []
    for task_id in ids:  # a task named twice in one batch is applied once, as row by row
        found = matched.pop(task_id, None)
        results.append([tuple(found)] if found is not None else [])
    return results


def keeps_row(status: TaskStatus, outcome: Outcome) -> bool:
    """Whether the attempt needs a row of its own: not when it ends its task as its status
    says (COMPLETE, FAILED, TIMEOUT), whose row tells the same (``history.py`` reads it
    there) — the common case writes nothing more."""
    return status is TaskStatus.RETRY or outcome.exit is not None


def _attempt_outcome(status: TaskStatus, outcome: Outcome) -> AttemptOutcome:
    """How the attempt ended: as its task moved, or ``CRASHED`` when its process died."""
    return "CRASHED" if outcome.exit is not None else cast(AttemptOutcome, status.value)


def _mark_applied(
    tx: Tx,
    status: TaskStatus,
    outcomes: Sequence[Outcome],
    indexes: Sequence[int],
    results: list[list[Row]],
    applied: list[bool],
    t: int,
) -> tuple[list[_CallbackRow], list[AttemptRow]]:
    """Mark the outcomes whose write matched as applied and emit their events; the callback
    rows of those that ended with a ``callback_url``, and the attempt rows to keep."""
    callbacks: list[_CallbackRow] = []
    ended: list[AttemptRow] = []
    for i, rows in zip(indexes, results, strict=True):
        if not rows:
            continue
        applied[i] = True
        stub_id, container_id, callback_url, workspace_id, attempt, started_at = rows[0]
        outcome = outcomes[i]
        if keeps_row(status, outcome):
            ended.append(
                attempt_row(
                    outcome.task_id,
                    int(attempt),
                    container_id,
                    started_at,
                    t,
                    _attempt_outcome(status, outcome),
                    outcome.error,
                    outcome.exit,
                )
            )
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
    return callbacks, ended


async def _insert_outputs(
    tx: Tx, outcomes: Sequence[Outcome], applied: list[bool], t: int
) -> None:
    """The outputs of the applied outcomes only."""
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
