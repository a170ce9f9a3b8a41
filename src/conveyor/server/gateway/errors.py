"""From exceptions to HTTP answers: handlers that make every error ``{"error": "<message>"}``
(unknown paths, wrong methods and validation included), by the one table of ``refusals.py``
(re-exported here with the gateway's errors).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette import status
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from conveyor.errors import ConveyorError, PendingLimitExceeded
from conveyor.server.gateway.refusals import (
    STATUS_BY_ERROR,
    BadRequest,
    BodyTooLarge,
    Forbidden,
    GatewayError,
    HeadersTooLarge,
    TooManyStreams,
    Unauthorized,
    status_of,
)
from conveyor.server.gateway.responses import error_response

__all__ = [
    "STATUS_BY_ERROR", "BadRequest", "BodyTooLarge", "Forbidden", "GatewayError",
    "HeadersTooLarge", "TooManyStreams", "Unauthorized", "install_error_handlers", "status_of",
]

log = logging.getLogger(__name__)


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
