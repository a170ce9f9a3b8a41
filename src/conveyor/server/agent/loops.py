"""What keeps the agent's loops and background jobs going when one step fails."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from conveyor.errors import StoreError

log = logging.getLogger("conveyor.server.agent")


@contextlib.asynccontextmanager
async def survive(
    chore: str, pause_s: float, then: Callable[[], object] | None = None
) -> AsyncIterator[None]:
    """Log a failure of ``chore`` and pause, never end its loop: a loop that ended on an
    unexpected error left the agent looking alive while it never claimed again."""
    try:
        yield
    except StoreError as exc:
        log.warning("%s failed: %s", chore, exc, extra={"action": "agent_loop_failed"})
    except Exception:
        log.exception("%s failed", chore, extra={"action": "agent_loop_failed"})
    else:
        return
    await asyncio.sleep(pause_s)
    if then is not None:
        then()


class Background:
    """Jobs started without waiting for them (a container's start, a kill): held so they are
    not collected mid-way, their failures logged, and awaited all at once on drain."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def __call__(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)

    async def settle(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("agent background job failed", exc_info=task.exception())
