"""Enqueue with group commit: ``enqueue`` calls that arrive together share one transaction.

A gateway calls ``enqueue`` once per request. Alone, each call costs a whole transaction (a
writer-thread hop and a commit on SQLite; a stub lock, a count, an insert and a commit on
PostgreSQL), and calls for one stub are serialized by that lock anyway. So calls arriving while
a transaction is being written wait, and the next transaction takes all of them. With no load
a call is written at once, alone; nothing waits on a timer.

The pending limit reads the stub's ``in_flight`` count (kept by the store's triggers), so an
enqueue costs the same however deep the queue. On PostgreSQL a call alone of one task without
an idempotency key is one statement (``_ONE``: the count, the insert and the notification),
so it costs one round trip instead of six (begin, lock, insert, count, notify, commit).

A stopped version (``stubs.active`` false) takes no task: ``VersionStopped``, checked in the
same statement or transaction as the insert, on every path (gateway, direct producer, replay).

A call marked ``latest`` addresses the version a queue's unversioned route goes to (its latest
active one) through a stub looked up earlier (the store's route cache): its write refuses it
with ``StaleRoute`` when that stub changed (a stop or start changes it) or the route now goes
to another version, checked in the same statement or transaction, so a cached look-up never
sends a task to a version the route no longer went to when the task was written.

Each call still succeeds or fails on its own:
a call over its pending limit or for a missing stub fails alone, and a call with idempotency
keys runs inside a savepoint so that its keys roll back with it.

``write_calls`` is that transaction's body, over any :class:`Tx`: the direct producer
(``conveyor.direct``) runs the same statements in the caller's thread or transaction.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from conveyor import clock
from conveyor.errors import NotFound, PendingLimitExceeded, StaleRoute, VersionStopped
from conveyor.server.store.base import IDEMPOTENCY_WINDOW_S
from conveyor.server.store.driver import Driver, Row, Tx
from conveyor.server.store.events import event_to_json
from conveyor.server.store.records import Event, NewTask, Stub

_INSERT = (
    "INSERT INTO tasks (id, workspace_id, stub_id, status, payload, callback_url, max_retries,"
    " timeout_s, ttl_s, retry_backoff_s, created_at, updated_at, runnable_at, expires_at,"
    " run_at, replay_of) VALUES (?, ?, ?, 'PENDING', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


#: A task to run at once is runnable from this long before its enqueue: an agent whose clock
#: is a little behind the gateway's claims it at once all the same (claims compare
#: ``runnable_at`` with the claimer's clock; a delayed task waits for its time by it).
_HEADROOM = clock.to_us(1.0)

#: Of a stub row ``s``: the unversioned route of its queue goes elsewhere, to a later active
#: version or (``s`` being stopped) to any active one.
_SUPERSEDED = (
    "EXISTS (SELECT 1 FROM stubs n WHERE n.workspace_id = {s}.workspace_id"
    " AND n.name = {s}.name AND n.active AND (n.version > {s}.version OR NOT {s}.active))"
)
_LOCK_STUBS = (
    "SELECT id, in_flight, updated_at, " + _SUPERSEDED.format(s="s") + ", active FROM stubs s"
    " WHERE id IN ({marks}) ORDER BY id{for_update}"
)
#: One task, one statement (PostgreSQL): the stub's count goes up only while the stub is active
#: and under the limit (and, for a ``latest`` call, while the stub is as looked up and still
#: where the route goes), the task is inserted only if it did, and the agents are notified only
#: if it was.
_ONE = (
    "WITH up AS (UPDATE stubs SET in_flight = in_flight + 1 WHERE id = ? AND in_flight < ?"
    " AND active AND (? = 0 OR (updated_at = ? AND NOT " + _SUPERSEDED.format(s="stubs") + "))"
    " RETURNING id),"
    " ins AS (INSERT INTO tasks (id, workspace_id, stub_id, status, payload, callback_url,"
    " max_retries, timeout_s, ttl_s, retry_backoff_s, created_at, updated_at, runnable_at,"
    " expires_at, run_at, replay_of) SELECT ?, ?, up.id, 'PENDING', ?, ?, ?, ?, ?, ?, ?, ?, ?,"
    " ?, ?, ? FROM up RETURNING id)"
    " SELECT {notify} FROM ins"
)


@dataclass
class EnqueueCall:
    """One ``enqueue`` call: its tasks succeed or fail together."""

    stub: Stub
    tasks: Sequence[NewTask]
    max_pending: int
    t: int
    #: The stub came from a look-up of the queue's latest version (see the module docstring).
    latest: bool = False

    def rows(self, ids: Sequence[str], create: Sequence[int]) -> list[tuple[Any, ...]]:
        config = self.stub.queue_config
        policy = (config.max_retries, float(config.timeout), float(config.ttl),
                  float(config.retry_backoff))
        ttl = clock.to_us(config.ttl)
        rows = []
        for i in create:
            task = self.tasks[i]
            # A delayed task is runnable from its start time, and its ttl counts from then:
            # it does not expire for having waited as asked.
            start = self.t if task.run_at is None else max(self.t, task.run_at)
            runnable = start if start > self.t else self.t - _HEADROOM
            rows.append(
                (ids[i], self.stub.workspace_id, self.stub.id, task.payload,
                 task.callback_url or config.callback_url, *policy, self.t, self.t, runnable,
                 start + ttl, task.run_at, task.replay_of)
            )
        return rows


@dataclass
class _Call(EnqueueCall):
    """A waiting call of the group commit, and the future its caller awaits."""

    done: asyncio.Future[list[str]] = field(kw_only=True)


class Enqueuer:
    """Group-committing ``enqueue`` over a driver."""

    def __init__(self, driver: Driver) -> None:
        self._driver = driver
        self._for_update = driver.dialect.for_update
        notify = driver.dialect.notify
        #: One task in one statement, where the dialect can notify inside a statement.
        self._one = None if notify is None else _ONE.format(notify=notify)
        self._waiting: list[_Call] = []
        self._writing: asyncio.Task[None] | None = None

    async def enqueue(
        self, stub: Stub, tasks: Sequence[NewTask], max_pending: int, t: int, latest: bool
    ) -> list[str]:
        future = asyncio.get_running_loop().create_future()
        call = _Call(stub, tasks, max_pending, t, latest, done=future)
        self._waiting.append(call)
        if self._writing is None:
            self._writing = asyncio.ensure_future(self._write_waiting())
        return await call.done

    async def _write_waiting(self) -> None:
        try:
            while self._waiting:
                calls, self._waiting = self._waiting, []
                await self._write_calls(calls)
        finally:
            self._writing = None

    async def _write_calls(self, calls: list[_Call]) -> None:
        try:
            alone = None if len(calls) > 1 else await write_alone(
                self._driver.dialect.notify, calls[0], self._driver.statement
            )
            if alone is not None:
                outcomes = [alone]
            else:
                quick = len(calls) == 1 and len(calls[0].tasks) == 1
                outcomes = await self._driver.write(
                    lambda tx: write_calls(tx, calls, self._for_update), quick=quick
                )
        except BaseException as exc:  # the transaction failed, so did every call in it
            for call in calls:
                if call.done.done():
                    continue
                if isinstance(exc, Exception):
                    call.done.set_exception(exc)
                else:
                    call.done.cancel()
            if not isinstance(exc, Exception):
                raise
            return
        for call, outcome in zip(calls, outcomes, strict=True):
            if call.done.done():  # its caller went away; its tasks exist all the same
                continue
            if isinstance(outcome, Exception):
                call.done.set_exception(outcome)
            else:
                call.done.set_result(outcome)


#: Runs one statement and returns its rows: on a driver (``Driver.statement``: its own
#: transaction) or inside a transaction the caller holds.
Run = Callable[[str, Sequence[Any]], Awaitable[list[Row]]]


async def write_alone(
    notify: str | None, call: EnqueueCall, run: Run
) -> list[str] | Exception | None:
    """A lone call of one task without an idempotency key, in one statement where the
    dialect can notify inside one (``notify``, PostgreSQL's): its ids or its error; ``None``
    where it cannot be written so (then ``write_calls`` in a transaction)."""
    if notify is None or len(call.tasks) != 1 or call.tasks[0].idempotency_key is not None:
        return None
    (row,) = call.rows([str(uuid.uuid4())], [0])
    stub = call.stub
    event = event_to_json(Event("enqueued", stub.id))
    notified = await run(
        _ONE.format(notify=notify),
        [stub.id, call.max_pending, int(call.latest), stub.updated_at, *row[:2], *row[3:],
         event],
    )
    if notified:
        return [row[0]]
    found = await run(
        f"SELECT updated_at, {_SUPERSEDED.format(s='s')}, active FROM stubs s WHERE id = ?",
        [stub.id],
    )
    if not found:
        return NotFound(f"stub {stub.id} not found")
    if call.latest and (int(found[0][0]) != stub.updated_at or found[0][1]):
        return StaleRoute()
    if not found[0][2]:
        return VersionStopped(stub.name, stub.version)
    return PendingLimitExceeded(call.max_pending)


async def write_calls(
    tx: Tx, calls: Sequence[EnqueueCall], for_update: str
) -> list[list[str] | Exception]:
    """Insert each call's tasks (or refuse the call) inside ``tx``; per call, its ids or its
    error. ``for_update`` is the dialect's row-lock suffix (PostgreSQL: `` FOR UPDATE``)."""
    stub_ids = sorted({call.stub.id for call in calls})
    # Locks the stub rows (PostgreSQL), in one order for every writer, so their in-flight
    # counts cannot go stale and two gateways' batches cannot deadlock.
    found = await tx.execute(
        _LOCK_STUBS.format(marks=", ".join("?" * len(stub_ids)), for_update=for_update),
        stub_ids,
    )
    in_flight: dict[str, int] = {row[0]: int(row[1]) for row in found}
    #: Of each stub: when it last changed, and whether its route goes elsewhere.
    current: dict[str, tuple[int, bool]] = {row[0]: (int(row[2]), bool(row[3])) for row in found}
    stopped = {row[0] for row in found if not row[4]}
    added: dict[str, int] = {}
    outcomes: list[list[str] | Exception] = []
    rows: list[tuple[Any, ...]] = []
    for call in calls:
        stub_id = call.stub.id
        if stub_id not in in_flight:
            outcomes.append(NotFound(f"stub {stub_id} not found"))
            continue
        if call.latest and current[stub_id] != (call.stub.updated_at, False):
            outcomes.append(StaleRoute())
            continue
        if stub_id in stopped:
            outcomes.append(VersionStopped(call.stub.name, call.stub.version))
            continue
        keyed = any(task.idempotency_key is not None for task in call.tasks)
        if keyed:
            await tx.execute("SAVEPOINT enqueue_call")
        ids, create = await _reserve_ids(
            tx, call.stub.workspace_id, call.stub.name, call.tasks, call.t
        )
        if create and in_flight[stub_id] + len(create) > call.max_pending:
            if keyed:
                await tx.execute("ROLLBACK TO SAVEPOINT enqueue_call")
            outcomes.append(PendingLimitExceeded(call.max_pending))
            continue
        if keyed:
            await tx.execute("RELEASE SAVEPOINT enqueue_call")
        in_flight[stub_id] += len(create)
        added[stub_id] = added.get(stub_id, 0) + len(create)
        rows += call.rows(ids, create)
        outcomes.append(ids)
    if rows:
        await tx.executemany(_INSERT, rows)
        await tx.executemany("UPDATE stubs SET in_flight = in_flight + ? WHERE id = ?",
                             [(n, stub_id) for stub_id, n in sorted(added.items()) if n])
        for stub_id in sorted(added):
            tx.emit(Event("enqueued", stub_id))
    return outcomes


def scoped_key(queue: str, key: str) -> str:
    """The stored form of an idempotency key: scoped to its queue, so two queues' keys never
    collide. (Rows stored before the scope have a bare key; they match nothing new and expire
    within the window.)"""
    return f"q{len(queue)}:{queue}:{key}"


async def _reserve_ids(
    tx: Tx, workspace_id: str, queue: str, tasks: Sequence[NewTask], t: int
) -> tuple[list[str], list[int]]:
    """Ids for ``tasks`` (earlier ones for live idempotency keys) and the indexes to create."""
    ids = [str(uuid.uuid4()) for _ in tasks]
    first: dict[str, int] = {}
    create: list[int] = []
    keys = [
        None if new.idempotency_key is None else scoped_key(queue, new.idempotency_key)
        for new in tasks
    ]
    for i, key in enumerate(keys):
        if key is None:
            create.append(i)
        elif key in first:
            ids[i] = ids[first[key]]
        else:
            first[key] = i
    if not first:
        return ids, create
    cutoff = t - clock.to_us(IDEMPOTENCY_WINDOW_S)
    # A key is ours when the insert (or the takeover of an expired key) returns a row.
    taken = await tx.execute_each(
        "INSERT INTO idempotency_keys (workspace_id, key, task_id, created_at)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (workspace_id, key) DO UPDATE"
        " SET task_id = excluded.task_id, created_at = excluded.created_at"
        " WHERE idempotency_keys.created_at <= ? RETURNING task_id",
        [(workspace_id, key, ids[i], t, cutoff) for key, i in first.items()],
    )
    lost = [key for key, result in zip(first, taken, strict=True) if not result]
    if lost:
        rows = await tx.execute(
            "SELECT key, task_id FROM idempotency_keys WHERE workspace_id = ?"
            f" AND key IN ({', '.join('?' * len(lost))})",
            [workspace_id, *lost],
        )
        existing: dict[str, str] = {row[0]: row[1] for row in rows}
        for key in lost:
            ids[first[key]] = existing[key]
    for i, key in enumerate(keys):
        if key is not None:
            ids[i] = ids[first[key]]
            if first[key] == i and key not in lost:
                create.append(i)
    create.sort()
    return ids, create
