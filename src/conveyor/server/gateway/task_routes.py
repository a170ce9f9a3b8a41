"""Task routes: status, list, cancel, replay, input, attempts, logs. Every one is scoped to the
caller's workspace."""

from __future__ import annotations

from fastapi import Depends, Request

from conveyor.server.gateway import answers, insight
from conveyor.server.gateway.auth import require_workspace
from conveyor.server.gateway.bodies import read_object
from conveyor.server.gateway.errors import BadRequest
from conveyor.server.gateway.invoke import MAX_TASKS_PER_CALL
from conveyor.server.gateway.responses import OrjsonResponse
from conveyor.server.gateway.state import gateway_state
from conveyor.server.store.records import Workspace


# The hot status route, a plain endpoint (see PlainRoute). No docstring: it would become the
# route's OpenAPI description.
async def task_status(request: Request) -> OrjsonResponse:
    workspace = await require_workspace(request)
    state = gateway_state(request)
    task_id = request.path_params["task_id"]
    return OrjsonResponse(await answers.task(state, state.base_url(request), workspace, task_id))


async def list_tasks(
    request: Request,
    query: answers.TaskQuery = Depends(),  # noqa: B008
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> OrjsonResponse:
    """Newest first. Bad filter values are 400s that say what was expected."""
    state = gateway_state(request)
    page = await answers.task_page(state, state.base_url(request), workspace, query)
    return OrjsonResponse(page)


async def cancel_tasks(
    request: Request,
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> OrjsonResponse:
    body = await read_object(request)
    ids = body.get("task_ids", body.get("ids"))
    if isinstance(ids, list) and len(ids) > MAX_TASKS_PER_CALL:
        raise BadRequest(f"a cancel call names at most {MAX_TASKS_PER_CALL} tasks, got {len(ids)}")
    return OrjsonResponse(await answers.cancel(gateway_state(request), workspace, body))


async def task_input(
    request: Request,
    task_id: str,
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> OrjsonResponse:
    """Exactly the arguments the handler is called with."""
    return OrjsonResponse(await insight.task_input(gateway_state(request), workspace, task_id))


async def task_attempts(
    request: Request,
    task_id: str,
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> OrjsonResponse:
    """Oldest first, one per attempt: its container, times, outcome, error and process exit."""
    state = gateway_state(request)
    return OrjsonResponse(await insight.task_attempts(state, workspace, task_id))


async def task_logs(
    request: Request,
    task_id: str,
    query: insight.LogQuery = Depends(),  # noqa: B008
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> OrjsonResponse:
    """Oldest first, at most `limit` (1..1000, default 1000) lines; `next_cursor` gives the next
    page. Filters: `attempt` (1, 2, …) and `stream` (stdout or stderr)."""
    state = gateway_state(request)
    return OrjsonResponse(await insight.task_logs(state, workspace, task_id, query))


async def replay_task(
    request: Request,
    task_id: str,
    version: str | None = None,
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> OrjsonResponse:
    """Enqueue the finished task's input again, on its version (`version=latest`: on the
    version its queue's unversioned route goes to); the new task's `replay_of` names it."""
    state = gateway_state(request)
    return OrjsonResponse(await answers.replay(state, workspace, {"task_ids": [task_id]}, version))


async def replay_tasks(
    request: Request,
    version: str | None = None,
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> OrjsonResponse:
    """`{"task_ids": [...]}` or a filter `{"status": "FAILED", "queue": "resize",
    "created_after": "..."}` (finished tasks only, at most 1000): each enqueued again, all or
    nothing, in the order they were first enqueued."""
    body = await read_object(request)
    state = gateway_state(request)
    return OrjsonResponse(await answers.replay(state, workspace, body, version))
