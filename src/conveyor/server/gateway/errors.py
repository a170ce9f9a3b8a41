"""From exceptions to HTTP answers: one table, and handlers that make every error
``{"error": "<message>"}`` (unknown paths, wrong methods and validation included).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette import status
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from conveyor.errors import (
    ConfigError,
    ConveyorError,
    InvalidTransition,
    NotFound,
    OutputTooLarge,
    PendingLimitExceeded,
    StoreError,
    StoreUnavailable,
)
from conveyor.server.gateway.responses import error_response

log = logging.getLogger(__name__)


class GatewayError(ConveyorError):
    """The request cannot be served."""


class BadRequest(GatewayError):
    """Bad request."""


class Unauthorized(GatewayError):
    """Missing or invalid token."""


class Forbidden(GatewayError):
    """Forbidden."""


class BodyTooLarge(GatewayError):
    """Request body too large."""


class HeadersTooLarge(GatewayError):
    """Request line and headers too large."""


class TooManyStreams(GatewayError):
    """The workspace has its most event streams open."""


#: The one mapping from the error tree to status codes. First match wins, so subclasses
#: come before their bases.
STATUS_BY_ERROR: tuple[tuple[type[ConveyorError], int], ...] = (
    (BadRequest, status.HTTP_400_BAD_REQUEST),
    (ConfigError, status.HTTP_400_BAD_REQUEST),
    (Unauthorized, status.HTTP_401_UNAUTHORIZED),
    (Forbidden, status.HTTP_403_FORBIDDEN),
    (NotFound, status.HTTP_404_NOT_FOUND),
    (InvalidTransition, status.HTTP_409_CONFLICT),
    (BodyTooLarge, status.HTTP_413_CONTENT_TOO_LARGE),
    (OutputTooLarge, status.HTTP_413_CONTENT_TOO_LARGE),
    (HeadersTooLarge, status.HTTP_431_REQUEST_HEADER_FIELDS_TOO_LARGE),
    (TooManyStreams, status.HTTP_429_TOO_MANY_REQUESTS),
    (PendingLimitExceeded, status.HTTP_429_TOO_MANY_REQUESTS),
    (StoreUnavailable, status.HTTP_503_SERVICE_UNAVAILABLE),
    (StoreError, status.HTTP_500_INTERNAL_SERVER_ERROR),
)


def status_of(exc: ConveyorError) -> int:
    for cls, code in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return code
    return status.HTTP_500_INTERNAL_SERVER_ERROR


def install_error_handlers(app: FastAPI, retry_after_s: int) -> None:
    """Register handlers so that no error leaves the app in another shape."""

    async def conveyor_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ConveyorError)
        code = status_of(exc)
        if code >= 500:
            log.error("%s %s failed: %r", request.method, request.url.path, exc)
        headers = {}
        if isinstance(exc, PendingLimitExceeded | TooManyStreams):
            headers["Retry-After"] = str(retry_after_s)
        if isinstance(exc, Unauthorized):
            headers["WWW-Authenticate"] = "Bearer"
        return error_response(code, exc.message, headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == status.HTTP_404_NOT_FOUND and message == "Not Found":
            message = f"not found: {request.url.path}"
        return error_response(exc.status_code, message, dict(exc.headers or {}))

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        parts = []
        for item in exc.errors():
            where = ".".join(str(p) for p in item.get("loc", ()))
            parts.append(f"{where}: {item.get('msg', 'invalid')}")
        return error_response(status.HTTP_400_BAD_REQUEST, "; ".join(parts) or "invalid request")

    async def unexpected_error(request: Request, exc: Exception) -> Response:
        log.exception("%s %s crashed", request.method, request.url.path, exc_info=exc)
        return error_response(status.HTTP_500_INTERNAL_SERVER_ERROR, "internal server error")

    app.add_exception_handler(ConveyorError, conveyor_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected_error)
