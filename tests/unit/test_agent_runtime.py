"""The agent's per-stub bookkeeping: prefetch sizing and container ids."""

from __future__ import annotations

import re

from conveyor.queue_config import QueueConfig
from conveyor.server.agent.exits import describe_exit
from conveyor.server.agent.runtime import MAX_PREFETCH_PER_PROCESS, StubRuntime, new_container_id
from conveyor.server.store.records import SERVE, Stub


def runtime() -> StubRuntime:
    stub = Stub("0123abcd-0000-4000-8000-000000000000", "w", "q", SERVE, 1, "{}", 1, 1, 0, 0)
    return StubRuntime(stub, QueueConfig(name="q", handler="a.py:f"))


def test_no_prefetch_before_any_task_or_for_long_tasks() -> None:
    r = runtime()
    assert r.prefetch(processes=2, budget_s=0.05) == 0
    r.observe(0.2)
    assert r.prefetch(processes=2, budget_s=0.05) == 0


def test_prefetch_sized_to_the_budget_and_bounded() -> None:
    r = runtime()
    r.observe(0.01)  # 5 tasks fit in 50 ms
    assert r.prefetch(processes=2, budget_s=0.05) == 10
    r.observe(0.0)
    for _ in range(30):
        r.observe(0.0)
    assert r.prefetch(processes=2, budget_s=0.05) == 2 * MAX_PREFETCH_PER_PROCESS


def test_average_follows_recent_durations() -> None:
    r = runtime()
    r.observe(1.0)
    for _ in range(40):
        r.observe(0.001)
    assert r.avg_duration_s is not None and r.avg_duration_s < 0.01


def test_container_id_format() -> None:
    assert re.fullmatch(r"taskqueue-0123abcd-[0-9a-f]{8}", new_container_id(runtime().stub.id))


def test_exit_descriptions_name_the_signal() -> None:
    assert describe_exit(-9) == (
        "worker process terminated unexpectedly: killed by SIGKILL (signal 9)"
    )
    assert describe_exit(3).endswith("exit code 3")
