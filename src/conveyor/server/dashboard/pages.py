"""The pages: sign-in, queues, tasks, one task; and the fragments their scripts refresh."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from conveyor.errors import NotFound
from conveyor.server.dashboard import api
from conveyor.server.dashboard.render import html
from conveyor.server.dashboard.session import (
    PREFIX,
    forget_token,
    keep_token,
    safe_next,
)
from conveyor.server.gateway.errors import BadRequest
from conveyor.server.gateway.state import gateway_state
from conveyor.server.store.records import Workspace


async def signin_form(request: Request) -> Response:
    return html("signin.html", next=safe_next(request.query_params.get("next")), error=None)


async def signin(request: Request) -> Response:
    form = await request.form()
    token = str(form.get("token") or "").strip()
    target = safe_next(str(form.get("next") or ""))
    workspace = await gateway_state(request).store.authenticate(token) if token else None
    if workspace is None:
        return html("signin.html", 401, next=target, error="That token is not valid.")
    response = RedirectResponse(target, 303)
    keep_token(response, request, token)
    return response


async def signout(request: Request) -> Response:
    response = RedirectResponse(f"{PREFIX}/signin", 303)
    forget_token(response)
    return response


async def queues_page(request: Request, workspace: Workspace) -> Response:
    return html("queues.html", workspace=workspace,
                queues=await api.queue_list(request, workspace))


async def queue_rows(request: Request, workspace: Workspace) -> Response:
    return html("queue_rows.html", queues=await api.queue_list(request, workspace))


async def tasks_page(request: Request, workspace: Workspace) -> Response:
    params = request.query_params
    # Checkboxes send one ``status`` per box; links carry the API's comma list.
    status = ",".join(s for s in params.getlist("status") if s.strip()) or None
    queue = params.get("queue") or None
    cursor = params.get("cursor") or None
    names = sorted({stub.name for stub in await gateway_state(request).store.list_stubs(
        workspace.id)})
    page: dict[str, Any] = {"data": [], "next_cursor": None}
    code, error = 200, None
    if queue is not None and queue not in names:
        # The API answers an unknown queue with no tasks: say so, never show it as empty.
        code, error = 404, f"unknown queue {queue!r}"
    else:
        try:
            page = await api.task_page(request, workspace, status, queue, cursor)
        except BadRequest as exc:
            code, error = 400, str(exc)
    chosen = {s.strip().upper().replace("ERROR", "FAILED") for s in (status or "").split(",")}
    filters = {k: v for k, v in (("status", status), ("queue", queue)) if v}
    next_url = (f"{PREFIX}/tasks?{urlencode({**filters, 'cursor': page['next_cursor']})}"
                if page["next_cursor"] else None)
    first_url = f"{PREFIX}/tasks?{urlencode(filters)}" if cursor else None
    return html("tasks.html", code, workspace=workspace, tasks=page["data"],
                error=error, chosen=chosen, queue=queue, queue_names=names,
                next_url=next_url, first_url=first_url)


async def task_page(request: Request, workspace: Workspace) -> Response:
    return await _task(request, workspace, "task.html")


async def task_detail(request: Request, workspace: Workspace) -> Response:
    return await _task(request, workspace, "task_detail.html")


async def _task(request: Request, workspace: Workspace, template: str) -> Response:
    task_id = request.path_params["task_id"]
    try:
        task = await api.task(request, workspace, task_id)
    except NotFound:
        return html("not_found.html", 404, workspace=workspace, task_id=task_id)
    return html(template, workspace=workspace, task=task)
