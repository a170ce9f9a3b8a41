"""``GET /v2/taskqueue/`` and ``/v2/taskqueue/{name}``: queues of the caller's workspace."""

from __future__ import annotations

from fastapi import Depends, Request

from conveyor.errors import NotFound
from conveyor.server.gateway.auth import require_workspace
from conveyor.server.gateway.responses import OrjsonResponse
from conveyor.server.gateway.state import gateway_state
from conveyor.server.gateway.views import queue_json
from conveyor.server.store.records import Workspace


async def list_queues(
    request: Request,
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> OrjsonResponse:
    state = gateway_state(request)
    summaries = await state.store.queue_summaries(workspace.id)
    agents = await state.agents.agents()
    return OrjsonResponse({"data": [queue_json(s, agents) for s in summaries]})


async def get_queue(
    request: Request,
    name: str,
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> OrjsonResponse:
    state = gateway_state(request)
    summaries = await state.store.queue_summaries(workspace.id, name)
    if not summaries:
        raise NotFound(f"unknown queue {name!r}")
    return OrjsonResponse(queue_json(summaries[0], await state.agents.agents()))
