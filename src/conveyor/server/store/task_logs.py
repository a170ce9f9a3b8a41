"""The lines tasks wrote, in the SQL store (DESIGN A8): kept in batches from the agents,
within per-task limits, and read after a cursor (a line's id)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from conveyor import clock
from conveyor.server.store.driver import Driver, Tx
from conveyor.server.store.records import (
    Event,
    LogLimits,
    LogLine,
    LogPage,
    LogStream,
    StoredLogLine,
)
from conveyor.server.store.row_mapping import canonical_id, placeholders
from conveyor.tasks import TaskStatus, is_terminal

#: Where the marker line goes: the agent's own word, not the task's output.
MARKER_STREAM: LogStream = "stderr"


def marker_line(dropped: int) -> str:
    return f"[conveyor: {dropped} more lines dropped]"


def decode_log_cursor(cursor: str) -> int:
    """A log cursor is the id of the last line read, in decimal."""
    text = cursor.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise ValueError(f"a log cursor is a line id, got {cursor!r}")
    return int(text)


class _Totals:
    __slots__ = ("bytes", "dropped", "lines", "told")

    def __init__(self, lines: int = 0, size: int = 0, dropped: int = 0, told: int = 0) -> None:
        self.lines, self.bytes, self.dropped, self.told = lines, size, dropped, told


class LogsMixin:
    """``append_logs`` and ``task_logs`` of ``SqlStore``."""

    driver: Driver

    async def append_logs(
        self,
        lines: Sequence[LogLine],
        limits: LogLimits,
        closing: Sequence[tuple[str, int]] = (),
        *,
        dropped: Mapping[str, int] | None = None,
    ) -> None:
        dropped = dropped or {}
        task_ids = sorted(
            {line.task_id for line in lines} | {t for t, _ in closing} | set(dropped)
        )
        if not task_ids:
            return

        async def op(tx: Tx) -> None:
            stubs = {
                row[0]: row[1]
                for row in await tx.execute(
                    f"SELECT id, stub_id FROM tasks WHERE id IN {placeholders(len(task_ids))}",
                    task_ids,
                )
            }  # lines of a task no longer stored (retention) are dropped with it
            totals = {
                row[0]: _Totals(*(int(v) for v in row[1:]))
                for row in await tx.execute(
                    "SELECT task_id, lines, bytes, dropped, told FROM task_log_totals"
                    f" WHERE task_id IN {placeholders(len(task_ids))}",
                    task_ids,
                )
            }
            kept: list[LogLine] = []
            for line in lines:
                if line.task_id not in stubs:
                    continue
                total = totals.setdefault(line.task_id, _Totals())
                size = len(line.line.encode())
                fits = total.lines < limits.max_lines and total.bytes + size <= limits.max_bytes
                if fits and not total.dropped:  # once one is dropped, every later one is
                    total.lines += 1
                    total.bytes += size
                    kept.append(line)
                else:
                    total.dropped += 1
            for task_id, count in dropped.items():
                if task_id in stubs:
                    totals.setdefault(task_id, _Totals()).dropped += count
            at = clock.to_us(clock.now())
            for task_id, attempt in closing:
                total = totals.get(task_id) or _Totals()
                if task_id in stubs and total.dropped > total.told:
                    marker = marker_line(total.dropped - total.told)
                    kept.append(LogLine(task_id, attempt, MARKER_STREAM, at, marker))
                    total.told = total.dropped
            await self._insert_lines(tx, kept)
            written = sorted(t for t in totals if t in stubs)
            if written:
                await tx.executemany(
                    "INSERT INTO task_log_totals (task_id, lines, bytes, dropped, told)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (task_id) DO UPDATE SET"
                    " lines = excluded.lines, bytes = excluded.bytes,"
                    " dropped = excluded.dropped, told = excluded.told",
                    [
                        (t, totals[t].lines, totals[t].bytes, totals[t].dropped, totals[t].told)
                        for t in written
                    ],
                )
            for task_id in sorted({line.task_id for line in kept}):
                tx.emit(Event("logs", stubs[task_id], task_id))

        await self.driver.write(op)

    async def _insert_lines(self, tx: Tx, lines: Sequence[LogLine]) -> None:
        if not lines:
            return
        if self.driver.dialect.name == "postgres":
            # One statement over arrays: thousands of lines in one round trip, ids in order.
            await tx.execute(
                "INSERT INTO task_logs (task_id, attempt, stream, at, line)"
                " SELECT v.task_id, v.attempt, v.stream, v.at, v.line"
                " FROM unnest(?::text[], ?::int[], ?::text[], ?::bigint[], ?::text[])"
                " WITH ORDINALITY AS v(task_id, attempt, stream, at, line, n) ORDER BY n",
                [
                    [line.task_id for line in lines],
                    [line.attempt for line in lines],
                    [line.stream for line in lines],
                    [line.at for line in lines],
                    [line.line for line in lines],
                ],
            )
            return
        await tx.executemany(
            "INSERT INTO task_logs (task_id, attempt, stream, at, line) VALUES (?, ?, ?, ?, ?)",
            [(line.task_id, line.attempt, line.stream, line.at, line.line) for line in lines],
        )

    async def task_logs(
        self,
        task_id: str,
        workspace_id: str,
        *,
        attempt: int | None = None,
        stream: LogStream | None = None,
        cursor: str | None = None,
        limit: int = 1000,
    ) -> LogPage | None:
        after = decode_log_cursor(cursor) if cursor else 0
        key = canonical_id(task_id)
        if key is None:
            return None
        sql = "SELECT id, attempt, stream, at, line FROM task_logs WHERE task_id = ? AND id > ?"
        params: list[Any] = [key, after]
        if attempt is not None:
            sql += " AND attempt = ?"
            params.append(attempt)
        if stream is not None:
            sql += " AND stream = ?"
            params.append(stream)
        sql += " ORDER BY id LIMIT ?"
        params.append(limit)

        async def op(tx: Tx) -> LogPage | None:
            # The status first: lines a task wrote are stored before its terminal status, so
            # a terminal status read here means this page misses none of them.
            found = await tx.execute(
                "SELECT status FROM tasks WHERE id = ? AND workspace_id = ?", [key, workspace_id]
            )
            if not found:
                return None
            status = TaskStatus(found[0][0])
            rows = await tx.execute(sql, params)
            lines = [
                StoredLogLine(int(r[0]), int(r[1]), cast(LogStream, r[2]), int(r[3]), r[4])
                for r in rows
            ]
            last = str(lines[-1].id) if lines else str(after)
            done = is_terminal(status) and len(lines) < limit
            return LogPage(lines, None if done else last, status)

        return await self.driver.read(op)
