"""The supervisor stepped by hand with fake processes and a fake store: no subprocess, no
database. Time is the ``now`` each step is given."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

from conveyor.queue_config import AutoscalerConfig, QueueConfig
from conveyor.server.agent.handle import (
    Attempt,
    KillReason,
    ProcessHandle,
    ProcessSpec,
    ProcessState,
)
from conveyor.server.agent.runtime import StubRuntime
from conveyor.server.agent.settings import AgentSettings
from conveyor.server.agent.supervisor import Supervisor
from conveyor.server.store.base import Store
from conveyor.server.store.records import SERVE, Outcome, Stub, StubLoad, TaskRecord
from conveyor.tasks import TaskStatus

STUB = Stub("0123abcd-0000-4000-8000-000000000000", "w", "q", SERVE, 1, "{}", 1, 1, 0, 0)


class FakeProcess:
    """Starts at once, runs nothing by itself, and dies when stopped or killed."""

    def __init__(self, spec: ProcessSpec) -> None:
        self.container_id = spec.container_id
        self.stub_id = str(spec.init["stub_id"])
        self.state = ProcessState.STARTING
        self.current: Attempt | None = None
        self.kill_reason: KillReason | None = None
        self.init_error: dict[str, Any] | None = None
        self.start_failure = ""
        self.memory = 0
        self.killed_with: KillReason | None = None
        self._on_exit = spec.on_exit

    async def start(self) -> bool:
        self.state = ProcessState.IDLE
        return True

    def run(self, task: TaskRecord, now: float) -> None:
        deadline = None if task.timeout_s < 0 else now + task.timeout_s
        self.current = Attempt(task.id, task.fence, task.attempt, deadline, now)
        self.state = ProcessState.BUSY

    async def stop(self) -> None:
        self.kill_reason = self.kill_reason or KillReason.STOP
        await self._die(0)

    async def kill(self, reason: KillReason) -> None:
        self.kill_reason = self.kill_reason or reason
        self.killed_with = reason
        await self._die(-15)

    def rss(self) -> int | None:
        return self.memory

    async def _die(self, returncode: int) -> None:
        if self.state is not ProcessState.DEAD:
            self.state = ProcessState.DEAD
            await self._on_exit(self, returncode)


class FakeStore:
    """The part of ``Store`` the supervisor calls."""

    def __init__(self) -> None:
        self.load = StubLoad(STUB.id, runnable=0, running=0)
        self.registered: set[str] = set()
        self.released: list[tuple[str, int]] = []

    async def stub_loads(self, stub_ids: list[str], now: float | None = None) -> list[StubLoad]:
        return [self.load]

    async def active_containers(self, stub_id: str, now: float | None = None) -> int:
        return len(self.registered)

    async def register_container(
        self, container_id: str, stub_id: str, agent_id: str, now: float | None = None
    ) -> None:
        self.registered.add(container_id)

    async def deregister_container(self, container_id: str) -> None:
        self.registered.discard(container_id)

    async def release(self, running: list[tuple[str, int]], now: float | None = None) -> int:
        self.released += running
        return len(running)


def task(task_id: str, timeout_s: float = -1) -> TaskRecord:
    return TaskRecord(
        id=task_id, workspace_id="w", stub_id=STUB.id, status=TaskStatus.RUNNING, payload="{}",
        callback_url=None, attempt=1, fence=7, max_retries=0, timeout_s=timeout_s, ttl_s=-1,
        retry_backoff_s=0, container_id=None, created_at=0, started_at=0, ended_at=None,
        updated_at=0, result=None, error=None,
    )  # fmt: skip


class Rig:
    def __init__(self, tmp_path: Path, **config: Any) -> None:
        self.store = FakeStore()
        self.runtime = StubRuntime(
            STUB, QueueConfig(name="q", handler="q.py:f", code_path=str(tmp_path), **config)
        )
        self.outcomes: list[Outcome] = []
        self.spawned: list[FakeProcess] = []

        def spawn(spec: ProcessSpec) -> ProcessHandle:
            self.spawned.append(FakeProcess(spec))
            return self.spawned[-1]

        async def on_done(process: ProcessHandle, attempt: Attempt, msg: dict[str, Any]) -> None:
            raise AssertionError("no fake process finishes a task")

        self.supervisor = Supervisor(
            cast(Store, self.store),
            AgentSettings(stub_types=()),
            {STUB.id: self.runtime},
            spawn=spawn,
            on_done=on_done,
            report=self.outcomes.append,
            wake=lambda runtime: None,
        )

    async def settle(self) -> None:
        """Let the background starts and stops run to their end."""
        for _ in range(5):
            await self.supervisor.background.settle()
            await asyncio.sleep(0)

    def live(self) -> list[FakeProcess]:
        return [p for p in self.spawned if p.state is not ProcessState.DEAD]

    async def scale_for(self, runnable: int, now: float) -> None:
        self.store.load = StubLoad(STUB.id, runnable=runnable, running=0)
        await self.supervisor.autoscale(now)
        await self.settle()


async def test_autoscale_starts_a_container_per_task_and_stops_them_after_keep_warm(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path, workers=2, keep_warm_seconds=10,
              autoscaler=AutoscalerConfig(max_containers=5))  # fmt: skip
    await rig.scale_for(3, 100.0)
    assert len(rig.runtime.containers) == 3
    assert len(rig.store.registered) == 3
    assert len(rig.live()) == 6  # workers=2 processes in each
    assert all(len(c.idle_processes()) == 2 for c in rig.runtime.containers.values())

    await rig.scale_for(3, 101.0)  # as many as wanted: none more
    assert len(rig.spawned) == 6

    await rig.scale_for(0, 105.0)  # idle for 5 s of keep_warm_seconds=10: kept
    assert len(rig.runtime.containers) == 3 and len(rig.live()) == 6

    await rig.scale_for(0, 110.0)
    assert rig.runtime.containers == {}
    assert rig.store.registered == set()
    assert rig.live() == []
    assert all(p.kill_reason is KillReason.STOP and p.killed_with is None for p in rig.spawned)


async def test_cpu_capacity_caps_the_containers_started(tmp_path: Path) -> None:
    rig = Rig(tmp_path, cpu=1.5, autoscaler=AutoscalerConfig(max_containers=5))
    rig.supervisor.settings = AgentSettings(stub_types=(), cpu_capacity=4.0)
    await rig.scale_for(5, 100.0)
    assert len(rig.runtime.containers) == 2  # 2 x 1.5 fits in 4 CPUs, a third does not
    assert rig.runtime.cpu_starved


async def test_a_timeout_kills_the_process_running_that_task_and_only_it(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path, workers=2, timeout=5)
    await rig.scale_for(2, 100.0)
    slow, fast = rig.spawned
    slow.run(task("slow", timeout_s=5), 100.0)
    fast.run(task("fast", timeout_s=60), 100.0)

    rig.supervisor.enforce_timeouts(104.9)
    await rig.settle()
    assert slow.killed_with is None and fast.killed_with is None

    rig.supervisor.enforce_timeouts(105.0)
    await rig.settle()
    assert slow.killed_with is KillReason.TIMEOUT
    assert fast.killed_with is None and fast.state is ProcessState.BUSY
    assert [(o.task_id, o.fence, o.status) for o in rig.outcomes] == [
        ("slow", 7, TaskStatus.TIMEOUT)
    ]
    [container] = rig.runtime.containers.values()
    assert slow not in container.processes
    assert len(container.processes) == 2  # the killed process was replaced
    assert rig.spawned[-1].state is ProcessState.IDLE


async def test_memory_limit_kills_the_process_over_it_and_records_a_crash(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path, workers=2, memory=64)
    await rig.scale_for(1, 100.0)
    big, small = rig.spawned
    big.run(task("big"), 100.0)
    big.memory, small.memory = 65 * 1024 * 1024, 63 * 1024 * 1024

    rig.supervisor.enforce_memory()
    await rig.settle()
    assert big.killed_with is KillReason.MEMORY and small.killed_with is None
    [outcome] = rig.outcomes
    assert (outcome.task_id, outcome.status, outcome.retryable) == ("big", TaskStatus.FAILED, True)
    assert outcome.error is not None and "memory limit of 64 MiB" in outcome.error


async def test_a_poke_during_a_short_claim_is_not_lost(tmp_path: Path) -> None:
    """An enqueue that commits while the dispatcher's claim is in flight pokes the stub; the
    claim then comes back short (it read before that commit), and the stub must still be
    marked as having work, or its task waits for the next poll tick."""
    from conveyor.server.agent.dispatcher import Dispatcher

    rig = Rig(tmp_path, workers=1)
    await rig.scale_for(1, now=0.0)
    assert rig.live() and all(p.state is ProcessState.IDLE for p in rig.live())
    in_flight = asyncio.Event()
    poked = asyncio.Event()

    async def claim(*args: Any, **kwargs: Any) -> list[TaskRecord]:
        in_flight.set()
        await poked.wait()  # the enqueue commits meanwhile
        return []

    rig.store.claim = claim  # type: ignore[attr-defined]
    dispatcher = Dispatcher(cast(Store, rig.store), AgentSettings(stub_types=()),
                            {STUB.id: rig.runtime}, wake=lambda runtime: None)
    rig.runtime.maybe_work = True
    dispatching = asyncio.create_task(dispatcher.dispatch(1.0))
    await in_flight.wait()
    rig.runtime.maybe_work = True  # what the agent's poke does
    poked.set()
    assert await dispatching == 0
    assert rig.runtime.maybe_work


async def test_a_short_claim_without_a_poke_clears_the_stubs_work(tmp_path: Path) -> None:
    from conveyor.server.agent.dispatcher import Dispatcher

    rig = Rig(tmp_path, workers=1)
    await rig.scale_for(1, now=0.0)

    async def claim(*args: Any, **kwargs: Any) -> list[TaskRecord]:
        return []

    rig.store.claim = claim  # type: ignore[attr-defined]
    dispatcher = Dispatcher(cast(Store, rig.store), AgentSettings(stub_types=()),
                            {STUB.id: rig.runtime}, wake=lambda runtime: None)
    rig.runtime.maybe_work = True
    assert await dispatcher.dispatch(1.0) == 0
    assert not rig.runtime.maybe_work
