"""Route handlers of Beam's ``/api/v1`` dialect (DESIGN A12), the routes Beam's own clients
call: the Python ``beta9.client.client.Client`` and ``@beamcloud/beam-js``.

The ``workspace_id`` of a path is Beam's; it is declared (so documented) and never read: the
token says whose tasks and deployments these are. What each route answers is in
``beam_answers``.
"""

from __future__ import annotations

from fastapi import Depends, Request

from conveyor.server.gateway import beam_answers, beam_views
from conveyor.server.gateway.auth import require_workspace
from conveyor.server.gateway.bodies import read_object
from conveyor.server.gateway.responses import OrjsonResponse
from conveyor.server.gateway.state import gateway_state
from conveyor.server.gateway.streams import EventStream, task_stream
from conveyor.server.store.records import Workspace


async def current_workspace(
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> OrjsonResponse:
    """The token's workspace; its `external_id` is what the other routes take as
    `workspace_id`."""
    return OrjsonResponse(beam_views.workspace_json(workspace))


async def get_task(
    request: Request,
    workspace_id: str,
    task_id: str,
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> OrjsonResponse:
    state = gateway_state(request)
    return OrjsonResponse(await beam_answers.task(state, state.base_url(request), workspace,
                                                  task_id))


async def list_tasks(
    request: Request,
    workspace_id: str,
    query: beam_answers.TaskListQuery = Depends(),  # noqa: B008
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> OrjsonResponse:
    """Newest first, `limit` (1..1000, default 10) a page; `next` is the next page's
    `cursor`. Beam's filters conveyor has not (`task_ids`, `stub_types`, …) are 400s."""
    beam_answers.refuse_unsupported(request.query_params, beam_answers.UNSUPPORTED_TASK_FILTERS)
    state = gateway_state(request)
    page = await beam_answers.task_page(state, state.base_url(request), workspace, query)
    return OrjsonResponse(page)


async def cancel_tasks(
    request: Request,
    workspace_id: str,
    task_ids: str | None = None,
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> OrjsonResponse:
    """Cancel the tasks named in the body (`{"ids": [...]}` or `{"task_ids": [...]}`) or in the
    query (`task_ids=a,b`); tasks of other workspaces are untouched."""
    body = await read_object(request)
    state = gateway_state(request)
    return OrjsonResponse(await beam_answers.cancel(state, workspace, body, task_ids))


async def subscribe_task(
    request: Request,
    workspace_id: str,
    task_id: str,
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> EventStream:
    """`event: status` with the task's JSON per change, ending after the terminal status."""
    state = gateway_state(request)
    return await task_stream(state, state.base_url(request), workspace, task_id,
                             lambda task: beam_views.task_json(task, workspace))


async def list_deployments(
    request: Request,
    workspace_id: str,
    query: beam_answers.DeploymentListQuery = Depends(),  # noqa: B008
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> OrjsonResponse:
    """Every version of every queue (a deployment is one stub), newest first, in pages."""
    beam_answers.refuse_unsupported(request.query_params,
                                    beam_answers.UNSUPPORTED_DEPLOYMENT_FILTERS)
    state = gateway_state(request)
    page = await beam_answers.deployment_page(state, state.base_url(request), workspace, query)
    return OrjsonResponse(page)


async def get_deployment(
    request: Request,
    workspace_id: str,
    deployment_id: str,
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> OrjsonResponse:
    state = gateway_state(request)
    return OrjsonResponse(await beam_answers.deployment(state, state.base_url(request),
                                                        workspace, deployment_id))


async def deployment_url(
    request: Request,
    deployment_id: str,
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> OrjsonResponse:
    """The conveyor route that enqueues onto this version."""
    state = gateway_state(request)
    return OrjsonResponse(await beam_answers.url(state, state.base_url(request), workspace,
                                                 deployment_id, "deployment"))


async def stub_url(
    request: Request,
    stub_id: str,
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> OrjsonResponse:
    """The conveyor route that enqueues onto this stub."""
    state = gateway_state(request)
    return OrjsonResponse(await beam_answers.url(state, state.base_url(request), workspace,
                                                 stub_id, "stub"))
