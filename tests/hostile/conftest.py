"""Two workspaces and the gateway app in process, on both store backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from conveyor.gateway.app import create_app
from conveyor.gateway.settings import GatewaySettings
from conveyor.store import open_store
from conveyor.store.base import Store
from tests.gateway.conftest import BASE, SECRET, Tenant

MAX_BODY = 64 * 1024


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_url")
        return url
    return f"sqlite:///{tmp_path / 'conveyor.db'}"


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    store = open_store(store_url)
    await store.open()
    yield store
    await store.close()


async def tenant(store: Store, name: str) -> Tenant:
    workspace = await store.ensure_workspace(name)
    return Tenant(workspace, await store.create_token(workspace.id))


@pytest.fixture
async def alice(store: Store) -> Tenant:
    return await tenant(store, "alice")


@pytest.fixture
async def mallory(store: Store) -> Tenant:
    return await tenant(store, "mallory")


@pytest.fixture
async def http(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(store, GatewaySettings(server_secret=SECRET, max_body_bytes=MAX_BODY))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE) as client:
        yield client
