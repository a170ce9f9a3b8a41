"""Schedules in the SQL store: each schedule's last tick, and making a tick exactly once.

A schedule is a name whose versions are schedule stubs; its latest version that makes ticks
(not stopped) is the one that ticks. A tick is a row of ``schedule_ticks`` keyed by
(workspace, name, instant). Every gateway and agent may try to make the same tick; the one
whose insert lands makes the tick's task in the same transaction, and every other insert is
refused by the key (or finds a later tick made, or a later version), so a tick makes one task
whoever runs and whichever version each maker saw. Which tick is due is decided above the
store (``conveyor.cron``, ``server/schedules.py``); the store only keeps the promise.
"""

from __future__ import annotations

import orjson

from conveyor import clock
from conveyor.server.store.driver import Driver, Row, Tx
from conveyor.server.store.group_commit import EnqueueCall, write_calls
from conveyor.server.store.records import SCHEDULES, NewTask, ScheduleInfo, Stub, Tick
from conveyor.server.store.row_mapping import S_COLS, STUB_WIDTH, now_us, to_stub

#: Ticks are kept this long after a later one is made (the last one always is).
TICKS_KEPT_S = 86400.0
#: The input of a schedule's task: its function takes no arguments.
_NO_ARGUMENTS = orjson.dumps({"args": [], "kwargs": {}}).decode()
_TYPES = "(" + ", ".join(f"'{t}'" for t in SCHEDULES) + ")"
#: Of a stub row ``{s}``: its schedule makes ticks (a stopped version makes none, DESIGN A11).
_TICKING = "{s}.active"
#: Of a stub row ``s``: no later version of its name makes ticks.
_LATEST = (
    "NOT EXISTS (SELECT 1 FROM stubs n WHERE n.workspace_id = s.workspace_id"
    " AND n.name = s.name AND n.version > s.version AND " + _TICKING.format(s="n") + ")"
)


class TicksMixin:
    """The schedule methods of ``SqlStore``."""

    driver: Driver
    _for_update: str

    async def schedules(self, workspace_id: str | None = None) -> list[ScheduleInfo]:
        sql = (
            f"SELECT {S_COLS}, k.tick_at, k.stub_id, k.task_id, k.catch_up, k.made_at"
            " FROM stubs s LEFT JOIN schedule_ticks k ON k.workspace_id = s.workspace_id"
            " AND k.name = s.name AND k.tick_at = (SELECT MAX(m.tick_at) FROM schedule_ticks m"
            " WHERE m.workspace_id = s.workspace_id AND m.name = s.name)"
            f" WHERE s.type IN {_TYPES} AND {_TICKING.format(s='s')} AND {_LATEST}"
        )
        params: list[str] = []
        if workspace_id is not None:
            sql += " AND s.workspace_id = ?"
            params.append(workspace_id)
        sql += " ORDER BY s.workspace_id, s.name"
        rows = await self.driver.read(lambda tx: tx.execute(sql, params))
        return [ScheduleInfo(to_stub(row), _tick(row[STUB_WIDTH:])) for row in rows]

    async def make_tick(
        self, stub: Stub, tick_at: int, catch_up: bool, now: float | None = None
    ) -> Tick | None:
        t = now_us(now)

        async def op(tx: Tx) -> Tick | None:
            made = await tx.execute(
                "INSERT INTO schedule_ticks (workspace_id, name, tick_at, stub_id, task_id,"
                " catch_up, made_at) SELECT s.workspace_id, s.name, ?, s.id, NULL, ?, ?"
                f" FROM stubs s WHERE s.id = ? AND {_TICKING.format(s='s')} AND {_LATEST}"
                " AND NOT EXISTS (SELECT 1 FROM schedule_ticks k"
                " WHERE k.workspace_id = s.workspace_id AND k.name = s.name AND k.tick_at >= ?)"
                " ON CONFLICT (workspace_id, name, tick_at) DO NOTHING RETURNING tick_at",
                [tick_at, catch_up, t, stub.id, tick_at],
            )
            if not made:
                return None  # made already, or this version no longer ticks
            task = NewTask(_NO_ARGUMENTS, run_at=tick_at)
            call = EnqueueCall(stub, [task], stub.queue_config.max_pending_tasks, t)
            [outcome] = await write_calls(tx, [call], self._for_update)
            task_id = None if isinstance(outcome, Exception) else outcome[0]
            key = [stub.workspace_id, stub.name]
            if task_id is not None:
                await tx.execute(
                    "UPDATE schedule_ticks SET task_id = ?"
                    " WHERE workspace_id = ? AND name = ? AND tick_at = ?",
                    [task_id, *key, tick_at],
                )
            await tx.execute(
                "DELETE FROM schedule_ticks WHERE workspace_id = ? AND name = ? AND tick_at < ?",
                [*key, tick_at - clock.to_us(TICKS_KEPT_S)],
            )
            return Tick(tick_at, stub.id, task_id, catch_up, t)

        return await self.driver.write(op)


def _tick(row: Row) -> Tick | None:
    tick_at, stub_id, task_id, catch_up, made_at = row
    if tick_at is None:
        return None
    return Tick(int(tick_at), stub_id, task_id, bool(catch_up), int(made_at))
