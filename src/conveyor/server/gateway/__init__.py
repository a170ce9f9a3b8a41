"""The HTTP gateway (DESIGN A4): ``create_app(store, settings)`` builds the ASGI app.

Both load on first use, so the plain modules (``refusals``, ``task_body``, ``views``,
``signing``) import without the web framework: the direct producer uses them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.server.gateway.app import create_app
    from conveyor.server.gateway.settings import GatewaySettings

__all__ = ["GatewaySettings", "create_app"]

_LAZY = {"create_app": "conveyor.server.gateway.app",
         "GatewaySettings": "conveyor.server.gateway.settings"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'conveyor.server.gateway' has no attribute {name!r}")
