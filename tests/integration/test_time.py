"""Time with real agents (DESIGN A10): a delayed task starts at its time and not before, and
schedules' ticks are made once however many makers run, across restarts and downtime.

The tick makers are stepped (``Ticker.run_once(now)``, ``Agent.tick(now)``): a minute of
ticks costs milliseconds. A delayed task meets the real clock and real worker processes. The
real processes of a cluster and three real minutes are tests/integration/test_schedule_cluster.py.
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

from conveyor import clock
from conveyor.queue_config import QueueConfig
from conveyor.server.agent.agent import Agent
from conveyor.server.agent.settings import AgentSettings
from conveyor.server.schedules import Ticker
from conveyor.server.store.base import Store
from conveyor.server.store.records import NewTask, Stub, TaskFilter, Workspace
from conveyor.tasks import TaskStatus
from tests.conftest import OpenStore
from tests.integration.conftest import Harness

EVERY_MINUTE = {"when": "* * * * *", "timezone": "UTC"}


async def test_a_delayed_task_starts_at_its_time_not_before(harness: Harness) -> None:
    stub = await harness.queue("echo", "def handler(n):\n    return n\n", keep_warm_seconds=60)
    await harness.start_agent([stub])
    await harness.wait(await harness.put(stub, 0))  # a warm container: only the wait is timed
    run_at = clock.to_us(clock.now() + 2.0)
    payload = '{"args": [1], "kwargs": {}}'
    [task_id] = await harness.store.enqueue(stub, [NewTask(payload, run_at=run_at)], 10)
    pending = await harness.wait(task_id, TaskStatus.PENDING)
    assert pending.task.run_at == run_at
    done = await harness.wait(task_id, timeout=20)
    assert done.task.status is TaskStatus.COMPLETE
    started = done.task.started_at
    assert started is not None and started >= run_at  # not early, by the agent's clock
    # Woken by its time (a poll of the agent), not by another enqueue: about a poll late.
    assert (started - run_at) / 1e6 < 1.5, (started - run_at) / 1e6


async def test_a_delayed_task_scales_a_stopped_queue_up_at_its_time(harness: Harness) -> None:
    """No container waits for a delayed task; one starts when its time comes."""
    stub = await harness.queue("echo", "def handler(n):\n    return n\n", keep_warm_seconds=0)
    agent = await harness.start_agent([stub])
    run_at = clock.to_us(clock.now() + 1.5)
    payload = '{"args": [1], "kwargs": {}}'
    [task_id] = await harness.store.enqueue(stub, [NewTask(payload, run_at=run_at)], 10)
    await asyncio.sleep(1.0)
    assert not agent.stubs[stub.id].containers  # nothing started for a task not yet due
    done = await harness.wait(task_id, timeout=30)
    assert done.task.status is TaskStatus.COMPLETE
    assert done.task.started_at is not None and done.task.started_at >= run_at


# -- ticks, stepped --------------------------------------------------------------------------------


async def schedule(store: Store, ws: Workspace, name: str = "nightly", **config: object) -> Stub:
    queue = QueueConfig.from_dict({"name": name, "handler": "app.py:f", **EVERY_MINUTE, **config})
    return await store.deploy_stub(ws.id, name, queue.to_dict(), b"x")


async def runs_all(stub: Stub) -> bool:
    return True


def next_minute() -> float:
    """The first minute boundary after now: later than any stub the test deploys."""
    return float(math.ceil((time.time() + 1) / 60) * 60)


async def tasks_of(store: Store, ws: Workspace) -> list[tuple[int | None, str]]:
    page, _ = await store.list_tasks(ws.id, TaskFilter(), limit=1000)
    return sorted((view.task.run_at, view.task.stub_id) for view in page)


async def test_two_gateways_and_two_agents_make_one_task_per_tick(
    store: Store, open_more: OpenStore, workspace: Workspace
) -> None:
    stub = await schedule(store, workspace)
    base = next_minute()
    makers = [Ticker(s, runs_all) for s in (store, store, await open_more(), await open_more())]
    for step in range(-10, 37):  # every 5 s for three minutes and more, each maker in turn
        now = base + 5 * step
        await asyncio.gather(*(maker.run_once(now + 0.01 * i) for i, maker in enumerate(makers)))
    minutes = [clock.to_us(base + 60 * n) for n in range(4)]
    assert await tasks_of(store, workspace) == [(m, stub.id) for m in minutes]
    [info] = await store.schedules(workspace.id)
    assert info.last is not None and info.last.tick_at == minutes[-1] and not info.last.catch_up


async def test_a_restart_inside_a_minute_makes_no_second_task(
    store: Store, open_more: OpenStore, workspace: Workspace
) -> None:
    await schedule(store, workspace)
    base = next_minute()
    assert len(await Ticker(store, runs_all).run_once(base + 1)) == 1
    restarted = Ticker(await open_more(), runs_all)  # knows nothing but what the store says
    for seconds in (2, 30, 59.9):
        assert await restarted.run_once(base + seconds) == []
    assert len(await tasks_of(store, workspace)) == 1


async def test_after_downtime_one_catch_up_for_all_missed_ticks(
    store: Store, workspace: Workspace
) -> None:
    stub = await schedule(store, workspace)
    base = next_minute()
    maker = Ticker(store, runs_all)
    [first] = await maker.run_once(base + 0.5)
    # Down for ten ticks; back 20 s past the eleventh.
    [caught] = await Ticker(store, runs_all).run_once(base + 60 * 10 + 20)
    assert caught.catch_up and caught.tick_at == clock.to_us(base + 600)
    assert await maker.run_once(base + 60 * 10 + 21) == []
    [on_time] = await maker.run_once(base + 60 * 11 + 0.5)
    assert not on_time.catch_up and not first.catch_up
    assert [at for at, _ in await tasks_of(store, workspace)] == [
        clock.to_us(base + 60 * n) for n in (0, 10, 11)
    ]
    view = await store.get_task(str(caught.task_id))
    assert view is not None and view.task.stub_id == stub.id


async def test_ticks_wait_for_an_agent_that_runs_the_schedule(
    store: Store, workspace: Workspace
) -> None:
    """No live agent runs it: no task piles up; one catch-up when one does again."""
    await schedule(store, workspace)
    base = next_minute()
    running = False

    async def runs(stub: Stub) -> bool:
        return running

    gateway = Ticker(store, runs)
    for minute in range(5):
        assert await gateway.run_once(base + 60 * minute + 1) == []
    running = True
    [tick] = await gateway.run_once(base + 60 * 5 + 1)
    assert tick.catch_up and len(await tasks_of(store, workspace)) == 1


async def test_a_stopped_schedule_makes_none_and_starts_again_without_catching_up(
    store: Store, workspace: Workspace
) -> None:
    stub = await schedule(store, workspace)
    base = next_minute()
    maker = Ticker(store, runs_all)
    assert len(await maker.run_once(base + 1)) == 1
    await store.set_stub_active(workspace.id, stub.id, False, now=base + 30)
    for minute in range(1, 4):
        assert await maker.run_once(base + 60 * minute + 1) == []
    await store.set_stub_active(workspace.id, stub.id, True, now=base + 60 * 3 + 30)
    assert await maker.run_once(base + 60 * 3 + 31) == []  # the stop was asked for: no catch-up
    [tick] = await maker.run_once(base + 60 * 4 + 1)
    assert not tick.catch_up and len(await tasks_of(store, workspace)) == 2


async def test_a_new_version_ticks_on_from_the_old_one(store: Store, workspace: Workspace) -> None:
    old = await schedule(store, workspace)
    base = next_minute()
    maker = Ticker(store, runs_all)
    assert len(await maker.run_once(base + 1)) == 1
    new = await schedule(store, workspace, timeout=60)
    [tick] = await maker.run_once(base + 61)
    assert tick.stub_id == new.id and not tick.catch_up
    assert [stub_id for _, stub_id in await tasks_of(store, workspace)] == [old.id, new.id]


async def test_a_schedule_with_a_bad_row_never_stops_the_others(
    store: Store, workspace: Workspace
) -> None:
    broken = await schedule(store, workspace, name="broken")
    await schedule(store, workspace, name="fine")
    await store.driver.write(  # type: ignore[attr-defined]
        lambda tx: tx.execute("UPDATE stubs SET config = ? WHERE id = ?",
                              ['{"when": "61 * * * *"}', broken.id])
    )
    [tick] = await Ticker(store, runs_all).run_once(next_minute() + 1)
    view = await store.get_task(str(tick.task_id))
    assert view is not None and view.stub.name == "fine"


async def test_an_agent_ticks_the_schedules_it_runs_and_only_those(
    store: Store, workspace: Workspace, tmp_path: Path
) -> None:
    mine = await schedule(store, workspace, name="mine")
    await schedule(store, workspace, name="theirs")
    agent = Agent(store, AgentSettings(stub_ids=frozenset({mine.id}), stub_types=(),
                                       cpu_capacity=0, code_cache=tmp_path / "cache"))
    base = next_minute()
    await agent.tick(base + 1)  # its periodic chores, the schedules' among them
    assert [stub_id for _, stub_id in await tasks_of(store, workspace)] == [mine.id]
    await agent.tick(base + 3)  # the same minute: nothing more
    assert len(await tasks_of(store, workspace)) == 1
