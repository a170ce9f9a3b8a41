"""The options the commands share, and the one place they become settings.

Every option has a ``CONVEYOR_*`` variable: a flag beats its variable, which beats the
default. The server commands' options become one settings object per process
(:func:`serve_settings`, :func:`server_settings`, :func:`worker_settings`); the client
commands' ``--url``/``--token`` go through ``load_settings`` (:func:`client`).

Each ``GatewaySettings`` field has one flag and one variable, both named after the field
(``max_body_bytes``: ``--max-body-bytes``, ``CONVEYOR_MAX_BODY_BYTES``); what is not given
keeps the ``GatewaySettings`` default. The gateway and agent packages (FastAPI) are imported
only when settings are built: the client commands start faster without them.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from urllib.parse import urlsplit

import typer

from conveyor.clock import parse_duration
from conveyor.sdk.client import Client
from conveyor.sdk.settings import DEFAULT_URL, ENV_TOKEN, ENV_URL, load_settings
from conveyor.server.settings import (
    DEFAULT_RETENTION_S,
    ServerSettings,
    ServeSettings,
    WorkerSettings,
)

if TYPE_CHECKING:
    from conveyor.server.gateway.settings import GatewaySettings

T = TypeVar("T")


class ListFormat(StrEnum):
    table = "table"
    json = "json"


StoreOpt = Annotated[
    str,
    typer.Option(
        "--store", envvar="CONVEYOR_STORE", help="Store URL: sqlite:///path or postgresql://…"
    ),
]
HostOpt = Annotated[
    str, typer.Option("--host", envvar="CONVEYOR_HOST", help="Address to listen on.")
]
PortOpt = Annotated[int, typer.Option("--port", envvar="CONVEYOR_PORT", help="Port to listen on.")]
CpusOpt = Annotated[
    float | None,
    typer.Option(
        "--cpus",
        envvar="CONVEYOR_CPUS",
        min=0.01,
        help="CPUs to reserve for containers (each reserves its queue's cpu). Default: no limit.",
    ),
]
LogMaxLinesOpt = Annotated[
    int | None,
    typer.Option(
        "--log-max-lines",
        envvar="CONVEYOR_LOG_MAX_LINES",
        min=1,
        help="Lines each task keeps of what its processes print; past that, one marker line "
        "(default 20000).",
    ),
]
LogMaxBytesOpt = Annotated[
    int | None,
    typer.Option(
        "--log-max-bytes",
        envvar="CONVEYOR_LOG_MAX_BYTES",
        min=1024,
        help="Bytes each task keeps of what its processes print; past that, one marker line "
        "(default 2 MiB).",
    ),
]
NoSandboxOpt = Annotated[
    bool,
    typer.Option(
        "--no-sandbox",
        envvar="CONVEYOR_NO_SANDBOX",
        help="Run handlers unsandboxed, as this agent's user with its environment: one trust "
        "domain (see docs/security.md). Default: each worker process in a bubblewrap sandbox.",
    ),
]
SandboxBindOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--sandbox-bind",
        envvar="CONVEYOR_SANDBOX_BIND",
        exists=True,
        file_okay=False,
        resolve_path=True,
        metavar="FOLDER",
        help="A folder every sandbox may read and write, at its own path (repeatable): the "
        "way to give handlers a shared folder.",
        show_default=False,
    ),
]
def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


RetentionOpt = Annotated[
    float | None,
    typer.Option(
        "--retention",
        envvar="CONVEYOR_RETENTION",
        parser=_duration,
        metavar="DURATION",
        help="Keep finished tasks (with their outputs and logs) this long after they end: 7d, "
        "12h, 30m, 45s or seconds; 0 keeps them forever. Default: 7d.",
        show_default=False,
    ),
]
UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar=ENV_URL,
        help=f"Gateway URL; else url in ~/.conveyor/config.toml, else {DEFAULT_URL}.",
        show_default=False,
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar=ENV_TOKEN,
        help="API token; else token in ~/.conveyor/config.toml.",
        show_default=False,
    ),
]
TimeoutOpt = Annotated[
    float | None,
    typer.Option("--timeout", min=0, help="Give up after this many seconds (exit code 2)."),
]
ListFormatOpt = Annotated[
    ListFormat, typer.Option("--format", help="A table, or the API's JSON list.")
]


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
MaxStreamsOpt = Annotated[
    int | None,
    _option(
        "max_streams_per_workspace",
        "Open event streams per workspace at most (subscribe and the dashboard's live "
        "stream together); one more gets 429. Default: 100.",
        min=1,
    ),
]
MaxHeaderBytesOpt = Annotated[
    int | None,
    _option(
        "max_header_bytes",
        "Refuse a request whose line and headers are over this many bytes with 431. "
        "Default: 65536 (64 KiB).",
        min=1024,
    ),
]
MaxConnectionsOpt = Annotated[
    int | None,
    _option(
        "max_connections",
        "Open connections at most; one more gets 503 and is closed. Default: 2048.",
        min=1,
    ),
]
HeaderTimeoutOpt = Annotated[
    float | None,
    _option(
        "header_timeout_s",
        "Seconds a request's line and headers may take to arrive; a slower client is "
        "dropped. Default: 10.",
        min=0.1,
    ),
]


def _given(value: T | None, default: T) -> T:
    return default if value is None else value


#: The parameters of ``gateway_settings``: the gateway flags both ``serve`` and ``server`` take.
GATEWAY_FLAGS = (
    "max_body_bytes", "public_url", "output_url_ttl_s", "retry_after_s", "sse_ping_s",
    "max_streams_per_workspace", "max_header_bytes", "max_connections", "header_timeout_s",
)


def gateway_settings(
    *,
    max_body_bytes: int | None,
    public_url: str | None,
    output_url_ttl_s: int | None,
    retry_after_s: int | None,
    sse_ping_s: float | None,
    max_streams_per_workspace: int | None = None,
    max_header_bytes: int | None = None,
    max_connections: int | None = None,
    header_timeout_s: float | None = None,
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
        max_streams_per_workspace=_given(
            max_streams_per_workspace, default.max_streams_per_workspace
        ),
        max_header_bytes=_given(max_header_bytes, default.max_header_bytes),
        max_connections=_given(max_connections, default.max_connections),
        header_timeout_s=_given(header_timeout_s, default.header_timeout_s),
    )


def log_limits(max_lines: int | None, max_bytes: int | None) -> dict[str, Any]:
    """The agent's ``log_limits`` from the flags; the defaults of DESIGN A8 when not given."""
    from conveyor.server.store.records import LogLimits

    default = LogLimits()
    return {"log_limits": LogLimits(max_lines or default.max_lines,
                                    max_bytes or default.max_bytes)}  # fmt: skip


def _sandbox(store: str, no_sandbox: bool, binds: list[Path] | None) -> dict[str, Any]:
    """The agent's sandbox settings. The store's files and the token file beside them are
    never shown to a handler, even inside a bound folder (the code cache neither)."""
    from conveyor.server.settings import sqlite_folder

    hidden = [sqlite_folder(store) / "token"]
    if store.startswith("sqlite:///"):
        db = Path(store.removeprefix("sqlite:///"))
        hidden += [db.with_name(db.name + suffix) for suffix in ("", "-wal", "-shm", "-journal")]
    return {
        "sandbox": not no_sandbox,
        "sandbox_binds": tuple(str(b) for b in binds or ()),
        "sandbox_hidden": tuple(str(h.resolve()) for h in hidden),
    }


def serve_settings(
    targets: list[str], *, store: str, host: str, port: int, token: str | None,
    gateway: GatewaySettings, no_sandbox: bool = False, sandbox_binds: list[Path] | None = None,
    log_max_lines: int | None = None, log_max_bytes: int | None = None,
    retention: float | None = None,
) -> ServeSettings:
    """``conveyor serve``: its agent keeps code beside the store, as the token is."""
    from conveyor.server.agent.settings import AgentSettings
    from conveyor.server.callbacks import CallbackSettings
    from conveyor.server.settings import sqlite_folder

    agent = AgentSettings(
        code_cache=sqlite_folder(store) / "code", **_sandbox(store, no_sandbox, sandbox_binds),
        **log_limits(log_max_lines, log_max_bytes),
    )
    return ServeSettings(
        targets=tuple(targets), store=store, host=host, port=port, token=token,
        gateway=gateway, agent=agent, callbacks=CallbackSettings(),
        retention_s=_given(retention, DEFAULT_RETENTION_S),
    )


def server_settings(
    *, store: str, host: str, port: int, gateway: GatewaySettings, retention: float | None = None
) -> ServerSettings:
    from conveyor.server.callbacks import CallbackSettings

    return ServerSettings(
        store=store, host=host, port=port, gateway=gateway, callbacks=CallbackSettings(),
        retention_s=_given(retention, DEFAULT_RETENTION_S),
    )


def worker_settings(
    *, store: str, cpus: float | None, no_sandbox: bool = False,
    sandbox_binds: list[Path] | None = None, log_max_lines: int | None = None,
    log_max_bytes: int | None = None, retention: float | None = None,
) -> WorkerSettings:
    from conveyor.server.agent.settings import AgentSettings

    agent = AgentSettings(
        cpu_capacity=cpus, **_sandbox(store, no_sandbox, sandbox_binds),
        **log_limits(log_max_lines, log_max_bytes),
    )
    return WorkerSettings(
        store=store, agent=agent, retention_s=_given(retention, DEFAULT_RETENTION_S)
    )


def connect(url: str | None, token: str | None) -> Client:
    """The flags (or their variables) first, then ~/.conveyor/config.toml, then the default."""
    return Client(*load_settings(url=url, token=token))
