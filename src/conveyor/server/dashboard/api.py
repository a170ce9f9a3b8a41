"""The dashboard's reads: the gateway's answer functions, the very ones the JSON routes call
(same store queries, same validation, same JSON)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from conveyor.server.gateway import answers, insight
from conveyor.server.gateway.state import gateway_state
from conveyor.server.store.records import Workspace

#: Tasks per page of the tasks list.
PAGE_SIZE = 50
#: Log lines the task page renders on the server; its script streams the rest.
LOG_PAGE_SIZE = 1000


async def queue_list(request: Request, workspace: Workspace) -> list[dict[str, Any]]:
    """``GET /v2/taskqueue/``'s ``data``."""
    return await answers.queue_list(gateway_state(request), workspace)


async def task_page(
    request: Request, workspace: Workspace, status: str | None, queue: str | None,
    cursor: str | None,
) -> dict[str, Any]:
    """``GET /v2/task/?status=&queue=&limit=PAGE_SIZE&cursor=``; raises its ``BadRequest``."""
    state = gateway_state(request)
    query = answers.TaskQuery(status=status, queue=queue, limit=str(PAGE_SIZE), cursor=cursor)
    return await answers.task_page(state, state.base_url(request), workspace, query)


async def task(request: Request, workspace: Workspace, task_id: str) -> dict[str, Any]:
    """``GET /v2/task/{id}/``; raises its ``NotFound``."""
    state = gateway_state(request)
    return await answers.task(state, state.base_url(request), workspace, task_id)


async def task_insight(request: Request, workspace: Workspace, task_id: str) -> dict[str, Any]:
    """``GET /v2/task/{id}/input`` and ``.../attempts`` together; raises their ``NotFound``."""
    state = gateway_state(request)
    return {
        "input": await insight.task_input(state, workspace, task_id),
        "attempts": (await insight.task_attempts(state, workspace, task_id))["data"],
    }


async def task_logs(request: Request, workspace: Workspace, task_id: str) -> dict[str, Any]:
    """``GET /v2/task/{id}/logs?limit=LOG_PAGE_SIZE``: the first lines and the cursor after
    them (None when the task has ended and nothing is left); raises its ``NotFound``."""
    query = insight.LogQuery(limit=str(LOG_PAGE_SIZE))
    return await insight.task_logs(gateway_state(request), workspace, task_id, query)
