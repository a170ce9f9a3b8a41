"""DESIGN A13: one queue's bad row never stops an agent's tick, a sweep or a batch of
outcomes for other queues; a handler whose code does not load says why on its task."""

from __future__ import annotations

import time

from conveyor.server.store.base import Store
from conveyor.server.store.records import Outcome
from conveyor.tasks import TaskStatus
from tests.integration.conftest import Harness, error_of, result_of

GOOD = """
def handler(x):
    return x * 2
"""


async def test_a_broken_stub_row_next_to_a_good_one(harness: Harness, store: Store) -> None:
    good = await harness.queue("good", GOOD)
    idle = await harness.queue("idle", GOOD, ttl=1)
    folder = harness.tmp_path / "code" / "good"
    # Rows as an old gateway stored them, bypassing validation.
    bad_autoscaler = await store.upsert_serve_stub(
        harness.workspace.id,
        "bad1",
        {"handler": "good.py:handler", "code_path": str(folder), "autoscaler": "x"},
        b"",
    )
    bad_backoff = await store.upsert_serve_stub(
        harness.workspace.id,
        "bad2",
        {"handler": "good.py:handler", "code_path": str(folder), "retry_backoff": 1e300},
        b"",
    )
    waiting = await harness.put(idle, 1)  # nobody serves it: it expires after its ttl
    agent = await harness.start_agent([good, bad_autoscaler, bad_backoff], sweep_s=0.2)
    tasks = [await harness.put(good, n) for n in range(5)]
    for n, task_id in enumerate(tasks):
        assert result_of(await harness.wait(task_id)) == n * 2
    assert set(agent.broken) == {bad_autoscaler.id, bad_backoff.id}
    assert (await harness.wait(waiting)).task.status is TaskStatus.EXPIRED


async def test_a_stored_backoff_too_large_for_the_clock(harness: Harness, store: Store) -> None:
    """A task row holding an unbounded retry_backoff (as stored before it was bounded) neither
    aborts the outcome batch nor the sweep: the backoff is capped."""
    stub = await harness.queue("q", GOOD, max_retries=2)
    first, second, third = [await harness.put(stub, n) for n in range(3)]
    await _set(store, "UPDATE tasks SET retry_backoff_s = 1e300")
    claimed = await store.claim(stub.id, "taskqueue-test-0001", 3, lease_s=60)
    by_id = {task.id: task for task in claimed}
    applied = await store.finish(
        [
            Outcome(first, by_id[first].fence, TaskStatus.FAILED, error="{}", retryable=True),
            Outcome(second, by_id[second].fence, TaskStatus.COMPLETE, result="1"),
        ]
    )
    assert applied == [True, True]
    view = await store.get_task(first)
    assert view is not None and view.task.status is TaskStatus.RETRY
    # The sweep meets the third one's expired lease, with the same backoff.
    report = await store.sweep(time.time() + 120)
    assert report.retried == 1
    view = await store.get_task(third)
    assert view is not None and view.task.status is TaskStatus.RETRY


async def test_an_outcome_that_cannot_be_stored_fails_alone(
    harness: Harness, store: Store
) -> None:
    stub = await harness.queue("q", GOOD)
    first, second = [await harness.put(stub, n) for n in range(2)]
    claimed = {t.id: t for t in await store.claim(stub.id, "taskqueue-test-0001", 2, 60)}
    applied = await store.finish(
        [
            # A lone surrogate: no backend can store this text.
            Outcome(first, claimed[first].fence, TaskStatus.COMPLETE, result='"\ud800"'),
            Outcome(second, claimed[second].fence, TaskStatus.COMPLETE, result="2"),
        ]
    )
    assert applied == [True, True]
    view = await store.get_task(second)
    assert view is not None and view.task.status is TaskStatus.COMPLETE
    view = await store.get_task(first)
    assert view is not None and view.task.status is TaskStatus.FAILED
    assert error_of(view)["type"] == "OutcomeNotStored"


async def test_a_syntax_error_is_the_tasks_error(harness: Harness) -> None:
    stub = await harness.queue("syn", "def handler(:\n    pass\n")
    task_id = await harness.put(stub, 1)
    await harness.start_agent([stub], start_retry_s=0.2)
    view = await harness.wait(task_id, timeout=30)
    assert view.task.status is TaskStatus.FAILED
    error = error_of(view)
    assert error["type"] == "SyntaxError"
    assert "line 1" in error["message"]


async def _set(store: Store, sql: str) -> None:
    async def op(tx: object) -> None:
        await tx.execute(sql)  # type: ignore[attr-defined]

    await store.driver.write(op)  # type: ignore[attr-defined]
