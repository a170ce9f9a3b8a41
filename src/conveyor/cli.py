"""The ``conveyor`` command: thin — parse options, then call the pieces in ``serve.py``."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer
from rich.console import Console

from conveyor.errors import ConveyorError
from conveyor.serve import DEFAULT_WORKSPACE, ServeInfo, run_server, run_worker, serve
from conveyor.store import open_store

DEFAULT_STORE = "sqlite:///.conveyor/conveyor.db"

app = typer.Typer(
    help="Conveyor: a self-hosted task queue for Python.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
token_app = typer.Typer(help="Manage API tokens.", no_args_is_help=True)
workspace_app = typer.Typer(help="Manage workspaces.", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(workspace_app, name="workspace")

out = Console()
err = Console(stderr=True)

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


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
    )


def _run(coro: object) -> None:
    """Run a coroutine; a conveyor error becomes one line on stderr and exit code 1."""
    try:
        asyncio.run(coro)  # type: ignore[arg-type]
    except ConveyorError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


@app.command("serve")
def serve_cmd(
    targets: Annotated[
        list[str], typer.Argument(help="Task queues as FILE:FUNC.", metavar="FILE:FUNC...")
    ],
    store: StoreOpt = DEFAULT_STORE,
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="CONVEYOR_TOKEN", help="Fix the default workspace's token."),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log containers and tasks.")
    ] = False,
) -> None:
    """Run the gateway, an agent and the embedded store in one process (development).

    Example: conveyor serve examples/app.py:square
    """
    _logging(verbose)

    def ready(info: ServeInfo) -> None:
        out.print(f"[bold green]conveyor[/bold green] serving on [bold]{info.url}[/bold]")
        for stub in info.stubs:
            out.print(f"  queue [cyan]{stub.name}[/cyan] v{stub.version}  stub {stub.id}")
        out.print(f"  token  {info.token}")
        if info.stubs:
            name = info.stubs[0].name
            out.print("  try:", highlight=False)
            out.print(
                f"    curl -s -X POST {info.url}/taskqueue/{name} "
                f"-H 'Authorization: Bearer {info.token}' -H 'Content-Type: application/json' "
                "-d '{\"x\": 3}'",
                highlight=False,
                soft_wrap=True,
            )
        out.print("  Ctrl-C stops.", highlight=False)

    _run(serve(targets, store_url=store, host=host, port=port, token=token, on_ready=ready))


@app.command("server")
def server_cmd(
    store: StoreOpt = DEFAULT_STORE,
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run a gateway only (production): any number of them can share one store.

    Example: conveyor server --store postgresql://postgres@db/conveyor --host 0.0.0.0
    """
    _logging(verbose)
    out.print(f"conveyor gateway on http://{host}:{port} (store {store.split('@')[-1]})")
    _run(run_server(store_url=store, host=host, port=port))


@app.command("worker")
def worker_cmd(
    store: StoreOpt = DEFAULT_STORE,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run an agent on this machine for every deployed queue of the store.

    Example: conveyor worker --store postgresql://postgres@db/conveyor
    """
    _logging(verbose)
    out.print(f"conveyor worker (store {store.split('@')[-1]}); SIGTERM drains")
    _run(run_worker(store_url=store))


async def _create_token(store_url: str, workspace: str) -> str:
    store = open_store(store_url)
    await store.open()
    try:
        ws = await store.ensure_workspace(workspace)
        return await store.create_token(ws.id)
    finally:
        await store.close()


@token_app.command("create")
def token_create(
    workspace: Annotated[
        str, typer.Option("--workspace", "-w", help="Workspace name (created if needed).")
    ] = DEFAULT_WORKSPACE,
    store: StoreOpt = DEFAULT_STORE,
) -> None:
    """Create a token for a workspace; the token is the last line printed.

    Example: conveyor token create --workspace acme
    """
    result: list[str] = []

    async def go() -> None:
        result.append(await _create_token(store, workspace))

    _run(go())
    out.print(f"token for workspace {workspace}:", highlight=False)
    print(result[0])


@workspace_app.command("create")
def workspace_create(
    name: Annotated[str, typer.Argument(help="Workspace name.")],
    store: StoreOpt = DEFAULT_STORE,
) -> None:
    """Create a workspace (and a first token for it).

    Example: conveyor workspace create acme
    """
    result: list[str] = []

    async def go() -> None:
        result.append(await _create_token(store, name))

    _run(go())
    out.print(f"workspace {name} ready; token:", highlight=False)
    print(result[0])


def main() -> None:
    app()
