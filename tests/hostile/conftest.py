"""Two workspaces and the gateway app in process, on both store backends."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from conveyor.server.app import server_app
from conveyor.server.gateway.settings import GatewaySettings
from conveyor.server.store.base import Store
from tests.gateway.conftest import BASE, Tenant, tenant

MAX_BODY = 64 * 1024


@pytest.fixture
async def alice(store: Store) -> Tenant:
    return await tenant(store, "alice")


@pytest.fixture
async def mallory(store: Store) -> Tenant:
    return await tenant(store, "mallory")


@pytest.fixture
async def http(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    app = server_app(store, GatewaySettings(max_body_bytes=MAX_BODY))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE) as client:
        yield client
