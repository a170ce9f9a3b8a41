"""A lane: one thread that runs blocking calls in order, several per hop.

Handing a call to a thread and back costs more than a small SQLite statement (a queue put, a
thread wake-up, a loop wake-up, two GIL hand-overs). So calls made while the thread is busy
wait on the loop, and the next hop takes all of them. With no load a call goes over at once,
alone; under load the hand-over cost is shared.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
_Job = tuple[Callable[[], Any], "asyncio.Future[Any]"]


class LaneClosed(RuntimeError):
    """The lane's thread has been shut down."""


class Lane:
    def __init__(self, name: str) -> None:
        self._executor: ThreadPoolExecutor | None = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._waiting: list[_Job] = []
        self._busy = False
        self._busy_loop: asyncio.AbstractEventLoop | None = None
        #: Hops made so far (each one hand-over to the thread and back).
        self.hops = 0

    @property
    def idle(self) -> bool:
        """No hop is under way or waiting: the thread holds nothing of the lane's."""
        return not self._busy and not self._waiting

    async def call(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            raise LaneClosed("the lane is closed")
        loop = asyncio.get_running_loop()
        if self._busy and self._busy_loop is not None and self._busy_loop.is_closed():
            self._busy = False  # that loop closed mid-hop and will never land it
        future: asyncio.Future[T] = loop.create_future()
        self._waiting.append((fn, future))
        if not self._busy:
            self._hop(loop)
        return await future

    def shutdown(self) -> None:
        """Stop taking calls and wait for the thread to finish the current hop."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    def _hop(self, loop: asyncio.AbstractEventLoop) -> None:
        jobs, self._waiting = self._waiting, []
        if self._executor is None:
            _fail(jobs, LaneClosed("the lane is closed"))
            return
        self._busy, self._busy_loop = True, loop
        self.hops += 1
        hop = loop.run_in_executor(self._executor, _run_all, [fn for fn, _ in jobs])
        hop.add_done_callback(lambda done: self._landed(loop, jobs, done))

    def _landed(
        self, loop: asyncio.AbstractEventLoop, jobs: list[_Job], hop: asyncio.Future[Any]
    ) -> None:
        self._busy = False
        if hop.cancelled():
            _fail(jobs, LaneClosed("the lane was cancelled"))
        elif (error := hop.exception()) is not None:
            _fail(jobs, error)
        else:
            for (_, future), (ok, value) in zip(jobs, hop.result(), strict=True):
                if future.done():  # its caller went away
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
        if self._waiting:
            self._hop(loop)


def _run_all(fns: Sequence[Callable[[], Any]]) -> list[tuple[bool, Any]]:
    results: list[tuple[bool, Any]] = []
    for fn in fns:
        try:
            results.append((True, fn()))
        except Exception as exc:  # handed to its caller
            results.append((False, exc))
    return results


def _fail(jobs: Sequence[_Job], error: BaseException) -> None:
    for _, future in jobs:
        if not future.done():
            future.set_exception(error)
