"""Reads (task views, listing, summaries, loads), the callbacks outbox and notifications."""

from __future__ import annotations

import orjson
import pytest

from conveyor import clock
from conveyor.server.store.base import Store
from conveyor.server.store.records import Event, NewTask, Outcome, Stub, TaskFilter, Workspace
from conveyor.tasks import TaskStatus

from .conftest import T0

S = TaskStatus


async def test_get_task_hides_unknown_malformed_and_foreign_ids(
    store: Store, stub: Stub, ws: Workspace
) -> None:
    [task_id] = await store.enqueue(stub, [NewTask("{}")], 10)
    other = await store.ensure_workspace("other")
    assert await store.get_task(task_id, ws.id) is not None
    assert await store.get_task(task_id.upper(), ws.id) is not None
    assert await store.get_task(task_id, other.id) is None
    assert await store.get_task("not-a-uuid") is None
    assert await store.get_task("") is None
    assert await store.get_task("00000000-0000-0000-0000-000000000000") is None


async def test_task_view_has_stub_depth_and_live_containers(store: Store, stub: Stub) -> None:
    ids = await store.enqueue(stub, [NewTask("{}") for _ in range(4)], 10)
    await store.register_container("c1", stub.id, "agent")
    await store.claim(stub.id, "c1", 1, 30)
    view = await store.get_task(ids[0])
    assert view is not None
    assert view.stub == stub and view.queue_depth == 3 and view.active_containers == 1
    assert view.task.container_id == "c1" and view.outputs == []


async def test_list_tasks_pages_newest_first(store: Store, stub: Stub, ws: Workspace) -> None:
    ids = await store.enqueue(stub, [NewTask("{}") for _ in range(7)], 10)
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page, cursor = await store.list_tasks(ws.id, TaskFilter(), limit=3, cursor=cursor)
        seen.extend(v.task.id for v in page)
        if cursor is None:
            break
    assert seen == ids[::-1]
    other = await store.ensure_workspace("other")
    assert await store.list_tasks(other.id, TaskFilter()) == ([], None)
    with pytest.raises(ValueError):
        await store.list_tasks(ws.id, TaskFilter(), cursor="garbage!")


async def test_list_tasks_filters(store: Store, stub: Stub, ws: Workspace) -> None:
    other_queue = await store.deploy_stub(ws.id, "other", {}, b"x")
    early = await store.enqueue(stub, [NewTask("{}")] * 2, 10, now=T0)
    late = await store.enqueue(other_queue, [NewTask("{}")], 10, now=T0 + 10)
    [running] = await store.claim(stub.id, "c7", 1, 30, now=T0 + 11)

    async def ids(**kwargs: object) -> list[str]:
        page, _ = await store.list_tasks(ws.id, TaskFilter(**kwargs))  # type: ignore[arg-type]
        return [v.task.id for v in page]

    assert await ids(statuses=frozenset({S.RUNNING})) == [running.id]
    assert await ids(statuses=frozenset({S.PENDING})) == [late[0], early[1]]
    assert await ids(statuses=frozenset()) == []
    assert await ids(queue="other") == late
    assert await ids(stub_id=stub.id) == early[::-1]
    assert await ids(container_id="c7") == [running.id]
    assert await ids(created_after=clock.to_us(T0 + 5)) == late
    assert await ids(created_before=clock.to_us(T0 + 5)) == early[::-1]
    page, _ = await store.list_tasks(ws.id, TaskFilter(queue="q"))
    assert all(v.queue_depth == 1 and v.stub.name == "q" for v in page)


async def test_queue_summaries_and_stub_loads(store: Store, stub: Stub, ws: Workspace) -> None:
    v2 = await store.deploy_stub(ws.id, "q", {}, b"v2")
    await store.enqueue(stub, [NewTask("{}")] * 3, 10, now=T0)
    await store.enqueue(v2, [NewTask("{}")], 10, now=T0)
    [task] = await store.claim(stub.id, "c", 1, 30, now=T0)
    await store.finish([Outcome(task.id, task.fence, S.FAILED, error="{}", retryable=True)],
                       now=T0)  # RETRY, runnable at T0+1
    await store.claim(stub.id, "c", 1, 30, now=T0)
    await store.register_container("c", stub.id, "agent")
    [summary] = await store.queue_summaries(ws.id)
    assert summary.name == "q" and [v.version for v in summary.versions] == [1, 2]
    assert summary.queue_depth == 3 and summary.active_containers == 1
    assert summary.counts[S.PENDING] == 2 and summary.counts[S.RUNNING] == 1
    assert summary.counts[S.RETRY] == 1 and summary.counts[S.COMPLETE] == 0
    assert await store.queue_summaries(ws.id, "nope") == []
    loads = await store.stub_loads([stub.id, v2.id, "unknown"], now=T0 + 0.5)
    assert [(x.stub_id, x.runnable, x.running) for x in loads] == [
        (stub.id, 1, 1), (v2.id, 1, 0), ("unknown", 0, 0)]
    assert (await store.stub_loads([stub.id], now=T0 + 2))[0].runnable == 2


async def test_callback_outbox_leases_retries_and_gives_up(store: Store, ws: Workspace) -> None:
    stub = await store.deploy_stub(ws.id, "q", {"callback_url": "http://cb/"}, b"x")
    ids = await store.enqueue(stub, [NewTask("{}")] * 3, 10, now=T0)
    await store.cancel(ws.id, ids, now=T0)
    claimed = await store.claim_callbacks(2, lease_s=30, now=T0)
    assert len(claimed) == 2 and all(c.attempts == 1 for c in claimed)
    [third] = await store.claim_callbacks(5, lease_s=30, now=T0)
    assert await store.claim_callbacks(5, lease_s=30, now=T0 + 1) == []  # all leased
    await store.callback_delivered(claimed[0].id, now=T0 + 1)
    await store.callback_failed(claimed[1].id, "HTTP 500", retry_at=T0 + 10, now=T0 + 1)
    await store.callback_failed(third.id, "HTTP 500", retry_at=None, now=T0 + 1)
    assert await store.claim_callbacks(5, lease_s=30, now=T0 + 5) == []
    [retried] = await store.claim_callbacks(5, lease_s=30, now=T0 + 10)
    assert retried.id == claimed[1].id and retried.attempts == 2
    assert orjson.loads(retried.body) == {"data": {}}
    # An expired lease (a sender that died) makes it due again.
    [again] = await store.claim_callbacks(5, lease_s=30, now=T0 + 41)
    assert again.id == retried.id and again.attempts == 3
    await store.callback_delivered(again.id, now=T0 + 42)
    assert await store.claim_callbacks(5, lease_s=30, now=T0 + 1000) == []


async def test_callback_claims_leave_each_workspace_its_own_slots(
    store: Store, ws: Workspace
) -> None:
    other = await store.ensure_workspace("other")
    hog = await store.deploy_stub(ws.id, "q", {"callback_url": "http://cb/"}, b"x")
    calm = await store.deploy_stub(other.id, "q", {"callback_url": "http://cb/"}, b"x")
    # The hog's five callbacks are due first, the other workspace's one last.
    await store.cancel(ws.id, await store.enqueue(hog, [NewTask("{}")] * 5, 10, now=T0), now=T0)
    await store.cancel(
        other.id, await store.enqueue(calm, [NewTask("{}")], 10, now=T0 + 1), now=T0 + 1
    )
    first = await store.claim_callbacks(10, lease_s=30, now=T0 + 2, per_workspace=2)
    assert sorted(c.workspace_id for c in first) == sorted([ws.id, ws.id, other.id])
    # The hog's two leases hold its slots, whoever claimed them.
    assert await store.claim_callbacks(10, lease_s=30, now=T0 + 3, per_workspace=2) == []
    await store.callback_delivered(first[0].id if first[0].workspace_id == ws.id
                                   else first[1].id, now=T0 + 4)
    [next_one] = await store.claim_callbacks(10, lease_s=30, now=T0 + 4, per_workspace=2)
    assert next_one.workspace_id == ws.id
    # Expired leases free their slots.
    later = await store.claim_callbacks(10, lease_s=30, now=T0 + 40, per_workspace=2)
    assert sorted(c.workspace_id for c in later) == sorted([ws.id, ws.id, other.id])


async def collect(sub: object, count: int) -> list[Event]:
    events: list[Event] = []
    while len(events) < count:
        event = await sub.get(timeout=5)  # type: ignore[attr-defined]
        assert event is not None, f"only {len(events)} of {count} events arrived: {events}"
        events.append(event)
    return events


async def test_events_reach_subscribers_of_other_store_objects(
    store: Store, stub: Stub, open_more: object
) -> None:
    watcher = await open_more()  # type: ignore[operator]
    sub = watcher.subscribe()
    [task_id] = await store.enqueue(stub, [NewTask("{}")], 10)
    [task] = await store.claim(stub.id, "c", 1, 30)
    await store.finish([Outcome(task_id, task.fence, S.COMPLETE, result="1")])
    await store.request_warmup(stub.id)
    events = await collect(sub, 4)
    assert [e.kind for e in events] == ["enqueued", "task", "task", "warmup"]
    assert [e.status for e in events[1:3]] == [S.RUNNING, S.COMPLETE]
    assert {e.stub_id for e in events} == {stub.id}
    assert events[1].task_id == task_id and events[1].container_id == "c"
    sub.close()
    second = watcher.subscribe()
    await store.request_warmup(stub.id)
    assert (await collect(second, 1))[0].kind == "warmup"
    assert await sub.get(timeout=0.2) is None
