"""What the task and queue routes answer, as functions of the gateway state.

The API's handlers and the dashboard's pages both call these (same store queries, same
validation, same JSON), so neither calls the other's handlers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conveyor.clock import now, parse_iso
from conveyor.errors import NotFound
from conveyor.server.gateway.errors import BadRequest
from conveyor.server.gateway.state import GatewayState
from conveyor.server.gateway.views import queue_json, task_json
from conveyor.server.store.records import TaskFilter, TaskView, Workspace
from conveyor.tasks import TERMINAL, TaskStatus

MAX_LIMIT = 1000
#: The filter keys of a replay body: those of ``GET /v2/task/``.
REPLAY_FILTERS = ("status", "queue", "stub_id", "created_after", "created_before")


@dataclass(frozen=True)
class TaskQuery:
    """The query of ``GET /v2/task/``, as sent: strings, checked by ``task_page``. The route
    takes it as a dependency, so these fields are its documented query parameters."""

    status: str | None = None
    queue: str | None = None
    stub_id: str | None = None
    container_id: str | None = None
    created_after: str | None = None
    created_before: str | None = None
    limit: str | None = None
    cursor: str | None = None


async def render_task(state: GatewayState, base_url: str, view: TaskView) -> dict[str, Any]:
    state.metrics.observe_task(view.task)
    keys = await state.signer.keys()
    return task_json(view, base_url, keys, state.settings.output_url_ttl_s, now())


async def task(
    state: GatewayState, base_url: str, workspace: Workspace, task_id: str
) -> dict[str, Any]:
    """``GET /v2/task/{id}/``; ``NotFound`` for a task of no such id in ``workspace``."""
    view = await state.store.get_task(task_id, workspace.id)
    if view is None:
        raise NotFound(f"unknown task {task_id!r}")
    return await render_task(state, base_url, view)


async def task_page(
    state: GatewayState, base_url: str, workspace: Workspace, query: TaskQuery
) -> dict[str, Any]:
    """``GET /v2/task/``, newest first; a bad value is a ``BadRequest`` that says what was
    expected."""
    task_filter = TaskFilter(
        statuses=_statuses(query.status),
        queue=query.queue or None,
        stub_id=query.stub_id or None,
        container_id=query.container_id or None,
        created_after=_instant("created_after", query.created_after),
        created_before=_instant("created_before", query.created_before),
    )
    try:
        views, next_cursor = await state.store.list_tasks(
            workspace.id, task_filter, limit_of(query.limit, 100), query.cursor or None
        )
    except ValueError as exc:
        raise BadRequest(f"invalid cursor: {exc}") from None
    data = [await render_task(state, base_url, view) for view in views]
    return {"data": data, "next_cursor": next_cursor}


async def cancel(state: GatewayState, workspace: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    """``POST /v2/task/cancel/`` with its JSON ``body`` read."""
    ids = body.get("task_ids", body.get("ids"))
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise BadRequest('body must be {"task_ids": ["<task id>", ...]}')
    result = await state.store.cancel(workspace.id, list(dict.fromkeys(ids)))
    return {
        "cancelled": result.cancelled,
        "already_finished": result.already_finished,
        "not_found": result.not_found,
    }


async def replay(
    state: GatewayState, workspace: Workspace, body: dict[str, Any], version: str | None
) -> dict[str, Any]:
    """``POST /v2/task/replay/`` (and ``/v2/task/{id}/replay`` as ``{"task_ids": [id]}``):
    the finished tasks named by ``task_ids`` or matched by a filter, enqueued again, all or
    nothing; ``version``: None for each task's own version, ``latest`` for its queue's route."""
    if version not in (None, "latest"):
        raise BadRequest(f"version must be latest (or not given), got {version!r}")
    unknown = sorted(set(body) - {"task_ids", *REPLAY_FILTERS})
    if unknown or not body or ("task_ids" in body and len(body) > 1):
        raise BadRequest(
            'body must be {"task_ids": ["<task id>", ...]} or a filter of '
            + ", ".join(REPLAY_FILTERS)
            + (f"; unknown key(s): {', '.join(unknown)}" if unknown else "")
        )
    ids = body.get("task_ids")
    if ids is None:
        ids = await _matching(state, workspace, body)
    elif not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise BadRequest('task_ids must be a list of task ids')
    elif len(ids) > MAX_LIMIT:
        raise BadRequest(f"a replay names at most {MAX_LIMIT} tasks, got {len(ids)}")
    if not ids:
        return {"task_ids": []}
    return {"task_ids": await state.store.replay(workspace.id, ids, latest=version is not None)}


async def _matching(state: GatewayState, workspace: Workspace, body: dict[str, Any]) -> list[str]:
    """The ids of the finished tasks a replay filter matches: at most ``MAX_LIMIT``, else a
    ``BadRequest`` (the rest would be left out, and the same filter would match again)."""
    for key, value in body.items():
        if not isinstance(value, str) and not (
            key == "status" and isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            raise BadRequest(f"{key} must be a string")
    status = body.get("status")
    statuses = _statuses(",".join(status) if isinstance(status, list) else status) or TERMINAL
    if not statuses <= TERMINAL:
        raise BadRequest(
            "a replay takes finished tasks: status must be among "
            + ", ".join(sorted(TERMINAL))
        )
    task_filter = TaskFilter(
        statuses=frozenset(statuses),
        queue=body.get("queue") or None,
        stub_id=body.get("stub_id") or None,
        created_after=_instant("created_after", body.get("created_after")),
        created_before=_instant("created_before", body.get("created_before")),
    )
    views, more = await state.store.list_tasks(workspace.id, task_filter, MAX_LIMIT)
    if more is not None:
        raise BadRequest(
            f"the filter matches more than {MAX_LIMIT} tasks: narrow it (created_after, "
            "created_before) and replay each part"
        )
    return [view.task.id for view in reversed(views)]  # oldest first, as they were enqueued


async def queue_list(state: GatewayState, workspace: Workspace) -> list[dict[str, Any]]:
    """``GET /v2/taskqueue/``'s ``data``."""
    summaries = await state.store.queue_summaries(workspace.id)
    agents = await state.agents.agents()
    return [queue_json(s, agents) for s in summaries]


async def queue(state: GatewayState, workspace: Workspace, name: str) -> dict[str, Any]:
    """``GET /v2/taskqueue/{name}``; ``NotFound`` for a queue of no such name."""
    summaries = await state.store.queue_summaries(workspace.id, name)
    if not summaries:
        raise NotFound(f"unknown queue {name!r}")
    return queue_json(summaries[0], await state.agents.agents())


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


def limit_of(text: str | None, default: int) -> int:
    """A page's ``limit`` query value (1..``MAX_LIMIT``); ``default`` when not given."""
    if text is None:
        return default
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit()) or not 1 <= int(digits) <= MAX_LIMIT:
        raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}, got {text!r}")
    return int(digits)
