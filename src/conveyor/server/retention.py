"""The retention chore (DESIGN A11): every ``serve``, ``server`` and ``worker`` process deletes
finished tasks older than its ``--retention``, with their outputs, logs and attempts.

Each pass deletes batch after batch (``Store.prune``: one bounded transaction each) until none
is left, pausing between batches so enqueues and claims get the writer in between. Several
processes running it at once share the work; a retention of 0 keeps everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from conveyor import clock
from conveyor.errors import StoreError
from conveyor.server.store.base import Store

log = logging.getLogger("conveyor.retention")

#: Seconds between passes.
EVERY_S = 60.0
#: Seconds between two batches of a pass: the writer is free for others meanwhile.
PAUSE_S = 0.005


class Retention:
    def __init__(self, store: Store, retention_s: float, every_s: float = EVERY_S) -> None:
        self.store = store
        self.retention_s = retention_s
        self.every_s = every_s
        #: Set to end a pass after its current batch (the process stops).
        self.stop = asyncio.Event()

    async def run_once(self, now: float | None = None) -> int:
        """Delete what finished before ``now - retention_s``; how many tasks went."""
        if self.retention_s <= 0:
            return 0
        cutoff = (clock.now() if now is None else now) - self.retention_s
        total = 0
        while not self.stop.is_set() and (deleted := await self.store.prune(cutoff)):
            total += deleted
            await asyncio.sleep(PAUSE_S)
        if total:
            log.info("retention: %d finished task(s) deleted", total,
                     extra={"action": "tasks_pruned"})
        return total

    async def run(self) -> None:
        """Passes every ``every_s`` until ``stop`` is set."""
        while not self.stop.is_set():
            try:
                await self.run_once()
            except StoreError as exc:  # the next pass tries again
                log.warning("retention pass failed: %s", exc, extra={"action": "prune_failed"})
            except Exception:  # never end the loop: old tasks would pile up unseen
                log.exception("retention pass failed", extra={"action": "prune_failed"})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), self.every_s)


@contextlib.asynccontextmanager
async def retaining(store: Store, retention_s: float) -> AsyncIterator[None]:
    """The retention chore running until the block ends (nothing with a retention of 0)."""
    if retention_s <= 0:
        yield
        return
    retention = Retention(store, retention_s)
    loop = asyncio.create_task(retention.run())
    try:
        yield
    finally:
        retention.stop.set()
        with contextlib.suppress(Exception):  # its failures were logged
            await loop
