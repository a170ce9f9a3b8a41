"""The gateway's own errors and the one table from the error tree to HTTP status codes.

Plain (no web framework), so that the direct producer (``conveyor.direct``) refuses a call with
the status code the gateway would answer; ``errors.py`` turns them into HTTP answers.
"""

from __future__ import annotations

from http import HTTPStatus

from conveyor.errors import (
    ConfigError,
    ConveyorError,
    InvalidTransition,
    NotFound,
    OutputTooLarge,
    PendingLimitExceeded,
    StoreError,
    StoreUnavailable,
    VersionBusy,
    VersionStopped,
)


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
    (BadRequest, HTTPStatus.BAD_REQUEST),
    (ConfigError, HTTPStatus.BAD_REQUEST),
    (Unauthorized, HTTPStatus.UNAUTHORIZED),
    (Forbidden, HTTPStatus.FORBIDDEN),
    (NotFound, HTTPStatus.NOT_FOUND),
    (InvalidTransition, HTTPStatus.CONFLICT),
    (VersionStopped, HTTPStatus.CONFLICT),
    (VersionBusy, HTTPStatus.CONFLICT),
    (BodyTooLarge, HTTPStatus.REQUEST_ENTITY_TOO_LARGE),
    (OutputTooLarge, HTTPStatus.REQUEST_ENTITY_TOO_LARGE),
    (HeadersTooLarge, HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE),
    (TooManyStreams, HTTPStatus.TOO_MANY_REQUESTS),
    (PendingLimitExceeded, HTTPStatus.TOO_MANY_REQUESTS),
    (StoreUnavailable, HTTPStatus.SERVICE_UNAVAILABLE),
    (StoreError, HTTPStatus.INTERNAL_SERVER_ERROR),
)


def status_of(exc: ConveyorError) -> int:
    for cls, code in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return int(code)
    return int(HTTPStatus.INTERNAL_SERVER_ERROR)
