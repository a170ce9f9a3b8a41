"""The dashboard as a client of the gateway's API: it calls the very handlers the JSON routes
run (same store queries, same validation, same JSON) and renders what they answer."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from conveyor.server.gateway import queues, task_routes
from conveyor.server.store.records import Workspace

#: Tasks per page of the tasks list.
PAGE_SIZE = 50


def _json(response: Response) -> Any:
    return orjson.loads(bytes(response.body))


async def queue_list(request: Request, workspace: Workspace) -> list[dict[str, Any]]:
    """``GET /v2/taskqueue/``'s ``data``."""
    data = _json(await queues.list_queues(request, workspace))["data"]
    assert isinstance(data, list)
    return data


async def task_page(
    request: Request, workspace: Workspace, status: str | None, queue: str | None,
    cursor: str | None,
) -> dict[str, Any]:
    """``GET /v2/task/?status=&queue=&limit=PAGE_SIZE&cursor=``; raises its ``BadRequest``."""
    response = await task_routes.list_tasks(
        request, status=status, queue=queue, limit=str(PAGE_SIZE), cursor=cursor,
        workspace=workspace,
    )
    page = _json(response)
    assert isinstance(page, dict)
    return page


async def task(request: Request, workspace: Workspace, task_id: str) -> dict[str, Any]:
    """``GET /v2/task/{id}/``; raises its ``NotFound``."""
    found = _json(await task_routes.get_task(request, task_id, workspace))
    assert isinstance(found, dict)
    return found
