"""Server-sent event routes: a task's status frames (``streams``), its log lines
(``log_events``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from conveyor.server.gateway import insight
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


async def stream_task_logs(
    request: Request,
    task_id: str,
    cursor: str | None = None,
    last_event_id: Annotated[str | None, Header()] = None,
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> EventStream:
    """`event: log` per line, its `id` the line's cursor, pushed as lines are stored; then
    `event: end` with `{"status"}` once the task has ended and its last line is sent. Resumes
    after `Last-Event-ID` (or `cursor`, a `next_cursor` of `/logs`)."""
    last = last_event_id or cursor
    return await insight.log_stream(gateway_state(request), workspace, task_id, last)
