"""Hot routes skip FastAPI's middleware stack and still answer exactly as FastAPI would."""

from __future__ import annotations

from typing import ClassVar

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from conveyor.server.gateway.app import create_app
from conveyor.server.gateway.settings import GatewaySettings
from conveyor.server.store.base import Store

from .conftest import BASE, Tenant, deploy


class Seen:
    """Middleware that records the paths that went through FastAPI's stack."""

    paths: ClassVar[list[str]] = []

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            Seen.paths.append(f"{scope['method']} {scope['path']}")
        await self.app(scope, receive, send)


async def test_plain_routes_skip_the_middleware_stack(
    store: Store, settings: GatewaySettings, alice: Tenant
) -> None:
    await deploy(store, alice, "q")
    app = create_app(store, settings)
    app.add_middleware(Seen)
    Seen.paths = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE) as http:
        made = await http.post("/taskqueue/q", json={"x": 1}, headers=alice.auth)
        assert made.status_code == 200
        task_id = made.json()["task_id"]
        assert (await http.get(f"/v2/task/{task_id}/", headers=alice.auth)).status_code == 200
        # Errors on the short way have FastAPI's shape and headers.
        missing = await http.post("/taskqueue/nope", json={}, headers=alice.auth)
        assert missing.status_code == 404 and "nope" in missing.json()["error"]
        denied = await http.get(f"/v2/task/{task_id}/")
        assert denied.status_code == 401 and denied.headers["www-authenticate"] == "Bearer"
        huge = await http.post("/taskqueue/q", content=b"x" * (settings.max_body_bytes + 1),
                               headers=alice.auth)
        assert huge.status_code == 413
        assert Seen.paths == []
        # Routes that are not plain, and a wrong method on a plain path, go through FastAPI.
        assert (await http.get("/v2/taskqueue/", headers=alice.auth)).status_code == 200
        assert (await http.get("/taskqueue/q", headers=alice.auth)).status_code == 405
    assert Seen.paths == ["GET /v2/taskqueue/", "GET /taskqueue/q"]
