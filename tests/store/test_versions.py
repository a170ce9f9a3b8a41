"""Versions (DESIGN A11): stop, start, delete, the route to the latest active version; and
replays (A10). Both stores, and a second store object on the same database as another process."""

from __future__ import annotations

import orjson
import pytest

from conveyor.errors import (
    InvalidTransition,
    NotFound,
    PendingLimitExceeded,
    StaleRoute,
    VersionBusy,
    VersionStopped,
)
from conveyor.server.store.base import Store
from conveyor.server.store.records import NewTask, Outcome, Stub, TaskFilter, Workspace
from conveyor.tasks import TaskStatus

from .conftest import CONFIG, T0, OpenStore

S = TaskStatus


def task(n: int) -> NewTask:
    return NewTask(orjson.dumps({"args": [n], "kwargs": {}}).decode())


async def finish(store: Store, stub: Stub, status: S = S.FAILED, n: int = 1) -> list[str]:
    """``n`` tasks of ``stub`` run and ended with ``status``."""
    ids = await store.enqueue(stub, [task(i) for i in range(n)], 100, now=T0)
    claimed = await store.claim(stub.id, "c", n, 30, now=T0 + 1)
    outcome = {"result": "1"} if status is S.COMPLETE else {"error": '{"type": "E"}'}
    await store.finish([Outcome(t.id, t.fence, status, **outcome) for t in claimed], now=T0 + 2)
    return ids


async def test_a_stopped_version_takes_no_task_on_any_path(
    store: Store, ws: Workspace, stub: Stub
) -> None:
    assert stub.active
    stopped = await store.set_stub_active(ws.id, stub.id, False)
    assert not stopped.active and stopped.updated_at > stub.updated_at
    assert (await store.get_stub(stub.id)).active is False  # type: ignore[union-attr]
    for given in (stub, stopped):  # an old record and the current one alike
        with pytest.raises(VersionStopped, match="version v1 of q is stopped"):
            await store.enqueue(given, [task(1)], 10)
        with pytest.raises(VersionStopped):  # a batch: the transaction path on PostgreSQL
            await store.enqueue(given, [task(1), task(2)], 10)
    again = await store.set_stub_active(ws.id, stub.id, True)
    assert again.active and again.updated_at > stopped.updated_at
    assert len(await store.enqueue(again, [task(1)], 10)) == 1
    # Stopping a stopped version (or starting a started one) changes nothing.
    assert (await store.set_stub_active(ws.id, stub.id, True)) == again


async def test_stop_and_start_are_scoped_to_the_workspace(
    store: Store, ws: Workspace, stub: Stub
) -> None:
    other = await store.ensure_workspace("other")
    for bad in (stub.id, "not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        with pytest.raises(NotFound):
            await store.set_stub_active(other.id, bad, False)
        with pytest.raises(NotFound):
            await store.delete_stub(other.id, bad)
    assert (await store.get_stub(stub.id)).active  # type: ignore[union-attr]


async def test_the_route_goes_to_the_latest_active_version(store: Store, ws: Workspace) -> None:
    v1 = await store.deploy_stub(ws.id, "q", CONFIG, b"1")
    v2 = await store.deploy_stub(ws.id, "q", CONFIG, b"2")
    assert (await store.resolve_stub(ws.id, "q")).id == v2.id  # type: ignore[union-attr]
    await store.set_stub_active(ws.id, v2.id, False)
    assert (await store.resolve_stub(ws.id, "q")).id == v1.id  # type: ignore[union-attr]
    # A version asked for by number is that one, stopped or not.
    assert (await store.resolve_stub(ws.id, "q", 2)).id == v2.id  # type: ignore[union-attr]
    await store.set_stub_active(ws.id, v1.id, False)
    # Every version stopped: the route names the latest, whose enqueue says it is stopped.
    latest = await store.resolve_stub(ws.id, "q")
    assert latest is not None and latest.id == v2.id
    with pytest.raises(VersionStopped, match="v2 of q"):
        await store.enqueue(latest, [task(1)], 10)
    summary = (await store.queue_summaries(ws.id, "q"))[0]
    assert [(v.version, v.active) for v in summary.versions] == [(1, False), (2, False)]


async def test_a_kept_route_is_refused_after_a_stop_in_another_process(
    open_more: OpenStore, ws: Workspace
) -> None:
    gateway, other = await open_more(), await open_more()
    v1 = await gateway.deploy_stub(ws.id, "q", CONFIG, b"1")
    v2 = await gateway.deploy_stub(ws.id, "q", CONFIG, b"2")
    kept = await gateway.resolve_stub(ws.id, "q", cached=True)
    assert kept is not None and kept.id == v2.id
    await other.set_stub_active(ws.id, v2.id, False)  # the gateway's look-up is now stale
    with pytest.raises(StaleRoute):
        await gateway.enqueue(kept, [task(1)], 10)
    routed = await gateway.resolve_stub(ws.id, "q", cached=True)
    assert routed is not None and routed.id == v1.id
    [task_id] = await gateway.enqueue(routed, [task(1)], 10)
    assert (await gateway.get_task(task_id)).stub.id == v1.id  # type: ignore[union-attr]
    # Started again elsewhere: the route kept on v1 is stale, and goes back to v2.
    await other.set_stub_active(ws.id, v2.id, True)
    with pytest.raises(StaleRoute):
        await gateway.enqueue(routed, [task(1)], 10)
    assert (await gateway.resolve_stub(ws.id, "q", cached=True)).id == v2.id  # type: ignore[union-attr]


async def test_a_stop_in_this_process_forgets_the_kept_route(
    store: Store, ws: Workspace
) -> None:
    v1 = await store.deploy_stub(ws.id, "q", CONFIG, b"1")
    v2 = await store.deploy_stub(ws.id, "q", CONFIG, b"2")
    assert (await store.resolve_stub(ws.id, "q", cached=True)).id == v2.id  # type: ignore[union-attr]
    await store.set_stub_active(ws.id, v2.id, False)
    assert (await store.resolve_stub(ws.id, "q", cached=True)).id == v1.id  # type: ignore[union-attr]


async def test_delete_is_refused_while_tasks_are_unfinished(
    store: Store, ws: Workspace, stub: Stub
) -> None:
    [waiting] = await store.enqueue(stub, [task(1)], 10, now=T0)
    with pytest.raises(VersionBusy, match="1 unfinished"):
        await store.delete_stub(ws.id, stub.id)
    assert (await store.get_stub(stub.id)).active  # type: ignore[union-attr]  # unchanged
    [running] = await store.claim(stub.id, "c", 1, 30, now=T0)
    with pytest.raises(VersionBusy):
        await store.delete_stub(ws.id, stub.id)
    await store.finish([Outcome(running.id, running.fence, S.COMPLETE, result="1",
                                outputs=[("a.txt", b"a")])], now=T0 + 1)
    view = await store.get_task(waiting, ws.id)
    assert view is not None and view.outputs
    kept = await store.deploy_stub(ws.id, "q", CONFIG, b"def q(): pass\n")  # same code object
    assert await store.delete_stub(ws.id, stub.id) == 1
    assert await store.get_stub(stub.id) is None
    assert await store.get_task(waiting) is None
    assert await store.get_output(view.outputs[0].id) is None
    with pytest.raises(NotFound):
        await store.delete_stub(ws.id, stub.id)
    # The code object the next version shares is kept.
    assert await store.get_object(kept.object_id) == b"def q(): pass\n"
    assert (await store.resolve_stub(ws.id, "q")).id == kept.id  # type: ignore[union-attr]


async def test_delete_removes_every_finished_task_in_batches(
    store: Store, ws: Workspace, stub: Stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conveyor.server.store import versions

    monkeypatch.setattr(versions, "PRUNE_BATCH", 3)
    ids = await finish(store, stub, S.COMPLETE, n=8)
    other = await store.deploy_stub(ws.id, "other", CONFIG, b"other")
    [kept] = await finish(store, other)
    assert await store.delete_stub(ws.id, stub.id) == 8
    assert all([await store.get_task(i) is None for i in ids])
    assert await store.get_task(kept) is not None
    # Its code object, used by no other stub, went with it.
    with pytest.raises(NotFound):
        await store.get_object(stub.object_id)


async def test_replay_enqueues_the_same_input_on_the_same_version(
    store: Store, ws: Workspace, stub: Stub
) -> None:
    failed, complete = await finish(store, stub, n=2)
    await store.deploy_stub(ws.id, "q", CONFIG, b"v2")
    new = await store.replay(ws.id, [failed, complete.upper(), failed])  # duplicates once
    assert len(new) == 2 and not {failed, complete} & set(new)
    for original, again in zip((failed, complete), new, strict=True):
        before, after = await store.get_task(original), await store.get_task(again, ws.id)
        assert before is not None and after is not None
        assert after.task.status is S.PENDING and after.task.replay_of == original
        assert after.task.payload == before.task.payload and after.stub.id == stub.id
    assert (await store.get_task(failed)).task.replay_of is None  # type: ignore[union-attr]


async def test_replay_on_the_latest_active_version(store: Store, ws: Workspace, stub: Stub) -> None:
    [failed] = await finish(store, stub)
    v2 = await store.deploy_stub(ws.id, "q", CONFIG, b"v2")
    v3 = await store.deploy_stub(ws.id, "q", CONFIG, b"v3")
    await store.set_stub_active(ws.id, v3.id, False)
    [again] = await store.replay(ws.id, [failed], latest=True)
    assert (await store.get_task(again)).stub.id == v2.id  # type: ignore[union-attr]


async def test_replay_is_all_or_nothing(store: Store, ws: Workspace) -> None:
    stub = await store.deploy_stub(ws.id, "q", {**CONFIG, "max_pending_tasks": 2}, b"x")
    done = await finish(store, stub, n=2)
    [waiting] = await store.enqueue(stub, [task(9)], 10)
    other = await store.ensure_workspace("other")
    with pytest.raises(InvalidTransition, match="only a finished task"):
        await store.replay(ws.id, [done[0], waiting])
    with pytest.raises(NotFound):
        await store.replay(other.id, [done[0]])
    with pytest.raises(NotFound):
        await store.replay(ws.id, [done[0], "nope"])
    with pytest.raises(PendingLimitExceeded):  # 1 in flight + 2 > 2
        await store.replay(ws.id, done)
    await store.set_stub_active(ws.id, stub.id, False)
    with pytest.raises(VersionStopped):
        await store.replay(ws.id, done[:1])
    page, _ = await store.list_tasks(ws.id, TaskFilter())
    assert len(page) == 3  # nothing was enqueued by the refused calls


async def test_a_serve_stub_registered_again_is_started(store: Store, ws: Workspace) -> None:
    served = await store.upsert_serve_stub(ws.id, "s", CONFIG, b"x")
    await store.set_stub_active(ws.id, served.id, False)
    again = await store.upsert_serve_stub(ws.id, "s", CONFIG, b"x")
    assert again.id == served.id and again.active
