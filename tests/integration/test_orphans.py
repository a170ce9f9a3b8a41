"""An agent SIGKILLed alone (not its process group, as the OOM killer does): its worker
processes die with it instead of running their handlers on (DESIGN A13)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import psutil

from conveyor.queue_config import QueueConfig
from conveyor.server.store.records import NewTask
from conveyor.tasks import TaskStatus
from tests.integration.conftest import Harness, pid_alive, until, worker_pids
from tests.integration.test_lost_agent import bundle
from tests.sandboxing import sandbox_flags


async def test_worker_processes_die_with_an_agent_killed_alone(
    harness: Harness, store_url: str, tmp_path: Path
) -> None:
    ticks = tmp_path / "ticks"
    source = (
        "import os, time\n\n"
        "def handler():\n"
        f"    with open({str(ticks)!r}, 'a') as out:\n"
        "        for _ in range(600):\n"
        "            out.write(f'{os.getpid()} {time.time()}\\n')\n"
        "            out.flush()\n"
        "            time.sleep(0.1)\n"
        "        out.write('end\\n')\n"
    )
    config = QueueConfig(name="long", handler="tasks.py:handler")
    stub = await harness.store.deploy_stub(
        harness.workspace.id, "long", config.to_dict(), bundle({"tasks.py": source})
    )
    agent = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "worker", *sandbox_flags(tmp_path)],
        cwd=tmp_path,
        env={**os.environ, "CONVEYOR_STORE": store_url},
        start_new_session=True,
    )
    try:
        payload = orjson.dumps({"args": [], "kwargs": {}}).decode()
        [task_id] = await harness.store.enqueue(stub, [NewTask(payload)], 100)
        await harness.wait(
            task_id, lambda v: v.task.status is TaskStatus.RUNNING and ticks.exists(), timeout=60
        )
        # The worker process (its host pid: sandboxed, its own is 2) runs under this agent,
        # behind bubblewrap's two processes when sandboxed.
        [worker] = worker_pids(agent.pid)
        assert agent.pid in [p.pid for p in psutil.Process(worker).parents()]
        os.kill(agent.pid, signal.SIGKILL)  # the agent's own process only
        agent.wait(10)
        killed_at = time.time()
        await until(lambda: not pid_alive(worker), 10)
        assert not pid_alive(worker), "the worker process outlived its agent"
        lines = ticks.read_text().splitlines()
        assert "end" not in lines
        # The kill is seen when the agent is reaped, a moment after the kernel acted.
        assert max(float(line.split()[1]) for line in lines) < killed_at + 1.0
    finally:
        with contextlib.suppress(ProcessLookupError):  # whatever is left of its session
            os.killpg(agent.pid, signal.SIGKILL)
        agent.wait(10)
