"""``GET /v2/task/{id}/subscribe``: a task's status frames (``streams``) as server-sent events."""

from __future__ import annotations

from fastapi import Depends, Request
from starlette.responses import StreamingResponse

from conveyor.server.gateway.auth import require_workspace
from conveyor.server.gateway.state import gateway_state
from conveyor.server.gateway.streams import SSE_HEADERS, task_stream
from conveyor.server.store.records import Workspace


async def subscribe_task(
    request: Request,
    task_id: str,
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> StreamingResponse:
    state = gateway_state(request)
    frames = await task_stream(state, state.base_url(request), workspace, task_id)
    return StreamingResponse(frames, media_type="text/event-stream", headers=SSE_HEADERS)
