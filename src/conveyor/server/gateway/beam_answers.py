"""What the routes of Beam's ``/api/v1`` dialect answer (DESIGN A12), as functions of the
gateway state.

Tasks are read, listed and cancelled through conveyor's own answer functions (``answers``),
and a deployment is one stub of the store, so both dialects see the same tasks the same way.
Everything is scoped to the caller's workspace: a workspace id in a path is never read.

A Beam filter that conveyor cannot apply is refused (400), never ignored, so a filtered list
never comes back unfiltered.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from conveyor.errors import NotFound
from conveyor.server.gateway import answers, beam_views
from conveyor.server.gateway.errors import BadRequest
from conveyor.server.gateway.state import GatewayState
from conveyor.server.store.records import Stub, Workspace

#: A page of Beam's lists when no ``limit`` is given (0 means the same there).
DEFAULT_PAGE = 10
#: Filters of Beam's lists that conveyor's store does not have.
UNSUPPORTED_TASK_FILTERS = (
    "task_ids", "stub_types", "app_id", "min_duration", "max_duration", "offset",
)
UNSUPPORTED_DEPLOYMENT_FILTERS = ("subdomain", "search_query", "app_id", "min_containers", "offset")
#: ``strconv.ParseBool``'s words, which Beam's gateway reads its flags with.
_BOOLS = {"1": True, "t": True, "true": True, "0": False, "f": False, "false": False}


@dataclass(frozen=True)
class TaskListQuery:
    """The query of ``GET /api/v1/task/{workspace_id}`` that conveyor applies, as sent.
    Comma-separated lists as in Beam; conveyor filters by one stub, name or container."""

    limit: str | None = None
    cursor: str | None = None
    status: str | None = None
    stub_ids: str | None = None
    stub_names: str | None = None
    container_ids: str | None = None
    created_at_start: str | None = None
    created_at_end: str | None = None


@dataclass(frozen=True)
class DeploymentListQuery:
    """The query of ``GET /api/v1/deployment/{workspace_id}`` that conveyor applies, as sent.
    ``name`` matches part of a name, as in Beam."""

    limit: str | None = None
    cursor: str | None = None
    pagination: str | None = None
    stub_type: str | None = None
    stub_ids: str | None = None
    name: str | None = None
    active: str | None = None
    version: str | None = None
    created_at_start: str | None = None
    created_at_end: str | None = None


def refuse_unsupported(params: Mapping[str, str], names: Sequence[str]) -> None:
    given = [name for name in names if params.get(name)]
    if given:
        raise BadRequest(f"conveyor cannot filter by {', '.join(given)}")


async def task(
    state: GatewayState, base_url: str, workspace: Workspace, task_id: str
) -> dict[str, Any]:
    return beam_views.task_json(await answers.task(state, base_url, workspace, task_id), workspace)


async def task_page(
    state: GatewayState, base_url: str, workspace: Workspace, query: TaskListQuery
) -> dict[str, Any]:
    """Newest first, ``{"data": [...], "next": "<cursor>" | ""}`` as Beam pages."""
    for name in ("created_at_start", "created_at_end"):
        answers.instant(name, getattr(query, name))  # say which one is bad, in Beam's words
    page = await answers.task_page(state, base_url, workspace, answers.TaskQuery(
        status=query.status,
        queue=_one("stub_names", query.stub_names),
        stub_id=_one("stub_ids", query.stub_ids),
        container_id=_one("container_ids", query.container_ids),
        created_after=query.created_at_start,
        created_before=query.created_at_end,
        limit=query.limit if _given(query.limit) else str(DEFAULT_PAGE),
        cursor=query.cursor,
    ))
    data = [beam_views.task_json(item, workspace) for item in page["data"]]
    return {"data": data, "next": page["next_cursor"] or ""}


async def cancel(
    state: GatewayState, workspace: Workspace, body: dict[str, Any], task_ids: str | None
) -> dict[str, Any]:
    """Beam's stop: ids in the body (``ids`` or ``task_ids``) or the query (``task_ids``,
    comma-separated); ``{}`` whatever each one was, as Beam answers."""
    if "ids" not in body and "task_ids" not in body and task_ids:
        body = {"task_ids": [part for part in task_ids.split(",") if part]}
    await answers.cancel(state, workspace, body)
    return {}


async def deployment_page(
    state: GatewayState, base_url: str, workspace: Workspace, query: DeploymentListQuery
) -> dict[str, Any]:
    """Newest first, ``{"data": [...], "next": "<cursor>" | ""}``. Beam answers every
    deployment unless asked to paginate; conveyor answers them in pages, of ``limit``, else
    of ``DEFAULT_PAGE`` when asked to paginate, else of as many as a page may hold."""
    wanted = _deployment_filter(query)
    after = _position_of(query.cursor) if query.cursor else None
    paged = _flag("pagination", query.pagination)
    size = DEFAULT_PAGE if paged else answers.MAX_LIMIT
    if _given(query.limit):
        size = answers.limit_of(query.limit, size)
    stubs = sorted((s for s in await state.store.list_stubs(workspace.id) if wanted(s)),
                   key=_position, reverse=True)
    if after is not None:
        stubs = [stub for stub in stubs if _position(stub) < after]
    page = stubs[:size]
    data = [beam_views.deployment_json(stub, workspace, base_url) for stub in page]
    return {"data": data, "next": _cursor(page[-1]) if len(stubs) > size else ""}


async def deployment(
    state: GatewayState, base_url: str, workspace: Workspace, deployment_id: str
) -> dict[str, Any]:
    stub = await own_stub(state, workspace, deployment_id, "deployment")
    return beam_views.deployment_json(stub, workspace, base_url)


async def url(
    state: GatewayState, base_url: str, workspace: Workspace, stub_id: str, kind: str
) -> dict[str, Any]:
    """``{"url"}``: where to enqueue onto a stub (``kind``: what the route calls it)."""
    stub = await own_stub(state, workspace, stub_id, kind)
    return {"url": beam_views.stub_url(base_url, stub)}


async def own_stub(state: GatewayState, workspace: Workspace, stub_id: str, kind: str) -> Stub:
    stub = await state.store.get_stub(stub_id)
    if stub is None or stub.workspace_id != workspace.id:
        raise NotFound(f"unknown {kind} {stub_id!r}")
    return stub


def _deployment_filter(query: DeploymentListQuery) -> Callable[[Stub], bool]:
    """The query as a test of one stub; a bad value is a ``BadRequest`` at once."""
    types, ids = set(_many(query.stub_type)), set(_many(query.stub_ids))
    name = query.name or ""
    active = _flag("active", query.active)
    version = _count("version", query.version)
    start = answers.instant("created_at_start", query.created_at_start)
    end = answers.instant("created_at_end", query.created_at_end)

    def wanted(stub: Stub) -> bool:
        return ((not types or stub.type in types) and (not ids or stub.id in ids)
                and name in stub.name and active is not False
                and (not version or stub.version == version)
                and (start is None or stub.created_at >= start)
                and (end is None or stub.created_at <= end))

    return wanted


def _position(stub: Stub) -> tuple[int, str]:
    return stub.created_at, stub.id


def _cursor(stub: Stub) -> str:
    text = f"{stub.created_at}:{stub.id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _position_of(cursor: str) -> tuple[int, str]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, _, stub_id = text.partition(":")
        if not (created.isascii() and created.isdigit()) or not stub_id:
            raise ValueError
        return int(created), stub_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequest(f"invalid cursor: malformed cursor {cursor!r}") from None


def _given(limit: str | None) -> bool:
    """Whether a ``limit`` was asked for: Beam reads 0 (and nothing) as its default."""
    return limit not in (None, "", "0")


def _many(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _one(name: str, text: str | None) -> str | None:
    values = _many(text)
    if len(values) > 1:
        raise BadRequest(f"{name}: conveyor filters by one value at a time, got {len(values)}")
    return values[0] if values else None


def _flag(name: str, text: str | None) -> bool | None:
    if text is None or text == "":
        return None
    flag = _BOOLS.get(text.lower())
    if flag is None:
        raise BadRequest(f"{name} must be true or false, got {text!r}")
    return flag


def _count(name: str, text: str | None) -> int:
    if not text:
        return 0
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 9:
        raise BadRequest(f"{name} must be a whole number, got {text!r}")
    return int(digits)
