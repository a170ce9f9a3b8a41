"""The gateway's settings on the command line, shared by ``conveyor serve`` and ``server``.

Each ``GatewaySettings`` field has one flag and one ``CONVEYOR_*`` variable, both named after
the field (``max_body_bytes``: ``--max-body-bytes``, ``CONVEYOR_MAX_BODY_BYTES``); what is not
given keeps the ``GatewaySettings`` default. :func:`gateway_settings` is the one place that
turns them into settings. The gateway package (FastAPI) is imported only when settings are
built: the client commands start faster without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from urllib.parse import urlsplit

import typer

if TYPE_CHECKING:
    from conveyor.server.gateway.settings import GatewaySettings

T = TypeVar("T")


def _option(field: str, help: str, **checks: Any) -> Any:
    return typer.Option(
        f"--{field.replace('_', '-')}",
        envvar=f"CONVEYOR_{field.upper()}",
        help=help,
        show_default=False,
        **checks,
    )


def _public_url(value: str | None) -> str | None:
    """An absolute http(s) base URL, without a trailing slash."""
    if value is None:
        return None
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise typer.BadParameter(
            f"{value!r} is not an http:// or https:// base URL such as https://q.example"
        )
    return parts.geturl().rstrip("/")


MaxBodyBytesOpt = Annotated[
    int | None,
    _option(
        "max_body_bytes",
        "Refuse request bodies over this many bytes with 413. Default: 10485760 (10 MiB).",
        min=1,
    ),
]
PublicUrlOpt = Annotated[
    str | None,
    _option(
        "public_url",
        "Base URL put in output links and deployment URLs, e.g. https://q.example (behind a "
        "proxy or load balancer). Default: the URL each request came to.",
        callback=_public_url,
    ),
]
OutputUrlTtlOpt = Annotated[
    int | None,
    _option("output_url_ttl_s", "Seconds a signed output link stays valid. Default: 3600.", min=1),
]
RetryAfterOpt = Annotated[
    int | None,
    _option("retry_after_s", "Retry-After seconds sent with a 429. Default: 1.", min=0),
]
SsePingOpt = Annotated[
    float | None,
    _option(
        "sse_ping_s",
        "Seconds between keep-alive lines on an idle event stream. Default: 15.",
        min=0.1,
    ),
]


def _given(value: T | None, default: T) -> T:
    return default if value is None else value


def gateway_settings(
    *,
    max_body_bytes: int | None,
    public_url: str | None,
    output_url_ttl_s: int | None,
    retry_after_s: int | None,
    sse_ping_s: float | None,
) -> GatewaySettings:
    """The settings of the flags given; the rest keep the ``GatewaySettings`` defaults."""
    from conveyor.server.gateway.settings import GatewaySettings

    default = GatewaySettings()
    return GatewaySettings(
        max_body_bytes=_given(max_body_bytes, default.max_body_bytes),
        public_url=_given(public_url, default.public_url),
        output_url_ttl_s=_given(output_url_ttl_s, default.output_url_ttl_s),
        retry_after_s=_given(retry_after_s, default.retry_after_s),
        sse_ping_s=_given(sse_ping_s, default.sse_ping_s),
    )
