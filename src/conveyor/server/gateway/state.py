"""What every route needs: the store, the settings, the output signer and the metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from fastapi import Request

from conveyor.server.gateway.agents import AgentDirectory
from conveyor.server.gateway.metrics import GatewayMetrics
from conveyor.server.gateway.settings import GatewaySettings
from conveyor.server.gateway.signing import OutputSigner
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
        """The public base URL, without a trailing slash."""
        if self.settings.public_url:
            return self.settings.public_url.rstrip("/")
        return str(request.base_url).rstrip("/")


def gateway_state(request: Request) -> GatewayState:
    state = request.app.state.gateway
    assert isinstance(state, GatewayState)
    return state
