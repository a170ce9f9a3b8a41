"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from conveyor.server.gateway.auth import bearer_candidates, require_workspace
from conveyor.server.gateway.metrics import CONTENT_TYPE
from conveyor.server.gateway.responses import OrjsonResponse
from conveyor.server.gateway.state import gateway_state


async def healthz() -> OrjsonResponse:
    """The process answers."""
    return OrjsonResponse({"status": "ok"})


async def readyz(request: Request) -> OrjsonResponse:
    """The store answers; 503 otherwise. With an agent in this process (``serve``), also
    whether it sandboxes its worker processes (``false``: ``--no-sandbox``)."""
    await gateway_state(request).store.ping()
    body: dict[str, object] = {"status": "ok"}
    sandbox = getattr(request.app.state, "sandbox", None)
    if sandbox is not None:
        body["sandbox"] = sandbox
    return OrjsonResponse(body)


async def metrics(request: Request) -> Response:
    """A workspace's token sees its own queues; an operator token every workspace's."""
    state = gateway_state(request)
    workspace = None if await _is_operator(request) else await require_workspace(request)
    return Response(await state.metrics.render(state.store, workspace), media_type=CONTENT_TYPE)


async def _is_operator(request: Request) -> bool:
    candidates = bearer_candidates(request.headers.get("authorization") or "")
    return bool(candidates) and await gateway_state(request).store.is_operator_token(candidates[0])
