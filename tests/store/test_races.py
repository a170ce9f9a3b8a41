"""Real concurrency: several store objects (connections) on one database at once."""

from __future__ import annotations

import asyncio
import itertools
import sys
from pathlib import Path

import pytest

from conveyor.errors import PendingLimitExceeded
from conveyor.server.store import open_store
from conveyor.server.store.base import Store
from conveyor.server.store.records import (
    CancelResult,
    NewTask,
    Outcome,
    Stub,
    TaskFilter,
    Workspace,
)
from conveyor.tasks import TaskStatus

from .conftest import T0, OpenStore

S = TaskStatus


async def stores(open_more: OpenStore, n: int) -> list[Store]:
    return [await open_more() for _ in range(n)]


async def all_tasks(store: Store, ws: Workspace) -> list[TaskStatus]:
    page, _ = await store.list_tasks(ws.id, TaskFilter(), limit=1000)
    return [v.task.status for v in page]


async def test_concurrent_claimers_never_share_a_task(
    store: Store, stub: Stub, open_more: OpenStore
) -> None:
    ids = await store.enqueue(stub, [NewTask("{}")] * 120, 1000)
    claimers = await stores(open_more, 4)

    async def drain(s: Store, n: int) -> list[str]:
        got: list[str] = []
        while batch := await s.claim(stub.id, f"c{n}", 3, 30):
            got.extend(t.id for t in batch)
        return got

    results = await asyncio.gather(*(drain(s, n) for n, s in enumerate(claimers * 2)))
    claimed = list(itertools.chain.from_iterable(results))
    assert sorted(claimed) == sorted(ids)  # each exactly once


async def test_cancel_racing_finish_leaves_one_terminal_status(
    store: Store, stub: Stub, ws: Workspace, open_more: OpenStore
) -> None:
    ids = await store.enqueue(stub, [NewTask("{}")] * 30, 100)
    tasks = await store.claim(stub.id, "c", 30, 30)
    canceller, finisher = await stores(open_more, 2)
    results = await asyncio.gather(
        *(canceller.cancel(ws.id, [t.id]) for t in tasks),
        *(finisher.finish([Outcome(t.id, t.fence, S.COMPLETE, result="1")]) for t in tasks),
    )
    cancels, finishes = results[:30], results[30:]
    for task, cancel, finish in zip(tasks, cancels, finishes, strict=True):
        assert isinstance(cancel, CancelResult)
        cancelled = cancel.cancelled == [task.id]
        completed = finish == [True]
        assert cancelled != completed
        view = await store.get_task(task.id)
        assert view is not None
        assert view.task.status is (S.CANCELLED if cancelled else S.COMPLETE)
    assert len(ids) == 30


async def test_timeout_racing_completion_applies_one(
    store: Store, stub: Stub, open_more: OpenStore
) -> None:
    await store.enqueue(stub, [NewTask("{}")] * 20, 100)
    tasks = await store.claim(stub.id, "c", 20, 30)
    a, b = await stores(open_more, 2)
    results = await asyncio.gather(
        *(a.finish([Outcome(t.id, t.fence, S.TIMEOUT)]) for t in tasks),
        *(b.finish([Outcome(t.id, t.fence, S.COMPLETE, result="1")]) for t in tasks),
    )
    for i, task in enumerate(tasks):
        timed_out, completed = results[i] == [True], results[20 + i] == [True]
        assert timed_out != completed
        view = await store.get_task(task.id)
        assert view is not None and view.task.status is (S.TIMEOUT if timed_out else S.COMPLETE)


async def test_pending_limit_holds_under_concurrent_enqueues(
    store: Store, stub: Stub, ws: Workspace, open_more: OpenStore
) -> None:
    writers = await stores(open_more, 4)

    async def one(s: Store) -> bool:
        try:
            await s.enqueue(stub, [NewTask("{}")], max_pending=5)
            return True
        except PendingLimitExceeded:
            return False

    accepted = await asyncio.gather(*(one(writers[i % 4]) for i in range(20)))
    assert sum(accepted) == 5
    assert len(await all_tasks(store, ws)) == 5


async def test_idempotency_holds_under_concurrent_enqueues(
    store: Store, stub: Stub, ws: Workspace, open_more: OpenStore
) -> None:
    writers = await stores(open_more, 4)
    results = await asyncio.gather(
        *(writers[i % 4].enqueue(stub, [NewTask("{}", idempotency_key="same")], 100)
          for i in range(12))
    )
    assert len({ids[0] for ids in results}) == 1
    assert len(await all_tasks(store, ws)) == 1


async def test_concurrent_sweeps_move_each_task_once(
    store: Store, stub: Stub, ws: Workspace, open_more: OpenStore
) -> None:
    await store.enqueue(stub, [NewTask("{}")] * 40, 100, now=T0)
    await store.claim(stub.id, "c", 20, lease_s=10, now=T0)  # 20 RUNNING, 20 PENDING
    sweepers = await stores(open_more, 3)
    reports = await asyncio.gather(*(s.sweep(now=T0 + 61) for s in sweepers))
    assert sum(r.retried for r in reports) == 20
    assert sum(r.expired for r in reports) == 20
    statuses = await all_tasks(store, ws)
    assert statuses.count(S.RETRY) == 20 and statuses.count(S.EXPIRED) == 20


@pytest.mark.parametrize("late", ["cancel", "finish", "sweep", "release", "claim"])
async def test_terminal_status_is_never_overwritten(
    store: Store, stub: Stub, ws: Workspace, late: str
) -> None:
    [task_id] = await store.enqueue(stub, [NewTask("{}")], 10, now=T0)
    [task] = await store.claim(stub.id, "c", 1, lease_s=10, now=T0)
    assert await store.finish([Outcome(task_id, task.fence, S.COMPLETE, result="1")], now=T0)
    if late == "cancel":
        assert (await store.cancel(ws.id, [task_id])).already_finished == [task_id]
    elif late == "finish":
        assert await store.finish([Outcome(task_id, task.fence, S.FAILED, error="{}",
                                           retryable=True)]) == [False]
    elif late == "sweep":
        await store.sweep(now=T0 + 10_000)
    elif late == "release":
        assert await store.release([(task_id, task.fence)]) == 0
    else:
        assert await store.claim(stub.id, "c", 1, 10) == []
    view = await store.get_task(task_id)
    assert view is not None and view.task.status is S.COMPLETE and view.task.result == "1"


ENQUEUER = """
import asyncio, sys
from conveyor.errors import PendingLimitExceeded
from conveyor.server.store import open_store
from conveyor.server.store.records import NewTask

async def main(url, stub_id):
    store = open_store(url)
    await store.open()
    stub = await store.get_stub(stub_id)
    accepted = 0
    for _ in range(10):
        try:
            await store.enqueue(stub, [NewTask("{}")], max_pending=7)
            accepted += 1
        except PendingLimitExceeded:
            pass
    await store.close()
    print(accepted)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_sqlite_pending_limit_holds_across_processes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/shared.db"
    store = open_store(url)
    await store.open()
    ws = await store.ensure_workspace("acme")
    stub = await store.deploy_stub(ws.id, "q", {}, b"x")
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", ENQUEUER, url, stub.id, stdout=asyncio.subprocess.PIPE
        )
        for _ in range(3)
    ]
    outputs = [await proc.communicate() for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    assert sum(int(out.decode()) for out, _ in outputs) == 7
    assert len(await all_tasks(store, ws)) == 7
    await store.close()
