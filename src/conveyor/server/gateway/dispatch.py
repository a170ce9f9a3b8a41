"""The gateway app: one way in for every request, over the one route table.

Every HTTP request, whatever its route (plain, FastAPI, streaming, dashboard, docs), is
matched here against the route table in order, has its body limited here, has its errors
answered here by the app's exception handlers, and gets the security headers here
(``SECURITY_HEADERS``): a gateway-wide concern is written once.
FastAPI builds the OpenAPI document from the same table and runs the lifespan; its middleware
stack and router walk are not on the request path, because they cost more CPU per request
than an enqueue's endpoint does (profiled: about 40 % of a single enqueue).
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.asyncexitstack import AsyncExitStackMiddleware
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.server.gateway.body_limit import BodyLimit
from conveyor.server.gateway.plain_route import PlainRoute
from conveyor.server.gateway.responses import error_response
from conveyor.server.gateway.settings import GatewaySettings

DEFAULT_MAX_HEADER_BYTES = GatewaySettings().max_header_bytes

#: Sent with every answer (DESIGN A13) unless the route set its own value: no framing, no
#: content sniffing, and a policy allowing only the gateway's own scripts, styles and images
#: (no inline script or style; ``/docs`` sets a policy naming its one inline script's hash).
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy",
     b"default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
)
_SECURITY_NAMES = frozenset(name for name, _ in SECURITY_HEADERS)


def secured(send: Send) -> Send:
    """``send`` with ``SECURITY_HEADERS`` added to the response start."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", ()))
            present = {name.lower() for name, _ in headers if name.lower() in _SECURITY_NAMES}
            headers.extend(h for h in SECURITY_HEADERS if h[0] not in present)
            message = {**message, "headers": headers}
        await send(message)

    return sending


class GatewayApp(FastAPI):
    """FastAPI over ``routes``, served by ``dispatch``; the table is fixed at construction."""

    def __init__(self, *args: Any, max_body_bytes: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.body_limit = BodyLimit(max_body_bytes)
        self.table = [(_pattern(route), route, _asgi(route)) for route in self.router.routes]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self
        if scope["type"] == "http":
            await self.dispatch(scope, receive, send)
        else:
            await self.router(scope, receive, send)  # the lifespan

    def add_middleware(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("the gateway has one request path, dispatch: no middleware stack")

    async def dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        send = secured(send)
        if head_bytes(scope) > self._max_header_bytes():
            await error_response(431, f"request headers over {self._max_header_bytes()} bytes",
                                 {"Connection": "close"})(scope, receive, send)
            return
        refusal = self.body_limit.refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._route(scope, self.body_limit.counted(receive), watched)
        except Exception as exc:
            if started:  # too late for an error answer: the server logs it
                raise
            response = await self._handled(Request(scope, receive, send), exc)
            await response(scope, receive, send)

    def _max_header_bytes(self) -> int:
        """The settings' bound (DESIGN A13); the connection (``connection``) enforces it
        before parsing under ``conveyor serve``/``server``, this under any other server."""
        limit: int | None = getattr(self, "_header_limit", None)
        if limit is None:
            gateway = getattr(self.state, "gateway", None)
            settings = getattr(gateway, "settings", None)
            limit = getattr(settings, "max_header_bytes", DEFAULT_MAX_HEADER_BYTES)
            assert isinstance(limit, int)
            self._header_limit = limit
        return limit

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        """As starlette's router: the first full match; else the first route of the path,
        which answers 405; else 404."""
        path = route_path(scope)
        partial: tuple[BaseRoute, Scope] | None = None
        for pattern, route, app in self.table:
            if not pattern.match(path):  # most routes tried miss: say so cheaply
                continue
            match, child = route.matches(scope)
            if match is Match.FULL:
                scope.update(child)
                await app(scope, receive, send)
                return
            if match is Match.PARTIAL and partial is None:
                partial = route, child
        if partial is None:
            raise HTTPException(404)
        scope.update(partial[1])
        await partial[0].handle(scope, receive, send)

    async def _handled(self, request: Request, exc: Exception) -> Response:
        """The answer of the app's exception handler for ``exc`` (the nearest class)."""
        for kind in type(exc).__mro__:
            handler = self.exception_handlers.get(kind)
            if handler is not None:
                response = handler(request, exc)
                if not isinstance(response, Response):
                    response = await response
                return response
        raise exc


def head_bytes(scope: Scope) -> int:
    """The size of a request's headers as received: names, values and their separators."""
    return sum(len(name) + len(value) + 4 for name, value in scope["headers"])


def route_path(scope: Scope) -> str:
    """The path the routes match: without the ``root_path`` a proxy (or a mount) put before."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root) and (path == root or path[len(root)] == "/"):
        return path[len(root):]
    return path


def _pattern(route: BaseRoute) -> re.Pattern[str]:
    assert isinstance(route, Route | Mount), f"no path pattern: {route!r}"
    return route.path_regex


def _asgi(route: BaseRoute) -> ASGIApp:
    """What serves a full match of ``route``."""
    if isinstance(route, APIRoute) and not isinstance(route, PlainRoute):
        # FastAPI's handlers keep uploaded files in the stack its middleware opens.
        return AsyncExitStackMiddleware(route.app)
    assert isinstance(route, Route | Mount)
    return route.app
