"""What the routes that see into a task answer (DESIGN A8): its input, its attempts, its logs
(a page, or a live stream), as functions of the gateway state.

The API's handlers and the dashboard's pages both call these, as they call ``answers``. Every
answer is scoped to the caller's workspace: another workspace's task is ``NotFound``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from conveyor.errors import NotFound
from conveyor.server.gateway import log_events
from conveyor.server.gateway.answers import MAX_LIMIT, limit_of
from conveyor.server.gateway.errors import BadRequest
from conveyor.server.gateway.state import GatewayState
from conveyor.server.gateway.streams import EventStream
from conveyor.server.gateway.views import attempt_json, log_line_json
from conveyor.server.store.records import LogStream, Workspace

#: Attempt numbers are stored as 32-bit integers; a larger one is no attempt of any task.
MAX_ATTEMPT = 2**31 - 1
STREAMS: dict[str, LogStream] = {"stdout": "stdout", "stderr": "stderr"}


@dataclass(frozen=True)
class LogQuery:
    """The query of ``GET /v2/task/{id}/logs``, as sent: strings, checked by ``task_logs``.
    The route takes it as a dependency, so these fields are its documented query parameters."""

    attempt: str | None = None
    stream: str | None = None
    cursor: str | None = None
    limit: str | None = None


async def task_input(state: GatewayState, workspace: Workspace, task_id: str) -> dict[str, Any]:
    """``GET /v2/task/{id}/input``: ``{"args": [...], "kwargs": {...}}``."""
    text = await state.store.task_input(task_id, workspace.id)
    if text is None:
        raise NotFound(f"unknown task {task_id!r}")
    payload = orjson.loads(text)
    return {"args": payload.get("args", []), "kwargs": payload.get("kwargs", {})}


async def task_attempts(
    state: GatewayState, workspace: Workspace, task_id: str
) -> dict[str, Any]:
    """``GET /v2/task/{id}/attempts``: ``{"data": [attempt, ...]}``, oldest first."""
    attempts = await state.store.task_attempts(task_id, workspace.id)
    if attempts is None:
        raise NotFound(f"unknown task {task_id!r}")
    return {"data": [attempt_json(attempt) for attempt in attempts]}


async def task_logs(
    state: GatewayState, workspace: Workspace, task_id: str, query: LogQuery
) -> dict[str, Any]:
    """``GET /v2/task/{id}/logs``: a page of lines, oldest first, and the cursor after it; a
    bad value is a ``BadRequest`` that says what was expected."""
    attempt, stream = _attempt(query.attempt), _stream(query.stream)
    limit = limit_of(query.limit, MAX_LIMIT)
    page = await log_events.read_page(
        state, workspace, task_id, query.cursor or None,
        attempt=attempt, stream=stream, limit=limit,
    )
    return {"data": [log_line_json(line) for line in page.lines], "next_cursor": page.next_cursor}


async def log_stream(
    state: GatewayState, workspace: Workspace, task_id: str, last_event_id: str | None
) -> EventStream:
    """``GET /v2/task/{id}/logs/stream``: the task's lines after ``last_event_id`` (a line id
    the stream sent, or a cursor of ``/logs``) as server-sent events, until the task has ended
    and its last line is sent. ``NotFound`` or ``BadRequest`` at once, not while streaming;
    ``TooManyStreams`` when the workspace has its most streams open."""
    return await log_events.open_stream(state, workspace, task_id, last_event_id or None)


def _attempt(text: str | None) -> int | None:
    if not text:
        return None
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit()) or not 1 <= int(digits) <= MAX_ATTEMPT:
        raise BadRequest(f"attempt must be a positive integer, got {text!r}")
    return int(digits)


def _stream(text: str | None) -> LogStream | None:
    if not text:
        return None
    if text not in STREAMS:
        raise BadRequest(f"stream must be stdout or stderr, got {text!r}")
    return STREAMS[text]
