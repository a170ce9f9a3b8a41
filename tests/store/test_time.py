"""Time in the store (DESIGN A10): delayed tasks, and schedules' ticks made exactly once.

Time is stepped (``now=``): a tick is due when a maker says it is, so these run in
milliseconds; the real clock is met in tests/integration/test_schedules.py.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest

from conveyor import clock
from conveyor.cron import Cron
from conveyor.errors import ConfigError
from conveyor.server.store.base import Store
from conveyor.server.store.records import (
    SCHEDULE_DEPLOYMENT,
    SCHEDULE_SERVE,
    NewTask,
    Stub,
    TaskFilter,
    Workspace,
)
from conveyor.tasks import TaskStatus
from tests.conftest import OpenStore

from .conftest import T0

S = TaskStatus
EVERY_MINUTE = {"when": "* * * * *", "timezone": "UTC", "ttl": 60}


def us(t: float) -> int:
    return clock.to_us(t)


async def test_a_delayed_task_waits_for_its_time_and_its_ttl_counts_from_then(
    store: Store, stub: Stub
) -> None:
    # The stub's ttl is 60 s; the task may start 300 s after its enqueue.
    later, now = await store.enqueue(
        stub, [NewTask("{}", run_at=us(T0 + 300)), NewTask("{}")], 10, now=T0
    )
    view = await store.get_task(later)
    assert view is not None and view.task.run_at == us(T0 + 300)
    assert view.task.status is S.PENDING and view.queue_depth == 2
    [load] = await store.stub_loads([stub.id], now=T0 + 1)
    assert (load.runnable, load.running) == (1, 0)  # the delayed one is not runnable yet
    [first] = await store.claim(stub.id, "c", 10, 3600, now=T0 + 1)
    assert first.id == now and first.run_at is None
    assert await store.claim(stub.id, "c", 10, 30, now=T0 + 299) == []
    # Waiting as asked is not waiting too long: 290 s past its enqueue, within its ttl.
    assert (await store.sweep(now=T0 + 290)).expired == 0
    [task] = await store.claim(stub.id, "c", 10, 30, now=T0 + 300)
    assert task.id == later and task.started_at == us(T0 + 300)


async def test_a_delayed_task_expires_a_ttl_after_its_time(store: Store, stub: Stub) -> None:
    [task_id] = await store.enqueue(stub, [NewTask("{}", run_at=us(T0 + 300))], 10, now=T0)
    assert (await store.sweep(now=T0 + 359)).expired == 0
    assert (await store.sweep(now=T0 + 361)).expired == 1
    view = await store.get_task(task_id)
    assert view is not None and view.task.status is S.EXPIRED


async def test_a_start_time_past_means_at_once_and_the_ttl_from_the_enqueue(
    store: Store, stub: Stub
) -> None:
    [task_id] = await store.enqueue(stub, [NewTask("{}", run_at=us(T0 - 3600))], 10, now=T0)
    assert (await store.sweep(now=T0 + 59)).expired == 0
    [task] = await store.claim(stub.id, "c", 1, 30, now=T0)
    assert task.id == task_id and task.run_at == us(T0 - 3600)


async def test_claims_pass_over_many_delayed_tasks(store: Store, stub: Stub) -> None:
    later = await store.enqueue(stub, [NewTask("{}", run_at=us(T0 + 60))] * 50, 100, now=T0)
    ready = await store.enqueue(stub, [NewTask("{}")] * 3, 100, now=T0 + 1)
    claimed = await store.claim(stub.id, "c", 10, 30, now=T0 + 2)
    assert [t.id for t in claimed] == ready  # in the order they became runnable
    claimed = await store.claim(stub.id, "c", 100, 30, now=T0 + 60)
    assert [t.id for t in claimed] == later


async def test_many_delayed_tasks_leave_the_runnable_count_bounded_and_right(
    store: Store, stub: Stub
) -> None:
    from conveyor.server.store.queries import LOAD_COUNT_CAP

    for at in (T0 + 60, T0 + 120):
        delayed = [NewTask("{}", run_at=us(at))] * (LOAD_COUNT_CAP + 5)
        await store.enqueue(stub, delayed, 10**6, now=T0)
    await store.enqueue(stub, [NewTask("{}")] * 7, 10**6, now=T0)
    [load] = await store.stub_loads([stub.id], now=T0 + 1)
    assert load.runnable == 7
    [load] = await store.stub_loads([stub.id], now=T0 + 61)
    assert load.runnable == LOAD_COUNT_CAP  # at least that many: the count stops there
    [load] = await store.stub_loads([stub.id], now=T0 + 121)
    assert load.runnable == 2 * (LOAD_COUNT_CAP + 5) + 7  # none delayed: exact again


# -- schedules ---------------------------------------------------------------------------------


async def schedule(store: Store, ws: Workspace, **config: object) -> Stub:
    return await store.deploy_stub(ws.id, "nightly", {**EVERY_MINUTE, **config}, b"x")


def minute(n: int) -> int:
    """The instant of the n-th minute after T0 (T0 is on a minute)."""
    return us(T0 + 60 * n)


async def test_a_schedule_is_a_stub_of_its_own_type(store: Store, ws: Workspace) -> None:
    deployed = await schedule(store, ws)
    assert deployed.type == SCHEDULE_DEPLOYMENT
    served = await store.upsert_serve_stub(ws.id, "nightly", EVERY_MINUTE, b"y")
    assert served.type == SCHEDULE_SERVE and served.version == 2
    [info] = await store.schedules(ws.id)
    assert info.stub.id == served.id and info.last is None  # the latest version ticks
    # A name is a queue's or a schedule's, not both.
    with pytest.raises(ConfigError, match="'nightly' is a schedule already"):
        await store.deploy_stub(ws.id, "nightly", {}, b"z")
    await store.deploy_stub(ws.id, "resize", {}, b"z")
    with pytest.raises(ConfigError, match="'resize' is a task queue already"):
        await store.deploy_stub(ws.id, "resize", EVERY_MINUTE, b"z")
    assert [i.stub.name for i in await store.schedules()] == ["nightly"]


async def test_a_tick_makes_one_task_with_its_instant_and_no_arguments(
    store: Store, ws: Workspace
) -> None:
    stub = await schedule(store, ws)
    tick = await store.make_tick(stub, minute(1), False, now=T0 + 60.5)
    assert tick is not None and tick.task_id is not None and not tick.catch_up
    view = await store.get_task(tick.task_id)
    assert view is not None and view.task.stub_id == stub.id and view.task.status is S.PENDING
    assert view.task.run_at == minute(1) and view.task.created_at == us(T0 + 60.5)
    assert orjson.loads(view.task.payload) == {"args": [], "kwargs": {}}
    [info] = await store.schedules(ws.id)
    assert info.last == tick


async def test_two_makers_racing_for_a_tick_make_one_task(
    store: Store, ws: Workspace, open_more: OpenStore
) -> None:
    stub = await schedule(store, ws)
    makers = [store] + [await open_more() for _ in range(3)]  # four connections, one store
    for n in range(1, 6):
        made = await asyncio.gather(
            *(m.make_tick(stub, minute(n), False, now=T0 + 60 * n) for m in makers)
        )
        assert sum(tick is not None for tick in made) == 1, made
    page, _ = await store.list_tasks(ws.id, TaskFilter())
    assert sorted(v.task.run_at for v in page) == [minute(n) for n in range(1, 6)]


async def test_a_tick_made_is_never_made_again_nor_an_earlier_one(
    store: Store, ws: Workspace, open_more: OpenStore
) -> None:
    stub = await schedule(store, ws)
    assert await store.make_tick(stub, minute(2), False, now=T0 + 120) is not None
    restarted = await open_more()  # a maker that starts afresh knows nothing of the last
    assert await restarted.make_tick(stub, minute(2), False, now=T0 + 121) is None
    assert await restarted.make_tick(stub, minute(1), True, now=T0 + 122) is None
    page, _ = await store.list_tasks(ws.id, TaskFilter())
    assert len(page) == 1


async def test_a_new_version_goes_on_from_the_ticks_of_the_old(
    store: Store, ws: Workspace
) -> None:
    old = await schedule(store, ws)
    assert await store.make_tick(old, minute(1), False, now=T0 + 60) is not None
    new = await schedule(store, ws, ttl=120)
    # The old version no longer ticks, and the new one cannot make a tick made already.
    assert await store.make_tick(old, minute(2), False, now=T0 + 120) is None
    assert await store.make_tick(new, minute(1), False, now=T0 + 120) is None
    tick = await store.make_tick(new, minute(2), False, now=T0 + 120)
    assert tick is not None and tick.stub_id == new.id
    [info] = await store.schedules(ws.id)
    assert info.stub.id == new.id and info.last == tick


async def test_a_tick_over_the_pending_limit_is_made_without_a_task(
    store: Store, ws: Workspace
) -> None:
    stub = await schedule(store, ws, max_pending_tasks=1)
    first = await store.make_tick(stub, minute(1), False, now=T0 + 60)
    assert first is not None and first.task_id is not None
    second = await store.make_tick(stub, minute(2), False, now=T0 + 120)
    assert second is not None and second.task_id is None  # the first is still pending
    page, _ = await store.list_tasks(ws.id, TaskFilter())
    assert len(page) == 1


async def test_ticks_older_than_a_day_are_dropped_when_the_next_is_made(
    store: Store, ws: Workspace
) -> None:
    stub = await schedule(store, ws, max_pending_tasks=10)
    for n in (1, 2):
        assert await store.make_tick(stub, minute(n), False, now=T0 + 60 * n) is not None
    day = 24 * 60
    assert await store.make_tick(stub, minute(day + 2), True, now=T0 + 60 * (day + 2))
    # The day-old tick at minute 1 went; minute 2 (exactly a day old) stays; a maker still
    # cannot go back to either.
    assert await store.make_tick(stub, minute(1), False, now=T0 + 60 * (day + 2)) is None


async def test_the_tick_due_after_downtime_is_one_catch_up(store: Store, ws: Workspace) -> None:
    """What a maker does after ten minutes of nothing running: one task, marked."""
    stub = await schedule(store, ws)
    cron = Cron.parse("* * * * *", "UTC")
    assert await store.make_tick(stub, minute(1), False, now=T0 + 60) is not None
    [info] = await store.schedules()
    assert info.last is not None
    due = cron.due(info.last.tick_at, us(T0 + 60 * 11 + 20))
    assert due is not None and due.tick_at == minute(11) and due.catch_up
    tick = await store.make_tick(stub, due.tick_at, due.catch_up, now=T0 + 60 * 11 + 20)
    assert tick is not None and tick.catch_up
    [info] = await store.schedules()
    assert info.last == tick
    page, _ = await store.list_tasks(ws.id, TaskFilter())
    assert len(page) == 2
