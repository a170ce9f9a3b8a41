"""Task queues the browser tests serve (loaded by ``conveyor serve``; tests import only names)."""

from __future__ import annotations

import sys
import time

from conveyor import Output, TaskContext, task_queue


@task_queue(name="work", timeout=60, keep_warm_seconds=120)
def work(seconds: float = 2.0, label: str = "", *, context: TaskContext) -> dict[str, str]:
    print(f"working on {label!r} for {seconds} s")
    time.sleep(seconds)
    print(f"report for {label!r} saved")
    Output.from_bytes("report.txt", f"report {label} of {context.task_id}\n".encode()).save()
    return {"label": label}


@task_queue(name="slow", timeout=300, keep_warm_seconds=120)
def slow(seconds: float = 120.0) -> str:
    time.sleep(seconds)
    return "slept"


@task_queue(name="backlog", timeout=300, keep_warm_seconds=120)
def backlog(seconds: float = 120.0) -> str:
    time.sleep(seconds)
    return "slept"


@task_queue(name="chatty", timeout=60, max_retries=1, retry_for=[RuntimeError],
            keep_warm_seconds=120)
def chatty(lines: int = 14, every: float = 0.3, fail_first: bool = False, note: str = "",
           *, context: TaskContext) -> int:
    """Prints ``line N of attempt A`` every ``every`` seconds, every third line to stderr, as a
    handler would (no flush); with ``fail_first`` its first attempt then fails (and is retried)."""
    for n in range(lines):
        stream = sys.stderr if n % 3 == 2 else sys.stdout
        print(f"line {n} of attempt {context.attempt}", file=stream)
        time.sleep(every)
    if fail_first and context.attempt == 1:
        raise RuntimeError("first attempt fails")
    return lines


@task_queue(name="boom", timeout=60, max_retries=0, keep_warm_seconds=120)
def boom(message: str = "bad input") -> None:
    raise ValueError(message)


#: A queue name near the 100-character limit: the pages must truncate it, not overflow.
LONG_NAME = "thumbnails-for-the-marketing-site-image-pipeline-europe-west-primary-replica"


@task_queue(name=LONG_NAME, timeout=60, keep_warm_seconds=120)
def long_named(seconds: float = 0.0) -> str:
    time.sleep(seconds)
    print("y" * 400)  # one long unbroken log line: it wraps inside the log panel
    return "x" * 400  # one long unbroken result line
