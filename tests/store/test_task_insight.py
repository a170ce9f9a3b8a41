"""DESIGN A8 in the store, both backends: a task's input, its attempts as rows written by the
write that ends each one, and its lines within the per-task limits, read after a cursor."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from conveyor import clock
from conveyor.server.store.base import Store
from conveyor.server.store.records import (
    LogLimits,
    LogLine,
    NewTask,
    Outcome,
    ProcessExit,
    Stub,
    Workspace,
)
from conveyor.tasks import TaskStatus

from .conftest import T0

S = TaskStatus
US = clock.to_us(T0)


async def one_task(store: Store, stub: Stub, **kwargs: object) -> str:
    payload = orjson.dumps({"args": [1, "two"], "kwargs": kwargs}).decode()
    [task_id] = await store.enqueue(stub, [NewTask(payload)], 10, now=T0)
    return task_id


def line(task_id: str, text: str, attempt: int = 1, stream: str = "stdout") -> LogLine:
    return LogLine(task_id, attempt, stream, US, text)  # type: ignore[arg-type]


async def test_input_is_what_the_handler_gets(store: Store, stub: Stub, ws: Workspace) -> None:
    task_id = await one_task(store, stub, size=3)
    text = await store.task_input(task_id, ws.id)
    assert text is not None and orjson.loads(text) == {"args": [1, "two"], "kwargs": {"size": 3}}
    other = await store.ensure_workspace("other")
    assert await store.task_input(task_id, other.id) is None
    assert await store.task_input("not-a-uuid", ws.id) is None


async def test_each_attempt_is_kept_by_the_write_that_ends_it(
    store: Store, stub: Stub, ws: Workspace
) -> None:
    task_id = await one_task(store, stub)
    [task] = await store.claim(stub.id, "c-1", 1, 30, now=T0 + 1)
    running = await store.task_attempts(task_id, ws.id)
    assert running is not None and [(a.attempt, a.container_id, a.outcome) for a in running] == [
        (1, "c-1", None)
    ]
    assert running[0].started_at == clock.to_us(T0 + 1) and running[0].ended_at is None
    crash = orjson.dumps({"type": "WorkerCrashed", "message": "killed by SIGKILL"}).decode()
    await store.finish(
        [Outcome(task_id, task.fence, S.FAILED, error=crash, retryable=True,
                 exit=ProcessExit(signal="SIGKILL"))],
        now=T0 + 2,
    )  # fmt: skip
    [task] = await store.claim(stub.id, "c-2", 1, 30, now=T0 + 10)
    # The second attempt's lease runs out: LOST, then retried once more and failed for good.
    await store.sweep(now=T0 + 50)
    [task] = await store.claim(stub.id, "c-3", 1, 30, now=T0 + 60)
    boom = orjson.dumps({"type": "ValueError", "message": "bad"}).decode()
    await store.finish([Outcome(task_id, task.fence, S.FAILED, error=boom)], now=T0 + 61)
    attempts = await store.task_attempts(task_id, ws.id)
    assert attempts is not None
    assert [(a.attempt, a.container_id, a.outcome) for a in attempts] == [
        (1, "c-1", "CRASHED"), (2, "c-2", "LOST"), (3, "c-3", "FAILED"),
    ]  # fmt: skip
    first, lost, last = attempts
    assert first.exit == ProcessExit(signal="SIGKILL") and last.exit is None
    assert (first.started_at, first.ended_at) == (clock.to_us(T0 + 1), clock.to_us(T0 + 2))
    assert first.error == crash and last.error == boom
    assert lost.error is not None and orjson.loads(lost.error)["type"] == "ContainerLost"
    assert await store.task_attempts(task_id, (await store.ensure_workspace("x")).id) is None


async def test_a_completed_attempt_is_read_from_its_task_row(
    store: Store, stub: Stub, ws: Workspace
) -> None:
    """The common case keeps no attempt row: the task row tells the same."""
    task_id = await one_task(store, stub)
    [task] = await store.claim(stub.id, "c-1", 1, 30, now=T0 + 1)
    await store.finish([Outcome(task_id, task.fence, S.COMPLETE, result="1")], now=T0 + 2)
    attempts = await store.task_attempts(task_id, ws.id)
    assert attempts is not None
    assert [(a.attempt, a.container_id, a.outcome, a.started_at, a.ended_at, a.error)
            for a in attempts] == [
        (1, "c-1", "COMPLETE", clock.to_us(T0 + 1), clock.to_us(T0 + 2), None)
    ]  # fmt: skip


async def test_a_cancel_ends_the_running_attempt_and_a_release_keeps_none(
    store: Store, stub: Stub, ws: Workspace
) -> None:
    task_id = await one_task(store, stub)
    [task] = await store.claim(stub.id, "c-1", 1, 30, now=T0)
    await store.release([(task_id, task.fence)], now=T0 + 1)  # a drain: not an attempt
    assert await store.task_attempts(task_id, ws.id) == []
    [task] = await store.claim(stub.id, "c-2", 1, 30, now=T0 + 2)
    oops = orjson.dumps({"type": "OSError", "message": "first"}).decode()
    await store.finish([Outcome(task_id, task.fence, S.FAILED, error=oops, retryable=True)],
                       now=T0 + 3)  # fmt: skip
    await store.claim(stub.id, "c-3", 1, 30, now=T0 + 10)
    await store.cancel(ws.id, [task_id], now=T0 + 11)
    attempts = await store.task_attempts(task_id, ws.id)
    assert attempts is not None
    assert [(a.attempt, a.container_id, a.outcome, a.ended_at, a.error) for a in attempts] == [
        (1, "c-2", "RETRY", clock.to_us(T0 + 3), oops),
        (2, "c-3", "CANCELLED", clock.to_us(T0 + 11), None),  # not the error before
    ]
    never_ran = await one_task(store, stub)
    await store.cancel(ws.id, [never_ran])
    assert await store.task_attempts(never_ran, ws.id) == []


async def test_lines_read_after_a_cursor_with_filters(
    store: Store, stub: Stub, ws: Workspace
) -> None:
    task_id = await one_task(store, stub)
    other_task = await one_task(store, stub)
    limits = LogLimits()
    await store.append_logs(
        [line(task_id, "a"), line(other_task, "elsewhere"), line(task_id, "b", stream="stderr")],
        limits,
    )
    await store.append_logs([line(task_id, "c", attempt=2)], limits)
    page = await store.task_logs(task_id, ws.id)
    assert page is not None and page.status is S.PENDING
    assert [(x.attempt, x.stream, x.line) for x in page.lines] == [
        (1, "stdout", "a"), (1, "stderr", "b"), (2, "stdout", "c"),
    ]  # fmt: skip
    assert page.next_cursor == str(page.lines[-1].id)  # not terminal: more may come
    first = await store.task_logs(task_id, ws.id, limit=1)
    assert first is not None and [x.line for x in first.lines] == ["a"]
    rest = await store.task_logs(task_id, ws.id, cursor=first.next_cursor)
    assert rest is not None and [x.line for x in rest.lines] == ["b", "c"]
    after_all = await store.task_logs(task_id, ws.id, cursor=page.next_cursor)
    assert after_all is not None and after_all.lines == []
    assert after_all.next_cursor == page.next_cursor
    by_stream = await store.task_logs(task_id, ws.id, stream="stderr")
    assert by_stream is not None and [x.line for x in by_stream.lines] == ["b"]
    by_attempt = await store.task_logs(task_id, ws.id, attempt=2)
    assert by_attempt is not None and [x.line for x in by_attempt.lines] == ["c"]
    with pytest.raises(ValueError):
        await store.task_logs(task_id, ws.id, cursor="seq:3")
    assert await store.task_logs(task_id, (await store.ensure_workspace("x")).id) is None
    # Once terminal, a short page says nothing more will come.
    await store.cancel(ws.id, [task_id])
    done = await store.task_logs(task_id, ws.id)
    assert done is not None and done.next_cursor is None and len(done.lines) == 3


async def test_past_the_limit_one_marker_per_ended_attempt(
    store: Store, stub: Stub, ws: Workspace
) -> None:
    task_id = await one_task(store, stub)
    limits = LogLimits(max_lines=3, max_bytes=1000)
    await store.append_logs([line(task_id, f"l{i}") for i in range(2)], limits)
    await store.append_logs([line(task_id, f"l{i}") for i in range(2, 5)], limits)
    # A short line after a dropped one is dropped too: nothing after the marker.
    await store.append_logs([line(task_id, "x")], limits, dropped={task_id: 10})
    await store.append_logs([], limits, [(task_id, 1)])
    await store.append_logs([], limits, [(task_id, 1)])  # told once
    await store.append_logs([line(task_id, "again", attempt=2)], limits, [(task_id, 2)])
    page = await store.task_logs(task_id, ws.id)
    assert page is not None
    assert [(x.attempt, x.stream, x.line) for x in page.lines] == [
        (1, "stdout", "l0"), (1, "stdout", "l1"), (1, "stdout", "l2"),
        (1, "stderr", "[conveyor: 13 more lines dropped]"),
        (2, "stderr", "[conveyor: 1 more lines dropped]"),
    ]  # fmt: skip
    by_bytes = await one_task(store, stub)
    await store.append_logs(
        [line(by_bytes, "x" * 600), line(by_bytes, "y" * 600)], LogLimits(max_bytes=1000),
        [(by_bytes, 1)],
    )
    page = await store.task_logs(by_bytes, ws.id)
    assert page is not None and [x.line[:1] for x in page.lines] == ["x", "["]


async def test_appending_notifies_the_tasks_watchers(store: Store, stub: Stub) -> None:
    task_id = await one_task(store, stub)
    subscription = store.subscribe()
    try:
        await store.append_logs([line(task_id, "hello")], LogLimits())
        while True:
            event = await asyncio.wait_for(subscription.get(5), 6)
            assert event is not None
            if event.kind == "logs":
                break
        assert (event.task_id, event.stub_id) == (task_id, stub.id)
    finally:
        subscription.close()


async def test_lines_of_a_task_no_longer_stored_are_dropped(store: Store, ws: Workspace) -> None:
    gone = "00000000-0000-4000-8000-000000000000"
    await store.append_logs([line(gone, "nobody reads this")], LogLimits(), [(gone, 1)])
    assert await store.task_logs(gone, ws.id) is None
