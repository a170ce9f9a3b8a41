"""Routes the page scripts call with the sign-in cookie: live statuses, a task's live log,
cancel, replay, and stopping or starting a version.

Statuses come from the stream the API's SSE route serves (``GET /v2/task/{id}/subscribe``), one
per task, merged here into one response: a browser opens at most six HTTP/1.1 connections per
host, so a page of fifty live rows cannot hold fifty ``EventSource``s. ``EventSource`` cannot
send an ``Authorization`` header either, which is why these routes take the cookie.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response

from conveyor.errors import NotFound
from conveyor.server.gateway import answers, insight, versions
from conveyor.server.gateway.bodies import read_object
from conveyor.server.gateway.responses import OrjsonResponse, error_response
from conveyor.server.gateway.state import gateway_state
from conveyor.server.gateway.stream_hub import Watcher
from conveyor.server.gateway.streams import EventStream, open_slot, task_frames
from conveyor.server.store.records import Workspace

#: Most tasks one stream follows (a page shows 50).
MAX_IDS = 100
#: Sent once every followed task has reached a terminal status, so the page closes its
#: ``EventSource`` instead of letting it reconnect.
END = b"event: end\ndata: {}\n\n"


async def subscribe(request: Request, workspace: Workspace) -> Response:
    """``?ids=a,b,c``: the status frames of those tasks, then ``event: end``."""
    ids = [i for i in dict.fromkeys(request.query_params.get("ids", "").split(",")) if i]
    if not 1 <= len(ids) <= MAX_IDS:
        return error_response(400, f"ids must name 1 to {MAX_IDS} tasks")
    state = gateway_state(request)
    base_url = state.base_url(request)
    slot = open_slot(state, workspace)  # one of the workspace's streams, however many ids
    watchers: list[Watcher] = []
    streams = []
    try:
        for task_id in ids:
            with contextlib.suppress(NotFound):
                watcher, frames = await task_frames(state, base_url, workspace, task_id)
                watchers.append(watcher)
                streams.append(frames)
    except BaseException:
        for watcher in watchers:
            watcher.close()
        slot.release()
        raise
    return EventStream(_merged(streams), slot, watchers)


async def logs(request: Request, workspace: Workspace) -> Response:
    """The API's log stream of one task (``GET /v2/task/{id}/logs/stream``), resuming as it
    does after ``Last-Event-ID`` (a reconnecting ``EventSource`` sends it) or else ``?cursor=``:
    the ``next_cursor`` of the lines the page was rendered with, or the last line id seen by a
    script that had to open a new ``EventSource``."""
    cursor = request.headers.get("last-event-id") or request.query_params.get("cursor") or None
    task_id = request.path_params["task_id"]
    return await insight.log_stream(gateway_state(request), workspace, task_id, cursor)


async def cancel(request: Request, workspace: Workspace) -> Response:
    """The API's cancel, behind the session cookie and its CSRF header (``session.write``)."""
    body = await read_object(request)
    return OrjsonResponse(await answers.cancel(gateway_state(request), workspace, body))


async def version_action(request: Request, workspace: Workspace) -> Response:
    """The API's stop or start of a version (``/live/deployments/{stub_id}/stop|start``)."""
    action = request.path_params["action"]
    if action not in ("stop", "start"):
        return error_response(404, f"not found: {request.url.path}")
    state = gateway_state(request)
    stub_id = request.path_params["stub_id"]
    return OrjsonResponse(await versions.set_active(state, workspace, stub_id, action == "start"))


async def replay(request: Request, workspace: Workspace) -> Response:
    """The API's replay (``POST /v2/task/replay/``), ``?version=latest`` included."""
    body = await read_object(request)
    version = request.query_params.get("version")
    return OrjsonResponse(await answers.replay(gateway_state(request), workspace, body, version))


async def _merged(streams: list[AsyncIterator[bytes]]) -> AsyncIterator[bytes]:
    chunks: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def pump(stream: AsyncIterator[bytes]) -> None:
        try:
            async for chunk in stream:
                chunks.put_nowait(chunk)
        finally:
            chunks.put_nowait(None)

    pumps = [asyncio.create_task(pump(stream)) for stream in streams]
    try:
        running = len(pumps)
        while running:
            chunk = await chunks.get()
            if chunk is None:
                running -= 1
            else:
                yield chunk
        yield END
    finally:
        # A disconnect cancels this generator: cancel every task's frames so each closes its
        # watcher.
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
