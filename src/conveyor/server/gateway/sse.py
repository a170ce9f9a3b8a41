"""``GET /v2/task/{id}/subscribe``: a task's status frames (``streams``) as server-sent events."""

from __future__ import annotations

from fastapi import Depends, Request

from conveyor.server.gateway.auth import require_workspace
from conveyor.server.gateway.state import gateway_state
from conveyor.server.gateway.streams import EventStream, task_stream
from conveyor.server.store.records import Workspace


async def subscribe_task(
    request: Request,
    task_id: str,
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> EventStream:
    state = gateway_state(request)
    return await task_stream(state, state.base_url(request), workspace, task_id)
