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
    CSRF_FIELD,
    PREFIX,
    csrf_matches,
    csrf_of,
    csrf_token,
    forget_session,
    keep_presession,
    keep_session,
    new_presession,
    presession_of,
    safe_next,
    session_of,
)
from conveyor.server.gateway.errors import BadRequest
from conveyor.server.gateway.state import gateway_state
from conveyor.server.store.records import Workspace

#: Said when a form's CSRF token is missing or wrong; nothing is done.
CSRF_REFUSED = ("This form has expired or did not come from this dashboard; nothing was done."
                " Please try again.")


def _signin_page(request: Request, status_code: int, target: str, error: str | None) -> Response:
    """The sign-in form, with the CSRF token of the browser's pre-session cookie (made here
    when it has none)."""
    secret = presession_of(request) or new_presession()
    response = html("signin.html", status_code, next=target, error=error,
                    csrf=csrf_token(secret))
    keep_presession(response, request, secret)
    return response


async def signin_form(request: Request) -> Response:
    return _signin_page(request, 200, safe_next(request.query_params.get("next")), None)


async def signin(request: Request) -> Response:
    form = await request.form()
    token = str(form.get("token") or "").strip()
    target = safe_next(str(form.get("next") or ""))
    if not csrf_matches(presession_of(request), str(form.get(CSRF_FIELD) or "")):
        return _signin_page(request, 403, target, CSRF_REFUSED)
    store = gateway_state(request).store
    session = await store.create_dashboard_session(token) if token else None
    if session is None:
        return _signin_page(request, 401, target, "That token is not valid.")
    response = RedirectResponse(target, 303)
    keep_session(response, request, session)
    return response


async def signout(request: Request) -> Response:
    """POST only, with the session's CSRF token: the session is deleted from the store."""
    session = session_of(request)
    form = await request.form()
    if session is not None and await gateway_state(request).store.dashboard_session(session):
        if not csrf_matches(session, str(form.get(CSRF_FIELD) or "")):
            return html("refused.html", 403, message=CSRF_REFUSED)
        await gateway_state(request).store.delete_dashboard_session(session)
    response = RedirectResponse(f"{PREFIX}/signin", 303)
    forget_session(response, request)
    return response


def _page(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    """A signed-in page: its sign-out form and script carry the session's CSRF token."""
    return html(template, status_code, csrf=csrf_of(request), **context)


async def queues_page(request: Request, workspace: Workspace) -> Response:
    return _page(request, "queues.html", workspace=workspace,
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
    return _page(request, "tasks.html", code, workspace=workspace, tasks=page["data"],
                error=error, chosen=chosen, queue=queue, queue_names=names,
                next_url=next_url, first_url=first_url)


async def task_page(request: Request, workspace: Workspace) -> Response:
    return await _task(request, workspace, "task.html", with_logs=True)


async def task_detail(request: Request, workspace: Workspace) -> Response:
    """The part of the task page its script replaces on each status change; the log panel
    is outside it (its lines are streamed, never rendered twice)."""
    return await _task(request, workspace, "task_detail.html")


async def _task(
    request: Request, workspace: Workspace, template: str, with_logs: bool = False
) -> Response:
    task_id = request.path_params["task_id"]
    try:
        # The task before its log: the page streams the rest of the log unless the task had
        # already ended (its lines were stored) and this first page holds them all.
        task = await api.task(request, workspace, task_id)
        seen = await api.task_insight(request, workspace, task_id)
        logs = await api.task_logs(request, workspace, task_id) if with_logs else None
    except NotFound:
        return _page(request, "not_found.html", 404, workspace=workspace, task_id=task_id)
    return _page(request, template, workspace=workspace, task=task, logs=logs, **seen)
