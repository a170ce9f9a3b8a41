"""Fixtures for tests that run real agents and worker processes against both store backends."""

from __future__ import annotations

import asyncio
import contextlib
import os
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest

from conveyor.queue_config import QueueConfig
from conveyor.server.agent.agent import Agent
from conveyor.server.agent.runtime import StubRuntime
from conveyor.server.agent.settings import AgentSettings
from conveyor.server.store.base import Store
from conveyor.server.store.records import NewTask, Stub, TaskView, Workspace
from conveyor.tasks import TaskStatus, is_terminal
from tests.sandboxing import sandbox_settings


@pytest.fixture
async def workspace(store: Store) -> Workspace:
    return await store.ensure_workspace("it")


async def until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Poll ``condition`` until it holds or ``seconds`` pass; the caller asserts after."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


async def stepped_agent(store: Store, tmp_path: Path) -> tuple[Agent, StubRuntime]:
    """An agent for one serve stub, not running: the test steps it and fills its containers."""
    ws = await store.ensure_workspace("w")
    config = QueueConfig(name="q", handler="q.py:f", code_path=str(tmp_path))
    stub = await store.upsert_serve_stub(ws.id, "q", config.to_dict(), b"")
    agent = Agent(store, AgentSettings(
        stub_ids=frozenset({stub.id}), stub_types=(), **sandbox_settings(tmp_path)
    ))
    await agent.refresh_stubs()
    return agent, agent.stubs[stub.id]


class Harness:
    """Deploys handler source as serve stubs, runs an in-process agent, and waits on tasks."""

    def __init__(self, store: Store, workspace: Workspace, tmp_path: Path) -> None:
        self.store = store
        self.workspace = workspace
        self.tmp_path = tmp_path
        self.agents: list[tuple[Agent, asyncio.Event, asyncio.Task[None]]] = []

    async def queue(self, name: str, source: str, func: str = "handler", **options: Any) -> Stub:
        folder = self.tmp_path / "code" / name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        config = QueueConfig(
            name=name, handler=f"{path.name}:{func}", code_path=str(folder), **options
        )
        return await self.store.upsert_serve_stub(
            self.workspace.id, name, config.to_dict(), path.read_bytes()
        )

    async def put(self, stub: Stub, *args: Any, **kwargs: Any) -> str:
        payload = orjson.dumps({"args": list(args), "kwargs": kwargs}).decode()
        max_pending = stub.queue_config.max_pending_tasks
        [task_id] = await self.store.enqueue(stub, [NewTask(payload)], max_pending)
        return task_id

    async def start_agent(
        self, stubs: Iterable[Stub], say: Callable[[str], None] | None = None, **settings: Any
    ) -> Agent:
        # Sandboxed, with the test's folder writable inside: its handlers leave markers there.
        options: dict[str, Any] = {
            "code_cache": self.tmp_path / "cache", "envs": self.tmp_path / "envs",
            "lease_s": 5.0, **sandbox_settings(self.tmp_path),
        }
        options.update(settings)
        agent = Agent(self.store, AgentSettings(
            stub_ids=frozenset(s.id for s in stubs), stub_types=(), **options
        ), say=say)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        self.agents.append((agent, stop, task))
        return agent

    async def stop_agents(self) -> None:
        for _, stop, _ in self.agents:
            stop.set()
        for _, _, task in self.agents:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 30)
        self.agents.clear()

    async def wait(
        self,
        task_id: str,
        until: Callable[[TaskView], bool] | TaskStatus | None = None,
        timeout: float = 30.0,
    ) -> TaskView:
        """Poll the store until ``until`` holds (default: a terminal status)."""
        if until is None:

            def check(view: TaskView) -> bool:
                return is_terminal(view.task.status)
        elif isinstance(until, TaskStatus):
            wanted = until

            def check(view: TaskView) -> bool:
                return view.task.status is wanted
        else:
            check = until
        deadline = time.monotonic() + timeout
        view = None
        while time.monotonic() < deadline:
            view = await self.store.get_task(task_id)
            if view is not None and check(view):
                return view
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"task {task_id} did not get there in {timeout}s: {view.task if view else None}"
        )


@pytest.fixture
async def harness(store: Store, workspace: Workspace, tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(store, workspace, tmp_path)
    try:
        yield h
    finally:
        await h.stop_agents()


def result_of(view: TaskView) -> Any:
    assert view.task.result is not None, view.task
    return orjson.loads(view.task.result)


def error_of(view: TaskView) -> dict[str, Any]:
    assert view.task.error is not None, view.task
    value = orjson.loads(view.task.error)
    assert isinstance(value, dict)
    return value


def worker_pids(root: int | None = None) -> list[int]:
    """Host pids of the worker processes (``conveyor.runner.main``, not the bwrap around
    them) under ``root`` (default: this process). A sandboxed handler's ``os.getpid()`` is
    its pid in its own PID namespace, not one this test can watch."""
    import psutil

    try:
        kids = psutil.Process(root or os.getpid()).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for kid in kids:
        with contextlib.suppress(psutil.Error):
            argv = kid.cmdline()
            if "conveyor.runner.main" in argv and "bwrap" not in Path(argv[0]).name:
                found.append(kid.pid)
    return found


def pid_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
