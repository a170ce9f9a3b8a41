"""The dispatch loop outlives an unexpected error: before, any exception other than a store
error ended it silently and the agent never claimed again (the stall of a CI fault run)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from conveyor.agent.agent import Agent, AgentSettings
from conveyor.store.base import Store


async def test_dispatch_goes_on_after_an_unexpected_error(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    agent = Agent(store, AgentSettings(stub_ids=frozenset(), poll_s=0.01))
    calls: list[float] = []

    async def dispatch(now: float) -> int:
        calls.append(now)
        if len(calls) == 1:
            raise RuntimeError("a bug in dispatch")
        return 0

    agent.dispatch = dispatch  # type: ignore[method-assign]
    loop = asyncio.create_task(agent._dispatch_loop())
    try:
        with caplog.at_level(logging.ERROR):
            agent._wake.set()
            for _ in range(200):
                if len(calls) >= 2:
                    break
                await asyncio.sleep(0.01)
        assert len(calls) >= 2, "dispatch never ran again after the error"
        assert not loop.done()
        assert "dispatch failed" in caplog.text
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
