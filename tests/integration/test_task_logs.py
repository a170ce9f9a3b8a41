"""DESIGN A8 with real worker processes on both stores: every line a task's process writes is
kept with its attempt, in order, also when the attempt is cancelled, times out or is killed;
each attempt is kept with its outcome; the per-task limits and their marker line."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import orjson
import pytest

from conveyor.server.store.records import AttemptInfo, LogLimits, StoredLogLine
from conveyor.tasks import TaskStatus
from tests.integration.conftest import Harness, until, worker_pids

S = TaskStatus


async def lines_of(harness: Harness, task_id: str) -> list[StoredLogLine]:
    page = await harness.store.task_logs(task_id, harness.workspace.id, limit=1000)
    assert page is not None
    return list(page.lines)


async def attempts_of(harness: Harness, task_id: str) -> list[AttemptInfo]:
    attempts = await harness.store.task_attempts(task_id, harness.workspace.id)
    assert attempts is not None
    return attempts


def texts(lines: list[StoredLogLine]) -> list[tuple[int, str, str]]:
    return [(line.attempt, line.stream, line.line) for line in lines]


EVERY_WRITER = """
    import logging, os, subprocess, sys, warnings

    from conveyor import TaskContext

    def handler(context: TaskContext):
        print("from print", context.attempt)
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", force=True)
        logging.info("from logging")
        warnings.warn("from warnings")
        subprocess.run([sys.executable, "-c", "print('from a child process')"], check=True)
        os.write(1, b"from os.write\\n")
        sys.stderr.write("unfinished last line")
        if context.attempt == 1:
            raise ConnectionError("first attempt fails")
        return "ok"
"""


async def test_every_writer_is_kept_per_attempt_in_order(harness: Harness) -> None:
    stub = await harness.queue(
        "writers", EVERY_WRITER, retry_for=("builtins.ConnectionError",), max_retries=2
    )
    await harness.start_agent([stub])
    task_id = await harness.put(stub)
    view = await harness.wait(task_id)
    assert view.task.status is S.COMPLETE
    lines = await lines_of(harness, task_id)
    # In order within each stream (two pipes: which of two near writes to stdout and stderr
    # came first is not kept, as on a terminal).
    for attempt in (1, 2):
        out = [text for a, s, text in texts(lines) if a == attempt and s == "stdout"]
        err = [text for a, s, text in texts(lines) if a == attempt and s == "stderr"]
        assert out == [f"from print {attempt}", "from a child process", "from os.write"]
        assert err[0] == "INFO from logging" and err[-1] == "unfinished last line"
        if attempt == 1:  # a warning is shown once per process, as Python does
            assert "UserWarning: from warnings" in err[1]
    assert lines[0].at <= lines[-1].at
    # Each attempt kept, the first one's error not overwritten by the second's success.
    first, second = await attempts_of(harness, task_id)
    assert (first.attempt, first.outcome, second.attempt, second.outcome) == (
        1, "RETRY", 2, "COMPLETE"
    )
    assert first.error is not None and orjson.loads(first.error)["message"] == (
        "first attempt fails"
    )
    assert second.error is None and first.exit is None
    assert first.container_id == second.container_id == view.task.container_id
    assert first.started_at <= first.ended_at <= second.started_at  # type: ignore[operator]


SLEEPER = """
    import sys, time

    def handler(n):
        for i in range(n):
            print("line", i)
        sys.stderr.write("about to sleep\\n")
        time.sleep(60)
"""


async def test_cancel_keeps_the_lines_written_before(harness: Harness) -> None:
    stub = await harness.queue("sleeper", SLEEPER)
    await harness.start_agent([stub])
    task_id = await harness.put(stub, 3)
    running = await harness.wait(task_id, S.RUNNING)
    found: list[StoredLogLine] = []

    async def printed() -> None:
        while len(found) < 4:
            found[:] = await lines_of(harness, task_id)
            await asyncio.sleep(0.05)

    await asyncio.wait_for(printed(), 15)
    running_attempts = await attempts_of(harness, task_id)
    assert [(a.attempt, a.outcome, a.ended_at) for a in running_attempts] == [(1, None, None)]
    assert running_attempts[0].container_id == running.task.container_id
    result = await harness.store.cancel(harness.workspace.id, [task_id])
    assert result.cancelled == [task_id]
    await asyncio.sleep(1.5)  # the kill, and anything late from it
    lines = await lines_of(harness, task_id)
    assert texts(lines) == [
        (1, "stdout", "line 0"), (1, "stdout", "line 1"), (1, "stdout", "line 2"),
        (1, "stderr", "about to sleep"),
    ]  # fmt: skip
    [attempt] = await attempts_of(harness, task_id)
    assert attempt.outcome == "CANCELLED" and attempt.ended_at is not None


async def test_timeout_keeps_the_lines_written_before(harness: Harness) -> None:
    stub = await harness.queue("slow", SLEEPER, timeout=1)
    await harness.start_agent([stub])
    task_id = await harness.put(stub, 2)
    view = await harness.wait(task_id)
    assert view.task.status is S.TIMEOUT
    # Stored before the TIMEOUT status could be read: no wait needed.
    assert texts(await lines_of(harness, task_id)) == [
        (1, "stdout", "line 0"), (1, "stdout", "line 1"), (1, "stderr", "about to sleep"),
    ]  # fmt: skip
    [attempt] = await attempts_of(harness, task_id)
    assert attempt.outcome == "TIMEOUT"
    assert attempt.error is not None and "timeout" in orjson.loads(attempt.error)["message"]


async def test_a_killed_process_keeps_its_lines_and_its_exit(harness: Harness) -> None:
    source = """
        import time
        from conveyor import TaskContext

        def handler(context: TaskContext):
            print("attempt", context.attempt, "starts")
            if context.attempt == 1:
                print("waiting to be killed")
                time.sleep(60)
            return "survived"
    """
    stub = await harness.queue("victim", source, max_retries=1)
    await harness.start_agent([stub])
    task_id = await harness.put(stub)
    await harness.wait(task_id, S.RUNNING)
    found: list[StoredLogLine] = []

    async def printed() -> None:
        while len(found) < 2:
            found[:] = await lines_of(harness, task_id)
            await asyncio.sleep(0.05)

    await asyncio.wait_for(printed(), 15)
    [pid] = worker_pids()
    os.kill(pid, signal.SIGKILL)
    view = await harness.wait(task_id)
    assert view.task.status is S.COMPLETE
    assert texts(await lines_of(harness, task_id)) == [
        (1, "stdout", "attempt 1 starts"), (1, "stdout", "waiting to be killed"),
        (2, "stdout", "attempt 2 starts"),
    ]  # fmt: skip
    first, second = await attempts_of(harness, task_id)
    assert first.outcome == "CRASHED" and second.outcome == "COMPLETE"
    assert first.exit is not None and first.exit.signal == "SIGKILL" and first.exit.code is None
    assert first.error is not None and "SIGKILL" in orjson.loads(first.error)["message"]


LOUD = """
    def handler(n, width=1):
        for i in range(n):
            print(str(i).rjust(width, "x"))
        return n
"""


@pytest.mark.parametrize(
    ("limits", "width", "kept"),
    [(LogLimits(max_lines=50), 1, 50), (LogLimits(max_bytes=10 * 1000), 1000, 10)],
    ids=["lines", "bytes"],
)
async def test_the_limit_and_its_marker_line(
    harness: Harness, limits: LogLimits, width: int, kept: int
) -> None:
    stub = await harness.queue("loud", LOUD)
    await harness.start_agent([stub], log_limits=limits)
    task_id = await harness.put(stub, 120, width=width)
    assert (await harness.wait(task_id)).task.status is S.COMPLETE
    lines = await lines_of(harness, task_id)
    assert [line.line for line in lines[:-1]] == [str(i).rjust(width, "x") for i in range(kept)]
    assert texts(lines[-1:]) == [(1, "stderr", f"[conveyor: {120 - kept} more lines dropped]")]


async def test_ten_thousand_lines_are_all_kept(harness: Harness) -> None:
    stub = await harness.queue("chatty", LOUD)
    await harness.start_agent([stub])
    task_id = await harness.put(stub, 10_000)
    assert (await harness.wait(task_id)).task.status is S.COMPLETE
    kept: list[str] = []
    cursor = None
    while True:
        page = await harness.store.task_logs(task_id, harness.workspace.id, cursor=cursor)
        assert page is not None
        kept += [line.line for line in page.lines]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert kept == [str(i) for i in range(10_000)]


async def test_lines_outside_a_task_go_to_the_agents_log(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    source = """
        from conveyor import task_queue

        def warm():
            print("warming up")

        @task_queue(name="warm", on_start=warm)
        def handler():
            print("in the task")
    """
    stub = await harness.queue("warm", source)
    caplog.set_level(logging.INFO, logger="conveyor.container")
    await harness.start_agent([stub])
    task_id = await harness.put(stub)
    assert (await harness.wait(task_id)).task.status is S.COMPLETE
    assert texts(await lines_of(harness, task_id)) == [(1, "stdout", "in the task")]
    await until(lambda: "warming up" in caplog.text)
    [record] = [r for r in caplog.records if "warming up" in r.getMessage()]
    assert f"[taskqueue-{stub.id[:8]}-" in record.getMessage()
