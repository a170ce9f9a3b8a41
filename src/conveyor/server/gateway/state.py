"""What every route needs: the store, the settings, the output signer, the metrics and the
key of workspace secrets."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from fastapi import Request

from conveyor.server.gateway.agents import AgentDirectory
from conveyor.server.gateway.metrics import GatewayMetrics
from conveyor.server.gateway.settings import GatewaySettings
from conveyor.server.gateway.signing import OutputSigner
from conveyor.server.gateway.stream_hub import StreamHub
from conveyor.server.secret_key import SecretKey
from conveyor.server.store.base import Store
from conveyor.server.store.records import Workspace

#: A token found valid is trusted this long without asking the store again.
TOKEN_CACHE_S = 5.0


@dataclass(frozen=True, slots=True)
class GatewayState:
    store: Store
    settings: GatewaySettings
    signer: OutputSigner
    metrics: GatewayMetrics
    agents: AgentDirectory
    #: Encrypts the secrets the workspaces create (DESIGN A9); the default has no key (503).
    secret_key: SecretKey = field(default_factory=SecretKey)
    #: The event streams' one store subscription, and their count per workspace.
    streams: StreamHub = field(default_factory=StreamHub)
    _tokens: dict[str, tuple[float, Workspace]] = field(default_factory=dict)

    async def authenticate(self, token: str) -> Workspace | None:
        """``store.authenticate`` with valid tokens remembered for ``TOKEN_CACHE_S``: one
        store round trip fewer per request. Unknown tokens are always asked again."""
        now = time.monotonic()
        cached = self._tokens.get(token)
        if cached is not None and cached[0] > now:
            return cached[1]
        workspace = await self.store.authenticate(token)
        if workspace is not None:
            if len(self._tokens) > 10_000:
                self._tokens.clear()
            self._tokens[token] = (now + TOKEN_CACHE_S, workspace)
        return workspace

    def base_url(self, request: Request) -> str:
        """The public base URL, without a trailing slash: ``public_url``, else the address the
        connection was accepted on (the ASGI ``server``), never the request's ``Host`` header,
        which the caller chooses (DESIGN A13)."""
        if self.settings.public_url:
            return self.settings.public_url.rstrip("/")
        scheme = "https" if request.scope.get("scheme") in ("https", "wss") else "http"
        server = request.scope.get("server")
        if not server or server[0] is None:
            return f"{scheme}://127.0.0.1"
        host, port = str(server[0]), server[1]
        if ":" in host:
            host = f"[{host}]"
        default = 443 if scheme == "https" else 80
        return f"{scheme}://{host}" if port in (None, default) else f"{scheme}://{host}:{port}"


def with_bound_url(settings: GatewaySettings, host: str, port: int) -> GatewaySettings:
    """``settings`` with ``public_url`` set to the bound address when not given. On a wildcard
    address (0.0.0.0, ::) it stays unset: each link then names the local address the caller's
    connection reached (still never the ``Host`` header)."""
    if settings.public_url or host in ("", "0.0.0.0", "::"):
        return settings
    shown = f"[{host}]" if ":" in host else host
    return replace(settings, public_url=f"http://{shown}:{port}")


def gateway_state(request: Request) -> GatewayState:
    state = request.app.state.gateway
    assert isinstance(state, GatewayState)
    return state
