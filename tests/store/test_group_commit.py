"""Enqueue calls that arrive together share a transaction and still succeed or fail alone;
the pending limit reads a kept in-flight count."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from conveyor.errors import NotFound, PendingLimitExceeded, StaleRoute, StoreUnavailable
from conveyor.server.store.base import Store
from conveyor.server.store.records import NewTask, Outcome, Stub, TaskFilter, Workspace
from conveyor.server.store.sql import SqlStore
from conveyor.tasks import TaskStatus


def count_transactions(store: Store) -> list[int]:
    """Wrap the store's real driver so every write transaction is counted."""
    assert isinstance(store, SqlStore)
    driver = store.driver
    real = driver.write
    count = [0]

    async def write(fn: Callable[[Any], Awaitable[Any]], **options: Any) -> Any:
        count[0] += 1
        return await real(fn, **options)

    driver.write = write  # type: ignore[method-assign]
    return count


async def settle(calls: list[Awaitable[list[str]]]) -> list[list[str] | BaseException]:
    return await asyncio.gather(*calls, return_exceptions=True)


async def test_concurrent_enqueues_share_transactions(
    store: Store, stub: Stub, ws: Workspace
) -> None:
    transactions = count_transactions(store)
    results = await settle([store.enqueue(stub, [NewTask(f'{{"n": {i}}}')], 1000)
                            for i in range(50)])
    assert all(isinstance(r, list) and len(r) == 1 for r in results)
    assert transactions[0] < 10  # one alone, then the 49 that waited meanwhile
    page, _ = await store.list_tasks(ws.id, TaskFilter(), limit=100)
    assert len(page) == 50
    # In the order the calls were made (newest first in the listing).
    assert [v.task.payload for v in reversed(page)] == [f'{{"n": {i}}}' for i in range(50)]


async def test_a_call_over_the_limit_fails_alone(store: Store, stub: Stub, ws: Workspace) -> None:
    await store.enqueue(stub, [NewTask("{}")] * 3, max_pending=5)
    results = await settle([
        store.enqueue(stub, [NewTask("{}")], 5),
        store.enqueue(stub, [NewTask("{}")] * 3, 5),  # 3 + 1 + 3 > 5
        store.enqueue(stub, [NewTask("{}")], 5),
    ])
    assert isinstance(results[0], list)
    assert isinstance(results[1], PendingLimitExceeded)
    assert isinstance(results[2], list)
    page, _ = await store.list_tasks(ws.id, TaskFilter(), limit=100)
    assert len(page) == 5


async def test_a_refused_call_releases_its_idempotency_key(
    store: Store, stub: Stub, ws: Workspace
) -> None:
    results = await settle([
        store.enqueue(stub, [NewTask("{}")] * 2, 2),
        store.enqueue(stub, [NewTask("{}", idempotency_key="k")], 2),  # over the limit
    ])
    assert isinstance(results[1], PendingLimitExceeded)
    # The key was rolled back with the refused call: it now makes a new task.
    (again,) = await store.enqueue(stub, [NewTask("{}", idempotency_key="k")], 10)
    view = await store.get_task(again)
    assert view is not None
    page, _ = await store.list_tasks(ws.id, TaskFilter(), limit=100)
    assert len(page) == 3


async def test_a_call_for_a_missing_stub_fails_alone(store: Store, stub: Stub) -> None:
    gone = dataclasses.replace(stub, id=str(uuid.uuid4()))
    results = await settle([
        store.enqueue(stub, [NewTask("{}")], 10),
        store.enqueue(gone, [NewTask("{}")], 10),
        store.enqueue(stub, [NewTask("{}")], 10),
    ])
    assert isinstance(results[0], list) and isinstance(results[2], list)
    assert isinstance(results[1], NotFound)


async def test_a_failed_transaction_fails_every_call_in_it(store: Store, stub: Stub) -> None:
    await store.close()
    results = await settle([store.enqueue(stub, [NewTask("{}")], 10) for _ in range(3)])
    assert all(isinstance(r, StoreUnavailable) for r in results)
    with pytest.raises(StoreUnavailable):
        await store.enqueue(stub, [NewTask("{}")], 10)


async def in_flight_pair(store: Store, stub: Stub) -> tuple[int, int]:
    """The stub's kept ``in_flight`` count and a real count of its tasks in flight."""
    assert isinstance(store, SqlStore)
    kept = await store.driver.read(
        lambda tx: tx.execute("SELECT in_flight FROM stubs WHERE id = ?", [stub.id]))
    real = await store.driver.read(lambda tx: tx.execute(
        "SELECT COUNT(*) FROM tasks WHERE stub_id = ?"
        " AND status IN ('PENDING', 'RETRY', 'RUNNING')", [stub.id]))
    return int(kept[0][0]), int(real[0][0])


async def test_the_in_flight_count_follows_every_transition(
    store: Store, stub: Stub, ws: Workspace
) -> None:
    t0 = 1_795_824_000.0
    ids = await store.enqueue(stub, [NewTask("{}")] * 12, 100, now=t0)
    assert await in_flight_pair(store, stub) == (12, 12)
    claimed = await store.claim(stub.id, "c1", 6, lease_s=10, now=t0)
    assert await in_flight_pair(store, stub) == (12, 12)  # PENDING -> RUNNING stays in flight
    await store.finish([Outcome(claimed[0].id, claimed[0].fence, TaskStatus.COMPLETE, "1"),
                        Outcome(claimed[1].id, claimed[1].fence, TaskStatus.FAILED,
                                error="{}", retryable=True)], now=t0)
    assert await in_flight_pair(store, stub) == (11, 11)  # one COMPLETE, one RETRY
    await store.cancel(ws.id, [claimed[2].id, ids[-1]], now=t0)
    assert await in_flight_pair(store, stub) == (9, 9)
    await store.sweep(now=t0 + 30)  # leases of the 3 still RUNNING ran out -> RETRY
    assert await in_flight_pair(store, stub) == (9, 9)
    await store.sweep(now=t0 + 3600)  # ttl 60 s: what waits expires
    assert await in_flight_pair(store, stub) == (0, 0)
    more = await store.enqueue(stub, [NewTask("{}")] * 3, 100, now=t0 + 3600)
    assert await in_flight_pair(store, stub) == (3, 3)
    assert isinstance(store, SqlStore)
    await store.driver.write(lambda tx: tx.execute("DELETE FROM tasks WHERE id = ?", [more[0]]))
    assert await in_flight_pair(store, stub) == (2, 2)
    # The limit is checked against the kept count: 2 + 98 fits, one more does not.
    await store.enqueue(stub, [NewTask("{}")] * 98, 100, now=t0 + 3600)
    with pytest.raises(PendingLimitExceeded):
        await store.enqueue(stub, [NewTask("{}")], 100, now=t0 + 3600)


async def test_one_task_alone_is_counted_announced_and_refused_alone(
    store: Store, stub: Stub
) -> None:
    """The path of a lone one-task call (one statement on PostgreSQL): the kept count goes
    up, subscribers hear of it, and a full queue or a missing stub refuses it."""
    sub = store.subscribe()
    (task_id,) = await store.enqueue(stub, [NewTask("{}")], 2)
    event = await sub.get(timeout=5)
    assert event is not None and (event.kind, event.stub_id) == ("enqueued", stub.id)
    await store.enqueue(stub, [NewTask("{}")], 2)
    with pytest.raises(PendingLimitExceeded):
        await store.enqueue(stub, [NewTask("{}")], 2)
    (load,) = await store.stub_loads([stub.id])
    assert (load.runnable, load.running) == (2, 0)
    missing = dataclasses.replace(stub, id=str(uuid.uuid4()))
    with pytest.raises(NotFound):
        await store.enqueue(missing, [NewTask("{}")], 2)
    view = await store.get_task(task_id)
    assert view is not None and view.task.status is TaskStatus.PENDING


async def test_a_kept_look_up_of_the_latest_version_is_checked_as_it_is_written(
    store: Store, ws: Workspace
) -> None:
    """Enqueues may resolve a queue's latest version from a recent look-up (the route
    cache); the write refuses a look-up a deploy made stale, alone or in a batch, and the
    next look-up reads the new version."""
    for name, tasks in (("one", [NewTask("{}")]), ("two", [NewTask("{}"), NewTask("{}")])):
        v1 = await store.deploy_stub(ws.id, name, {"name": name}, b"x")
        kept = await store.resolve_stub(ws.id, name, cached=True)
        assert kept == v1
        assert await store.resolve_stub(ws.id, name, cached=True) is kept  # no read: kept
        assert len(await store.enqueue(kept, tasks, 10)) == len(tasks)
        v2 = await store.deploy_stub(ws.id, name, {"name": name}, b"x")
        with pytest.raises(StaleRoute):
            await store.enqueue(kept, tasks, 10)
        fresh = await store.resolve_stub(ws.id, name, cached=True)
        assert fresh is not None and fresh.id == v2.id
        assert len(await store.enqueue(fresh, tasks, 10)) == len(tasks)
        # A stub named by its version is not a look-up of the latest: no check.
        named = await store.resolve_stub(ws.id, name, 1)
        assert named is not None and len(await store.enqueue(named, tasks, 10)) == len(tasks)
    page, _ = await store.list_tasks(ws.id, TaskFilter(), limit=100)
    assert sorted((v.stub.name, v.stub.version) for v in page) == sorted(
        [("one", 1), ("one", 2), ("one", 1)] + [("two", 1), ("two", 2), ("two", 1)] * 2
    )


async def test_a_served_stub_changed_in_place_makes_its_kept_look_up_stale(
    store: Store, ws: Workspace
) -> None:
    served = await store.upsert_serve_stub(ws.id, "s", {"name": "s"}, b"x")
    kept = await store.resolve_stub(ws.id, "s", cached=True)
    assert kept == served
    await store.upsert_serve_stub(ws.id, "s", {"name": "s", "timeout": 5}, b"x")
    with pytest.raises(StaleRoute):
        await store.enqueue(kept, [NewTask("{}")], 10)
    fresh = await store.resolve_stub(ws.id, "s", cached=True)
    assert fresh is not None and fresh.queue_config.timeout == 5
    assert len(await store.enqueue(fresh, [NewTask("{}")], 10)) == 1
