"""Gateway settings: one frozen object, built by the caller (CLI flags, tests).

It is the ``gateway`` part of the ``serve`` and ``server`` process settings
(``conveyor.server.settings``); the command line fills it in one place,
``conveyor.cli.options``. The key of signed output links is not a setting: it lives in the
store, shared by every gateway on it.
"""

from __future__ import annotations

from dataclasses import dataclass

KIB = 1024
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    #: Request bodies over this many bytes are refused with 413.
    max_body_bytes: int = 10 * MIB
    #: Base URL put in output links and deployment URLs; None derives it from each request.
    public_url: str | None = None
    #: Lifetime of a signed output URL.
    output_url_ttl_s: int = 3600
    #: ``Retry-After`` seconds sent with a 429.
    retry_after_s: int = 1
    #: Idle SSE streams get a comment line this often, so proxies and clients see a live stream.
    sse_ping_s: float = 15.0
    #: Open event streams per workspace (subscribe and the dashboard's live stream together);
    #: one more is refused with 429 (DESIGN A13).
    max_streams_per_workspace: int = 100
    #: A request's line and headers over this many bytes are refused with 431 (DESIGN A13).
    max_header_bytes: int = 64 * KIB
    #: A request's line and headers must arrive within this many seconds of its first byte
    #: (of the connection, for its first request); else the connection is dropped.
    header_timeout_s: float = 10.0
    #: Open connections at most; more are closed at once (a proxy in front should queue).
    max_connections: int = 2048
