"""The gateway app served in this event loop by a real uvicorn on 127.0.0.1, configured as
``conveyor serve`` configures it (``run._uvicorn``: the connection bounds included)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from conveyor.server.run import _uvicorn
from tests.cli.conftest import free_port


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """The base URL of ``app`` served until the block ends."""
    port = free_port()
    server = _uvicorn(app, "127.0.0.1", port)
    serving = asyncio.create_task(server.serve(sockets=server.listening))
    try:
        while not server.started:
            if serving.done():
                serving.result()
                raise RuntimeError("uvicorn ended before it started")
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 60)
