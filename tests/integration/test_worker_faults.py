"""Worker processes meeting faults, as the fault suite found them.

- A worker handed a task the moment it said ``ready`` (before its ``start()`` resumed) was
  judged "did not start", killed with its task, and never replaced: containers lost their
  workers one by one under load until nothing ran. Such a worker now counts as started, and a
  container left with no worker at all is retired so autoscale starts a fresh one.
- A worker SIGKILLed just after it was spawned made the write of its ``init`` raise, and an
  exception from a result handler ended that worker's read loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import uvloop

from conveyor.queue_config import QueueConfig
from conveyor.server.agent.handle import (
    Attempt,
    KillReason,
    ProcessHandle,
    ProcessSpec,
    ProcessState,
)
from conveyor.server.agent.process import RunnerProcess
from conveyor.server.agent.runtime import Container
from conveyor.server.store.base import Store
from conveyor.server.store.records import DEPLOYMENT, TaskRecord
from conveyor.tasks import TaskStatus
from tests.integration.conftest import stepped_agent, until


def _task() -> TaskRecord:
    now = int(time.time() * 1000)
    return TaskRecord(
        id="task-1", workspace_id="w", stub_id="stub-1", status=TaskStatus.RUNNING,
        payload=orjson.dumps({"args": [20], "kwargs": {}}).decode(), callback_url=None,
        attempt=1, fence=1, max_retries=0, timeout_s=-1, ttl_s=-1, retry_backoff_s=0,
        container_id="c-1", created_at=now, started_at=now, ended_at=None, updated_at=now,
        result=None, error=None,
    )  # fmt: skip


def _worker(
    code_root: Path,
    handler: str,
    on_done: Callable[[ProcessHandle, Attempt, dict[str, Any]], Awaitable[None]],
    on_exit: Callable[[ProcessHandle, int | None], Awaitable[None]],
) -> RunnerProcess:
    config = QueueConfig(name="q", handler=handler, code_path=str(code_root))
    init = {"config": config.to_dict(), "code_root": str(code_root), "stub_id": "stub-1",
            "stub_type": DEPLOYMENT, "container_id": "c-1"}  # fmt: skip
    return RunnerProcess(ProcessSpec("c-1", init, {}, on_done, on_exit))


async def test_a_worker_fed_as_soon_as_it_is_ready_counts_as_started(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("import time\n\ndef double(x):\n    time.sleep(0.5)\n"
                                     "    return 2 * x\n")  # fmt: skip
    done: list[dict[str, Any]] = []
    exits: list[int | None] = []

    async def on_done(worker: ProcessHandle, attempt: Attempt, msg: dict[str, Any]) -> None:
        done.append(msg)

    async def on_exit(worker: ProcessHandle, returncode: int | None) -> None:
        exits.append(returncode)

    worker = _worker(tmp_path, "app.py:double", on_done, on_exit)

    async def feed_when_ready() -> None:  # as the agent's dispatch does, first in line
        await worker._ready.wait()
        worker.run(_task(), time.time())

    feeder = asyncio.create_task(feed_when_ready())
    await asyncio.sleep(0)  # the feeder waits on ``ready`` before ``start`` does
    try:
        assert await worker.start() is True
        await feeder
        assert worker.state is ProcessState.BUSY and worker.kill_reason is None
        await until(lambda: bool(done), 15)
        assert done and done[0]["status"] == "COMPLETE" and done[0]["result"] == "40"
        assert exits == []
    finally:
        await worker.stop()


class _StoppedWorker:
    """The part of ``RunnerProcess`` that ``on_exit`` reads: a worker killed with STOP (as a
    start that timed out is), so no replacement is started for it."""

    def __init__(self, container_id: str, stub_id: str) -> None:
        self.container_id, self.stub_id = container_id, stub_id
        self.current = None
        self.kill_reason = KillReason.STOP
        self.init_error = None


async def test_a_container_left_without_workers_is_retired(store: Store, tmp_path: Path) -> None:
    agent, runtime = await stepped_agent(store, tmp_path)
    stub = runtime.stub
    last = _StoppedWorker("c1", stub.id)
    runtime.containers["c1"] = Container("c1", stub.id, processes=[last])  # type: ignore[list-item]
    before = time.time()

    await agent.supervisor.on_exit(last, -15)  # type: ignore[arg-type]
    await until(lambda: "c1" not in runtime.containers)

    # Gone, so autoscale counts it no more and starts a fresh one after the retry pause.
    assert "c1" not in runtime.containers
    assert runtime.start_not_before >= before + agent.settings.start_retry_s


def test_writing_to_a_worker_that_just_died_does_not_raise(tmp_path: Path) -> None:
    # Found by the fault suite: SIGKILL hit a worker process right after it was spawned, and
    # writing its ``init`` raised from the closed pipe (uvloop: "the handler is closed"). In
    # ``start`` that failed the container's start-up; in ``run``, reached from another
    # worker's result, it would end that healthy worker's read loop. The death is reported
    # through ``on_exit``; the write itself must not raise. (uvloop, as the CLI runs on.)
    exits: list[int | None] = []

    async def scenario() -> None:
        async def on_exit(worker: ProcessHandle, returncode: int | None) -> None:
            exits.append(returncode)

        async def on_done(worker: ProcessHandle, attempt: Attempt, msg: dict[str, Any]) -> None:
            raise AssertionError("nothing runs")

        worker = _worker(tmp_path, "app.py:f", on_done, on_exit)
        (tmp_path / "app.py").write_text("def f():\n    return 1\n")
        assert await worker.start()
        assert worker.proc is not None
        worker.proc.kill()
        await worker.proc.wait()
        stdin = worker.proc.stdin
        await until(lambda: stdin is not None and stdin.is_closing())  # closes with the process
        worker._send({"op": "stop"})
        await until(lambda: bool(exits))

    uvloop.run(scenario())
    assert exits == [-9]


async def test_a_failing_result_handler_does_not_deafen_the_worker(tmp_path: Path) -> None:
    # The same finding's other half: an exception from the agent's ``on_done`` (where it feeds
    # other workers) used to end this worker's read loop; its next results were never heard.
    (tmp_path / "app.py").write_text("def double(x):\n    return 2 * x\n")
    heard: list[str] = []

    async def on_done(worker: ProcessHandle, attempt: Attempt, msg: dict[str, Any]) -> None:
        heard.append(msg["result"])
        if len(heard) == 1:
            raise RuntimeError("a bug while feeding other workers")

    async def on_exit(worker: ProcessHandle, returncode: int | None) -> None:
        return None

    worker = _worker(tmp_path, "app.py:double", on_done, on_exit)
    try:
        assert await worker.start()
        for expected in (1, 2):
            worker.run(_task(), time.time())
            await until(lambda n=expected: len(heard) == n)
        assert heard == ["40", "40"]
    finally:
        await worker.stop()
