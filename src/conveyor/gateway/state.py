"""What every route needs: the store, the settings, the output signer and the metrics."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from conveyor.gateway.metrics import GatewayMetrics
from conveyor.gateway.settings import GatewaySettings
from conveyor.gateway.signing import OutputSigner
from conveyor.store.base import Store


@dataclass(frozen=True, slots=True)
class GatewayState:
    store: Store
    settings: GatewaySettings
    signer: OutputSigner
    metrics: GatewayMetrics

    def base_url(self, request: Request) -> str:
        """The public base URL, without a trailing slash."""
        if self.settings.public_url:
            return self.settings.public_url.rstrip("/")
        return str(request.base_url).rstrip("/")


def gateway_state(request: Request) -> GatewayState:
    state = request.app.state.gateway
    assert isinstance(state, GatewayState)
    return state
