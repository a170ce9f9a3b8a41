"""Which stubs live agents run, as a gateway sees it: the store's agents directory, cached.

An enqueue onto a version no live agent runs still succeeds (the task waits, and an agent that
starts later takes it), but its answer carries ``Conveyor-Warning`` so the caller is not left
wondering why it stays PENDING (DESIGN A11).
"""

from __future__ import annotations

import asyncio
import time

from conveyor.server.store.base import Store
from conveyor.server.store.records import AgentInfo, Stub

#: The directory is re-read at most this often: an enqueue costs no extra round trip.
REFRESH_S = 2.0
WARNING_HEADER = "Conveyor-Warning"


class AgentDirectory:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._agents: list[AgentInfo] = []
        self._read_at = -REFRESH_S
        self._lock = asyncio.Lock()

    async def agents(self) -> list[AgentInfo]:
        if time.monotonic() - self._read_at >= REFRESH_S:
            async with self._lock:  # one reader at a time; the others take its answer
                if time.monotonic() - self._read_at >= REFRESH_S:
                    self._agents = await self._store.live_agents()
                    self._read_at = time.monotonic()
        return self._agents

    async def runs(self, stub: Stub) -> bool:
        """Some live agent runs ``stub``."""
        return any(agent.runs(stub.id, stub.type) for agent in await self.agents())

    async def warning(self, stub: Stub) -> str | None:
        """The ``Conveyor-Warning`` for an enqueue onto ``stub``, if no live agent runs it."""
        if await self.runs(stub):
            return None
        return no_agent_runs(stub.name, stub.version)


def no_agent_runs(name: str, version: int) -> str:
    return f"no agent runs {name} v{version}"
