"""Beam's ``/api/v1`` dialect in process (DESIGN A12): the shapes Beam's gateway serializes,
paging, filters, cancel, the subscribe stream, and the caller's workspace only. The real
clients run against a real server in tests/beam/."""

from __future__ import annotations

import asyncio
import base64
import pickle
from typing import Any

import httpx
import orjson
import pytest

from conveyor.queue_config import QueueConfig
from conveyor.server.gateway.beam_views import result_json
from conveyor.server.store.base import Store
from conveyor.tasks import TaskStatus
from tests.gateway.conftest import BASE, Tenant, code_bundle, deploy, finish, start
from tests.gateway.test_streams_and_outputs import status_events
from tests.gateway.test_tasks import ISO

#: Any workspace id in a path: the token decides.
ANY = "whatever-workspace"
TASK_FIELDS = {
    "id", "external_id", "status", "failure_reason", "container_id", "started_at", "ended_at",
    "created_at", "updated_at", "deployment", "outputs", "stats", "result", "workspace", "stub",
}
DEPLOYMENT_FIELDS = {
    "id", "external_id", "name", "active", "stub_type", "version", "created_at", "updated_at",
    "stub_id", "workspace_id", "workspace", "stub", "url",
}


async def _put(http: httpx.AsyncClient, tenant: Tenant, queue: str = "resize") -> str:
    response = await http.post(f"/taskqueue/{queue}", json={}, headers=tenant.auth)
    assert response.status_code == 200, response.text
    task_id: str = response.json()["task_id"]
    return task_id


async def _get(http: httpx.AsyncClient, tenant: Tenant, path: str) -> Any:
    response = await http.get(path, headers=tenant.auth)
    assert response.status_code == 200, response.text
    return response.json()


async def test_current_workspace(http: httpx.AsyncClient, alice: Tenant) -> None:
    workspace = await _get(http, alice, "/api/v1/workspace/current")
    assert workspace["external_id"] == workspace["id"] == alice.workspace.id
    assert workspace["name"] == "alice" and ISO.match(workspace["created_at"])
    assert (await http.get("/api/v1/workspace/current")).status_code == 401


async def test_a_failed_task_in_beams_words(
    http: httpx.AsyncClient, store: Store, alice: Tenant
) -> None:
    stub = await deploy(store, alice, "resize")
    task_id = await _put(http, alice)
    pending = await _get(http, alice, f"/api/v1/task/{ANY}/{task_id}")
    assert set(pending) == TASK_FIELDS
    assert pending["status"] == "PENDING" and pending["started_at"] is None
    error = '{"type": "ValueError", "message": "boom", "traceback": ""}'
    await finish(store, await start(store, stub), TaskStatus.FAILED, error=error)
    task = await _get(http, alice, f"/api/v1/task/{alice.workspace.id}/{task_id}")
    assert task["id"] == task["external_id"] == task_id
    assert task["status"] == "ERROR" and task["failure_reason"] == "ValueError: boom"
    assert task["deployment"] == {"id": stub.id, "name": "resize", "version": 1}
    assert task["stub"]["external_id"] == stub.id and task["stub"]["type"] == stub.type
    assert task["workspace"]["external_id"] == alice.workspace.id
    assert all(ISO.match(task[name]) for name in ("created_at", "started_at", "ended_at"))


def test_results_are_sent_as_the_clients_decode_them() -> None:
    assert result_json({"x": 1}) == {"x": 1} and result_json(None) is None
    assert result_json({"base64": ""}) == {"base64": ""}  # falsy: the client keeps it as is

    def unpickled(value: Any) -> Any:
        return pickle.loads(base64.b64decode(result_json(value)["base64"]))

    assert unpickled({"base64": base64.b64encode(b"\x00raw").decode()}) == b"\x00raw"
    both = {"base64": "not bytes", "name": "x"}
    assert unpickled(both) == both
    assert unpickled({"base64": "?!"}) == {"base64": "?!"}


async def test_another_workspace_sees_nothing(
    http: httpx.AsyncClient, store: Store, alice: Tenant, bob: Tenant
) -> None:
    stub = await deploy(store, alice, "resize")
    task_id = await _put(http, alice)
    for path in (f"/api/v1/task/{alice.workspace.id}/{task_id}",
                 f"/api/v1/task/{alice.workspace.id}/{task_id}/subscribe",
                 f"/api/v1/deployment/{alice.workspace.id}/{stub.id}",
                 f"/api/v1/deployment/{stub.id}/url", f"/api/v1/stub/{stub.id}/url"):
        answer = await http.get(path, headers=bob.auth)
        assert answer.status_code == 404, path
        assert set(answer.json()) == {"error"} and "url" not in answer.json()
    listed = await _get(http, bob, f"/api/v1/task/{alice.workspace.id}")
    deployments = await _get(http, bob, f"/api/v1/deployment/{alice.workspace.id}")
    assert listed == deployments == {"data": [], "next": ""}
    cancel = await http.request("DELETE", f"/api/v1/task/{alice.workspace.id}",
                                json={"ids": [task_id]}, headers=bob.auth)
    assert cancel.status_code == 200 and cancel.json() == {}
    assert (await store.get_task(task_id)).task.status == TaskStatus.PENDING  # type: ignore[union-attr]


async def test_task_pages_follow_the_cursor(
    http: httpx.AsyncClient, store: Store, alice: Tenant
) -> None:
    await deploy(store, alice, "resize")
    ids = [await _put(http, alice) for _ in range(12)]
    first = await _get(http, alice, f"/api/v1/task/{ANY}")
    assert [t["id"] for t in first["data"]] == ids[::-1][:10] and first["next"]
    rest = await _get(http, alice, f"/api/v1/task/{ANY}?limit=0&cursor={first['next']}")
    assert [t["id"] for t in rest["data"]] == ids[1::-1] and rest["next"] == ""
    two = await _get(http, alice, f"/api/v1/task/{ANY}?limit=2&stub_names=resize&status=PENDING")
    assert len(two["data"]) == 2 and two["next"]


async def test_task_filters(http: httpx.AsyncClient, store: Store, alice: Tenant) -> None:
    stub = await deploy(store, alice, "resize")
    other = await deploy(store, alice, "crop")
    failed = await _put(http, alice)
    await finish(store, await start(store, stub), TaskStatus.FAILED, error='{"type": "E"}')
    cropped = await _put(http, alice, "crop")
    errors = await _get(http, alice, f"/api/v1/task/{ANY}?status=ERROR")
    assert [t["id"] for t in errors["data"]] == [failed]
    by_stub = await _get(http, alice, f"/api/v1/task/{ANY}?stub_ids={other.id}")
    assert [t["id"] for t in by_stub["data"]] == [cropped]
    later = await _get(http, alice, f"/api/v1/task/{ANY}?created_at_start=2999-01-01T00:00:00Z")
    assert later["data"] == []


@pytest.mark.parametrize(("listing", "query", "says"), [
    ("task", "task_ids=a,b", "cannot filter by task_ids"),
    ("task", "stub_types=taskqueue/deployment&offset=3", "cannot filter by stub_types, offset"),
    ("task", "stub_ids=a,b", "one value at a time"),
    ("task", "status=DONE", "unknown status"),
    ("task", "limit=1001", "limit"),
    ("task", "cursor=nope", "invalid cursor"),
    ("task", "created_at_end=yesterday", "created_at_end must be an ISO 8601"),
    ("deployment", "subdomain=x", "cannot filter by subdomain"),
    ("deployment", "active=maybe", "active must be true or false"),
    ("deployment", "pagination=2", "pagination must be true or false"),
    ("deployment", "version=-1", "version must be a whole number"),
    ("deployment", "limit=x", "limit"),
    ("deployment", "cursor=bm9wZQ", "invalid cursor"),
    ("deployment", "created_at_start=soon", "created_at_start must be an ISO 8601"),
])
async def test_bad_list_queries_are_400s(
    http: httpx.AsyncClient, alice: Tenant, listing: str, query: str, says: str
) -> None:
    answer = await http.get(f"/api/v1/{listing}/{ANY}?{query}", headers=alice.auth)
    assert answer.status_code == 400 and says in answer.json()["error"]


async def test_cancel_by_body_or_query(
    http: httpx.AsyncClient, store: Store, alice: Tenant
) -> None:
    await deploy(store, alice, "resize")
    by_ids, by_task_ids, by_query, kept = [await _put(http, alice) for _ in range(4)]
    for path, body in ((f"/api/v1/task/{ANY}", {"ids": [by_ids]}),
                       (f"/api/v1/task/{ANY}", {"task_ids": [by_task_ids, "nonsense"]}),
                       (f"/api/v1/task/{ANY}?task_ids={by_query}", None)):
        answer = await http.request("DELETE", path, json=body, headers=alice.auth)
        assert answer.status_code == 200 and answer.json() == {}
    for task_id, status in ((by_ids, "CANCELLED"), (by_task_ids, "CANCELLED"),
                            (by_query, "CANCELLED"), (kept, "PENDING")):
        assert (await _get(http, alice, f"/api/v1/task/{ANY}/{task_id}"))["status"] == status
    for body in (None, {"ids": "x"}, {"ids": ["x"] * 1001}):
        answer = await http.request("DELETE", f"/api/v1/task/{ANY}", json=body,
                                    headers=alice.auth)
        assert answer.status_code == 400, body


async def test_subscribe_streams_the_dialect(
    http: httpx.AsyncClient, store: Store, alice: Tenant
) -> None:
    stub = await deploy(store, alice, "resize")
    task_id = await _put(http, alice)
    stream = asyncio.create_task(
        http.get(f"/api/v1/task/{ANY}/{task_id}/subscribe", headers=alice.auth))
    await asyncio.sleep(0.3)
    record = await start(store, stub)
    await asyncio.sleep(0.3)
    await finish(store, record, TaskStatus.FAILED, error='{"type": "KeyError"}')
    response = await asyncio.wait_for(stream, 5)
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    events = status_events(response.text)
    assert [e["status"] for e in events] == ["PENDING", "RUNNING", "ERROR"]
    assert all(set(e) == TASK_FIELDS for e in events)
    assert events[-1]["failure_reason"] == "KeyError"


async def test_deployments_are_stubs(http: httpx.AsyncClient, store: Store, alice: Tenant) -> None:
    v1 = await deploy(store, alice, "resize")
    v2 = await deploy(store, alice, "resize", authorized=False)
    crop = await deploy(store, alice, "crop")
    listed = await _get(http, alice, f"/api/v1/deployment/{ANY}")
    assert [d["id"] for d in listed["data"]] == [crop.id, v2.id, v1.id] and listed["next"] == ""
    one = await _get(http, alice, f"/api/v1/deployment/{ANY}/{v2.id}")
    assert one == listed["data"][1] and set(one) == DEPLOYMENT_FIELDS
    assert one["stub_type"] == "taskqueue/deployment" and one["version"] == 2
    assert one["active"] is True and one["stub"]["external_id"] == v2.id
    assert one["url"] == f"{BASE}/taskqueue/resize/v2"
    assert orjson.loads(one["stub"]["config"])["authorized"] is False
    for route in (f"/api/v1/deployment/{v2.id}/url", f"/api/v1/stub/{v2.id}/url"):
        assert await _get(http, alice, route) == {"url": f"{BASE}/taskqueue/resize/v2"}
    enqueued = await http.post(one["url"], json={"x": 1}, headers=alice.auth)
    assert enqueued.status_code == 200 and "task_id" in enqueued.json()


@pytest.mark.parametrize(("query", "names"), [
    ("name=res", ["resize", "resize"]),
    ("name=resize&version=1", ["resize"]),
    ("stub_type=taskqueue/deployment,taskqueue/serve&active=true", ["crop", "resize", "resize"]),
    ("stub_type=taskqueue/serve", []),
    ("active=false", []),
    ("created_at_end=2000-01-01T00:00:00Z", []),
])
async def test_deployment_filters(
    http: httpx.AsyncClient, store: Store, alice: Tenant, query: str, names: list[str]
) -> None:
    for name in ("resize", "resize", "crop"):
        await deploy(store, alice, name)
    listed = await _get(http, alice, f"/api/v1/deployment/{ANY}?{query}")
    assert [d["name"] for d in listed["data"]] == names


async def test_deployment_pages(http: httpx.AsyncClient, store: Store, alice: Tenant) -> None:
    stubs = [await deploy(store, alice, "resize") for _ in range(12)]
    newest = [stub.id for stub in stubs[::-1]]
    first = await _get(http, alice, f"/api/v1/deployment/{ANY}?pagination=true")
    assert [d["id"] for d in first["data"]] == newest[:10] and first["next"]
    rest = await _get(http, alice, f"/api/v1/deployment/{ANY}?pagination=true"
                                   f"&cursor={first['next']}")
    assert [d["id"] for d in rest["data"]] == newest[10:] and rest["next"] == ""
    five = await _get(http, alice, f"/api/v1/deployment/{ANY}?limit=5")
    assert len(five["data"]) == 5


async def test_a_served_stub_is_reached_by_id(
    http: httpx.AsyncClient, store: Store, alice: Tenant
) -> None:
    config = QueueConfig.from_dict({"name": "live", "handler": "app.py:handler"}).to_dict()
    stub = await store.upsert_serve_stub(alice.workspace.id, "live", config, code_bundle())
    url = f"{BASE}/taskqueue/id/{stub.id}"
    assert await _get(http, alice, f"/api/v1/stub/{stub.id}/url") == {"url": url}
    deployment = await _get(http, alice, f"/api/v1/deployment/{ANY}/{stub.id}")
    assert deployment["stub_type"] == "taskqueue/serve" and deployment["url"] == url
