"""The conveyor queues of the benchmark (served or deployed; imported by the containers)."""

from __future__ import annotations

import os
import time

import redis

from conveyor import QueueDepthAutoscaler, task_queue

MARKERS = redis.Redis(host="127.0.0.1", port=6379, db=7)
ONE_CONTAINER = QueueDepthAutoscaler(min_containers=1, max_containers=1)
ON_DEMAND = QueueDepthAutoscaler(min_containers=0, max_containers=1)


@task_queue(name="noop", workers=2, max_pending_tasks=1_000_000, autoscaler=ONE_CONTAINER,
            keep_warm_seconds=600)
def noop(n: int) -> int:
    return n


@task_queue(name="stamp", workers=2, max_pending_tasks=1000, autoscaler=ON_DEMAND,
            keep_warm_seconds=600)
def stamp(n: int) -> float:
    return time.time()


@task_queue(name="sleeper", workers=1, max_retries=0, autoscaler=ON_DEMAND,
            keep_warm_seconds=600)
def sleeper(key: str) -> None:
    # In a sandbox the pid is its PID namespace's: the namespace says which process it is.
    MARKERS.set(f"ns:{key}", os.readlink("/proc/self/ns/pid"))
    MARKERS.set(f"pid:{key}", os.getpid())
    time.sleep(30)


@task_queue(name="idle", autoscaler=ON_DEMAND)
def idle(n: int) -> int:
    """Served alone while the benchmark wants conveyor's workers stopped (SQLite)."""
    return n
