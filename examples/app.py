"""Example task queues for `conveyor serve examples/app.py:square examples/app.py:slow_report`."""

from __future__ import annotations

import time

from conveyor import Output, TaskContext, task_queue


@task_queue(name="square", timeout=60, max_retries=2, keep_warm_seconds=30)
def square(x: int) -> dict[str, int]:
    return {"x": x, "square": x * x}


@task_queue(name="slow_report", timeout=120, ttl=600)
def slow_report(seconds: float = 2.0, *, context: TaskContext) -> str:
    time.sleep(seconds)
    Output.from_bytes("report.txt", f"task {context.task_id} slept {seconds}s\n".encode()).save()
    return f"slept {seconds}s on attempt {context.attempt}"
