"""Deployment routes (DESIGN A11): list, stop, start, delete; the unversioned route to the
latest active version, also right after a stop made through another process's store."""

from __future__ import annotations

import httpx

from conveyor.server.app import server_app
from conveyor.server.store.base import Store
from conveyor.tasks import TaskStatus
from tests.conftest import OpenStore
from tests.gateway.conftest import BASE, Tenant, deploy, finish, start


async def stub_of(store: Store, response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    view = await store.get_task(response.json()["task_id"])
    assert view is not None
    return view.stub.id


async def test_the_list_shows_every_version_and_who_runs_it(
    http: httpx.AsyncClient, store: Store, alice: Tenant, bob: Tenant
) -> None:
    v1 = await deploy(store, alice, "resize")
    v2 = await deploy(store, alice, "resize")
    await deploy(store, bob, "theirs")
    await store.agent_alive("agent-1", True, ())
    await store.set_stub_active(alice.workspace.id, v1.id, False)
    response = await http.get("/v2/deployment/", headers=alice.auth)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert [(v["stub_id"], v["name"], v["version"], v["active"], v["agents"]) for v in data] == [
        (v1.id, "resize", 1, False, 0), (v2.id, "resize", 2, True, 1)]
    assert set(data[0]) == {"stub_id", "name", "version", "type", "active", "created_at",
                            "agents"}
    assert data[0]["type"] == "taskqueue/deployment" and data[0]["created_at"].endswith("Z")
    assert (await http.get("/v2/deployment/")).status_code == 401


async def test_a_stopped_version_refuses_tasks_on_every_route(
    http: httpx.AsyncClient, store: Store, alice: Tenant
) -> None:
    stub = await deploy(store, alice, "resize", authorized=False)
    response = await http.post(f"/v2/deployment/{stub.id}/stop", headers=alice.auth)
    assert response.status_code == 200, response.text
    assert response.json()["active"] is False and response.json()["stub_id"] == stub.id
    stopped = {"error": "version v1 of resize is stopped"}
    for path in ("/taskqueue/resize", "/taskqueue/resize/latest", "/taskqueue/resize/v1",
                 f"/taskqueue/id/{stub.id}", f"/taskqueue/public/{stub.id}",
                 "/taskqueue/resize/warmup", f"/taskqueue/id/{stub.id}/warmup"):
        answer = await http.post(path, json={"x": 1}, headers=alice.auth)
        assert (answer.status_code, answer.json()) == (409, stopped), path
    answer = await http.post("/taskqueue/resize/batch", json={"tasks": [{}, {}]},
                             headers=alice.auth)
    assert (answer.status_code, answer.json()) == (409, stopped)
    response = await http.post(f"/v2/deployment/{stub.id}/start", headers=alice.auth)
    assert response.status_code == 200 and response.json()["active"] is True
    assert await stub_of(store, await http.post("/taskqueue/resize", headers=alice.auth)) == stub.id


async def test_the_unversioned_route_goes_to_the_latest_active_version(
    http: httpx.AsyncClient, store: Store, alice: Tenant
) -> None:
    v1 = await deploy(store, alice, "resize")
    v2 = await deploy(store, alice, "resize")
    route = "/taskqueue/resize"
    assert await stub_of(store, await http.post(route, headers=alice.auth)) == v2.id
    await http.post(f"/v2/deployment/{v2.id}/stop", headers=alice.auth)
    assert await stub_of(store, await http.post(route, headers=alice.auth)) == v1.id
    assert await stub_of(store, await http.post(route + "/latest", headers=alice.auth)) == v1.id
    queue = (await http.get("/v2/taskqueue/resize", headers=alice.auth)).json()
    assert queue["route_version"] == 1
    assert [(v["version"], v["active"]) for v in queue["versions"]] == [(1, True), (2, False)]
    await http.post(f"/v2/deployment/{v2.id}/start", headers=alice.auth)
    assert await stub_of(store, await http.post(route, headers=alice.auth)) == v2.id


async def test_an_enqueue_right_after_a_stop_by_another_process(
    http: httpx.AsyncClient, store: Store, alice: Tenant, open_more: OpenStore
) -> None:
    """This gateway keeps its look-up of the route; a stop made through another gateway's
    store (another process for all this one knows) still moves its very next enqueue."""
    v1 = await deploy(store, alice, "resize")
    v2 = await deploy(store, alice, "resize")
    other_store = await open_more()
    transport = httpx.ASGITransport(server_app(other_store))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as other:
        for path in ("/taskqueue/resize", "/taskqueue/resize/batch"):
            body = {"tasks": [{}]} if path.endswith("batch") else {}
            answer = await http.post(path, json=body, headers=alice.auth)  # keeps the route
            assert answer.status_code == 200
            stop = await other.post(f"/v2/deployment/{v2.id}/stop", headers=alice.auth)
            assert stop.status_code == 200, stop.text
            answer = await http.post(path, json=body, headers=alice.auth)
            assert answer.status_code == 200, answer.text
            ids = answer.json().get("task_ids") or [answer.json()["task_id"]]
            view = await store.get_task(ids[0])
            assert view is not None and view.stub.id == v1.id, path
            await other.post(f"/v2/deployment/{v2.id}/start", headers=alice.auth)


async def test_delete_is_refused_while_tasks_are_unfinished(
    http: httpx.AsyncClient, store: Store, alice: Tenant
) -> None:
    stub = await deploy(store, alice, "resize")
    kept = await deploy(store, alice, "resize")
    answer = await http.post("/taskqueue/resize/v1", json={}, headers=alice.auth)
    task_id = answer.json()["task_id"]
    refused = await http.delete(f"/v2/deployment/{stub.id}", headers=alice.auth)
    assert refused.status_code == 409
    assert refused.json()["error"].startswith("version v1 of resize has 1 unfinished task")
    await finish(store, await start(store, stub), TaskStatus.COMPLETE, result="1")
    deleted = await http.delete(f"/v2/deployment/{stub.id}", headers=alice.auth)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"stub_id": stub.id, "deleted_tasks": 1}
    assert (await http.get(f"/v2/task/{task_id}/", headers=alice.auth)).status_code == 404
    listed = (await http.get("/v2/deployment/", headers=alice.auth)).json()["data"]
    assert [v["stub_id"] for v in listed] == [kept.id]
    again = await http.delete(f"/v2/deployment/{stub.id}", headers=alice.auth)
    assert again.status_code == 404


async def test_another_workspaces_versions_are_404(
    http: httpx.AsyncClient, store: Store, alice: Tenant, bob: Tenant
) -> None:
    stub = await deploy(store, alice, "resize")
    for method, path in (("POST", f"/v2/deployment/{stub.id}/stop"),
                         ("POST", f"/v2/deployment/{stub.id}/start"),
                         ("DELETE", f"/v2/deployment/{stub.id}"),
                         ("POST", "/v2/deployment/not-a-uuid/stop"),
                         ("DELETE", "/v2/deployment/00000000-0000-0000-0000-000000000000")):
        answer = await http.request(method, path, headers=bob.auth)
        assert answer.status_code == 404, (method, path, answer.text)
        assert set(answer.json()) == {"error"}
    assert (await store.get_stub(stub.id)).active  # type: ignore[union-attr]
    assert (await http.get("/v2/deployment/", headers=bob.auth)).json() == {"data": []}
