"""``GET /v2/task/{id}/subscribe``: server-sent events pushed by store notifications.

The stream sends the current state first, then one ``event: status`` per change that a
``task`` event announces, and ends after a terminal status. While idle it sends a comment
line every ``sse_ping_s`` and re-reads the task once: a safety net for a notification that
never reaches this process, not a polling loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
from fastapi import Depends, Request
from starlette.responses import StreamingResponse

from conveyor.errors import NotFound
from conveyor.server.gateway.auth import require_workspace
from conveyor.server.gateway.state import GatewayState, gateway_state
from conveyor.server.gateway.task_routes import render_task
from conveyor.server.store.base import Subscription
from conveyor.server.store.records import TaskView, Workspace
from conveyor.tasks import is_terminal

PING = b": ping\n\n"


async def subscribe_task(
    request: Request,
    task_id: str,
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> StreamingResponse:
    state = gateway_state(request)
    # Subscribe before the first read so no change between the two is missed.
    subscription = state.store.subscribe()
    try:
        view = await state.store.get_task(task_id, workspace.id)
    except BaseException:
        subscription.close()
        raise
    if view is None:
        subscription.close()
        raise NotFound(f"unknown task {task_id!r}")
    return StreamingResponse(
        _stream(state, request, subscription, view, workspace.id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def status_frame(task: dict[str, object]) -> bytes:
    return b"event: status\ndata: " + orjson.dumps(task) + b"\n\n"


async def _stream(
    state: GatewayState,
    request: Request,
    subscription: Subscription,
    first: TaskView,
    workspace_id: str,
) -> AsyncIterator[bytes]:
    task_id = first.task.id
    view: TaskView | None = first
    sent: tuple[str, int] | None = None
    try:
        while True:
            if view is not None:
                key = (view.task.status.value, view.task.updated_at)
                if key != sent:
                    sent = key
                    yield status_frame(await render_task(state, request, view))
                if is_terminal(view.task.status):
                    return
            event = await subscription.get(timeout=state.settings.sse_ping_s)
            if event is None:
                yield PING
            elif event.kind != "changed" and (event.kind != "task" or event.task_id != task_id):
                view = None
                continue
            view = await state.store.get_task(task_id, workspace_id)
            if view is None:
                return
    finally:
        subscription.close()
