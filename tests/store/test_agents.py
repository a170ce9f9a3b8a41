"""The agents directory: who runs what, as the gateway's ``Conveyor-Warning`` reads it."""

from __future__ import annotations

from conveyor.server.store.agents import AGENT_STALE_S
from conveyor.server.store.base import Store
from conveyor.server.store.records import Workspace

from .conftest import CONFIG, T0


async def test_live_agents_say_what_they_run(store: Store, ws: Workspace) -> None:
    deployed = await store.deploy_stub(ws.id, "q", CONFIG, b"code")
    served = await store.upsert_serve_stub(ws.id, "s", CONFIG, b"code")
    assert await store.live_agents(T0) == []

    await store.agent_alive("worker-1", True, [], T0)
    await store.agent_alive("serve-1", False, [served.id], T0)
    agents = {a.id: a for a in await store.live_agents(T0 + 1)}
    assert set(agents) == {"worker-1", "serve-1"}
    assert agents["worker-1"].runs(deployed.id, deployed.type)
    assert not agents["worker-1"].runs(served.id, served.type)
    assert agents["serve-1"].runs(served.id, served.type)
    assert not agents["serve-1"].runs(deployed.id, deployed.type)

    # a renewal replaces what the agent runs
    await store.agent_alive("serve-1", True, [], T0 + 2)
    renewed = {a.id: a for a in await store.live_agents(T0 + 2)}["serve-1"]
    assert renewed.runs(deployed.id, deployed.type) and not renewed.stub_ids


async def test_silent_agents_drop_out_and_a_drained_one_leaves(store: Store) -> None:
    await store.agent_alive("old", True, [], T0)
    await store.agent_alive("new", True, [], T0 + AGENT_STALE_S)
    assert [a.id for a in await store.live_agents(T0 + AGENT_STALE_S + 1)] == ["new"]
    await store.agent_gone("new")
    await store.agent_gone("never-seen")  # no error
    assert await store.live_agents(T0 + AGENT_STALE_S + 1) == []
