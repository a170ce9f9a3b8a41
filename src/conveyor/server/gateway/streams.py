"""A task's status as a stream of server-sent event frames, pushed by store notifications.

The stream sends the current state first, then one ``event: status`` per change that a
notification about this task announces (``stream_hub``: only this task's notifications wake
it), and ends after a terminal status. While idle it sends a comment line every
``sse_ping_s`` and re-reads the task once: a safety net for a notification that never
reaches this process, not a polling loop. Each stream holds one of its workspace's slots.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from conveyor.errors import NotFound
from conveyor.server.gateway.answers import render_task
from conveyor.server.gateway.state import GatewayState
from conveyor.server.gateway.stream_hub import StreamSlot, Watcher
from conveyor.server.store.records import TaskView, Workspace
from conveyor.tasks import is_terminal

PING = b": ping\n\n"
#: What a stream makes of a task's JSON before sending it (another dialect's shape).
Shape = Callable[[dict[str, Any]], dict[str, Any]]
#: Headers of an event stream: never cached, never buffered by a proxy.
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class EventStream(StreamingResponse):
    """An SSE response that frees its slot and watchers when it ends, however it ends (a
    client gone before the first frame included: its generator then never runs)."""

    def __init__(self, frames: AsyncIterator[bytes], slot: StreamSlot,
                 watchers: list[Watcher]) -> None:
        super().__init__(frames, media_type="text/event-stream", headers=SSE_HEADERS)
        self._slot = slot
        self._watchers = watchers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.close()

    def close(self) -> None:
        for watcher in self._watchers:
            watcher.close()
        self._slot.release()


def open_slot(state: GatewayState, workspace: Workspace) -> StreamSlot:
    return state.streams.open_slot(workspace.id, state.settings.max_streams_per_workspace)


async def task_stream(
    state: GatewayState, base_url: str, workspace: Workspace, task_id: str,
    shape: Shape | None = None,
) -> EventStream:
    """The SSE response of one task; ``NotFound`` at once (not while streaming) for no such
    task, ``TooManyStreams`` when the workspace has its most streams open."""
    slot = open_slot(state, workspace)
    try:
        watcher, frames = await task_frames(state, base_url, workspace, task_id, shape)
    except BaseException:
        slot.release()
        raise
    return EventStream(frames, slot, [watcher])


async def task_frames(
    state: GatewayState, base_url: str, workspace: Workspace, task_id: str,
    shape: Shape | None = None,
) -> tuple[Watcher, AsyncIterator[bytes]]:
    """The frames of one task and the watcher they wait on (the caller closes it);
    ``NotFound`` at once for no such task."""
    # Watch before the first read so no change between the two is missed.
    watcher = state.streams.watch(state.store, task_id)
    try:
        view = await state.store.get_task(task_id, workspace.id)
    except BaseException:
        watcher.close()
        raise
    if view is None:
        watcher.close()
        raise NotFound(f"unknown task {task_id!r}")
    return watcher, _frames(state, base_url, watcher, view, workspace.id, shape)


def status_frame(task: dict[str, object]) -> bytes:
    return b"event: status\ndata: " + orjson.dumps(task) + b"\n\n"


async def _frames(
    state: GatewayState,
    base_url: str,
    watcher: Watcher,
    first: TaskView,
    workspace_id: str,
    shape: Shape | None,
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
                    task = await render_task(state, base_url, view)
                    yield status_frame(task if shape is None else shape(task))
                if is_terminal(view.task.status):
                    return
            if not await watcher.wait(state.settings.sse_ping_s):
                yield PING
            view = await state.store.get_task(task_id, workspace_id)
            if view is None:
                return
    finally:
        watcher.close()
