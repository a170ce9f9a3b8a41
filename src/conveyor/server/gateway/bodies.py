"""Request bodies, read and parsed here (not by FastAPI) so every mistake is a 400."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request

from conveyor.server.gateway.errors import BadRequest


async def read_json(request: Request) -> Any:
    """The body as JSON; an empty body is None."""
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None


async def read_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object; an empty body is ``{}``."""
    value = await read_json(request)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"body must be a JSON object, got {_kind(value)}")
    return value


def _kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null"
