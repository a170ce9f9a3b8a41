"""The agents directory: each agent says, with its heartbeat, which stubs it runs.

Gateways read it to warn when an enqueue lands on a version that no live agent runs
(DESIGN A11). A row not renewed for ``AGENT_STALE_S`` is dead; writers prune such rows.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import orjson

from conveyor import clock
from conveyor.server.store.driver import Driver, Tx
from conveyor.server.store.records import AgentInfo
from conveyor.server.store.row_mapping import now_us

#: An agent silent this long is gone (its heartbeat comes every 2 s by default).
AGENT_STALE_S = 15.0


class AgentsMixin:
    """The agents methods of ``SqlStore``."""

    driver: Driver

    async def agent_alive(
        self,
        agent_id: str,
        runs_deployed: bool,
        stub_ids: Collection[str],
        now: float | None = None,
        *,
        builds: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        t = now_us(now)
        ids = orjson.dumps(sorted(stub_ids)).decode()
        states = orjson.dumps(builds or {}, option=orjson.OPT_SORT_KEYS).decode()

        async def op(tx: Tx) -> None:
            await tx.execute(
                "INSERT INTO agents (id, runs_deployed, stub_ids, started_at, heartbeat_at,"
                " builds) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE"
                " SET runs_deployed = excluded.runs_deployed, stub_ids = excluded.stub_ids,"
                " heartbeat_at = excluded.heartbeat_at, builds = excluded.builds",
                [agent_id, runs_deployed, ids, t, t, states],
            )
            await tx.execute(
                "DELETE FROM agents WHERE heartbeat_at < ?", [t - clock.to_us(AGENT_STALE_S)]
            )

        await self.driver.write(op)

    async def agent_gone(self, agent_id: str) -> None:
        await self.driver.write(
            lambda tx: tx.execute("DELETE FROM agents WHERE id = ?", [agent_id])
        )

    async def live_agents(self, now: float | None = None) -> list[AgentInfo]:
        stale = now_us(now) - clock.to_us(AGENT_STALE_S)
        rows = await self.driver.read(
            lambda tx: tx.execute(
                "SELECT id, runs_deployed, stub_ids, heartbeat_at, builds FROM agents"
                " WHERE heartbeat_at >= ? ORDER BY id",
                [stale],
            )
        )
        return [
            AgentInfo(
                str(r[0]),
                bool(r[1]),
                frozenset(orjson.loads(r[2])),
                int(r[3]),
                builds=orjson.loads(r[4]),
            )
            for r in rows
        ]
