"""A whole agent SIGKILLed mid-task: another agent retries its task after the lease expires."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import orjson

from conveyor.queue_config import QueueConfig
from conveyor.server.store.records import NewTask
from conveyor.tasks import TaskStatus
from tests.integration.conftest import Harness, pid_alive, worker_pids
from tests.sandboxing import sandbox_flags


def bundle(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


async def test_second_agent_takes_over_after_sigkill(
    harness: Harness, store_url: str, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    source = (
        "import os, time\n\n"
        "def handler(context):\n"
        f"    open({str(pid_file)!r}, 'a').write(f'{{context.attempt}} {{os.getpid()}}\\n')\n"
        "    time.sleep(2 if context.attempt == 1 else 0)\n"
        "    return context.attempt\n"
    )
    config = QueueConfig(name="handover", handler="tasks.py:handler", max_retries=2)
    stub = await harness.store.deploy_stub(
        harness.workspace.id, "handover", config.to_dict(), bundle({"tasks.py": source})
    )
    env = {**os.environ, "CONVEYOR_STORE": store_url}
    first = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "worker", *sandbox_flags(tmp_path)],
        cwd=tmp_path,
        env=env,
        start_new_session=True,
    )
    try:
        payload = orjson.dumps({"args": [], "kwargs": {}}).decode()
        [task_id] = await harness.store.enqueue(stub, [NewTask(payload)], 100)
        view = await harness.wait(
            task_id, lambda v: v.task.status is TaskStatus.RUNNING and pid_file.exists(), timeout=60
        )
        first_container = view.task.container_id
        [child] = worker_pids(first.pid)  # its host pid (sandboxed, its own is 2)
        os.killpg(first.pid, signal.SIGKILL)  # the agent and its worker processes: a lost machine
        first.wait(10)
        killed_at = time.monotonic()
        await harness.start_agent([stub])
        deadline = time.monotonic() + 5
        while pid_alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(child)
        view = await harness.wait(task_id, timeout=40)
        assert view.task.status is TaskStatus.COMPLETE
        assert view.task.attempt == 2
        assert view.task.container_id != first_container
        assert time.monotonic() - killed_at < 30
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(10)
