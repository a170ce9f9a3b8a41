"""Gateway settings: one frozen object, built by the caller (CLI flags, tests)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

MIB = 1024 * 1024


def _random_secret() -> str:
    return secrets.token_hex(32)


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    #: Request bodies over this many bytes are refused with 413.
    max_body_bytes: int = 10 * MIB
    #: Base URL put in output links and deployment URLs; None derives it from each request.
    public_url: str | None = None
    #: Lifetime of a signed output URL.
    output_url_ttl_s: int = 3600
    #: Key of output URL signatures. Random per process unless fixed, which several gateway
    #: processes behind one load balancer must do so that each accepts the others' links.
    server_secret: str = field(default_factory=_random_secret, repr=False)
    #: ``Retry-After`` seconds sent with a 429.
    retry_after_s: int = 1
    #: Idle SSE streams get a comment line this often, so proxies and clients see a live stream.
    sse_ping_s: float = 15.0
