"""The gateway app: FastAPI, with a short way in for the hot routes.

A request whose route is a ``PlainRoute`` (enqueue, task status) goes from the server straight
to the route's endpoint. Its path is matched against the same route table FastAPI uses, in the
same order, and its errors go to the same exception handlers, so the answer is the one FastAPI
would give. What it skips is the middleware stack and the router walk, which cost more CPU per
request than the endpoint does (profiled: about 40 % of a single enqueue). Any other request,
or one whose first matching route is not plain, takes FastAPI's way.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette._utils import get_route_path
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from conveyor.server.gateway.body_limit import BodyLimit
from conveyor.server.gateway.plain_route import PlainEndpoint, PlainRoute


class GatewayApp(FastAPI):
    def __init__(self, *args: Any, max_body_bytes: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.body_limit = BodyLimit(max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            found = self._plain(scope)
            if found is not None:
                await self._serve(*found, scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def _plain(self, scope: Scope) -> tuple[PlainEndpoint, dict[str, str]] | None:
        """The plain endpoint FastAPI would route ``scope`` to, with its path parameters."""
        path = get_route_path(scope)
        for route in self.router.routes:
            regex = getattr(route, "path_regex", None)
            if regex is None:
                return None
            match = regex.match(path)
            if match is None:
                continue
            if isinstance(route, PlainRoute) and scope["method"] in (route.methods or ()):
                return route.plain_endpoint, match.groupdict()
            return None
        return None

    async def _serve(
        self,
        endpoint: PlainEndpoint,
        params: dict[str, str],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        scope["app"] = self
        scope["path_params"] = params
        response = self.body_limit.refusal(scope)
        if response is None:
            request = Request(scope, self.body_limit.counted(receive), send)
            try:
                response = await endpoint(request)
            except Exception as exc:
                response = await self._handled(request, exc)
        await response(scope, receive, send)

    async def _handled(self, request: Request, exc: Exception) -> Response:
        """The answer of the app's exception handler for ``exc``, as FastAPI would give."""
        for kind in type(exc).__mro__:
            handler = self.exception_handlers.get(kind)
            if handler is not None:
                response = handler(request, exc)
                if not isinstance(response, Response):
                    response = await response
                return response
        raise exc
