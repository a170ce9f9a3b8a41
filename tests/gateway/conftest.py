"""Fixtures: a real SQLite store in tmp_path, two workspaces, and the app in process."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from conveyor.queue_config import QueueConfig
from conveyor.server.app import server_app
from conveyor.server.gateway.settings import GatewaySettings
from conveyor.server.store.base import Store
from conveyor.server.store.records import Outcome, Stub, TaskRecord, Workspace
from conveyor.tasks import TaskStatus

BASE = "http://gateway.test"


def code_bundle() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        # A fixed timestamp: two builds are byte-identical, whatever second they run in.
        member = zipfile.ZipInfo("app.py", date_time=(2026, 1, 1, 0, 0, 0))
        bundle.writestr(member, "def handler(x=None):\n    return x\n")
    return buffer.getvalue()


@dataclass
class Tenant:
    workspace: Workspace
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def deploy(store: Store, tenant: Tenant, name: str, **config: Any) -> Stub:
    queue = QueueConfig.from_dict({"name": name, "handler": "app.py:handler", **config})
    return await store.deploy_stub(tenant.workspace.id, name, queue.to_dict(), code_bundle())


async def start(store: Store, stub: Stub, container_id: str = "taskqueue-test-0001") -> TaskRecord:
    """Claim the oldest runnable task of the stub, as an agent would."""
    (task,) = await store.claim(stub.id, container_id, 1, lease_s=60)
    return task


async def finish(
    store: Store, task: TaskRecord, status: TaskStatus = TaskStatus.COMPLETE, **fields: Any
) -> None:
    (applied,) = await store.finish([Outcome(task.id, task.fence, status, **fields)])
    assert applied


async def tenant(store: Store, name: str) -> Tenant:
    workspace = await store.ensure_workspace(name)
    return Tenant(workspace, await store.create_token(workspace.id))


@pytest.fixture
async def alice(store: Store) -> Tenant:
    return await tenant(store, "alice")


@pytest.fixture
async def bob(store: Store) -> Tenant:
    return await tenant(store, "bob")


@pytest.fixture
def settings() -> GatewaySettings:
    return GatewaySettings(max_body_bytes=64 * 1024)


@pytest.fixture
def transport(store: Store, settings: GatewaySettings) -> httpx.ASGITransport:
    return httpx.ASGITransport(server_app(store, settings))


@pytest.fixture
async def http(transport: httpx.ASGITransport) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield client
