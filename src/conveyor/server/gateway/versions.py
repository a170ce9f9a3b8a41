"""What the deployment routes answer (DESIGN A11): the workspace's versions, a stop, a start,
a delete. The API's handlers (``deployments.py``) and the dashboard's buttons call these.

A stop lets the tasks already running finish: agents stop claiming the version's tasks, retire
its containers as they go idle, and start none. Its waiting tasks stay PENDING (and expire
after their ``ttl``) unless it is started again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from conveyor.clock import iso
from conveyor.server.gateway.state import GatewayState
from conveyor.server.store.records import AgentInfo, Stub, Workspace


def version_json(stub: Stub, agents: Sequence[AgentInfo]) -> dict[str, Any]:
    """One version; ``agents``: the live ones, of which those that run it are counted (none
    runs a stopped version)."""
    running = sum(agent.runs(stub.id, stub.type) for agent in agents) if stub.active else 0
    return {
        "stub_id": stub.id,
        "name": stub.name,
        "version": stub.version,
        "type": stub.type,
        "active": stub.active,
        "created_at": iso(stub.created_at),
        "agents": running,
    }


async def deployments(state: GatewayState, workspace: Workspace) -> list[dict[str, Any]]:
    """``GET /v2/deployment/``'s ``data``: every version, by queue name then version."""
    stubs = sorted(await state.store.list_stubs(workspace.id), key=lambda s: (s.name, s.version))
    agents = await state.agents.agents()
    return [version_json(stub, agents) for stub in stubs]


async def set_active(
    state: GatewayState, workspace: Workspace, stub_id: str, active: bool
) -> dict[str, Any]:
    """``POST /v2/deployment/{stub_id}/stop`` (``active`` False) and ``/start``."""
    stub = await state.store.set_stub_active(workspace.id, stub_id, active)
    return version_json(stub, await state.agents.agents())


async def delete(state: GatewayState, workspace: Workspace, stub_id: str) -> dict[str, Any]:
    """``DELETE /v2/deployment/{stub_id}``: the version with its finished tasks."""
    deleted = await state.store.delete_stub(workspace.id, stub_id)
    return {"stub_id": stub_id, "deleted_tasks": deleted}
