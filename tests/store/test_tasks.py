"""Task lifecycle: enqueue, claim, heartbeat, finish, release, cancel, sweep."""

from __future__ import annotations

import orjson
import pytest

from conveyor import clock
from conveyor.errors import OutputTooLarge, PendingLimitExceeded
from conveyor.server.store.base import CONTAINER_STALE_S, Store
from conveyor.server.store.records import NewTask, Outcome, Stub, TaskFilter, Workspace
from conveyor.tasks import TaskStatus

from .conftest import T0

S = TaskStatus


def new(n: int, **kwargs: str) -> list[NewTask]:
    return [NewTask(orjson.dumps({"args": [i], "kwargs": {}}).decode(), **kwargs)
            for i in range(n)]


async def status(store: Store, task_id: str) -> TaskStatus:
    view = await store.get_task(task_id)
    assert view is not None
    return view.task.status


async def test_enqueue_stores_pending_tasks_with_the_stub_policy(
    store: Store, stub: Stub, ws: Workspace
) -> None:
    ids = await store.enqueue(stub, new(3), max_pending=10, now=T0)
    assert len(set(ids)) == 3
    view = await store.get_task(ids[0], ws.id)
    assert view is not None
    task = view.task
    assert task.status is S.PENDING and task.attempt == 0 and task.fence == 0
    assert (task.ttl_s, task.max_retries, task.timeout_s, task.retry_backoff_s) == (60, 2, 30, 1)
    assert task.created_at == task.updated_at == clock.to_us(T0)
    assert task.started_at is None and task.ended_at is None and task.container_id == ""
    assert orjson.loads(task.payload) == {"args": [0], "kwargs": {}}
    assert view.queue_depth == 3
    assert await store.enqueue(stub, [], max_pending=10) == []


async def test_enqueue_prefers_the_task_callback(store: Store, ws: Workspace) -> None:
    stub = await store.deploy_stub(ws.id, "cb", {"callback_url": "http://queue/"}, b"x")
    default, own = await store.enqueue(
        stub, [NewTask("{}"), NewTask("{}", callback_url="http://task/")], 10
    )
    assert (await store.get_task(default)).task.callback_url == "http://queue/"  # type: ignore[union-attr]
    assert (await store.get_task(own)).task.callback_url == "http://task/"  # type: ignore[union-attr]


async def test_idempotency_key_returns_the_same_task_for_24h(
    store: Store, stub: Stub, ws: Workspace
) -> None:
    first = await store.enqueue(stub, new(1, idempotency_key="k"), 10, now=T0)
    again = await store.enqueue(stub, new(2, idempotency_key="k"), 10, now=T0 + 3600)
    assert again == first * 2
    page, _ = await store.list_tasks(ws.id, TaskFilter())
    assert len(page) == 1
    later = await store.enqueue(stub, new(1, idempotency_key="k"), 10, now=T0 + 25 * 3600)
    assert later != first
    other_ws = await store.ensure_workspace("other")
    other_stub = await store.deploy_stub(other_ws.id, "q", {}, b"x")
    assert await store.enqueue(other_stub, new(1, idempotency_key="k"), 10) != first


async def test_pending_limit_is_all_or_nothing(store: Store, stub: Stub, ws: Workspace) -> None:
    await store.enqueue(stub, new(2), max_pending=3)
    with pytest.raises(PendingLimitExceeded) as info:
        await store.enqueue(stub, [NewTask("{}", idempotency_key="k"), NewTask("{}")], 3)
    assert info.value.limit == 3 and "exceeded max pending tasks: 3" in str(info.value)
    page, _ = await store.list_tasks(ws.id, TaskFilter())
    assert len(page) == 2
    # The key was not kept by the refused batch.
    [third] = await store.enqueue(stub, new(1, idempotency_key="k"), max_pending=3)
    # RUNNING counts, terminal does not.
    claimed = await store.claim(stub.id, "c", 3, 30)
    assert len(claimed) == 3
    with pytest.raises(PendingLimitExceeded):
        await store.enqueue(stub, new(1), max_pending=3)
    await store.finish([Outcome(claimed[0].id, claimed[0].fence, S.COMPLETE, result="1")])
    assert len(await store.enqueue(stub, new(1), max_pending=3)) == 1
    assert third in {t.id for t in claimed}


async def test_claim_is_fifo_and_starts_an_attempt(store: Store, stub: Stub) -> None:
    ids = await store.enqueue(stub, new(5), 10, now=T0)
    first = await store.claim(stub.id, "c1", 2, lease_s=30, now=T0 + 1)
    assert [t.id for t in first] == ids[:2]
    for task in first:
        assert task.status is S.RUNNING and task.attempt == 1 and task.fence == 1
        assert task.container_id == "c1"
        assert task.started_at == task.updated_at == clock.to_us(T0 + 1)
    rest = await store.claim(stub.id, "c2", 10, lease_s=30, now=T0 + 2)
    assert [t.id for t in rest] == ids[2:]
    assert await store.claim(stub.id, "c2", 10, lease_s=30) == []
    assert await store.claim(stub.id, "c2", 0, lease_s=30) == []


async def test_finish_complete_writes_result_outputs_callback(store: Store, ws: Workspace) -> None:
    stub = await store.deploy_stub(ws.id, "q", {"callback_url": "http://cb/"}, b"x")
    [task_id] = await store.enqueue(stub, new(1), 10, now=T0)
    [task] = await store.claim(stub.id, "c", 1, 30, now=T0 + 1)
    done = await store.finish(
        [Outcome(task_id, task.fence, S.COMPLETE, result='{"ok": true}',
                 outputs=[("a.txt", b"hello"), ("b.bin", b"\x00\x01")])],
        now=T0 + 2,
    )
    assert done == [True]
    view = await store.get_task(task_id)
    assert view is not None
    assert view.task.status is S.COMPLETE and view.task.result == '{"ok": true}'
    assert view.task.ended_at == view.task.updated_at == clock.to_us(T0 + 2)
    assert view.task.created_at <= view.task.started_at <= view.task.ended_at  # type: ignore[operator]
    assert sorted(o.name for o in view.outputs) == ["a.txt", "b.bin"]
    a = next(o for o in view.outputs if o.name == "a.txt")
    found = await store.get_output(a.id)
    assert found is not None and found[1] == b"hello" and found[0].size == 5
    assert await store.get_output("not-a-uuid") is None
    [callback] = await store.claim_callbacks(10, 30, now=T0 + 3)
    assert callback.task_id == task_id and callback.status is S.COMPLETE
    assert orjson.loads(callback.body) == {"data": {"ok": True}}
    assert callback.workspace_id == ws.id and callback.url == "http://cb/"
    # A duplicate completion, or one from an older attempt, is refused and changes nothing.
    assert await store.finish([Outcome(task_id, task.fence, S.FAILED, error="{}")]) == [False]
    assert await store.finish([Outcome(task_id, 0, S.COMPLETE, result="2")]) == [False]
    view = await store.get_task(task_id)
    assert view is not None and view.task.status is S.COMPLETE
    assert view.task.result == '{"ok": true}'


async def test_finish_from_an_old_fence_is_refused(store: Store, stub: Stub) -> None:
    [task_id] = await store.enqueue(stub, new(1), 10, now=T0)
    [old] = await store.claim(stub.id, "c1", 1, lease_s=5, now=T0)
    assert (await store.sweep(now=T0 + 10)).retried == 1  # lease lost: RETRY
    [current] = await store.claim(stub.id, "c2", 1, lease_s=30, now=T0 + 20)
    assert current.fence == old.fence + 1 and current.attempt == 2
    stale = Outcome(task_id, old.fence, S.COMPLETE, result="1", outputs=[("x", b"x")])
    assert await store.finish([stale], now=T0 + 21) == [False]
    view = await store.get_task(task_id)
    assert view is not None and view.task.status is S.RUNNING and view.outputs == []
    assert await store.finish([Outcome(task_id, current.fence, S.COMPLETE, result="2")]) == [True]


async def test_retryable_failure_retries_with_backoff_then_fails(store: Store, stub: Stub) -> None:
    [task_id] = await store.enqueue(stub, new(1), 10, now=T0)
    now = T0
    for attempt, backoff in ((1, 1.0), (2, 2.0)):
        [task] = await store.claim(stub.id, "c", 1, 30, now=now)
        assert task.attempt == attempt
        error = '{"type": "IOError", "message": "flaky", "traceback": ""}'
        assert await store.finish([Outcome(task_id, task.fence, S.FAILED, error=error,
                                           retryable=True)], now=now) == [True]
        view = await store.get_task(task_id)
        assert view is not None and view.task.status is S.RETRY and view.task.error == error
        assert view.task.ended_at is None and view.queue_depth == 1
        # Not runnable before the backoff (retry_backoff doubled per retry).
        assert await store.claim(stub.id, "c", 1, 30, now=now + backoff - 0.1) == []
        now += backoff
    [task] = await store.claim(stub.id, "c", 1, 30, now=now)
    assert task.attempt == 3
    assert await store.finish([Outcome(task_id, task.fence, S.FAILED, error="{}",
                                       retryable=True)], now=now + 1) == [True]
    view = await store.get_task(task_id)
    assert view is not None and view.task.status is S.FAILED
    assert view.task.ended_at == clock.to_us(now + 1)


async def test_non_retryable_failure_and_timeout_are_final(store: Store, stub: Stub) -> None:
    ids = await store.enqueue(stub, new(2), 10, now=T0)
    a, b = await store.claim(stub.id, "c", 2, 30, now=T0)
    applied = await store.finish([Outcome(a.id, a.fence, S.FAILED, error='{"type": "X"}'),
                                  Outcome(b.id, b.fence, S.TIMEOUT)], now=T0 + 1)
    assert applied == [True, True]
    assert [await status(store, i) for i in ids] == [S.FAILED, S.TIMEOUT]
    for task_id in ids:
        view = await store.get_task(task_id)
        assert view is not None and view.task.ended_at == clock.to_us(T0 + 1)


async def test_output_over_the_limit_writes_nothing(stub: Stub, store: Store) -> None:
    store.max_output_bytes = 10
    [task_id] = await store.enqueue(stub, new(1), 10)
    [task] = await store.claim(stub.id, "c", 1, 30)
    with pytest.raises(OutputTooLarge):
        await store.finish([Outcome(task_id, task.fence, S.COMPLETE, result="1",
                                    outputs=[("ok", b"small"), ("big", b"x" * 11)])])
    view = await store.get_task(task_id)
    assert view is not None and view.task.status is S.RUNNING and view.outputs == []


async def test_heartbeat_extends_leases_and_reports_lost_attempts(store: Store, stub: Stub) -> None:
    await store.register_container("c", stub.id, "agent", now=T0)
    ids = await store.enqueue(stub, new(2), 10, now=T0)
    a, b = await store.claim(stub.id, "c", 2, lease_s=10, now=T0)
    await store.cancel(stub.workspace_id, [b.id], now=T0 + 1)
    lost = await store.heartbeat("c", [(a.id, a.fence), (b.id, b.fence), (a.id, a.fence + 7)],
                                 lease_s=10, now=T0 + 8)
    assert lost == [b.id, a.id]
    report = await store.sweep(now=T0 + 15)  # a's first lease is over, the renewed one is not
    assert report.retried == 0 and await status(store, ids[0]) is S.RUNNING
    assert await store.active_containers(stub.id, now=T0 + 15) == 1
    assert (await store.sweep(now=T0 + 19)).retried == 1
    assert await status(store, ids[0]) is S.RETRY


async def test_release_requeues_without_using_an_attempt(store: Store, stub: Stub) -> None:
    [task_id] = await store.enqueue(stub, new(1), 10, now=T0)
    [task] = await store.claim(stub.id, "c", 1, 30, now=T0)
    assert await store.release([(task_id, task.fence), (task_id, task.fence)], now=T0 + 1) == 1
    view = await store.get_task(task_id)
    assert view is not None and view.task.status is S.RETRY and view.task.attempt == 0
    [again] = await store.claim(stub.id, "c2", 1, 30, now=T0 + 1)
    assert again.attempt == 1 and again.fence == 2 and again.started_at == task.started_at


async def test_cancel_sorts_ids_and_notifies_running_ones(store: Store, ws: Workspace) -> None:
    stub = await store.deploy_stub(ws.id, "q", {"callback_url": "http://cb/"}, b"x")
    other = await store.ensure_workspace("other")
    foreign_stub = await store.deploy_stub(other.id, "q", {}, b"x")
    [foreign] = await store.enqueue(foreign_stub, new(1), 10)
    pending, running, done = await store.enqueue(stub, new(3), 10, now=T0)
    [r, d] = await store.claim(stub.id, "c9", 2, 30, now=T0)
    assert {r.id, d.id} == {pending, running}  # FIFO: the first two
    pending_id = done
    await store.finish([Outcome(d.id, d.fence, S.COMPLETE, result="1")], now=T0)
    sub = store.subscribe()
    zero = "00000000-0000-0000-0000-000000000000"
    result = await store.cancel(
        ws.id, [pending_id, r.id, d.id, foreign, "not-a-uuid", zero], now=T0 + 1
    )
    assert result.cancelled == [pending_id, r.id]
    assert result.already_finished == [d.id]
    assert result.not_found == [foreign, "not-a-uuid", zero]
    assert await status(store, foreign) is S.PENDING
    view = await store.get_task(r.id)
    assert view is not None and view.task.status is S.CANCELLED
    assert view.task.ended_at == clock.to_us(T0 + 1)
    events = []  # PostgreSQL may also deliver the earlier COMPLETE here: it comes via LISTEN.
    while (event := await sub.get(timeout=2)) is not None:
        if event.status is S.CANCELLED:
            events.append(event)
        if len(events) == 3:
            break
    kills = [e for e in events if e.kind == "cancel"]
    assert [(e.task_id, e.container_id) for e in kills] == [(r.id, "c9")]
    assert {e.task_id for e in events if e.kind == "task"} == {pending_id, r.id}
    callbacks = await store.claim_callbacks(10, 30, now=T0 + 2)
    assert {(c.task_id, c.status) for c in callbacks} >= {(pending_id, S.CANCELLED),
                                                          (r.id, S.CANCELLED)}
    assert all(orjson.loads(c.body) == {"data": {}} for c in callbacks if c.status is S.CANCELLED)
    # Nothing from the killed attempt is recorded; a second cancel finds it finished.
    assert await store.finish([Outcome(r.id, r.fence, S.COMPLETE, result="1")]) == [False]
    assert (await store.cancel(ws.id, [r.id])).already_finished == [r.id]


async def test_sweep_expires_waiting_tasks_past_their_ttl(store: Store, stub: Stub) -> None:
    [retried] = await store.enqueue(stub, new(1), 10, now=T0)
    [task] = await store.claim(stub.id, "c", 1, 30, now=T0)
    await store.finish([Outcome(retried, task.fence, S.FAILED, error="{}", retryable=True)],
                       now=T0)  # RETRY, runnable at T0+1, so it may wait until T0+61
    [pending] = await store.enqueue(stub, new(1), 10, now=T0)
    [young] = await store.enqueue(stub, new(1), 10, now=T0 + 30)
    assert (await store.sweep(now=T0 + 59.9)).expired == 0
    assert (await store.sweep(now=T0 + 60.5)).expired == 1
    assert await status(store, pending) is S.EXPIRED
    assert (await store.sweep(now=T0 + 61.5)).expired == 1
    view = await store.get_task(retried)
    assert view is not None and view.task.status is S.EXPIRED
    assert view.task.ended_at == clock.to_us(T0 + 61.5)
    assert await status(store, young) is S.PENDING
    assert await store.claim(stub.id, "c", 5, 30, now=T0 + 62) != []


async def test_sweep_fails_lost_attempts_without_retries(store: Store, ws: Workspace) -> None:
    stub = await store.deploy_stub(ws.id, "q", {"max_retries": 0, "callback_url": "http://c/"},
                                   b"x")
    [task_id] = await store.enqueue(stub, new(1), 10, now=T0)
    await store.claim(stub.id, "c", 1, lease_s=10, now=T0)
    report = await store.sweep(now=T0 + 11)
    assert report.failed == 1 and report.retried == 0
    view = await store.get_task(task_id)
    assert view is not None and view.task.status is S.FAILED and view.task.ended_at is not None
    assert orjson.loads(view.task.error or "null")["type"] == "ContainerLost"
    [callback] = await store.claim_callbacks(5, 30, now=T0 + 12)
    assert callback.status is S.FAILED


async def test_sweep_removes_silent_containers(store: Store, stub: Stub) -> None:
    await store.register_container("a", stub.id, "agent", now=T0)
    await store.register_container("b", stub.id, "agent", now=T0)
    await store.heartbeat("b", [], lease_s=30, now=T0 + 10)
    assert await store.active_containers(stub.id, now=T0 + CONTAINER_STALE_S + 1) == 1
    report = await store.sweep(now=T0 + CONTAINER_STALE_S + 1)
    assert report.containers_removed == 1
    await store.deregister_container("b")
    assert await store.active_containers(stub.id, now=T0 + 11) == 0
