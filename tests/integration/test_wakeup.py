"""An enqueue wakes the agent by itself: the in-process commit on SQLite, NOTIFY on
PostgreSQL. The agent's poll interval is set far beyond the test's patience, so a task that
starts at all was claimed on the wake-up, not on a poll."""

from __future__ import annotations

import time

from conveyor.tasks import TaskStatus
from tests.integration.conftest import Harness


async def test_an_enqueue_wakes_a_claim_without_polling(harness: Harness) -> None:
    stub = await harness.queue("echo", "def handler(n):\n    return n\n")
    await harness.start_agent([stub], poll_s=30.0)
    first = await harness.wait(await harness.put(stub, 0))  # the container is warm now
    assert first.task.status is TaskStatus.COMPLETE
    for n in range(1, 4):
        began = time.monotonic()
        view = await harness.wait(await harness.put(stub, n), timeout=10.0)
        assert view.task.status is TaskStatus.COMPLETE
        assert time.monotonic() - began < 10.0  # the next poll would be 30 s away
