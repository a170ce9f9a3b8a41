"""Task routes: the exact status JSON, listing with filters, cancel, workspace isolation."""

from __future__ import annotations

import re

import httpx
import orjson
import pytest

from conveyor.server.store.base import Store
from conveyor.tasks import TaskStatus
from tests.gateway.conftest import Tenant, deploy, finish, start

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
#: The seed table's fields and types, plus DESIGN A4's, A8's and A10's additions.
FIELDS = {
    "id": str, "status": str, "created_at": str, "started_at": (str, type(None)),
    "ended_at": (str, type(None)), "updated_at": str, "container_id": str, "outputs": list,
    "stats": dict, "stub": dict, "deployment": dict, "result": object,
    "error": (dict, type(None)), "attempts": int, "duration_s": (float, type(None)),
    "run_at": (str, type(None)),
    "replay_of": (str, type(None)),
}
STUB_FIELDS = {
    "id": str, "name": str, "type": str, "config": str, "config_version": int,
    "object_id": int, "created_at": str, "updated_at": str,
}


async def enqueue(
    http: httpx.AsyncClient, tenant: Tenant, queue: str = "resize", **body: object
) -> str:
    response = await http.post(f"/taskqueue/{queue}", json=body, headers=tenant.auth)
    assert response.status_code == 200, response.text
    task_id: str = response.json()["task_id"]
    return task_id


def assert_shape(task: dict[str, object]) -> None:
    assert set(task) == set(FIELDS)
    for name, kind in FIELDS.items():
        assert isinstance(task[name], kind), name
    stub = task["stub"]
    assert isinstance(stub, dict) and set(stub) == set(STUB_FIELDS)
    for name, kind in STUB_FIELDS.items():
        assert isinstance(stub[name], kind), name
    assert isinstance(orjson.loads(stub["config"]), dict)
    assert set(task["stats"]) == {"active_containers", "queue_depth"}  # type: ignore[arg-type]
    for name in ("created_at", "updated_at"):
        assert ISO.match(task[name]), name  # type: ignore[arg-type]


async def test_pending_task_json(http: httpx.AsyncClient, store: Store, alice: Tenant) -> None:
    stub = await deploy(store, alice, "resize")
    task_id = await enqueue(http, alice, x=1)
    for path in (f"/v2/task/{task_id}/", f"/v2/task/{task_id}"):
        response = await http.get(path, headers=alice.auth)
        assert response.status_code == 200
        task = response.json()
        assert_shape(task)
        assert task["id"] == task_id
        assert task["status"] == "PENDING"
        assert task["started_at"] is None and task["ended_at"] is None
        assert task["container_id"] == ""
        assert task["outputs"] == []
        assert task["stats"] == {"active_containers": 0, "queue_depth": 1}
        assert task["stub"]["id"] == stub.id and task["stub"]["type"] == "taskqueue/deployment"
        assert task["deployment"] == {"name": "resize", "version": 1}
        assert task["result"] is None and task["error"] is None and task["attempts"] == 0


async def test_complete_task_json(http: httpx.AsyncClient, store: Store, alice: Tenant) -> None:
    stub = await deploy(store, alice, "resize")
    task_id = await enqueue(http, alice)
    record = await start(store, stub, "taskqueue-abc-12345678")
    running = (await http.get(f"/v2/task/{task_id}", headers=alice.auth)).json()
    assert running["status"] == "RUNNING"
    assert running["container_id"] == "taskqueue-abc-12345678"
    assert running["attempts"] == 1 and ISO.match(running["started_at"])
    await finish(store, record, result='{"width": 100}', outputs=[("result.txt", b"hello")])
    task = (await http.get(f"/v2/task/{task_id}/", headers=alice.auth)).json()
    assert_shape(task)
    assert task["status"] == "COMPLETE"
    assert task["result"] == {"width": 100}
    assert task["created_at"] <= task["started_at"] <= task["ended_at"]
    (output,) = task["outputs"]
    assert output["name"] == "result.txt" and output["expires_in"] == 3600
    assert output["url"].startswith("http://gateway.test/v2/output/")
    assert "expires=" in output["url"] and "signature=" in output["url"]


async def test_failed_task_json_has_error_object(
    http: httpx.AsyncClient, store: Store, alice: Tenant
) -> None:
    stub = await deploy(store, alice, "resize", max_retries=0)
    task_id = await enqueue(http, alice)
    record = await start(store, stub)
    error = {"type": "ValueError", "message": "bad width", "traceback": "Traceback ..."}
    await finish(store, record, TaskStatus.FAILED, error=orjson.dumps(error).decode())
    task = (await http.get(f"/v2/task/{task_id}", headers=alice.auth)).json()
    assert task["status"] == "FAILED"
    assert task["error"] == error
    assert task["result"] is None


@pytest.mark.parametrize("task_id", ["00000000-0000-0000-0000-000000000000", "garbage", "%00"])
async def test_unknown_or_malformed_id_is_404(
    http: httpx.AsyncClient, alice: Tenant, task_id: str
) -> None:
    response = await http.get(f"/v2/task/{task_id}/", headers=alice.auth)
    assert response.status_code == 404
    assert set(response.json()) == {"error"}


async def test_foreign_task_is_404_everywhere(
    http: httpx.AsyncClient, store: Store, alice: Tenant, bob: Tenant
) -> None:
    await deploy(store, alice, "resize")
    task_id = await enqueue(http, alice)
    assert (await http.get(f"/v2/task/{task_id}/", headers=bob.auth)).status_code == 404
    subscribe = await http.get(f"/v2/task/{task_id}/subscribe", headers=bob.auth)
    assert subscribe.status_code == 404
    listed = (await http.get("/v2/task/", headers=bob.auth)).json()
    assert listed == {"data": [], "next_cursor": None}
    cancel = await http.request(
        "DELETE", "/v2/task/cancel/", json={"task_ids": [task_id]}, headers=bob.auth
    )
    assert cancel.json() == {"cancelled": [], "already_finished": [], "not_found": [task_id]}
    view = await store.get_task(task_id)
    assert view is not None and view.task.status is TaskStatus.PENDING


async def test_task_routes_need_a_token(http: httpx.AsyncClient) -> None:
    for method, path in [("GET", "/v2/task/x/"), ("GET", "/v2/task/"),
                         ("DELETE", "/v2/task/cancel/"), ("GET", "/v2/task/x/subscribe"),
                         ("GET", "/v2/taskqueue/"), ("POST", "/v2/deployment/")]:
        response = await http.request(method, path)
        assert response.status_code == 401, path
        assert "error" in response.json()


async def test_list_filters_and_pages(http: httpx.AsyncClient, store: Store, alice: Tenant) -> None:
    resize = await deploy(store, alice, "resize")
    await deploy(store, alice, "other")
    ids = [await enqueue(http, alice) for _ in range(3)]
    other_id = await enqueue(http, alice, "other")
    await start(store, resize, "taskqueue-c-1")  # the oldest: ids[0]

    async def listing(query: str) -> dict[str, object]:
        response = await http.get(f"/v2/task/?{query}", headers=alice.auth)
        assert response.status_code == 200, response.text
        page: dict[str, object] = response.json()
        return page

    def ids_of(page: dict[str, object]) -> list[str]:
        return [t["id"] for t in page["data"]]  # type: ignore[attr-defined, index]

    everything = await listing("")
    assert ids_of(everything) == [other_id, *reversed(ids)]
    assert ids_of(await listing("status=running")) == [ids[0]]
    assert set(ids_of(await listing("status=PENDING,RUNNING&queue=resize"))) == set(ids)
    assert ids_of(await listing("status=ERROR")) == []
    assert ids_of(await listing(f"stub_id={resize.id}&status=pending")) == [ids[2], ids[1]]
    assert ids_of(await listing("container_id=taskqueue-c-1")) == [ids[0]]
    assert ids_of(await listing("created_after=2999-01-01T00:00:00Z")) == []
    assert len(ids_of(await listing("created_before=2999-01-01T00:00:00Z"))) == 4

    first = await listing("limit=3")
    assert ids_of(first) == ids_of(everything)[:3] and first["next_cursor"]
    second = await listing(f"limit=3&cursor={first['next_cursor']}")
    assert ids_of(second) == ids_of(everything)[3:] and second["next_cursor"] is None
    for task in everything["data"]:  # type: ignore[attr-defined]
        assert_shape(task)


@pytest.mark.parametrize(
    "query",
    ["status=DONE", "limit=0", "limit=1001", "limit=ten", "limit=-1",
     "created_after=yesterday", "created_before=2024-13-01", "cursor=%%%bad"],
)
async def test_list_bad_values_are_400(http: httpx.AsyncClient, alice: Tenant, query: str) -> None:
    response = await http.get(f"/v2/task/?{query}", headers=alice.auth)
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"}


async def test_cancel(http: httpx.AsyncClient, store: Store, alice: Tenant) -> None:
    stub = await deploy(store, alice, "resize")
    done_id = await enqueue(http, alice)
    await finish(store, await start(store, stub))
    await enqueue(http, alice)
    pending_id = await enqueue(http, alice)
    running_id = (await start(store, stub)).id  # the oldest runnable one
    missing = "00000000-0000-0000-0000-000000000001"
    response = await http.request(
        "DELETE", "/v2/task/cancel/",
        json={"task_ids": [pending_id, running_id, done_id, missing]}, headers=alice.auth,
    )
    assert response.status_code == 200
    body = response.json()
    assert sorted(body["cancelled"]) == sorted([pending_id, running_id])
    assert body["already_finished"] == [done_id]
    assert body["not_found"] == [missing]
    for task_id in (pending_id, running_id):
        task = (await http.get(f"/v2/task/{task_id}", headers=alice.auth)).json()
        assert task["status"] == "CANCELLED" and task["ended_at"] is not None

    again = await http.post("/v2/task/cancel", json={"ids": [pending_id]}, headers=alice.auth)
    assert again.json() == {"cancelled": [], "already_finished": [pending_id], "not_found": []}


@pytest.mark.parametrize("body", [b"", b"[]", b'{"task_ids": "x"}', b'{"ids": [1]}', b"{oops"])
async def test_cancel_bad_bodies_are_400(
    http: httpx.AsyncClient, alice: Tenant, body: bytes
) -> None:
    response = await http.request("DELETE", "/v2/task/cancel/", content=body, headers=alice.auth)
    assert response.status_code == 400
    assert set(response.json()) == {"error"}
