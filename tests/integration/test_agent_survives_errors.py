"""Found by the fault suite (a CI run of ``conveyor serve`` stalled with thousands of tasks
PENDING and idle workers): an unexpected error ended an agent loop silently, and the process
went on answering HTTP while it never claimed again. Every agent loop now logs and goes on,
and ``serve`` exits (code 1) if its agent or gateway ends anyway, so a supervisor can restart it."""

from __future__ import annotations

import asyncio
import logging

import pytest

from conveyor.errors import PartEnded
from conveyor.server.agent.agent import Agent
from conveyor.server.agent.settings import AgentSettings
from conveyor.server.gateway.app import create_app
from conveyor.server.gateway.settings import GatewaySettings
from conveyor.server.run import _run_together, _uvicorn
from conveyor.server.store.base import Store
from tests.faults.cluster import free_port
from tests.integration.conftest import until


async def test_dispatch_goes_on_after_an_unexpected_error(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    agent = Agent(store, AgentSettings(stub_types=(), poll_s=0.01))
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
            await until(lambda: len(calls) >= 2)
        assert len(calls) >= 2, "dispatch never ran again after the error"
        assert not loop.done()
        assert "dispatch failed" in caplog.text
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)


async def test_tick_goes_on_after_an_unexpected_error(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    agent = Agent(store, AgentSettings(stub_types=(), poll_s=0.01, tick_s=0.01))
    ticks: list[float] = []

    async def tick(now: float) -> None:
        ticks.append(now)
        if len(ticks) == 1:
            raise KeyError("a bug in a periodic chore")

    agent.tick = tick  # type: ignore[method-assign]
    stop = asyncio.Event()
    running = asyncio.create_task(agent.run(stop))
    try:
        with caplog.at_level(logging.ERROR):
            await until(lambda: len(ticks) >= 3)
        assert len(ticks) >= 3, "the agent stopped ticking after the error"
        assert not running.done()
        assert "tick failed" in caplog.text
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)


async def test_serve_exits_when_its_agent_dies(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    async def dying_agent() -> None:
        await asyncio.sleep(0.2)
        raise RuntimeError("the agent died")

    server = _uvicorn(create_app(store, GatewaySettings()), "127.0.0.1", free_port())
    stop = asyncio.Event()
    with caplog.at_level(logging.CRITICAL), pytest.raises(PartEnded):
        await asyncio.wait_for(_run_together(stop, server, dying_agent()), 30)
    assert stop.is_set()
    assert "ended unexpectedly" in caplog.text
    assert "the agent died" in caplog.text
