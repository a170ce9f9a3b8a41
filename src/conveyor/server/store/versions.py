"""Operating deployed versions (DESIGN A11): stop, start and delete a stub; and replays (A10),
which enqueue again what finished tasks were given.

A stop or a start changes the stub's ``updated_at``, so an enqueue through a kept look-up of
the queue's route (``routes.py``), in this process or another, is refused as ``StaleRoute`` by
its write and looks the route up again. Agents hear the ``stub`` event (PostgreSQL: every
process; SQLite: this one, the others on their next look at the stubs).

A delete is refused while tasks of the version are not terminal. It first stops the version
(so nothing new arrives), then deletes its tasks a bounded batch per transaction, then the stub;
a delete cut short leaves a stopped version with fewer tasks, and running it again finishes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from conveyor.errors import InvalidTransition, NotFound, VersionBusy
from conveyor.server.store.driver import Driver, Tx
from conveyor.server.store.group_commit import EnqueueCall, write_calls
from conveyor.server.store.guards import sql_list
from conveyor.server.store.records import Event, NewTask, Stub
from conveyor.server.store.retention import PRUNE_BATCH, delete_tasks, within_budget
from conveyor.server.store.routes import RouteCache
from conveyor.server.store.row_mapping import (
    S_COLS,
    STUB_COLS,
    canonical_id,
    now_us,
    placeholders,
    to_stub,
)
from conveyor.tasks import IN_FLIGHT, TaskStatus, is_terminal

#: Of the stubs of a queue, the one its unversioned route goes to: the latest active version,
#: else (every version stopped) the latest, whose enqueue is then refused as stopped.
ROUTE_ORDER = " ORDER BY active DESC, version DESC LIMIT 1"
#: ``updated_at`` of a stub that changes at ``?``: later than before, whatever the clock says.
_BUMPED = "CASE WHEN updated_at < ? THEN ? ELSE updated_at + 1 END"
_UNFINISHED = sql_list(IN_FLIGHT)


class VersionsMixin:
    """The version and replay methods of ``SqlStore``."""

    driver: Driver
    routes: RouteCache
    _for_update: str

    async def set_stub_active(
        self, workspace_id: str, stub_id: str, active: bool, now: float | None = None
    ) -> Stub:
        t = now_us(now)

        async def op(tx: Tx) -> Stub:
            stub = await _stub_of(tx, workspace_id, stub_id, self._for_update)
            if stub.active == active:
                return stub
            return await _set_active(tx, stub, active, t)

        stub = await self.driver.write(op)
        self.routes.forget_queue(stub.workspace_id, stub.name)
        return stub

    async def delete_stub(self, workspace_id: str, stub_id: str, now: float | None = None) -> int:
        t = now_us(now)

        async def stop(tx: Tx) -> Stub:
            stub = await _stub_of(tx, workspace_id, stub_id, self._for_update)
            rows = await tx.execute(
                f"SELECT COUNT(*) FROM tasks WHERE stub_id = ? AND status IN {_UNFINISHED}",
                [stub.id],
            )
            if int(rows[0][0]):
                raise VersionBusy(
                    f"version v{stub.version} of {stub.name} has {int(rows[0][0])} unfinished"
                    " task(s): cancel them or let them finish, then delete it"
                )
            return stub if not stub.active else await _set_active(tx, stub, False, t)

        stub = await self.driver.write(stop)
        self.routes.forget_queue(stub.workspace_id, stub.name)
        deleted = 0
        while True:
            batch = await self.driver.write(lambda tx: _delete_some(tx, stub.id))
            deleted += batch
            if not batch:
                break
        await self.driver.write(lambda tx: _delete_stub_row(tx, stub, self._for_update))
        return deleted

    async def replay(
        self,
        workspace_id: str,
        task_ids: Sequence[str],
        latest: bool = False,
        now: float | None = None,
    ) -> list[str]:
        keys = list(dict.fromkeys(task_ids))
        for key in keys:
            if canonical_id(key) is None:
                raise NotFound(f"unknown task {key!r}")
        t = now_us(now)
        for_update = self._for_update

        async def op(tx: Tx) -> list[str]:
            found = await _finished_tasks(tx, workspace_id, keys)
            routes: dict[str, Stub] = {}
            targets: dict[str, Stub] = {}
            tasks: dict[str, list[NewTask]] = {}
            for task_id, (stub, payload, callback_url) in found.items():
                if latest:
                    if stub.name not in routes:
                        routes[stub.name] = await _route_of(tx, workspace_id, stub.name)
                    stub = routes[stub.name]
                targets[stub.id] = stub
                tasks.setdefault(stub.id, []).append(NewTask(payload, callback_url,
                                                             replay_of=task_id))
            calls = [EnqueueCall(stub, tasks[stub.id], stub.queue_config.max_pending_tasks, t)
                     for stub in targets.values()]
            made: dict[str, str] = {}
            for call, outcome in zip(calls, await write_calls(tx, calls, for_update), strict=True):
                if isinstance(outcome, Exception):
                    raise outcome  # all or nothing: the transaction rolls back
                for task, new_id in zip(call.tasks, outcome, strict=True):
                    made[str(task.replay_of)] = new_id
            return [made[task_id] for task_id in found]

        return await self.driver.write(op)


async def _stub_of(tx: Tx, workspace_id: str, stub_id: str, for_update: str) -> Stub:
    key = canonical_id(stub_id)
    rows = [] if key is None else await tx.execute(
        f"SELECT {STUB_COLS} FROM stubs WHERE id = ? AND workspace_id = ?{for_update}",
        [key, workspace_id],
    )
    if not rows:
        raise NotFound(f"unknown deployment {stub_id!r}")
    return to_stub(rows[0])


async def _set_active(tx: Tx, stub: Stub, active: bool, t: int) -> Stub:
    rows = await tx.execute(
        f"UPDATE stubs SET active = ?, updated_at = {_BUMPED} WHERE id = ? RETURNING {STUB_COLS}",
        [active, t, t, stub.id],
    )
    tx.emit(Event("stub", stub.id))
    return to_stub(rows[0])


async def _delete_some(tx: Tx, stub_id: str) -> int:
    rows = await tx.execute(
        f"SELECT id FROM tasks WHERE stub_id = ? LIMIT {PRUNE_BATCH}", [stub_id]
    )
    return await delete_tasks(tx, await within_budget(tx, [row[0] for row in rows]))


async def _delete_stub_row(tx: Tx, stub: Stub, for_update: str) -> None:
    rows = await tx.execute(f"SELECT active FROM stubs WHERE id = ?{for_update}", [stub.id])
    if not rows:
        return  # deleted meanwhile by another caller
    if rows[0][0] or await tx.execute("SELECT 1 FROM tasks WHERE stub_id = ? LIMIT 1", [stub.id]):
        raise VersionBusy(
            f"version v{stub.version} of {stub.name} was started again while it was deleted"
        )
    await tx.execute("DELETE FROM containers WHERE stub_id = ?", [stub.id])
    await tx.execute("DELETE FROM stubs WHERE id = ?", [stub.id])
    await tx.execute(
        "DELETE FROM objects WHERE id = ? AND NOT EXISTS (SELECT 1 FROM stubs WHERE object_id = ?)",
        [stub.object_id, stub.object_id],
    )
    tx.emit(Event("stub", stub.id))


async def _finished_tasks(
    tx: Tx, workspace_id: str, keys: Sequence[str]
) -> dict[str, tuple[Stub, str, str | None]]:
    """Of each task (by stored id): its stub, its input and its callback URL. ``NotFound``
    for an id of no task of the workspace, ``InvalidTransition`` for one not finished."""
    ids = [str(canonical_id(key)) for key in keys]
    rows = await tx.execute(
        f"SELECT t.id, t.status, t.payload, t.callback_url, {S_COLS} FROM tasks t"
        f" JOIN stubs s ON s.id = t.stub_id WHERE t.workspace_id = ? AND t.id IN"
        f" {placeholders(len(ids))}",
        [workspace_id, *ids],
    )
    found: dict[str, Any] = {row[0]: row for row in rows}
    result: dict[str, tuple[Stub, str, str | None]] = {}
    for key, task_id in zip(keys, ids, strict=True):
        row = found.get(task_id)
        if row is None:
            raise NotFound(f"unknown task {key!r}")
        status = TaskStatus(row[1])
        if not is_terminal(status):
            raise InvalidTransition(
                f"task {task_id} is {status.value}: only a finished task can be replayed"
            )
        result[task_id] = (to_stub(row[4:]), row[2], row[3])
    return result


async def _route_of(tx: Tx, workspace_id: str, name: str) -> Stub:
    rows = await tx.execute(
        f"SELECT {STUB_COLS} FROM stubs WHERE workspace_id = ? AND name = ?{ROUTE_ORDER}",
        [workspace_id, name],
    )
    if not rows:
        raise NotFound(f"unknown queue {name!r}")
    return to_stub(rows[0])
