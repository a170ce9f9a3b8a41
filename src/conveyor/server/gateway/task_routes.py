"""Task routes: status, list, cancel. Every one is scoped to the caller's workspace."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request

from conveyor.clock import now, parse_iso
from conveyor.errors import NotFound
from conveyor.server.gateway.auth import require_workspace
from conveyor.server.gateway.bodies import read_object
from conveyor.server.gateway.errors import BadRequest
from conveyor.server.gateway.responses import OrjsonResponse
from conveyor.server.gateway.state import GatewayState, gateway_state
from conveyor.server.gateway.views import task_json
from conveyor.server.store.records import TaskFilter, TaskView, Workspace
from conveyor.tasks import TaskStatus

MAX_LIMIT = 1000


async def render_task(state: GatewayState, request: Request, view: TaskView) -> dict[str, Any]:
    state.metrics.observe_task(view.task)
    keys = await state.signer.keys()
    return task_json(view, state.base_url(request), keys, state.settings.output_url_ttl_s, now())


async def get_task(
    request: Request,
    task_id: str,
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> OrjsonResponse:
    state = gateway_state(request)
    view = await state.store.get_task(task_id, workspace.id)
    if view is None:
        raise NotFound(f"unknown task {task_id!r}")
    return OrjsonResponse(await render_task(state, request, view))


# get_task as a plain endpoint (see PlainRoute) for the hot status route. No docstring: it
# would become the route's OpenAPI description.
async def task_status(request: Request) -> OrjsonResponse:
    workspace = await require_workspace(request)
    return await get_task(request, request.path_params["task_id"], workspace)


async def list_tasks(
    request: Request,
    status: str | None = None,
    queue: str | None = None,
    stub_id: str | None = None,
    container_id: str | None = None,
    created_after: str | None = None,
    created_before: str | None = None,
    limit: str | None = None,
    cursor: str | None = None,
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> OrjsonResponse:
    """Newest first. Bad filter values are 400s that say what was expected."""
    task_filter = TaskFilter(
        statuses=_statuses(status),
        queue=queue or None,
        stub_id=stub_id or None,
        container_id=container_id or None,
        created_after=_instant("created_after", created_after),
        created_before=_instant("created_before", created_before),
    )
    state = gateway_state(request)
    try:
        views, next_cursor = await state.store.list_tasks(
            workspace.id, task_filter, _limit(limit), cursor or None
        )
    except ValueError as exc:
        raise BadRequest(f"invalid cursor: {exc}") from None
    data = [await render_task(state, request, view) for view in views]
    return OrjsonResponse({"data": data, "next_cursor": next_cursor})


async def cancel_tasks(
    request: Request,
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> OrjsonResponse:
    body = await read_object(request)
    ids = body.get("task_ids", body.get("ids"))
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise BadRequest('body must be {"task_ids": ["<task id>", ...]}')
    result = await gateway_state(request).store.cancel(workspace.id, list(dict.fromkeys(ids)))
    return OrjsonResponse(
        {
            "cancelled": result.cancelled,
            "already_finished": result.already_finished,
            "not_found": result.not_found,
        }
    )


def _statuses(text: str | None) -> frozenset[TaskStatus] | None:
    if not text:
        return None
    try:
        statuses = frozenset(TaskStatus.parse(p) for p in text.split(",") if p.strip())
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    return statuses or None


def _instant(name: str, text: str | None) -> int | None:
    if not text:
        return None
    try:
        return parse_iso(text)
    except (ValueError, OverflowError, OSError):
        raise BadRequest(f"{name} must be an ISO 8601 timestamp, got {text!r}") from None


def _limit(text: str | None) -> int:
    if text is None:
        return 100
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit()) or not 1 <= int(digits) <= MAX_LIMIT:
        raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}, got {text!r}")
    return int(digits)
