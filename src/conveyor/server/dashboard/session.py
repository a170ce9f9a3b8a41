"""Sign-in: the token lives in an HttpOnly cookie scoped to the dashboard's paths.

The cookie is checked with the store's ``authenticate``, exactly as the API checks a Bearer
token; the JSON API itself never reads it (its auth is not widened).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from conveyor.server.gateway.responses import error_response
from conveyor.server.gateway.state import gateway_state
from conveyor.server.store.records import Workspace

PREFIX = "/dashboard"
COOKIE = "conveyor_token"

SignedIn = Callable[[Request, Workspace], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


async def workspace_of(request: Request) -> Workspace | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    return await gateway_state(request).authenticate(token)


def keep_token(response: Response, request: Request, token: str) -> None:
    """A session cookie: HttpOnly (no script reads it), SameSite=Strict (no cross-site use)."""
    response.set_cookie(
        COOKIE,
        token,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def forget_token(response: Response) -> None:
    response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict")


def safe_next(target: str | None) -> str:
    """Where to go after sign-in: only a dashboard path (no open redirect)."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//"):
        return target
    return PREFIX + "/"


def page(handler: SignedIn) -> Endpoint:
    """A page: without a valid cookie, a redirect to the sign-in form that comes back here."""

    async def endpoint(request: Request) -> Response:
        workspace = await workspace_of(request)
        if workspace is None:
            here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"{PREFIX}/signin?next={quote(here, safe='')}", 303)
        return await handler(request, workspace)

    return endpoint


def live(handler: SignedIn) -> Endpoint:
    """A route the page scripts call: 401 JSON without a valid cookie."""

    async def endpoint(request: Request) -> Response:
        workspace = await workspace_of(request)
        if workspace is None:
            return error_response(401, "not signed in")
        return await handler(request, workspace)

    return endpoint
