"""Route classes of the gateway, built for the cost of a request.

Every route is a ``GatewayRoute``: the router tries routes in order, and one whose path
pattern does not match says so without running FastAPI's matching.

A ``PlainRoute`` endpoint takes only the ``Request`` (path parameters from
``request.path_params``, the token from the headers) and returns the ``Response``. FastAPI
still matches the route and documents it, but no dependency is solved and no exit stack is
opened per request. Errors propagate to the app's exception handlers exactly as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.routing import APIRoute

# Starlette's own helper, so the path is tested exactly as in Route.matches.
from starlette._utils import get_route_path
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

PlainEndpoint = Callable[[Request], Awaitable[Response]]


class GatewayRoute(APIRoute):
    """An ``APIRoute`` that answers ``Match.NONE`` at once when its anchored path pattern does
    not match the request path, which is what FastAPI's matching would conclude after more
    work. Most routes the router tries for a request are such misses."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and not self.path_regex.match(get_route_path(scope)):
            return Match.NONE, {}
        return super().matches(scope)


class PlainRoute(GatewayRoute):
    """An ``APIRoute`` whose endpoint is ``async def endpoint(request) -> Response``.

    Its path parameters (strings) are declared in the OpenAPI operation by hand, as FastAPI
    would have derived them from ``name: str`` arguments.
    """

    def __init__(self, path: str, endpoint: PlainEndpoint, **kwargs: Any) -> None:
        extra: dict[str, Any] = dict(kwargs.pop("openapi_extra", None) or {})
        extra["parameters"] = [_path_parameter(name) for name in compile_path(path)[2]]
        super().__init__(path, endpoint, openapi_extra=extra, **kwargs)
        self.plain_endpoint = endpoint
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
