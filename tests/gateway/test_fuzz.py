"""Schemathesis against the app's own OpenAPI: no 500s, no answer outside the schema."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conveyor.server.gateway.app import create_app
from conveyor.server.gateway.settings import GatewaySettings
from conveyor.server.secret_key import SecretKey, new_key
from conveyor.server.store import open_store
from tests.gateway.conftest import Tenant, deploy

pytestmark = pytest.mark.slow

TOKEN = "fuzz-token"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

# Schemathesis collects operations at import, so the app exists at import; its store is
# opened by the app's lifespan, inside schemathesis' own event loop, at the first request.
_DIR = Path(tempfile.mkdtemp(prefix="conveyor-fuzz-"))
_URL = f"sqlite:///{_DIR / 'conveyor.db'}"
app = create_app(open_store(_URL), GatewaySettings(max_body_bytes=256 * 1024), manage_store=True,
                 secret_key=SecretKey(keys=new_key()))  # without one, a secret's creation is 503
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


async def _seed() -> None:
    store = open_store(_URL)
    await store.open()
    try:
        workspace = await store.ensure_workspace("fuzz")
        tenant = Tenant(workspace, await store.create_token(workspace.id, TOKEN))
        await deploy(store, tenant, "resize", authorized=False)
    finally:
        await store.close()


@pytest.fixture(scope="module", autouse=True)
def seeded() -> Iterator[None]:
    asyncio.run(_seed())
    yield
    shutil.rmtree(_DIR, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: Any) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS)
