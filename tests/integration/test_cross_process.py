"""An agent in another process on the same SQLite file: without cross-process notifications it
still picks up work and cancels at once, via the store's ``changed`` events."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

from conveyor.queue_config import QueueConfig
from conveyor.server.store import open_store
from conveyor.server.store.records import NewTask
from conveyor.tasks import TaskStatus
from tests.integration.conftest import pid_alive, worker_pids
from tests.integration.test_lost_agent import bundle
from tests.sandboxing import sandbox_flags


async def test_sqlite_worker_process_runs_and_cancels_quickly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/shared.db"
    store = open_store(url)
    await store.open()
    pid_file = tmp_path / "pid"
    source = (
        "import os, time\n\n"
        "def handler(seconds):\n"
        f"    open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "    time.sleep(seconds)\n"
        "    return seconds\n"
    )
    worker = None
    subscription = store.subscribe()
    try:
        ws = await store.ensure_workspace("x")
        config = QueueConfig(name="sleepy", handler="tasks.py:handler")
        stub = await store.deploy_stub(
            ws.id, "sleepy", config.to_dict(), bundle({"tasks.py": source})
        )
        worker = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "worker", "--store", url,
             *sandbox_flags(tmp_path)],
            cwd=tmp_path,
            start_new_session=True,
        )
        payload = orjson.dumps({"args": [30], "kwargs": {}}).decode()
        [task_id] = await store.enqueue(stub, [NewTask(payload)], 100)
        deadline = time.monotonic() + 60
        while not pid_file.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        [pid] = worker_pids(worker.pid)  # its host pid (sandboxed, its own is 2)
        # the other process's writes reach this one as ``changed`` events
        kinds = set()
        while (event := await subscription.get(timeout=1.0)) is not None:
            kinds.add(event.kind)
            if "changed" in kinds:
                break
        assert "changed" in kinds

        started = time.monotonic()
        result = await store.cancel(ws.id, [task_id])
        assert result.cancelled == [task_id]
        while pid_alive(pid) and time.monotonic() - started < 10:
            await asyncio.sleep(0.02)
        assert not pid_alive(pid)
        assert time.monotonic() - started < 2.0  # not the 10 s lease, not a slow poll
        view = await store.get_task(task_id)
        assert view is not None and view.task.status is TaskStatus.CANCELLED
    finally:
        subscription.close()
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
        await store.close()
