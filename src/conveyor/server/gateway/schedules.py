"""``GET /v2/schedule/``: the schedules of the caller's workspace (DESIGN A10)."""

from __future__ import annotations

from fastapi import Depends, Request

from conveyor import clock
from conveyor.server.gateway.auth import require_workspace
from conveyor.server.gateway.responses import OrjsonResponse
from conveyor.server.gateway.state import gateway_state
from conveyor.server.gateway.views import schedule_json
from conveyor.server.store.records import Workspace


async def list_schedules(
    request: Request,
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> OrjsonResponse:
    """Each schedule by name: its ticking version, next ticks and last tick."""
    found = await gateway_state(request).store.schedules(workspace.id)
    now = clock.to_us(clock.now())
    return OrjsonResponse({"data": [schedule_json(info, now) for info in found]})
