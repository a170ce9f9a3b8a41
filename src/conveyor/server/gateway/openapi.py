"""OpenAPI pieces the route table uses: request bodies (parsed by hand, so described by hand),
response maps, a clean-up of what FastAPI adds by default, and the ``/docs`` page with Swagger
UI served from an installed package (FastAPI's own page loads it from a CDN, so without internet
it is blank). There is no ``/redoc``: ReDoc always fetches its logo from its vendor's CDN."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from conveyor.server.gateway.schemas import ErrorBody

_ENQUEUE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "With args and/or kwargs these are the call's arguments; otherwise every top-level key "
        "is a keyword argument. callback_url overrides the queue's callback for this task."
    ),
    "properties": {
        "args": {"type": "array", "items": {}},
        "kwargs": {"type": "object"},
        "callback_url": {"type": "string", "format": "uri"},
    },
    "additionalProperties": True,
}

ENQUEUE_BODY: dict[str, Any] = {
    "required": False,
    "content": {"application/json": {"schema": _ENQUEUE_SCHEMA}},
}

BATCH_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"tasks": {"type": "array", "items": _ENQUEUE_SCHEMA}},
                "required": ["tasks"],
            }
        }
    },
}

#: The headers that put off a task's start (``start_time.py``), documented on each enqueue.
START_HEADERS: list[dict[str, Any]] = [
    {
        "name": "Conveyor-Delay",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "example": "30"},
        "description": "Seconds (0 to a year) before the task may start; its ttl counts from "
        "then. Not with Conveyor-Run-At.",
    },
    {
        "name": "Conveyor-Run-At",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "example": "2026-11-28T19:30:00Z"},
        "description": "ISO 8601 time (at most a year ahead; a time past means at once) before "
        "which the task does not start; its ttl counts from then. Not with Conveyor-Delay.",
    },
]

_IDS = {"type": "array", "items": {"type": "string"}}
CANCEL_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"task_ids": _IDS, "ids": _IDS},
                "description": "task_ids, or ids as a synonym",
            }
        }
    },
}

SECRET_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "pattern": "^[A-Z_][A-Z0-9_]*$", "maxLength": 256},
                    "value": {"type": "string", "description": "at most 64 KiB (UTF-8), no NUL"},
                },
                "required": ["name", "value"],
                "additionalProperties": False,
            }
        }
    },
}

_STRING = {"type": "string"}
REPLAY_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "task_ids": _IDS,
                    "status": {"oneOf": [_STRING, _IDS]},
                    "queue": _STRING,
                    "stub_id": _STRING,
                    "created_after": {"type": "string", "format": "date-time"},
                    "created_before": {"type": "string", "format": "date-time"},
                },
                "description": "task_ids, or a filter of finished tasks (at most 1000 match)",
            }
        }
    },
}

DEPLOY_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "config": {"type": "string", "description": "QueueConfig as JSON"},
                    "code": {"type": "string", "format": "binary", "description": "zip bundle"},
                },
                "required": ["config", "code"],
            }
        }
    },
}

_DESCRIPTIONS = {
    400: "Bad request",
    401: "Missing or invalid token",
    403: "Invalid or expired link",
    404: "Not found",
    409: "Conflict: a stopped version, an unfinished task or version",
    413: "Body too large",
    429: "Too many pending tasks or open event streams (see Retry-After)",
    503: "Store unavailable",
}
#: Any route may answer these.
_ALWAYS = (413, 503)


def responses(
    model: type | None, errors: Sequence[int], media_type: str
) -> dict[int | str, dict[str, Any]]:
    """The documented answers of a route: 200, its errors, and ``{"error"}`` as the default."""
    ok: dict[str, Any] = {"description": "OK"}
    if model is not None:
        ok["model"] = model
    else:
        ok["content"] = {media_type: {"schema": {"type": "string"}}}
    answers: dict[int | str, dict[str, Any]] = {200: ok}
    for code in sorted({*errors, *_ALWAYS}):
        answers[code] = {"model": ErrorBody, "description": _DESCRIPTIONS[code]}
    answers["default"] = {"model": ErrorBody, "description": "Any other error"}
    return answers


def clean_openapi(app: FastAPI) -> None:
    """Drop FastAPI's 422 answers (validation errors are 400 here) and declare the token
    schemes the routes name."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        schema = generate()
        if fresh:
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            components = schema.setdefault("components", {})
            for name in ("HTTPValidationError", "ValidationError"):
                components.get("schemas", {}).pop(name, None)
            components["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic"},
            }
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


#: Where fastapi-offline's copies of Swagger UI and a favicon are served.
DOCS_ASSETS = "/docs-assets"


async def swagger_page(request: Request) -> HTMLResponse:
    # Behind a proxy's root_path, as FastAPI's own docs page does.
    root = str(request.scope.get("root_path", "")).rstrip("/")
    assets = root + DOCS_ASSETS
    page = get_swagger_ui_html(
        openapi_url=root + str(request.app.openapi_url),
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{assets}/swagger-ui-bundle.js",
        swagger_css_url=f"{assets}/swagger-ui.css",
        swagger_favicon_url=f"{assets}/favicon.png",
        oauth2_redirect_url=None,  # the tokens are Bearer/Basic: no OAuth2 flow to return to
    )
    page.headers["Content-Security-Policy"] = _docs_policy(bytes(page.body))
    return page


_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def _docs_policy(body: bytes) -> str:
    """The gateway's policy (``dispatch.SECURITY_HEADERS``) plus the page's inline script
    (the Swagger UI start-up call) by its hash, and the ``data:`` images Swagger UI's CSS uses."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(body)
    )
    return (f"default-src 'self'; script-src 'self' {hashes}; img-src 'self' data:;"
            " base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


#: The docs page and its files, for the gateway's route table (no token, like /openapi.json).
docs_routes: list[BaseRoute] = [
    Route("/docs", swagger_page, methods=["GET"], include_in_schema=False),
    Mount(DOCS_ASSETS, StaticFiles(packages=[("fastapi_offline", "static")]), name="docs"),
]
