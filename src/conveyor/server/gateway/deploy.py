"""``POST /v2/deployment/``: upload a code bundle and a queue config, make the next version."""

from __future__ import annotations

import asyncio

from fastapi import Depends, Request
from starlette.datastructures import UploadFile

from conveyor.queue_config import QueueConfig
from conveyor.server.bundles import check_bundle
from conveyor.server.gateway.auth import require_workspace
from conveyor.server.gateway.errors import BadRequest
from conveyor.server.gateway.responses import OrjsonResponse
from conveyor.server.gateway.state import gateway_state
from conveyor.server.gateway.views import invocation_url
from conveyor.server.store.records import Workspace


async def deploy(
    request: Request,
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> OrjsonResponse:
    """Multipart fields: ``config`` (QueueConfig JSON) and ``code`` (a zip bundle)."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise BadRequest("send multipart/form-data with fields 'config' and 'code'")
    # Starlette turns a malformed multipart body into a 400 itself.
    async with request.form() as form:
        for name in ("config", "code"):
            if len(form.getlist(name)) > 1:
                raise BadRequest(f"multipart field {name!r} is given more than once")
        config = QueueConfig.from_client(await _field_bytes(form.get("config"), "config"))
        code = await _field_bytes(form.get("code"), "code")
    # The agent's own checks (one place: bundles.py), off the event loop: a bundle it would
    # refuse is refused here, not stored to wait for its tasks' ttl.
    await asyncio.to_thread(check_bundle, code, config.handler)
    state = gateway_state(request)
    stub = await state.store.deploy_stub(workspace.id, config.name, config.to_dict(), code)
    return OrjsonResponse(
        {
            "stub_id": stub.id,
            "name": stub.name,
            "version": stub.version,
            "url": invocation_url(state.base_url(request), stub.name, stub.version),
        }
    )


async def _field_bytes(value: UploadFile | str | None, name: str) -> bytes:
    if value is None:
        raise BadRequest(f"missing multipart field {name!r}")
    if isinstance(value, str):
        return value.encode()
    return await value.read()
