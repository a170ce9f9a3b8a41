"""The contract suite runs every test against both backends through ``store_url``."""

from __future__ import annotations

import pytest

from conveyor.server.store.base import Store
from conveyor.server.store.records import Stub, Workspace
from tests.conftest import OpenStore as OpenStore

#: A fixed instant for tests that step time (2026-11-28T00:00:00Z).
T0 = 1_795_824_000.0

#: Queue config of the default test stub.
CONFIG = {"name": "q", "ttl": 60, "max_retries": 2, "timeout": 30, "retry_backoff": 1}


@pytest.fixture
async def ws(store: Store) -> Workspace:
    return await store.ensure_workspace("acme")


@pytest.fixture
async def stub(store: Store, ws: Workspace) -> Stub:
    return await store.deploy_stub(ws.id, "q", CONFIG, b"def q(): pass\n")
