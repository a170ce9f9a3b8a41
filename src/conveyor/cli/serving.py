"""``conveyor serve``, ``server`` and ``worker``: build the process's settings, then run it.

The gateway, agent and store modules are imported when a command runs, not before: the
client commands start several times faster without them.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Annotated

import orjson
import typer
from rich.markup import escape

from conveyor.cli import render
from conveyor.cli.options import (
    GATEWAY_FLAGS,
    CpusOpt,
    HeaderTimeoutOpt,
    HostOpt,
    LogMaxBytesOpt,
    LogMaxLinesOpt,
    MaxBodyBytesOpt,
    MaxConnectionsOpt,
    MaxHeaderBytesOpt,
    MaxStreamsOpt,
    NoSandboxOpt,
    OutputUrlTtlOpt,
    PortOpt,
    PublicUrlOpt,
    RetentionOpt,
    RetryAfterOpt,
    SandboxBindOpt,
    SsePingOpt,
    StoreOpt,
    gateway_settings,
    serve_settings,
    server_settings,
    worker_settings,
)
from conveyor.cli.render import print_warning
from conveyor.cli.report import err, out, reported, run
from conveyor.server.settings import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_STORE, settings_lines

if TYPE_CHECKING:
    from conveyor.server.run import ServeInfo
    from conveyor.server.settings import ServerSettings, ServeSettings, WorkerSettings


def _start(verbose: bool, settings: ServeSettings | ServerSettings | WorkerSettings) -> None:
    """Logging for ``-v``, which also shows the settings in effect (secrets masked)."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    if verbose:
        for line in settings_lines(settings):
            err.print(f"setting {line}", highlight=False, markup=False, soft_wrap=True)


def _warn_unsandboxed(settings: ServeSettings | WorkerSettings) -> None:
    if not settings.agent.sandbox:
        print_warning(
            err,
            "--no-sandbox: handlers run unsandboxed, as this agent's user with its "
            "environment, files and processes in reach; serve only code you trust "
            "(one trust domain, see docs/security.md)",
        )


def _notice(line: str) -> None:
    out.print(line, highlight=False, markup=False)


def _ready(info: ServeInfo) -> None:
    out.print(f"[bold green]conveyor[/bold green] serving on [bold]{info.url}[/bold]")
    for queue in info.queues:
        stub = queue.stub
        cron = stub.queue_config.cron()
        if cron is None:
            out.print(f"  queue [cyan]{stub.name}[/cyan] v{stub.version}  stub {stub.id}")
            continue
        out.print(f"  schedule [cyan]{stub.name}[/cyan] v{stub.version}  stub {stub.id}  "
                  f"[bold]{escape(cron.when)}[/bold] ({cron.timezone})")
        out.print(f"    next {render.next_ticks(cron)}", highlight=False)
    out.print(f"  token  {info.token}")
    queues = [q for q in info.queues if q.stub.queue_config.when is None]
    if queues:
        first = queues[0]
        queue_url = f"{info.url}/taskqueue/{first.stub.name}"
        body = orjson.dumps(first.example_body).decode()
        out.print("  try:", highlight=False)
        out.print(
            "    " + render.curl_line(queue_url, info.token, body),
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
    out.print("  Ctrl-C stops.", highlight=False)


def serve_cmd(
    targets: Annotated[
        list[str], typer.Argument(help="Task queues as FILE:FUNC.", metavar="FILE:FUNC...")
    ],
    store: StoreOpt = DEFAULT_STORE,
    host: HostOpt = DEFAULT_HOST,
    port: PortOpt = DEFAULT_PORT,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="CONVEYOR_TOKEN", help="Fix the default workspace's token."),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log containers and tasks.")
    ] = False,
    max_body_bytes: MaxBodyBytesOpt = None,
    public_url: PublicUrlOpt = None,
    output_url_ttl_s: OutputUrlTtlOpt = None,
    retry_after_s: RetryAfterOpt = None,
    sse_ping_s: SsePingOpt = None,
    no_sandbox: NoSandboxOpt = False,
    sandbox_bind: SandboxBindOpt = None,
    log_max_lines: LogMaxLinesOpt = None,
    log_max_bytes: LogMaxBytesOpt = None,
    max_streams_per_workspace: MaxStreamsOpt = None,
    max_header_bytes: MaxHeaderBytesOpt = None,
    max_connections: MaxConnectionsOpt = None,
    header_timeout_s: HeaderTimeoutOpt = None,
    retention: RetentionOpt = None,
) -> None:
    """Run the gateway, an agent and the embedded store in one process (development).

    Example: conveyor serve examples/app.py:square
    """
    flags = locals()  # typer needs one parameter per flag; they become settings once, below
    gateway = gateway_settings(**{name: flags[name] for name in GATEWAY_FLAGS})
    settings = serve_settings(
        targets, store=store, host=host, port=port, token=token, gateway=gateway,
        no_sandbox=no_sandbox, sandbox_binds=sandbox_bind, log_max_lines=log_max_lines,
        log_max_bytes=log_max_bytes, retention=retention,
    )
    _start(verbose, settings)
    _warn_unsandboxed(settings)
    from conveyor.server.run import serve

    run(serve(settings, on_ready=_ready, on_notice=_notice))


def server_cmd(
    store: StoreOpt = DEFAULT_STORE,
    host: HostOpt = DEFAULT_HOST,
    port: PortOpt = DEFAULT_PORT,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    max_body_bytes: MaxBodyBytesOpt = None,
    public_url: PublicUrlOpt = None,
    output_url_ttl_s: OutputUrlTtlOpt = None,
    retry_after_s: RetryAfterOpt = None,
    sse_ping_s: SsePingOpt = None,
    max_streams_per_workspace: MaxStreamsOpt = None,
    max_header_bytes: MaxHeaderBytesOpt = None,
    max_connections: MaxConnectionsOpt = None,
    header_timeout_s: HeaderTimeoutOpt = None,
    processes: Annotated[
        int,
        typer.Option(
            "--processes",
            min=0,
            envvar="CONVEYOR_PROCESSES",
            help="Gateway processes sharing the port (SO_REUSEPORT): a Python process uses one "
            "core at most. 0: one per core. Default: 1.",
        ),
    ] = 1,
    retention: RetentionOpt = None,
) -> None:
    """Run a gateway only (production): any number of them can share one store.

    Gateways on one store share the key of signed output links (see conveyor signing-key).

    Example: conveyor server --store postgresql://postgres@db/conveyor --public-url https://q.example
    """
    flags = locals()
    gateway = gateway_settings(**{name: flags[name] for name in GATEWAY_FLAGS})
    settings = server_settings(
        store=store, host=host, port=port, gateway=gateway, retention=retention
    )
    _start(verbose, settings)
    count = processes or os.cpu_count() or 1
    shown = f"store {store.split('@')[-1]}" + (f", {count} processes" if count > 1 else "")
    out.print(f"conveyor gateway on http://{host}:{port} ({shown})")
    if count > 1:
        from conveyor.cli.processes import run_processes

        with reported():
            code = run_processes(settings, count, verbose)
        raise typer.Exit(code)
    from conveyor.server.run import run_server

    run(run_server(settings))


def worker_cmd(
    store: StoreOpt = DEFAULT_STORE,
    cpus: CpusOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    no_sandbox: NoSandboxOpt = False,
    sandbox_bind: SandboxBindOpt = None,
    log_max_lines: LogMaxLinesOpt = None,
    log_max_bytes: LogMaxBytesOpt = None,
    retention: RetentionOpt = None,
) -> None:
    """Run an agent on this machine for every deployed queue of the store.

    Example: conveyor worker --store postgresql://postgres@db/conveyor --cpus 8
    """
    settings = worker_settings(
        store=store, cpus=cpus, no_sandbox=no_sandbox, sandbox_binds=sandbox_bind,
        log_max_lines=log_max_lines, log_max_bytes=log_max_bytes, retention=retention,
    )
    _start(verbose, settings)
    _warn_unsandboxed(settings)
    out.print(f"conveyor worker (store {store.split('@')[-1]}); SIGTERM drains")
    from conveyor.server.run import run_worker

    run(run_worker(settings, on_notice=_notice))
