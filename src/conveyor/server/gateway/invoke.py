"""Invocation routes: enqueue one task or a batch, and warm a queue up.

Bodies are parsed by ``task_body.py`` (see there). ``callback_url`` is kept on the task,
except on the public route (no token), which ignores it: the queue's own callback_url applies
(DESIGN A13), so an anonymous caller cannot make the server POST to an address of its choice.

An ``Idempotency-Key`` is scoped to the queue (by the store) and to the caller: a public call's
keys live apart from the keys of token holders, so it can neither claim nor read theirs.
``Conveyor-Delay`` or ``Conveyor-Run-At`` puts off the start of every task of the call
(``start_time.py``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from conveyor import clock
from conveyor.errors import NotFound, StaleRoute, VersionStopped
from conveyor.server.gateway.agents import WARNING_HEADER
from conveyor.server.gateway.auth import invocation_workspace
from conveyor.server.gateway.bodies import read_object
from conveyor.server.gateway.errors import Unauthorized
from conveyor.server.gateway.responses import OrjsonResponse
from conveyor.server.gateway.start_time import DELAY_HEADER, RUN_AT_HEADER, start_time
from conveyor.server.gateway.state import GatewayState, gateway_state
from conveyor.server.gateway.task_body import MAX_TASKS_PER_CALL, parse_batch, parse_call
from conveyor.server.store.records import Stub, Workspace

__all__ = ["MAX_TASKS_PER_CALL", "bind", "enqueue_batch", "enqueue_one", "parse_call"]

_VERSION = re.compile(r"v(\d{1,9})")
#: Enqueues on a queue whose latest version changed meanwhile are resolved again this often.
STALE_ROUTE_TRIES = 3
#: The prefix of idempotency keys sent on the public route.
_PUBLIC_KEY_SCOPE = "public:"

StubResolver = Callable[[Request], Awaitable[Stub]]
Action = Callable[[Request, Stub], Awaitable[OrjsonResponse]]


# -- which stub a route addresses --------------------------------------------------------------


async def latest_stub(request: Request) -> Stub:
    workspace = await invocation_workspace(request)
    return await _resolve(request, workspace, request.path_params["name"], None)


async def versioned_stub(request: Request) -> Stub:
    workspace = await invocation_workspace(request)
    name, version = request.path_params["name"], request.path_params["version"]
    if version == "latest":
        return await _resolve(request, workspace, name, None)
    match = _VERSION.fullmatch(version)
    if not match:
        raise NotFound(f"unknown version {version!r} of queue {name!r}; use latest or v<N>")
    return await _resolve(request, workspace, name, int(match.group(1)))


async def stub_by_id(request: Request) -> Stub:
    workspace = await invocation_workspace(request)
    stub_id = request.path_params["stub_id"]
    stub = await gateway_state(request).store.get_stub(stub_id)
    if stub is None or stub.workspace_id != workspace.id:
        raise NotFound(f"unknown stub {stub_id!r}")
    return stub


async def public_stub(request: Request) -> Stub:
    stub_id = request.path_params["stub_id"]
    stub = await gateway_state(request).store.get_stub(stub_id)
    if stub is None:
        raise NotFound(f"unknown stub {stub_id!r}")
    if stub.queue_config.authorized:
        raise Unauthorized("this queue requires a token; call /taskqueue/<name> with one")
    request.state.public_call = True
    return stub


async def _resolve(request: Request, workspace: Workspace, name: str, version: int | None) -> Stub:
    cached = bool(getattr(request.state, "enqueues", False))
    stub = await gateway_state(request).store.resolve_stub(
        workspace.id, name, version, cached=cached
    )
    if stub is None:
        what = f"queue {name!r}" if version is None else f"version v{version} of queue {name!r}"
        raise NotFound(f"unknown {what}")
    return stub


# -- what the route does with it ---------------------------------------------------------------


def _is_public(request: Request) -> bool:
    return bool(getattr(request.state, "public_call", False))


def _idempotency_key(request: Request) -> str | None:
    """The header's key, in the caller's scope (the store adds the queue's)."""
    key = request.headers.get("idempotency-key") or None
    if key is not None and _is_public(request):
        return _PUBLIC_KEY_SCOPE + key
    return key


def _run_at(request: Request) -> int | None:
    headers = request.headers
    now = clock.to_us(clock.now())
    return start_time(headers.getlist(DELAY_HEADER), headers.getlist(RUN_AT_HEADER), now)


async def enqueue_one(request: Request, stub: Stub) -> OrjsonResponse:
    config = stub.queue_config
    task = parse_call(
        await read_object(request),
        config.callback_url,
        _idempotency_key(request),
        allow_callback_url=not _is_public(request),
        run_at=_run_at(request),
    )
    state = gateway_state(request)
    ids = await state.store.enqueue(stub, [task], config.max_pending_tasks)
    return await _warned(state, stub, OrjsonResponse({"task_id": ids[0]}))


async def enqueue_batch(request: Request, stub: Stub) -> OrjsonResponse:
    """All tasks or none. An ``Idempotency-Key`` applies per position: ``<key>#<index>``."""
    config = stub.queue_config
    tasks = parse_batch(
        await read_object(request),
        config.callback_url,
        _idempotency_key(request),
        allow_callback_url=not _is_public(request),
        run_at=_run_at(request),
    )
    state = gateway_state(request)
    ids = await state.store.enqueue(stub, tasks, config.max_pending_tasks) if tasks else []
    return await _warned(state, stub, OrjsonResponse({"task_ids": ids}))


async def warmup(request: Request, stub: Stub) -> OrjsonResponse:
    if not stub.active:  # a stopped version keeps no containers
        raise VersionStopped(stub.name, stub.version)
    await gateway_state(request).store.request_warmup(stub.id)
    return OrjsonResponse({})


async def _warned(state: GatewayState, stub: Stub, response: OrjsonResponse) -> OrjsonResponse:
    """The answer, with ``Conveyor-Warning`` when no live agent runs ``stub``."""
    warning = await state.agents.warning(stub)
    if warning is not None:
        response.headers[WARNING_HEADER] = warning
    return response


def bind(action: Action, resolver: StubResolver) -> Callable[[Request], Awaitable[Response]]:
    """A plain endpoint (see ``PlainRoute``) that resolves the stub with ``resolver`` and runs
    ``action`` on it. An enqueue may resolve a queue's latest version from the store's recent
    look-ups: its write re-checks the look-up, and a stale one is resolved again."""
    enqueues = action is not warmup

    async def endpoint(request: Request) -> Response:
        request.state.enqueues = enqueues
        for _ in range(STALE_ROUTE_TRIES - 1):
            try:
                return await action(request, await resolver(request))
            except StaleRoute:  # the store forgot that look-up: the next one reads it
                continue
        request.state.enqueues = False
        return await action(request, await resolver(request))

    endpoint.__name__ = f"{action.__name__}_{resolver.__name__}"
    return endpoint
