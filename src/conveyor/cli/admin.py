"""``conveyor token``, ``workspace`` and ``signing-key``: straight on the store, no gateway."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from conveyor.cli.options import StoreOpt
from conveyor.cli.report import out, run
from conveyor.server.settings import DEFAULT_STORE

if TYPE_CHECKING:
    from conveyor.server.store.records import Revoked

token_app = typer.Typer(
    help="Manage API tokens.\n\nExample: conveyor token create --workspace acme\n\n"
    "Example: conveyor token revoke TOKEN",
    no_args_is_help=True,
)
workspace_app = typer.Typer(
    help="Manage workspaces.\n\nExample: conveyor workspace create acme", no_args_is_help=True
)
signing_key_app = typer.Typer(
    help="Manage the key that signs output links.\n\nExample: conveyor signing-key rotate",
    no_args_is_help=True,
)


async def _create_token(store_url: str, workspace: str) -> str:
    from conveyor.server.store import open_store

    store = open_store(store_url)
    await store.open()
    try:
        ws = await store.ensure_workspace(workspace)
        return await store.create_token(ws.id)
    finally:
        await store.close()


async def _create_operator_token(store_url: str) -> str:
    from conveyor.server.store import open_store

    store = open_store(store_url)
    await store.open()
    try:
        return await store.create_operator_token()
    finally:
        await store.close()


@token_app.command("create")
def token_create(
    workspace: Annotated[
        str | None,
        typer.Option(
            "--workspace",
            "-w",
            help="Workspace name (created if needed); default: the one `conveyor serve` uses.",
            show_default=False,
        ),
    ] = None,
    operator: Annotated[
        bool,
        typer.Option(
            "--operator",
            help="An operator token: reads /metrics of every workspace, and nothing else.",
        ),
    ] = False,
    store: StoreOpt = DEFAULT_STORE,
) -> None:
    """Create a token for a workspace; the token is the last line printed.

    Example: conveyor token create --workspace acme

    Example: conveyor token create --operator   (for a Prometheus scraping every workspace)
    """
    from conveyor.server.run import DEFAULT_WORKSPACE

    if operator:
        if workspace is not None:
            raise typer.BadParameter("an operator token has no workspace; drop --workspace")
        clear = run(_create_operator_token(store))
        out.print("operator token (reads /metrics of every workspace):", highlight=False)
        print(clear)
        return

    workspace = workspace or DEFAULT_WORKSPACE
    token = run(_create_token(store, workspace))
    out.print(f"token for workspace {workspace}:", highlight=False)
    print(token)


async def _revoke(store_url: str, token: str | None, workspace: str | None) -> Revoked | None:
    from conveyor.server.store import open_store

    store = open_store(store_url)
    await store.open()
    try:
        if token is not None:
            return await store.revoke_token(token)
        assert workspace is not None
        return await store.revoke_workspace_tokens(workspace)
    finally:
        await store.close()


@token_app.command("revoke")
def token_revoke(
    token: Annotated[
        str | None,
        typer.Argument(help="The token to revoke (as `token create` printed it).",
                       show_default=False),
    ] = None,
    all_tokens: Annotated[
        bool,
        typer.Option("--all", help="Revoke every token of --workspace."),
    ] = False,
    workspace: Annotated[
        str | None,
        typer.Option("--workspace", "-w", help="With --all: the workspace name.",
                     show_default=False),
    ] = None,
    store: StoreOpt = DEFAULT_STORE,
) -> None:
    """Revoke a workspace token, or all of a workspace's: the API refuses it (running
    gateways within 5 s) and every dashboard session signed in with it is signed out at once.

    Example: conveyor token revoke cv_0123abcd...

    Example: conveyor token revoke --all --workspace acme

    A `conveyor serve --token T` started again stores T again.
    """
    if all_tokens == (token is not None):
        raise typer.BadParameter("give either a TOKEN or --all --workspace NAME")
    if token is None and workspace is None:
        raise typer.BadParameter("--all needs --workspace NAME")
    if token is not None and workspace is not None:
        raise typer.BadParameter("--workspace goes with --all; drop it to revoke one token")
    revoked = run(_revoke(store, token, workspace))
    if revoked is None:
        out.print(f"no workspace called {workspace}", highlight=False)
        raise typer.Exit(1)
    if token is not None and revoked.tokens == 0:
        out.print("no such workspace token; nothing revoked", highlight=False)
        raise typer.Exit(1)
    out.print(
        f"revoked {revoked.tokens} token(s); signed out {revoked.sessions} dashboard session(s)",
        highlight=False,
    )


@workspace_app.command("create")
def workspace_create(
    name: Annotated[str, typer.Argument(help="Workspace name.")],
    store: StoreOpt = DEFAULT_STORE,
) -> None:
    """Create a workspace (and a first token for it).

    Example: conveyor workspace create acme
    """
    token = run(_create_token(store, name))
    out.print(f"workspace {name} ready; token:", highlight=False)
    print(token)


async def _rotate_signing_key(store_url: str) -> None:
    from conveyor.server.store import open_store

    store = open_store(store_url)
    await store.open()
    try:
        await store.rotate_server_key()
    finally:
        await store.close()


@signing_key_app.command("rotate")
def signing_key_rotate(store: StoreOpt = DEFAULT_STORE) -> None:
    """Make a new key for signed output links, kept in the store.

    New links are signed with it; links signed with the previous key work until they expire.

    Running gateways pick it up within a few seconds, without a restart.

    Only one previous key is kept: rotating twice within a link's lifetime ends the older links.

    Example: conveyor signing-key rotate --store postgresql://postgres@db/conveyor
    """
    run(_rotate_signing_key(store))
    out.print(
        "new signing key in the store; links signed with the previous key work until they expire",
        highlight=False,
    )
