"""JSON responses rendered with orjson."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse


class OrjsonResponse(JSONResponse):
    """``application/json`` rendered by orjson (non-string keys allowed, no NaN surprises)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def error_response(
    status_code: int, message: str, headers: dict[str, str] | None = None
) -> OrjsonResponse:
    return OrjsonResponse({"error": message}, status_code=status_code, headers=headers)
