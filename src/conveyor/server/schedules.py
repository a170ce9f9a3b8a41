"""Making schedules' ticks: a chore of every agent and every gateway.

Each pass reads every schedule with its last tick (one query), works out from its cron
expression which tick is due (``conveyor.cron``: the latest instant since the last tick, one
catch-up at most however many were missed) and asks the store to make it. Every maker
computes the same instant, and the store makes each (stub, instant) once, so "exactly one
task per tick" holds whatever runs, restarts included (``store/ticks.py``).

A tick is made only for a schedule that a live agent runs (the agent making it, or one the
gateway knows of): ticks missed while nothing ran become one catch-up when something does,
never a pile of tasks that nobody takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from conveyor import clock
from conveyor.clock import iso
from conveyor.cron import Due
from conveyor.errors import ConfigError, StoreError
from conveyor.server.store.base import Store
from conveyor.server.store.records import ScheduleInfo, Stub, Tick

log = logging.getLogger("conveyor.schedules")

#: Seconds between passes: a tick is made within about this long of its instant.
EVERY_S = 1.0

#: Whether a live agent runs a stub (so its ticks' tasks will be taken).
Runs = Callable[[Stub], Awaitable[bool]]


class Ticker:
    """Makes the due ticks of the schedules that ``runs`` accepts."""

    def __init__(self, store: Store, runs: Runs) -> None:
        self.store = store
        self._runs = runs
        #: Stubs whose config was said to be unusable (said once each).
        self._broken: set[str] = set()

    async def run_once(self, now: float) -> list[Tick]:
        """One pass at ``now``: the ticks this maker made (others may have made the rest)."""
        t = clock.to_us(now)
        made = []
        for info in await self.store.schedules():
            stub = info.stub
            due = self._due(info, t)
            if due is None or not await self._runs(stub):
                continue
            tick = await self.store.make_tick(stub, due.tick_at, due.catch_up, now)
            if tick is not None:
                made.append(tick)
                log.info(
                    "%s v%d ticked %s%s: task %s", stub.name, stub.version, iso(tick.tick_at),
                    " (catch-up)" if tick.catch_up else "",
                    tick.task_id or "refused (pending limit)",
                    extra={"action": "tick", "stub": stub.id, "task": tick.task_id},
                )
        return made

    def _due(self, info: ScheduleInfo, t: int) -> Due | None:
        """The tick due at ``t``; None when none is, or the stub's config cannot be read
        (one schedule's bad row never stops the others' ticks)."""
        stub = info.stub
        try:
            cron = stub.queue_config.cron()
        except ConfigError as exc:
            if stub.id not in self._broken:
                self._broken.add(stub.id)
                log.error("schedule %s (%s) makes no ticks: %s", stub.name, stub.id, exc,
                          extra={"action": "tick_failed"})
            return None
        if cron is None:
            return None
        # From its last tick, or from when this version took over (deployed, changed,
        # started again) if later: a new or restarted version does not catch up on ticks
        # missed before it ran; only downtime is caught up.
        since = max(info.last.tick_at if info.last else 0, stub.updated_at)
        return cron.due(since, t)


@contextlib.asynccontextmanager
async def ticking(store: Store, runs: Runs, every_s: float = EVERY_S) -> AsyncIterator[Ticker]:
    """A gateway's tick maker, running every ``every_s`` until the block ends."""
    ticker = Ticker(store, runs)

    async def loop() -> None:
        while True:
            try:
                await ticker.run_once(clock.now())
            except StoreError as exc:  # the next pass tries again
                log.warning("making ticks failed: %s", exc, extra={"action": "tick_failed"})
            await asyncio.sleep(every_s)

    task = asyncio.create_task(loop())
    try:
        yield ticker
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
