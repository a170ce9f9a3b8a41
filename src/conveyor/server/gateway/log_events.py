"""A task's log lines as a stream of server-sent event frames, pushed by store notifications.

Each kept line is one ``event: log`` whose ``id`` is the line's cursor, so a client that
reconnects with ``Last-Event-ID`` resumes after the last line it got: no loss, no duplicate.
A ``logs`` (or ``task``) notification about the task wakes the stream (``stream_hub``), which
reads the lines after the last one sent. While idle it sends a comment line every
``sse_ping_s`` and reads once: a safety net for a notification that never reaches this
process, not a polling loop. Once the task has ended and its last line is sent, an
``event: end`` says its status and the stream ends.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import orjson

from conveyor.clock import from_us, now
from conveyor.errors import NotFound
from conveyor.server.gateway.answers import MAX_LIMIT
from conveyor.server.gateway.errors import BadRequest
from conveyor.server.gateway.state import GatewayState
from conveyor.server.gateway.stream_hub import ABOUT_A_TASK, Watcher
from conveyor.server.gateway.streams import PING, EventStream, open_slot
from conveyor.server.gateway.views import log_line_json
from conveyor.server.store.records import LogPage, LogStream, StoredLogLine, Workspace
from conveyor.tasks import TaskStatus, is_terminal

#: A cancelled task's process is killed after its status is written: its last lines may
#: arrive this long after the task's end, and the stream waits for them.
CANCEL_GRACE_S = 2.0


async def read_page(
    state: GatewayState,
    workspace: Workspace,
    task_id: str,
    cursor: str | None,
    *,
    attempt: int | None = None,
    stream: LogStream | None = None,
    limit: int = MAX_LIMIT,
) -> LogPage:
    """The task's lines after ``cursor``; ``NotFound`` for no such task of ``workspace``,
    ``BadRequest`` for a cursor the store did not make."""
    try:
        page = await state.store.task_logs(
            task_id, workspace.id, attempt=attempt, stream=stream, cursor=cursor, limit=limit
        )
    except ValueError:
        raise BadRequest(f"invalid cursor {cursor!r}: give a next_cursor or a line id") from None
    if page is None:
        raise NotFound(f"unknown task {task_id!r}")
    return page


async def open_stream(
    state: GatewayState, workspace: Workspace, task_id: str, cursor: str | None
) -> EventStream:
    """The SSE response of the task's lines after ``cursor``; refusals come before it."""
    slot = open_slot(state, workspace)
    try:
        # Watch before the first read so no line stored between the two is missed.
        watcher = state.streams.watch(state.store, task_id, ABOUT_A_TASK)
        try:
            first = await read_page(state, workspace, task_id, cursor)
        except BaseException:
            watcher.close()
            raise
    except BaseException:
        slot.release()
        raise
    frames = _frames(state, workspace, task_id, watcher, first, cursor)
    return EventStream(frames, slot, [watcher])


def log_frame(line: StoredLogLine) -> bytes:
    return (b"id: %d\nevent: log\ndata: " % line.id) + orjson.dumps(log_line_json(line)) + b"\n\n"


def end_frame(status: TaskStatus) -> bytes:
    return b"event: end\ndata: " + orjson.dumps({"status": status.value}) + b"\n\n"


async def _frames(
    state: GatewayState,
    workspace: Workspace,
    task_id: str,
    watcher: Watcher,
    page: LogPage,
    cursor: str | None,
) -> AsyncIterator[bytes]:
    grace_until: float | None = None
    try:
        while True:
            if page.lines:
                cursor = str(page.lines[-1].id)
                yield b"".join(log_frame(line) for line in page.lines)
            if page.next_cursor is None and is_terminal(page.status):
                if page.status is not TaskStatus.CANCELLED:
                    break
                if grace_until is None:
                    grace_until = await _grace_until(state, workspace, task_id)
                remaining = grace_until - time.monotonic()
                if remaining <= 0:
                    break
                await watcher.wait(remaining)
            # After a full page, more may be stored already: read on at once.
            elif len(page.lines) < MAX_LIMIT and not await watcher.wait(state.settings.sse_ping_s):
                yield PING
            page = await read_page(state, workspace, task_id, cursor)
        yield end_frame(page.status)
    finally:
        watcher.close()


async def _grace_until(state: GatewayState, workspace: Workspace, task_id: str) -> float:
    """When to stop waiting for a cancelled task's late lines (monotonic clock): at most
    ``CANCEL_GRACE_S`` after its end, so a task cancelled long ago ends its stream at once."""
    view = await state.store.get_task(task_id, workspace.id)
    ended = view.task.ended_at if view is not None else None
    left = 0.0 if ended is None else from_us(ended) + CANCEL_GRACE_S - now()
    return time.monotonic() + min(CANCEL_GRACE_S, left)
