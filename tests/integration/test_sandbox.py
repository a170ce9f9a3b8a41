"""Kills and limits reach the whole sandbox (DESIGN A13): a cancelled or timed-out handler's
own subprocesses die with it, and a subprocess's memory counts against the queue's limit."""

from __future__ import annotations

import asyncio
import secrets
import time

import psutil

from conveyor.tasks import TaskStatus
from tests.integration.conftest import Harness, error_of
from tests.sandboxing import require_sandbox


def _sleeps(seconds: str) -> list[int]:
    """Host pids of ``sleep <seconds>`` processes (``seconds`` is unique per test)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if process.info["cmdline"] == ["sleep", seconds]:
            found.append(process.pid)
    return found


async def _gone(seconds: str, within: float) -> bool:
    deadline = time.monotonic() + within
    while _sleeps(seconds) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return not _sleeps(seconds)


SPAWNS = """
    import subprocess, time

    def handler(seconds):
        subprocess.Popen(["sleep", seconds], start_new_session=True)  # it even leaves the group
        time.sleep(60)
"""


async def test_a_cancelled_handlers_subprocess_dies_with_it(harness: Harness) -> None:
    require_sandbox()
    seconds = f"60.{secrets.randbelow(10**6):06d}"
    stub = await harness.queue("spawner", SPAWNS)
    await harness.start_agent([stub])
    task_id = await harness.put(stub, seconds)
    await harness.wait(task_id, lambda v: v.task.status is TaskStatus.RUNNING and bool(
        _sleeps(seconds)))
    started = time.monotonic()
    await harness.store.cancel(harness.workspace.id, [task_id])
    assert await _gone(seconds, 5), "the handler's subprocess outlived its cancelled task"
    assert time.monotonic() - started < 1.5
    assert (await harness.wait(task_id)).task.status is TaskStatus.CANCELLED


async def test_a_timed_out_handlers_subprocess_dies_with_it(harness: Harness) -> None:
    require_sandbox()
    seconds = f"60.{secrets.randbelow(10**6):06d}"
    stub = await harness.queue("spawner", SPAWNS, timeout=2)
    await harness.start_agent([stub])
    task_id = await harness.put(stub, seconds)
    view = await harness.wait(task_id, timeout=30)
    assert view.task.status is TaskStatus.TIMEOUT
    assert await _gone(seconds, 1.5), "the handler's subprocess outlived its timed-out task"


async def test_a_subprocess_memory_counts_against_the_limit(harness: Harness) -> None:
    require_sandbox()
    source = """
        import subprocess, sys, time

        HOG = "hog = bytearray(300 * 1024 * 1024); hog[::4096] = b'x' * len(hog[::4096]); " \\
              "import time; time.sleep(30)"

        def handler():
            child = subprocess.Popen([sys.executable, "-c", HOG])
            child.wait()
    """
    stub = await harness.queue("hogs", source, memory=150, max_retries=0)
    await harness.start_agent([stub])
    view = await harness.wait(await harness.put(stub), timeout=30)
    assert view.task.status is TaskStatus.FAILED
    assert "memory limit of 150 MiB" in error_of(view)["message"]
