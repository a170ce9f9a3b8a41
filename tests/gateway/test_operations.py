"""Queues, deployments, health, metrics, OpenAPI, and the error shape of framework errors."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from conveyor.queue_config import QueueConfig
from conveyor.server.gateway.app import create_app
from conveyor.server.store import open_store
from conveyor.server.store.base import Store
from tests.gateway.conftest import Tenant, code_bundle, deploy, finish, start


async def test_queue_routes(
    http: httpx.AsyncClient, store: Store, alice: Tenant, bob: Tenant
) -> None:
    v1 = await deploy(store, alice, "resize")
    await deploy(store, alice, "resize")
    await http.post("/taskqueue/resize/v1", headers=alice.auth)
    listing = await http.get("/v2/taskqueue/", headers=alice.auth)
    assert listing.status_code == 200
    (queue,) = listing.json()["data"]
    assert queue["name"] == "resize"
    assert [v["version"] for v in queue["versions"]] == [1, 2]
    assert queue["versions"][0]["stub_id"] == v1.id
    assert queue["queue_depth"] == 1 and queue["active_containers"] == 0
    assert queue["counts"]["PENDING"] == 1 and queue["counts"]["COMPLETE"] == 0
    one = await http.get("/v2/taskqueue/resize", headers=alice.auth)
    assert one.json() == queue
    assert (await http.get("/v2/taskqueue/resize", headers=bob.auth)).status_code == 404
    assert (await http.get("/v2/taskqueue/", headers=bob.auth)).json() == {"data": []}


async def test_deployment_route(http: httpx.AsyncClient, store: Store, alice: Tenant) -> None:
    config = QueueConfig(name="thumbs", handler="app.py:handler", max_retries=1).to_json()
    files = {"config": (None, config), "code": ("bundle.zip", code_bundle(), "application/zip")}
    first = await http.post("/v2/deployment/", files=files, headers=alice.auth)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["name"] == "thumbs" and body["version"] == 1
    assert body["url"] == "http://gateway.test/taskqueue/thumbs/v1"
    stub = await store.get_stub(body["stub_id"])
    assert stub is not None and stub.queue_config.max_retries == 1
    assert await store.get_object(stub.object_id) == code_bundle()
    second = await http.post("/v2/deployment", files=files, headers=alice.auth)
    assert second.json()["version"] == 2
    assert (await http.post("/taskqueue/thumbs", headers=alice.auth)).status_code == 200


async def test_bad_deployments_are_400(http: httpx.AsyncClient, alice: Tenant) -> None:
    good_config = QueueConfig(name="thumbs", handler="app.py:handler").to_json()
    zip_file = ("b.zip", code_bundle(), "application/zip")
    cases = {
        "max_retries": {"config": (None, '{"name": "x", "handler": "a.py:f", "max_retries": 9}'),
                        "code": zip_file},
        "not JSON": {"config": (None, "{nope"), "code": zip_file},
        "zip": {"config": (None, good_config), "code": ("b.zip", b"not a zip", "application/zip")},
        "'code'": {"config": (None, good_config)},
    }
    for message, files in cases.items():
        response = await http.post("/v2/deployment/", files=files, headers=alice.auth)
        assert response.status_code == 400, message
        assert message in response.json()["error"], response.json()
    response = await http.post("/v2/deployment/", json={"config": {}}, headers=alice.auth)
    assert response.status_code == 400


async def test_health_and_readiness(http: httpx.AsyncClient, tmp_path: Path) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    assert (await http.get("/readyz")).json() == {"status": "ok"}
    closed = open_store(f"sqlite:///{tmp_path / 'other.db'}")
    app = create_app(closed)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        response = await c.get("/readyz")
        assert response.status_code == 503
        assert set(response.json()) == {"error"}
        assert (await c.get("/healthz")).status_code == 200
        task = await c.get("/v2/task/x", headers={"Authorization": "Bearer t"})
        assert task.status_code == 503


async def test_metrics(http: httpx.AsyncClient, store: Store, alice: Tenant) -> None:
    operator = {"Authorization": f"Bearer {await store.create_operator_token()}"}
    stub = await deploy(store, alice, "resize")
    task_id = (await http.post("/taskqueue/resize", headers=alice.auth)).json()["task_id"]
    await http.post("/taskqueue/resize", headers=alice.auth)
    await finish(store, await start(store, stub))
    await http.get(f"/v2/task/{task_id}", headers=alice.auth)
    await http.get(f"/v2/task/{task_id}", headers=alice.auth)  # observed once only
    response = await http.get("/metrics", headers=operator)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    queue = (("queue", "resize"), ("workspace", "alice"))

    def value(name: str, *labels: tuple[str, str]) -> float:
        return samples[(name, tuple(sorted(queue + labels)))]

    assert value("conveyor_tasks", ("status", "COMPLETE")) == 1
    assert value("conveyor_tasks", ("status", "PENDING")) == 1
    assert value("conveyor_queue_depth") == 1
    assert value("conveyor_active_containers") == 0
    assert samples[("conveyor_task_duration_seconds_count", ())] == 1
    assert samples[("conveyor_task_pickup_latency_seconds_count", ())] == 1


async def test_openapi_and_docs(http: httpx.AsyncClient) -> None:
    schema = (await http.get("/openapi.json")).json()
    assert "/v2/task/{task_id}/" in schema["paths"]
    assert "/taskqueue/{name}" in schema["paths"]
    assert "422" not in str(schema)
    docs = await http.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


async def test_framework_errors_have_the_error_shape(http: httpx.AsyncClient) -> None:
    unknown = await http.get("/no/such/path")
    assert unknown.status_code == 404 and set(unknown.json()) == {"error"}
    wrong_method = await http.put("/v2/task/")
    assert wrong_method.status_code == 405 and set(wrong_method.json()) == {"error"}
