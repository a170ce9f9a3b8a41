"""Sign-in: a dashboard session, its HttpOnly cookie, and the CSRF tokens of every form.

Signing in with an API token makes a store session (``Store.create_dashboard_session``); the
cookie holds the session's random id, never the token, and the store keeps only its hash, so a
revoked token (``conveyor token revoke``) signs its sessions out. The JSON API never reads the
cookie (its auth is not widened).

CSRF: every state-changing dashboard request (sign-in, sign-out, cancel) carries a token
derived from a secret the browser holds in an HttpOnly, SameSite=Strict cookie: before sign-in
a random pre-session id (``PRESESSION``), after it the session id. Another site can neither
read that cookie nor the page that shows the token, so it cannot forge the request. Forms
send the token as the ``csrf`` field, the page script as the ``X-Conveyor-CSRF`` header.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from conveyor.server.gateway.responses import error_response
from conveyor.server.gateway.state import gateway_state
from conveyor.server.store.base import DASHBOARD_SESSION_TTL_S
from conveyor.server.store.records import Workspace

PREFIX = "/dashboard"
#: The session id's cookie.
COOKIE = "conveyor_session"
#: Before sign-in: the random secret the sign-in form's CSRF token is derived from.
PRESESSION = "conveyor_presession"
#: The cookie of earlier versions, which held the raw token: deleted at sign-in and sign-out.
LEGACY_COOKIE = "conveyor_token"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-conveyor-csrf"
#: A pre-session cookie lives this long (a sign-in form left open longer is shown again).
PRESESSION_TTL_S = 3600
_MAX_SECRET = 100

SignedIn = Callable[[Request, Workspace], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def csrf_token(secret: str) -> str:
    """The CSRF token tied to a cookie's secret: a one-way function of it, so the page may
    show it and no one without the cookie's value can make it."""
    return hashlib.sha256(f"conveyor-dashboard-csrf:{secret}".encode()).hexdigest()


def csrf_matches(secret: str | None, token: str | None) -> bool:
    if not secret or not token or len(secret) > _MAX_SECRET or not token.isascii():
        return False
    return hmac.compare_digest(csrf_token(secret), token)


def _secure(request: Request) -> bool:
    """``Secure`` when the dashboard is reached over https: the public URL says so behind a
    TLS-terminating proxy, else the connection itself."""
    public_url = gateway_state(request).settings.public_url or ""
    return public_url.lower().startswith("https://") or request.url.scheme == "https"


def _set(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    """An HttpOnly (no script reads it), SameSite=Strict (no cross-site use) cookie."""
    response.set_cookie(
        name, value, max_age=max_age, path=PREFIX, httponly=True, samesite="strict",
        secure=_secure(request),
    )


def _forget(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(
        name, path=PREFIX, httponly=True, samesite="strict", secure=_secure(request)
    )


def presession_of(request: Request) -> str | None:
    value = request.cookies.get(PRESESSION)
    return value if value and len(value) <= _MAX_SECRET else None


def keep_presession(response: Response, request: Request, secret: str) -> None:
    _set(response, request, PRESESSION, secret, PRESESSION_TTL_S)


def new_presession() -> str:
    return secrets.token_urlsafe(32)


def keep_session(response: Response, request: Request, session: str) -> None:
    _set(response, request, COOKIE, session, int(DASHBOARD_SESSION_TTL_S))
    _forget(response, request, PRESESSION)
    _forget(response, request, LEGACY_COOKIE)


def forget_session(response: Response, request: Request) -> None:
    _forget(response, request, COOKIE)
    _forget(response, request, LEGACY_COOKIE)


def session_of(request: Request) -> str | None:
    value = request.cookies.get(COOKIE)
    return value if value and len(value) <= _MAX_SECRET else None


async def workspace_of(request: Request) -> Workspace | None:
    """The signed-in workspace; the session's CSRF token goes to ``request.state.csrf``."""
    session = session_of(request)
    if session is None:
        return None
    workspace = await gateway_state(request).store.dashboard_session(session)
    if workspace is not None:
        request.state.csrf = csrf_token(session)
    return workspace


def csrf_of(request: Request) -> str:
    """The signed-in page's CSRF token (set by ``workspace_of``)."""
    token = request.state.csrf
    assert isinstance(token, str)
    return token


def safe_next(target: str | None) -> str:
    """Where to go after sign-in: only a dashboard path (no open redirect)."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//"):
        return target
    return PREFIX + "/"


def page(handler: SignedIn) -> Endpoint:
    """A page: without a valid session, a redirect to the sign-in form that comes back here."""

    async def endpoint(request: Request) -> Response:
        workspace = await workspace_of(request)
        if workspace is None:
            here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"{PREFIX}/signin?next={quote(here, safe='')}", 303)
        return await handler(request, workspace)

    return endpoint


def live(handler: SignedIn) -> Endpoint:
    """A route the page scripts call: 401 JSON without a valid session."""

    async def endpoint(request: Request) -> Response:
        workspace = await workspace_of(request)
        if workspace is None:
            return error_response(401, "not signed in")
        return await handler(request, workspace)

    return endpoint


def write(handler: SignedIn) -> Endpoint:
    """A state-changing route the page script calls: ``live``, and 403 unless the
    ``X-Conveyor-CSRF`` header carries the session's CSRF token."""

    async def endpoint(request: Request, workspace: Workspace) -> Response:
        if not csrf_matches(session_of(request), request.headers.get(CSRF_HEADER)):
            return error_response(403, f"missing or wrong {CSRF_HEADER} header (reload the page)")
        return await handler(request, workspace)

    return live(endpoint)
