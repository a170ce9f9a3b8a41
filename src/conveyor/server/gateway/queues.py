"""``GET /v2/taskqueue/`` and ``/v2/taskqueue/{name}``: queues of the caller's workspace."""

from __future__ import annotations

from fastapi import Depends, Request

from conveyor.server.gateway import answers
from conveyor.server.gateway.auth import require_workspace
from conveyor.server.gateway.responses import OrjsonResponse
from conveyor.server.gateway.state import gateway_state
from conveyor.server.store.records import Workspace


async def list_queues(
    request: Request,
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> OrjsonResponse:
    return OrjsonResponse({"data": await answers.queue_list(gateway_state(request), workspace)})


async def get_queue(
    request: Request,
    name: str,
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> OrjsonResponse:
    return OrjsonResponse(await answers.queue(gateway_state(request), workspace, name))
