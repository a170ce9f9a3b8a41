"""Every request takes one way in (``GatewayApp.dispatch``): the body limit and the error
answers are the same on hot routes, FastAPI routes, streams and the dashboard."""

from __future__ import annotations

import httpx
import pytest

from conveyor.server.gateway.app import create_app
from conveyor.server.gateway.settings import GatewaySettings
from conveyor.server.store.base import Store

from .conftest import Tenant, deploy


async def test_hot_routes_answer_as_every_route_does(
    http: httpx.AsyncClient, settings: GatewaySettings, alice: Tenant, store: Store
) -> None:
    await deploy(store, alice, "q")
    made = await http.post("/taskqueue/q", json={"x": 1}, headers=alice.auth)
    assert made.status_code == 200
    task_id = made.json()["task_id"]
    assert (await http.get(f"/v2/task/{task_id}/", headers=alice.auth)).status_code == 200
    missing = await http.post("/taskqueue/nope", json={}, headers=alice.auth)
    assert missing.status_code == 404 and "nope" in missing.json()["error"]
    denied = await http.get(f"/v2/task/{task_id}/")
    assert denied.status_code == 401 and denied.headers["www-authenticate"] == "Bearer"
    huge = b"x" * (settings.max_body_bytes + 1)
    for path in ("/taskqueue/q", "/v2/task/cancel/", "/dashboard/live/cancel"):
        answer = await http.post(path, content=huge, headers=alice.auth)
        assert answer.status_code == 413 and "larger than" in answer.json()["error"], path
    assert (await http.get("/v2/taskqueue/", headers=alice.auth)).status_code == 200
    wrong = await http.get("/taskqueue/q", headers=alice.auth)
    assert wrong.status_code == 405 and wrong.json() == {"error": "Method Not Allowed"}
    assert wrong.headers["allow"] == "POST"
    unknown = await http.get("/dashboard/nowhere/at/all")
    assert unknown.status_code == 404 and unknown.json() == {
        "error": "not found: /dashboard/nowhere/at/all"}


def test_no_second_path_can_be_added(store: Store) -> None:
    with pytest.raises(TypeError, match="one request path"):
        create_app(store).add_middleware(object)  # type: ignore[arg-type]
