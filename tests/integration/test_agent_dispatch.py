"""Dispatch decisions of the agent, stepped by hand with fake processes on a real store."""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from conveyor.server.agent.handle import ProcessState
from conveyor.server.agent.runtime import Container
from conveyor.server.store.base import Store
from conveyor.server.store.records import NewTask, TaskRecord
from conveyor.tasks import TaskStatus
from tests.integration.conftest import stepped_agent


class FakeProcess:
    """The part of ``RunnerProcess`` that dispatch uses."""

    def __init__(self) -> None:
        self.state = ProcessState.IDLE
        self.current = None
        self.ran: list[str] = []

    def run(self, task: TaskRecord, now: float) -> None:
        assert self.state is ProcessState.IDLE
        self.state = ProcessState.BUSY
        self.ran.append(task.id)


async def test_backlog_is_fed_even_when_another_containers_claim_comes_back_short(
    store: Store, tmp_path: Path
) -> None:
    # Regression: found by the fault suite — tasks stayed RUNNING at attempt 1 forever. A
    # short claim for one container ended the dispatch round before another container's
    # backlog reached its idle worker, and heartbeats kept renewing the stranded leases.
    agent, runtime = await stepped_agent(store, tmp_path)
    stub = runtime.stub
    first, second = FakeProcess(), FakeProcess()
    runtime.containers = {
        "c1": Container("c1", stub.id, processes=[first]),  # type: ignore[list-item]
        "c2": Container("c2", stub.id, processes=[second]),  # type: ignore[list-item]
    }
    payload = orjson.dumps({"args": [], "kwargs": {}}).decode()
    [task_id] = await store.enqueue(stub, [NewTask(payload)], 100)
    [held] = await store.claim(stub.id, "c2", 1, 10.0)
    runtime.containers["c2"].backlog.append(held)  # claimed earlier, waiting for a process
    runtime.maybe_work = True

    await agent.dispatch(time.time())  # c1 claims first, finds nothing, and the round ends

    assert second.ran == [task_id]
    assert not runtime.containers["c2"].backlog


async def test_tasks_claimed_for_a_container_that_stopped_meanwhile_go_back(
    store: Store, tmp_path: Path
) -> None:
    agent, runtime = await stepped_agent(store, tmp_path)
    stub = runtime.stub
    process = FakeProcess()
    container = Container("c1", stub.id, processes=[process])  # type: ignore[list-item]
    runtime.containers = {"c1": container}
    payload = orjson.dumps({"args": [], "kwargs": {}}).decode()
    [task_id] = await store.enqueue(stub, [NewTask(payload)], 100)

    claim = store.claim

    async def claim_then_stop(*args: object, **kwargs: object) -> list[TaskRecord]:
        tasks = await claim(*args, **kwargs)  # type: ignore[arg-type]
        container.stopping = True  # scaled down while the claim was in flight
        return tasks

    store.claim = claim_then_stop  # type: ignore[method-assign]
    try:
        await agent.dispatch(time.time())
    finally:
        del store.claim  # type: ignore[method-assign]
    assert process.ran == []
    view = await store.get_task(task_id)
    assert view is not None and view.task.status is TaskStatus.RETRY and view.task.attempt == 0
