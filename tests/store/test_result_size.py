"""A result over 10 MiB (DESIGN A13): the agent turns the ``done`` frame into a FAILED outcome
with ``ResultTooLarge``, and the store keeps that, not the result."""

from __future__ import annotations

import time

import orjson

from conveyor.server.agent.dispatcher import MAX_RESULT_BYTES, done_outcome
from conveyor.server.agent.handle import Attempt
from conveyor.server.store.base import Store
from conveyor.server.store.records import NewTask, Stub
from conveyor.tasks import TaskStatus


async def _finish_with(store: Store, stub: Stub, result: str) -> tuple[TaskStatus, str | None]:
    [task_id] = await store.enqueue(stub, [NewTask("{}")], 10)
    [task] = await store.claim(stub.id, "c", 1, 30)
    attempt = Attempt(task.id, task.fence, 1, None, time.time())
    msg = {"status": "COMPLETE", "result": result, "outputs": [{"name": "a", "data": "YQ=="}]}
    [applied] = await store.finish([done_outcome(attempt, msg)])
    assert applied
    view = await store.get_task(task_id)
    assert view is not None
    return view.task.status, view.task.error


async def test_a_result_over_10_mib_fails_the_task(store: Store, stub: Stub) -> None:
    big = orjson.dumps("é" * (MAX_RESULT_BYTES // 2 + 1)).decode()  # few chars, many bytes
    status, error = await _finish_with(store, stub, big)
    assert status is TaskStatus.FAILED
    assert error is not None and orjson.loads(error)["type"] == "ResultTooLarge"
    view_ok = await _finish_with(store, stub, orjson.dumps("x" * 1000).decode())
    assert view_ok == (TaskStatus.COMPLETE, None)
