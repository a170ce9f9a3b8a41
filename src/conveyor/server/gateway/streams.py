"""A task's status as a stream of server-sent event frames, pushed by store notifications.

The stream sends the current state first, then one ``event: status`` per change that a
``task`` event announces, and ends after a terminal status. While idle it sends a comment
line every ``sse_ping_s`` and re-reads the task once: a safety net for a notification that
never reaches this process, not a polling loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from conveyor.errors import NotFound
from conveyor.server.gateway.answers import render_task
from conveyor.server.gateway.state import GatewayState
from conveyor.server.store.base import Subscription
from conveyor.server.store.records import TaskView, Workspace
from conveyor.tasks import is_terminal

PING = b": ping\n\n"
#: Headers of an event stream: never cached, never buffered by a proxy.
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def task_stream(
    state: GatewayState, base_url: str, workspace: Workspace, task_id: str
) -> AsyncIterator[bytes]:
    """The frames of one task; ``NotFound`` at once (not while streaming) for no such task."""
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
    return _frames(state, base_url, subscription, view, workspace.id)


def status_frame(task: dict[str, object]) -> bytes:
    return b"event: status\ndata: " + orjson.dumps(task) + b"\n\n"


async def _frames(
    state: GatewayState,
    base_url: str,
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
                    yield status_frame(await render_task(state, base_url, view))
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
