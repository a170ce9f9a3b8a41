"""A task's ``error`` (DESIGN A4): what ended its last attempt, in one shape wherever it is made.

The worker process makes it from an exception, the agent for a crashed or timed-out process,
the store for a lost lease; the gateway and the SDK read it back. An error without a traceback
(a crash, a timeout) has ``traceback == ""``, never None.

Not ``TaskError``: that is the exception ``Task.result`` raises (``conveyor.errors``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    #: The exception's qualified name (``ValueError``, ``app.Transient``) or a conveyor kind
    #: (``WorkerCrashed``, ``TimeoutError``, ``ContainerLost``).
    type: str
    message: str
    #: Formatted from the user's frames on; "" when there is none.
    traceback: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"type": self.type, "message": self.message, "traceback": self.traceback}

    def to_json(self) -> str:
        return orjson.dumps(self.to_dict()).decode()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ErrorInfo:
        """Read leniently: errors stored before there was one shape had ``traceback: null``."""
        return cls(
            type=str(data.get("type") or "Error"),
            message=str(data.get("message") or ""),
            traceback=str(data.get("traceback") or ""),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> ErrorInfo:
        data = orjson.loads(text)
        return cls.from_dict(data if isinstance(data, dict) else {})
