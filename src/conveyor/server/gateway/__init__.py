"""The HTTP gateway (DESIGN A4): ``create_app(store, settings)`` builds the ASGI app."""

from __future__ import annotations

from conveyor.server.gateway.app import create_app
from conveyor.server.gateway.settings import GatewaySettings

__all__ = ["GatewaySettings", "create_app"]
