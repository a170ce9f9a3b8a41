"""The route class of the gateway's hot paths (enqueue, task status).

A ``PlainRoute`` endpoint takes only the ``Request`` (path parameters from
``request.path_params``, the token from the headers) and returns the ``Response``. FastAPI
still documents the route, but no dependency is solved and no exit stack is opened per
request. Errors propagate to the app's exception handlers, as from any route.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

PlainEndpoint = Callable[[Request], Awaitable[Response]]


class PlainRoute(APIRoute):
    """An ``APIRoute`` whose endpoint is ``async def endpoint(request) -> Response``.

    Its path parameters (strings) are declared in the OpenAPI operation by hand, as FastAPI
    would have derived them from ``name: str`` arguments, before any others it is given.
    """

    def __init__(self, path: str, endpoint: PlainEndpoint, **kwargs: Any) -> None:
        extra: dict[str, Any] = dict(kwargs.pop("openapi_extra", None) or {})
        extra["parameters"] = [
            *(_path_parameter(name) for name in compile_path(path)[2]),
            *extra.get("parameters", ()),
        ]
        super().__init__(path, endpoint, openapi_extra=extra, **kwargs)
        self.app = _serve(endpoint)


def _serve(endpoint: PlainEndpoint) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        response = await endpoint(Request(scope, receive, send))
        await response(scope, receive, send)

    return app


def _path_parameter(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "title": name.replace("_", " ").title()},
    }
