"""Replays (DESIGN A10): by id and by filter, on the same version or the latest, linked by
``replay_of``; bounded, all or nothing, and scoped to the caller's workspace."""

from __future__ import annotations

import httpx
import orjson
import pytest

from conveyor.server.gateway import answers
from conveyor.server.store.base import Store
from conveyor.tasks import TaskStatus
from tests.gateway.conftest import Tenant, deploy, finish, start

S = TaskStatus


async def ended(
    http: httpx.AsyncClient, store: Store, tenant: Tenant, status: S, n: int = 1,
    queue: str = "resize",
) -> list[str]:
    """``n`` tasks enqueued on ``queue`` and ended with ``status``."""
    stub = await store.resolve_stub(tenant.workspace.id, queue)
    assert stub is not None
    ids = []
    for i in range(n):
        answer = await http.post(f"/taskqueue/{queue}", json={"i": i}, headers=tenant.auth)
        ids.append(answer.json()["task_id"])
        fields = {"result": "1"} if status is S.COMPLETE else {"error": '{"type": "E"}'}
        await finish(store, await start(store, stub), status, **fields)
    return ids


async def test_replay_by_id_makes_a_new_task_with_the_same_input(
    http: httpx.AsyncClient, store: Store, alice: Tenant
) -> None:
    v1 = await deploy(store, alice, "resize")
    [failed] = await ended(http, store, alice, S.FAILED)
    v2 = await deploy(store, alice, "resize")
    answer = await http.post(f"/v2/task/{failed}/replay", headers=alice.auth)
    assert answer.status_code == 200, answer.text
    [again] = answer.json()["task_ids"]
    task = (await http.get(f"/v2/task/{again}/", headers=alice.auth)).json()
    assert task["replay_of"] == failed and task["status"] == "PENDING"
    assert task["stub"]["id"] == v1.id  # its own version, not the latest
    original = (await http.get(f"/v2/task/{failed}/", headers=alice.auth)).json()
    assert original["replay_of"] is None
    inputs = [(await http.get(f"/v2/task/{i}/input", headers=alice.auth)).json()
              for i in (failed, again)]
    assert inputs[0] == inputs[1] == {"args": [], "kwargs": {"i": 0}}
    latest = await http.post(f"/v2/task/{failed}/replay?version=latest", headers=alice.auth)
    view = await store.get_task(latest.json()["task_ids"][0])
    assert view is not None and view.stub.id == v2.id and view.task.replay_of == failed
    bad = await http.post(f"/v2/task/{failed}/replay?version=v1", headers=alice.auth)
    assert bad.status_code == 400


async def test_replay_refuses_what_it_cannot_run(
    http: httpx.AsyncClient, store: Store, alice: Tenant, bob: Tenant
) -> None:
    stub = await deploy(store, alice, "resize", max_pending_tasks=1)
    [done] = await ended(http, store, alice, S.COMPLETE)
    waiting = (await http.post("/taskqueue/resize", headers=alice.auth)).json()["task_id"]
    for task_id, code in ((waiting, 409), ("nope", 404), ("00000000-0000-0000-0000-0000000"
                                                           "00000", 404)):
        answer = await http.post(f"/v2/task/{task_id}/replay", headers=alice.auth)
        assert answer.status_code == code, (task_id, answer.text)
    assert (await http.post(f"/v2/task/{done}/replay", headers=bob.auth)).status_code == 404
    full = await http.post(f"/v2/task/{done}/replay", headers=alice.auth)  # 1 pending of 1
    assert full.status_code == 429 and "Retry-After" in full.headers
    await http.post("/v2/task/cancel/", json={"task_ids": [waiting]}, headers=alice.auth)
    await http.post(f"/v2/deployment/{stub.id}/stop", headers=alice.auth)
    stopped = await http.post(f"/v2/task/{done}/replay", headers=alice.auth)
    assert stopped.status_code == 409 and "stopped" in stopped.json()["error"]
    # Nothing was made by the refused calls: the two tasks of the test, and no third.
    listed = (await http.get("/v2/task/", headers=alice.auth)).json()["data"]
    assert len(listed) == 2


async def test_replay_by_filter(http: httpx.AsyncClient, store: Store, alice: Tenant) -> None:
    await deploy(store, alice, "resize")
    await deploy(store, alice, "other")
    failed = await ended(http, store, alice, S.FAILED, n=2)
    await ended(http, store, alice, S.COMPLETE)
    await ended(http, store, alice, S.FAILED, queue="other")
    body = {"status": "FAILED", "queue": "resize", "created_after": "2000-01-01T00:00:00Z"}
    answer = await http.post("/v2/task/replay/", json=body, headers=alice.auth)
    assert answer.status_code == 200, answer.text
    made = answer.json()["task_ids"]
    replayed = [(await store.get_task(i)).task.replay_of for i in made]  # type: ignore[union-attr]
    assert replayed == failed  # oldest first, as they were enqueued
    by_ids = await http.post("/v2/task/replay", json={"task_ids": failed}, headers=alice.auth)
    assert len(by_ids.json()["task_ids"]) == 2
    # ERROR is FAILED's synonym; a list of statuses; nothing matched is no error.
    synonyms = await http.post("/v2/task/replay/", json={"status": ["ERROR"], "queue": "other"},
                               headers=alice.auth)
    assert len(synonyms.json()["task_ids"]) == 1
    none = await http.post("/v2/task/replay/", json={"status": "TIMEOUT"}, headers=alice.auth)
    assert none.json() == {"task_ids": []}


@pytest.mark.parametrize("body", [
    {}, {"task_ids": "x"}, {"task_ids": [1]}, {"task_ids": ["x"], "queue": "resize"},
    {"stauts": "FAILED"}, {"status": "RUNNING"}, {"status": "NOPE"}, {"queue": 3},
    {"created_after": "yesterday"}, {"status": ["FAILED", 2]}, [], "x",
])
async def test_bad_replay_bodies_are_400(
    http: httpx.AsyncClient, store: Store, alice: Tenant, body: object
) -> None:
    await deploy(store, alice, "resize")
    answer = await http.post("/v2/task/replay/", content=orjson.dumps(body), headers=alice.auth)
    assert answer.status_code == 400, answer.text
    assert set(answer.json()) == {"error"}


async def test_a_replay_is_bounded(
    http: httpx.AsyncClient, store: Store, alice: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    await deploy(store, alice, "resize")
    ids = await ended(http, store, alice, S.FAILED, n=3)
    too_many = await http.post("/v2/task/replay/", json={"task_ids": ["x"] * 1001},
                               headers=alice.auth)
    assert too_many.status_code == 400 and "at most 1000" in too_many.json()["error"]
    monkeypatch.setattr(answers, "MAX_LIMIT", 2)
    wide = await http.post("/v2/task/replay/", json={"status": "FAILED"}, headers=alice.auth)
    assert wide.status_code == 400 and "more than 2" in wide.json()["error"]
    listed = (await http.get("/v2/task/", headers=alice.auth)).json()["data"]
    assert {t["id"] for t in listed} == set(ids)
