"""``/v2/deployment/``: upload a code bundle and a queue config to make the next version; list
the versions, stop, start and delete one (answers in ``versions.py``)."""

from __future__ import annotations

import asyncio

from fastapi import Depends, Request
from starlette.datastructures import UploadFile

from conveyor.queue_config import QueueConfig
from conveyor.server.bundles import check_bundle
from conveyor.server.gateway import versions
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


async def list_deployments(
    request: Request,
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> OrjsonResponse:
    """Every version of the workspace's queues, by name then version."""
    return OrjsonResponse({"data": await versions.deployments(gateway_state(request), workspace)})


async def stop_deployment(
    request: Request,
    stub_id: str,
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> OrjsonResponse:
    """The version takes no new tasks (409), its running tasks finish, its containers stop;
    the unversioned route goes to the latest version still active."""
    state = gateway_state(request)
    return OrjsonResponse(await versions.set_active(state, workspace, stub_id, False))


async def start_deployment(
    request: Request,
    stub_id: str,
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> OrjsonResponse:
    """The version takes tasks again; its waiting tasks run."""
    state = gateway_state(request)
    return OrjsonResponse(await versions.set_active(state, workspace, stub_id, True))


async def delete_deployment(
    request: Request,
    stub_id: str,
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> OrjsonResponse:
    """The version with its tasks, their outputs and logs; 409 while any task of it is not
    finished."""
    return OrjsonResponse(await versions.delete(gateway_state(request), workspace, stub_id))
