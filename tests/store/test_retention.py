"""Retention (DESIGN A11): finished tasks older than the retention go with everything that
hangs off them, in bounded batches; unfinished ones stay whatever their age. Time is stepped."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from conveyor.server.retention import Retention
from conveyor.server.store import retention
from conveyor.server.store.base import Store
from conveyor.server.store.records import LogLimits, LogLine, NewTask, Outcome, Stub, Workspace
from conveyor.server.store.sql import SqlStore
from conveyor.tasks import TaskStatus

from .conftest import T0, OpenStore

S = TaskStatus
DAY = 86_400.0
TABLES = ("tasks", "outputs", "task_logs", "task_log_totals", "task_attempts", "callbacks",
          "idempotency_keys")


async def rows(store: Store) -> dict[str, int]:
    """Rows per table that hangs off tasks (the tasks table included)."""
    sql = cast(SqlStore, store)
    found = {}
    for table in TABLES:
        answer = await sql.driver.read(lambda tx, t=table: tx.execute(f"SELECT COUNT(*) FROM {t}"))
        found[table] = int(answer[0][0])
    return found


async def finished(
    store: Store, stub: Stub, at: float, key: str | None = None, lines: int = 2
) -> str:
    """A task that ran at ``at`` with outputs, log lines, an attempt row and a callback, and
    ended one second later."""
    [task_id] = await store.enqueue(
        stub, [NewTask("{}", "http://cb/", idempotency_key=key)], 100, now=at
    )
    [claimed] = await store.claim(stub.id, "c", 1, 30, now=at)
    await store.append_logs(
        [LogLine(task_id, 1, "stdout", int(at * 1e6), f"line {i}") for i in range(lines)],
        LogLimits(),
    )
    await store.finish(
        [Outcome(task_id, claimed.fence, S.COMPLETE, result="1", outputs=[("o.txt", b"o")])],
        now=at + 1,
    )
    return task_id


async def deliver_callbacks(store: Store, now: float) -> None:
    for callback in await store.claim_callbacks(100, 30, now=now):
        await store.callback_delivered(callback.id, now=now)


async def test_old_finished_tasks_go_with_everything_that_hangs_off_them(
    store: Store, ws: Workspace, stub: Stub
) -> None:
    old = await finished(store, stub, T0, key="k")
    recent = await finished(store, stub, T0 + 5 * DAY)
    await deliver_callbacks(store, T0 + 5 * DAY)
    before = await rows(store)
    assert all(before[table] for table in TABLES)
    view = await store.get_task(old, ws.id)
    assert view is not None
    # Nothing ended before the cutoff: nothing goes.
    assert await store.prune(T0 + 1) == 0
    assert await store.prune(T0 + 1.5) == 1  # ended at T0 + 1
    assert await store.get_task(old) is None
    assert await store.get_output(view.outputs[0].id) is None
    assert await store.task_logs(old, ws.id) is None
    assert await store.task_attempts(old, ws.id) is None
    after = await rows(store)
    assert after == {**{t: before[t] - 1 for t in TABLES}, "task_logs": before["task_logs"] - 2}
    # The idempotency key went with its task: the same key makes a new one.
    [again] = await store.enqueue(stub, [NewTask("{}", idempotency_key="k")], 100, now=T0 + 6)
    assert again != old
    assert await store.get_task(recent, ws.id) is not None


async def test_unfinished_tasks_stay_whatever_their_age(store: Store, stub: Stub) -> None:
    ids = await store.enqueue(stub, [NewTask("{}")] * 3, 100, now=T0 - 30 * DAY)
    claimed = await store.claim(stub.id, "c", 2, 30, now=T0 - 30 * DAY)
    await store.finish([Outcome(claimed[1].id, claimed[1].fence, S.FAILED, retryable=True,
                                error='{"type": "E"}')], now=T0 - 29 * DAY)
    assert await store.prune(T0 + 365 * DAY) == 0
    statuses = {(await store.get_task(i)).task.status for i in ids}  # type: ignore[union-attr]
    assert statuses == {S.PENDING, S.RUNNING, S.RETRY}


async def test_a_task_waits_for_its_callback_to_be_delivered_or_given_up(
    store: Store, ws: Workspace, stub: Stub
) -> None:
    task_id = await finished(store, stub, T0)
    assert await store.prune(T0 + DAY) == 0  # its callback is still to be sent
    [callback] = await store.claim_callbacks(10, 30, now=T0 + 2)
    await store.callback_failed(callback.id, "HTTP 500", retry_at=None, now=T0 + 2)
    assert await store.prune(T0 + DAY) == 1
    assert await store.get_task(task_id, ws.id) is None
    assert (await rows(store))["callbacks"] == 0


async def test_a_batch_is_bounded_by_tasks_and_by_log_lines(
    store: Store, stub: Stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [await finished(store, stub, T0 + i, lines=3) for i in range(5)]
    await deliver_callbacks(store, T0 + 10)
    assert await store.prune(T0 + DAY, limit=2) == 2
    assert [await store.get_task(i) is None for i in ids] == [True, True, False, False, False]
    monkeypatch.setattr(retention, "PRUNE_ROWS", 5)  # one task and its 3 lines is 4 rows
    assert await store.prune(T0 + DAY) == 1
    assert await store.prune(T0 + DAY) == 1
    assert await store.prune(T0 + DAY) == 1
    assert await store.prune(T0 + DAY) == 0
    assert (await rows(store)) == dict.fromkeys(TABLES, 0)


async def test_many_processes_prune_together(open_more: OpenStore, ws: Workspace) -> None:
    first = await open_more()
    stub = await first.deploy_stub(ws.id, "q", {}, b"x")
    ids = await first.enqueue(stub, [NewTask("{}")] * 40, 100, now=T0)
    claimed = await first.claim(stub.id, "c", 40, 30, now=T0)
    await first.finish([Outcome(t.id, t.fence, S.COMPLETE, result="1") for t in claimed],
                       now=T0 + 1)
    stores = [first, await open_more(), await open_more()]

    async def prune_all(store: Store) -> int:
        total = 0
        while n := await store.prune(T0 + DAY, limit=3):
            total += n
        return total

    counts = await asyncio.gather(*(prune_all(s) for s in stores))
    assert sum(counts) == len(ids)
    assert (await rows(first))["tasks"] == 0


async def test_the_chore_keeps_tasks_for_the_retention(store: Store, stub: Stub) -> None:
    """``--retention 7d``: a task that ended at T0 + 1 is kept until T0 + 1 + 7 days; with 0,
    forever."""
    task_id = await finished(store, stub, T0)
    await deliver_callbacks(store, T0 + 2)
    assert await Retention(store, 0).run_once(now=T0 + 365 * DAY) == 0
    week = Retention(store, 7 * DAY)
    assert await week.run_once(now=T0 + 1 + 7 * DAY - 0.001) == 0
    assert await store.get_task(task_id) is not None
    assert await week.run_once(now=T0 + 1 + 7 * DAY + 0.001) == 1
    assert await store.get_task(task_id) is None
