"""A stopped version keeps no containers (DESIGN A11), even with ``min_containers``: the agent
stops claiming its tasks, lets the running one finish, retires its containers, and serves it
again once it is started."""

from __future__ import annotations

from conveyor.queue_config import AutoscalerConfig
from conveyor.server.store.base import Store
from conveyor.tasks import TaskStatus
from tests.integration.conftest import Harness, result_of, until

SLOW = """
import time

def handler(seconds):
    time.sleep(seconds)
    return seconds
"""


async def test_a_stopped_version_finishes_its_running_task_and_keeps_no_container(
    harness: Harness, store: Store
) -> None:
    stub = await harness.queue(
        "slow", SLOW, keep_warm_seconds=300, autoscaler=AutoscalerConfig(min_containers=1)
    )
    agent = await harness.start_agent([stub])
    running = await harness.put(stub, 1.5)
    waiting = await harness.put(stub, 0)  # one worker: it waits behind the first
    await harness.wait(running, TaskStatus.RUNNING)
    await store.set_stub_active(harness.workspace.id, stub.id, False)
    done = await harness.wait(running)
    assert done.task.status is TaskStatus.COMPLETE and result_of(done) == 1.5
    runtime = agent.stubs[stub.id]
    await until(lambda: not runtime.containers, 10)
    assert not runtime.containers  # despite min_containers and keep_warm_seconds
    assert await store.active_containers(stub.id) == 0
    view = await store.get_task(waiting)
    assert view is not None and view.task.status is TaskStatus.PENDING  # never claimed
    await store.set_stub_active(harness.workspace.id, stub.id, True)
    assert (await harness.wait(waiting)).task.status is TaskStatus.COMPLETE
    await until(lambda: bool(runtime.containers), 10)
    assert runtime.containers  # min_containers holds again
