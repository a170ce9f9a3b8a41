"""The server's ASGI app: the gateway's route table, then the dashboard's, one dispatch for
both. The gateway and the dashboard meet only here (and in the gateway's answer functions)."""

from __future__ import annotations

from fastapi import FastAPI

from conveyor.server.dashboard.routes import routes as dashboard_routes
from conveyor.server.gateway.app import create_app
from conveyor.server.gateway.settings import GatewaySettings
from conveyor.server.secret_key import SecretKey
from conveyor.server.store.base import Store


def server_app(
    store: Store,
    settings: GatewaySettings | None = None,
    *,
    manage_store: bool = False,
    sandbox: bool | None = None,
    secret_key: SecretKey | None = None,
) -> FastAPI:
    """The gateway over ``store`` with ``/dashboard`` (DESIGN A4) mounted beside it.

    ``sandbox``: whether the agent beside it (``serve``) sandboxes its worker processes,
    shown by ``/readyz``; None: no agent in this process. ``secret_key``: see ``create_app``.
    """
    app = create_app(
        store, settings, manage_store=manage_store, mounted=dashboard_routes,
        secret_key=secret_key,
    )
    app.state.sandbox = sandbox
    return app
