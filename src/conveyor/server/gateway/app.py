"""The gateway ASGI app: ``create_app(store, settings)`` and the one route table."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute

from conveyor.server.gateway import (
    beam_routes,
    deploy,
    downloads,
    health,
    queues,
    schedules,
    secret_routes,
    sse,
    task_routes,
)
from conveyor.server.gateway.agents import AgentDirectory
from conveyor.server.gateway.beam_schemas import (
    BeamDeploymentOut,
    BeamDeploymentPageOut,
    BeamTaskOut,
    BeamTaskPageOut,
    BeamUrlOut,
    BeamWorkspaceOut,
)
from conveyor.server.gateway.dispatch import GatewayApp
from conveyor.server.gateway.errors import install_error_handlers
from conveyor.server.gateway.invoke import (
    bind,
    enqueue_batch,
    enqueue_one,
    latest_stub,
    public_stub,
    stub_by_id,
    versioned_stub,
    warmup,
)
from conveyor.server.gateway.metrics import CONTENT_TYPE, GatewayMetrics
from conveyor.server.gateway.openapi import (
    BATCH_BODY,
    CANCEL_BODY,
    DEPLOY_BODY,
    ENQUEUE_BODY,
    REPLAY_BODY,
    SECRET_BODY,
    START_HEADERS,
    clean_openapi,
    docs_routes,
    responses,
)
from conveyor.server.gateway.plain_route import PlainRoute
from conveyor.server.gateway.responses import OrjsonResponse
from conveyor.server.gateway.schemas import (
    AttemptListOut,
    CancelOut,
    DeletedOut,
    DeploymentListOut,
    DeploymentVersionOut,
    DeployOut,
    EmptyOut,
    HealthOut,
    LogPageOut,
    QueueListOut,
    QueueOut,
    ScheduleListOut,
    SecretListOut,
    SecretOut,
    TaskIdOut,
    TaskIdsOut,
    TaskInputOut,
    TaskOut,
    TaskPageOut,
)
from conveyor.server.gateway.settings import GatewaySettings
from conveyor.server.gateway.signing import OutputSigner
from conveyor.server.gateway.state import GatewayState
from conveyor.server.secret_key import SecretKey
from conveyor.server.store.base import Store

Endpoint = Callable[..., Any]

#: Error statuses each kind of route documents (every route may also answer 413 and 503).
_ENQUEUE = (400, 401, 404, 409, 429)
_READ = (400, 401, 404)
_FOUND = (401, 404)
_STREAM = (400, 401, 404, 429)
_REPLAY = (400, 401, 404, 409, 429)
_OPERATE = (401, 404, 409)
_AUTHED: dict[str, Any] = {"security": [{"bearer": []}]}
_INVOKE_AUTH: dict[str, Any] = {"security": [{"bearer": []}, {"basic": []}]}


def _route(
    path: str,
    endpoint: Endpoint,
    method: str,
    summary: str,
    model: type | None,
    errors: Sequence[int],
    *,
    hidden: bool = False,
    body: dict[str, Any] | None = None,
    headers: list[dict[str, Any]] | None = None,
    auth: dict[str, Any] | None = _AUTHED,
    response_class: type[Response] = OrjsonResponse,
    media_type: str = "application/json",
    plain: bool = False,
    name: str | None = None,
) -> APIRoute:
    """One documented route; ``plain`` serves it as a ``PlainRoute`` (hot paths)."""
    extra: dict[str, Any] = dict(auth or {})
    if body is not None:
        extra["requestBody"] = body
    if headers is not None:
        extra["parameters"] = headers
    return (PlainRoute if plain else APIRoute)(
        path,
        endpoint,
        name=name,
        methods=[method],
        summary=summary,
        response_model=None,
        response_class=response_class,
        responses=responses(model, errors, media_type),
        include_in_schema=not hidden,
        openapi_extra=extra or None,
    )


def create_app(
    store: Store,
    settings: GatewaySettings | None = None,
    *,
    manage_store: bool = False,
    mounted: Sequence[BaseRoute] = (),
    secret_key: SecretKey | None = None,
) -> FastAPI:
    """The gateway app over ``store``.

    Parameters
    ----------
    manage_store
        The app's lifespan opens and closes the store, inside the server's event loop;
        otherwise the caller passes an opened store and closes it.
    mounted
        Routes served after the gateway's own, through the same dispatch (the dashboard's).
    secret_key
        Encrypts the workspaces' secrets; None: no key, so creating one answers 503.
    """
    settings = settings or GatewaySettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if manage_store:
                await store.open()
                stack.push_async_callback(store.close)
            yield

    app = GatewayApp(
        max_body_bytes=settings.max_body_bytes,
        title="Conveyor",
        summary="Task queues over HTTP",
        version="1",
        routes=[*routes, *mounted],
        lifespan=lifespan,
        redirect_slashes=False,
        docs_url=None,  # /docs is in the route table, with local assets
        redoc_url=None,
    )
    app.state.gateway = GatewayState(
        store=store,
        settings=settings,
        signer=OutputSigner(store),
        metrics=GatewayMetrics(),
        agents=AgentDirectory(store),
        secret_key=secret_key or SecretKey(),
    )
    install_error_handlers(app, settings.retry_after_s)
    clean_openapi(app)
    return app


one, batch = enqueue_one, enqueue_batch

#: Every route of the gateway, in matching order: fixed segments before parameters.
routes: list[BaseRoute] = [
    # -- invocation ----------------------------------------------------------------------
    _route("/taskqueue/public/{stub_id}", bind(one, public_stub), "POST",
           "Enqueue a task on a public queue (no token)", TaskIdOut, _ENQUEUE,
           body=ENQUEUE_BODY, headers=START_HEADERS, auth=None, plain=True),
    _route("/taskqueue/id/{stub_id}/batch", bind(batch, stub_by_id), "POST",
           "Enqueue tasks on a stub, all or nothing", TaskIdsOut, _ENQUEUE,
           body=BATCH_BODY, headers=START_HEADERS, auth=_INVOKE_AUTH, plain=True),
    _route("/taskqueue/id/{stub_id}/warmup", bind(warmup, stub_by_id), "POST",
           "Start a container for a stub", EmptyOut, _ENQUEUE, auth=_INVOKE_AUTH, plain=True),
    _route("/taskqueue/id/{stub_id}", bind(one, stub_by_id), "POST",
           "Enqueue a task on a stub", TaskIdOut, _ENQUEUE,
           body=ENQUEUE_BODY, headers=START_HEADERS, auth=_INVOKE_AUTH, plain=True),
    _route("/taskqueue/{name}/batch", bind(batch, latest_stub), "POST",
           "Enqueue tasks on a queue's latest version, all or nothing", TaskIdsOut, _ENQUEUE,
           body=BATCH_BODY, headers=START_HEADERS, auth=_INVOKE_AUTH, plain=True),
    _route("/taskqueue/{name}/warmup", bind(warmup, latest_stub), "POST",
           "Start a container for a queue's latest version", EmptyOut, _ENQUEUE,
           auth=_INVOKE_AUTH, plain=True),
    _route("/taskqueue/{name}/{version}/batch", bind(batch, versioned_stub), "POST",
           "Enqueue tasks on a queue version (latest or vN), all or nothing", TaskIdsOut,
           _ENQUEUE, body=BATCH_BODY, headers=START_HEADERS, auth=_INVOKE_AUTH, plain=True),
    _route("/taskqueue/{name}/{version}/warmup", bind(warmup, versioned_stub), "POST",
           "Start a container for a queue version (latest or vN)", EmptyOut, _ENQUEUE,
           auth=_INVOKE_AUTH, plain=True),
    _route("/taskqueue/{name}/{version}", bind(one, versioned_stub), "POST",
           "Enqueue a task on a queue version (latest or vN)", TaskIdOut, _ENQUEUE,
           body=ENQUEUE_BODY, headers=START_HEADERS, auth=_INVOKE_AUTH, plain=True),
    _route("/taskqueue/{name}", bind(one, latest_stub), "POST",
           "Enqueue a task on a queue's latest version", TaskIdOut, _ENQUEUE,
           body=ENQUEUE_BODY, headers=START_HEADERS, auth=_INVOKE_AUTH, plain=True),
    # -- tasks ---------------------------------------------------------------------------
    _route("/v2/task/cancel/", task_routes.cancel_tasks, "DELETE",
           "Cancel tasks", CancelOut, (400, 401), body=CANCEL_BODY),
    _route("/v2/task/cancel/", task_routes.cancel_tasks, "POST",
           "Cancel tasks", CancelOut, (400, 401), body=CANCEL_BODY),
    _route("/v2/task/cancel", task_routes.cancel_tasks, "DELETE",
           "Cancel tasks", CancelOut, (400, 401), hidden=True),
    _route("/v2/task/cancel", task_routes.cancel_tasks, "POST",
           "Cancel tasks", CancelOut, (400, 401), hidden=True),
    _route("/v2/task/replay/", task_routes.replay_tasks, "POST",
           "Replay finished tasks by id or by filter", TaskIdsOut, _REPLAY, body=REPLAY_BODY),
    _route("/v2/task/replay", task_routes.replay_tasks, "POST",
           "Replay finished tasks", TaskIdsOut, _REPLAY, hidden=True),
    _route("/v2/task/", task_routes.list_tasks, "GET",
           "List tasks, newest first", TaskPageOut, (400, 401)),
    _route("/v2/task", task_routes.list_tasks, "GET",
           "List tasks, newest first", TaskPageOut, (400, 401), hidden=True),
    _route("/v2/task/{task_id}/subscribe", sse.subscribe_task, "GET",
           "Stream status changes as server-sent events", None, _READ,
           response_class=StreamingResponse, media_type="text/event-stream"),
    _route("/v2/task/{task_id}/replay", task_routes.replay_task, "POST",
           "Replay a finished task: its input enqueued again", TaskIdsOut, _REPLAY),
    _route("/v2/task/{task_id}/input", task_routes.task_input, "GET",
           "The arguments the task's handler is called with", TaskInputOut, _FOUND),
    _route("/v2/task/{task_id}/attempts", task_routes.task_attempts, "GET",
           "The task's attempts, oldest first", AttemptListOut, _FOUND),
    _route("/v2/task/{task_id}/logs", task_routes.task_logs, "GET",
           "What the task printed, a page of lines", LogPageOut, _READ),
    _route("/v2/task/{task_id}/logs/stream", sse.stream_task_logs, "GET",
           "Stream the task's lines as server-sent events", None, _STREAM,
           response_class=StreamingResponse, media_type="text/event-stream"),
    _route("/v2/task/{task_id}/", task_routes.task_status, "GET",
           "Task status", TaskOut, _READ, plain=True, name="get_task"),
    _route("/v2/task/{task_id}", task_routes.task_status, "GET",
           "Task status", TaskOut, _READ, hidden=True, plain=True, name="get_task"),
    # -- outputs, queues, deployments ----------------------------------------------------
    _route("/v2/output/{output_id}/{name}", downloads.download_output, "GET",
           "Download an output file (signed link, or a token)", None, (403, 404),
           auth=None, response_class=Response, media_type="application/octet-stream"),
    _route("/v2/taskqueue/", queues.list_queues, "GET",
           "Queues with versions, depth, containers and counts", QueueListOut, (401,)),
    _route("/v2/taskqueue", queues.list_queues, "GET",
           "Queues", QueueListOut, (401,), hidden=True),
    _route("/v2/taskqueue/{name}", queues.get_queue, "GET",
           "One queue", QueueOut, _READ),
    _route("/v2/schedule/", schedules.list_schedules, "GET",
           "Schedules: the version that ticks, the next ticks, the last", ScheduleListOut,
           (401,)),
    _route("/v2/schedule", schedules.list_schedules, "GET",
           "Schedules", ScheduleListOut, (401,), hidden=True),
    _route("/v2/deployment/", deploy.deploy, "POST",
           "Deploy the next version of a queue", DeployOut, (400, 401), body=DEPLOY_BODY),
    _route("/v2/deployment", deploy.deploy, "POST",
           "Deploy", DeployOut, (400, 401), hidden=True),
    # -- secrets (names and dates out, never values) -------------------------------------
    _route("/v2/secret/", secret_routes.put_secret, "POST",
           "Create or update a secret", SecretOut, (400, 401), body=SECRET_BODY),
    _route("/v2/secret", secret_routes.put_secret, "POST",
           "Create or update a secret", SecretOut, (400, 401), hidden=True),
    _route("/v2/secret/", secret_routes.list_secrets, "GET",
           "List secrets: names and dates", SecretListOut, (401,)),
    _route("/v2/secret", secret_routes.list_secrets, "GET",
           "List secrets", SecretListOut, (401,), hidden=True),
    _route("/v2/secret/{name}", secret_routes.delete_secret, "DELETE",
           "Delete a secret", EmptyOut, _READ),
    # -- Beam's clients (DESIGN A12): Beam's /api/v1 dialect over the same store ----------
    _route("/api/v1/workspace/current", beam_routes.current_workspace, "GET",
           "Beam's clients: the token's workspace", BeamWorkspaceOut, (401,)),
    _route("/api/v1/task/{workspace_id}/{task_id}/subscribe", beam_routes.subscribe_task, "GET",
           "Beam's clients: stream a task's status changes", None, _STREAM,
           response_class=StreamingResponse, media_type="text/event-stream"),
    _route("/api/v1/task/{workspace_id}/{task_id}", beam_routes.get_task, "GET",
           "Beam's clients: a task", BeamTaskOut, _FOUND),
    _route("/api/v1/task/{workspace_id}", beam_routes.list_tasks, "GET",
           "Beam's clients: tasks, newest first", BeamTaskPageOut, (400, 401)),
    _route("/api/v1/task/{workspace_id}", beam_routes.cancel_tasks, "DELETE",
           "Beam's clients: cancel tasks", EmptyOut, (400, 401),
           body={**CANCEL_BODY, "required": False}),
    _route("/api/v1/deployment/{deployment_id}/url", beam_routes.deployment_url, "GET",
           "Beam's clients: where to enqueue onto a deployment", BeamUrlOut, _FOUND),
    _route("/api/v1/deployment/{workspace_id}/{deployment_id}", beam_routes.get_deployment,
           "GET", "Beam's clients: a deployment (a queue version)", BeamDeploymentOut, _FOUND),
    _route("/api/v1/deployment/{workspace_id}", beam_routes.list_deployments, "GET",
           "Beam's clients: deployments, newest first", BeamDeploymentPageOut, (400, 401)),
    _route("/api/v1/stub/{stub_id}/url", beam_routes.stub_url, "GET",
           "Beam's clients: where to enqueue onto a stub", BeamUrlOut, _FOUND),
    _route("/v2/deployment/", deploy.list_deployments, "GET",
           "Versions of every queue, active or stopped", DeploymentListOut, (401,)),
    _route("/v2/deployment", deploy.list_deployments, "GET",
           "Versions", DeploymentListOut, (401,), hidden=True),
    _route("/v2/deployment/{stub_id}/stop", deploy.stop_deployment, "POST",
           "Stop a version", DeploymentVersionOut, _OPERATE),
    _route("/v2/deployment/{stub_id}/start", deploy.start_deployment, "POST",
           "Start a stopped version", DeploymentVersionOut, _OPERATE),
    _route("/v2/deployment/{stub_id}", deploy.delete_deployment, "DELETE",
           "Delete a version with its tasks (409 while any is unfinished)", DeletedOut, _OPERATE),
    # -- operations ----------------------------------------------------------------------
    _route("/healthz", health.healthz, "GET", "Liveness", HealthOut, (), auth=None),
    _route("/readyz", health.readyz, "GET", "Readiness: the store answers", HealthOut, (),
           auth=None),
    _route("/metrics", health.metrics, "GET", "Prometheus metrics", None, (401,),
           response_class=Response, media_type=CONTENT_TYPE),
    *docs_routes,
]
