"""Routes the page scripts call with the sign-in cookie: live statuses and cancel.

Statuses come from the API's own SSE handler (``GET /v2/task/{id}/subscribe``), one stream
per task, merged here into one response: a browser opens at most six HTTP/1.1 connections per
host, so a page of fifty live rows cannot hold fifty ``EventSource``s. ``EventSource`` cannot
send an ``Authorization`` header either, which is why these routes take the cookie.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from conveyor.errors import NotFound
from conveyor.server.gateway import sse, task_routes
from conveyor.server.gateway.responses import error_response
from conveyor.server.store.records import Workspace

#: Most tasks one stream follows (a page shows 50).
MAX_IDS = 100
#: Sent once every followed task has reached a terminal status, so the page closes its
#: ``EventSource`` instead of letting it reconnect.
END = b"event: end\ndata: {}\n\n"
#: Cancel is a cookie-authenticated write: it must carry this header, which a cross-site
#: form cannot send (SameSite=Strict on the cookie is the first guard).
CSRF_HEADER = "x-conveyor-dashboard"

Chunk = str | bytes | memoryview


async def subscribe(request: Request, workspace: Workspace) -> Response:
    """``?ids=a,b,c``: the status frames of those tasks, then ``event: end``."""
    ids = [i for i in dict.fromkeys(request.query_params.get("ids", "").split(",")) if i]
    if not 1 <= len(ids) <= MAX_IDS:
        return error_response(400, f"ids must name 1 to {MAX_IDS} tasks")
    streams = []
    for task_id in ids:
        with contextlib.suppress(NotFound):
            streams.append((await sse.subscribe_task(request, task_id, workspace)).body_iterator)
    return StreamingResponse(
        _merged(streams),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def cancel(request: Request, workspace: Workspace) -> Response:
    """The API's cancel handler, behind the cookie and the CSRF header."""
    if request.headers.get(CSRF_HEADER) != "1":
        return error_response(403, f"missing header {CSRF_HEADER}: 1")
    return await task_routes.cancel_tasks(request, workspace)


async def _merged(streams: list[AsyncIterable[Chunk]]) -> AsyncIterator[bytes]:
    chunks: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def pump(stream: AsyncIterable[Chunk]) -> None:
        try:
            async for chunk in stream:
                chunks.put_nowait(chunk.encode() if isinstance(chunk, str) else bytes(chunk))
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
        # A disconnect cancels this generator: cancel every API stream so each closes its
        # store subscription.
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
