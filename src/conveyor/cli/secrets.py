"""``conveyor secret create|list|delete`` (through a gateway) and ``keygen|rotate-key`` (the
key, straight on the store). No command ever prints a secret's value (DESIGN A9)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from conveyor.cli import render
from conveyor.cli.options import ListFormat, ListFormatOpt, StoreOpt, TokenOpt, UrlOpt, connect
from conveyor.cli.report import out, reported, run
from conveyor.errors import SecretKeyError
from conveyor.server.settings import DEFAULT_STORE

secret_app = typer.Typer(
    help="Manage the workspace's secrets: environment variables of the queues that name them "
    "(@task_queue(secrets=[...])), encrypted at rest, never shown again.\n\n"
    "Example: printf %s \"$S3_KEY\" | conveyor secret create S3_KEY -",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="The secret's name, e.g. S3_KEY.", metavar="NAME")]


def _value(value: str | None) -> str:
    """``value``; with ``-`` (or none, not at a terminal) stdin less one final newline; none
    at a terminal: asked for, unseen."""
    if value is not None and value != "-":
        return value
    if value is None and sys.stdin.isatty():
        asked: str = typer.prompt("value", hide_input=True, err=True)
        return asked
    text = sys.stdin.read()
    return text.removesuffix("\n").removesuffix("\r")


@secret_app.command("create")
def secret_create(
    name: NameArg,
    value: Annotated[
        str | None,
        typer.Argument(
            help="The value, or - to read it from stdin (then it is in no shell history and "
            "no process list). Omitted: asked for, unseen.",
            metavar="[VALUE | -]",
            show_default=False,
        ),
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Create a secret, or give it a new value; containers started afterwards get it.

    Example: conveyor secret create S3_KEY - < s3_key.txt
    """
    secret = _value(value)
    with reported(), connect(url, token) as client:
        made = client.create_secret(name, secret)
    done = "created" if made["created_at"] == made["updated_at"] else "updated"
    out.print(f"secret {made['name']} {done}", highlight=False)


@secret_app.command("list")
def secret_list(
    output: ListFormatOpt = ListFormat.table,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """List the workspace's secrets: names and dates, never values.

    Example: conveyor secret list --format json
    """
    with reported(), connect(url, token) as client:
        held = client.secrets()
    if output is ListFormat.json:
        render.print_json(held)
        return
    table = Table(header_style="bold", box=None, pad_edge=False)
    for column in ("name", "created", "updated"):
        table.add_column(column)
    for item in held:
        table.add_row(item["name"], render.short_time(item["created_at"]),
                      render.short_time(item["updated_at"]))  # fmt: skip
    out.print(table if held else "no secrets", highlight=False)


@secret_app.command("delete")
def secret_delete(name: NameArg, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Delete a secret.

    Containers started afterwards for a queue that names it do not start: the task waiting
    fails with SecretNotFound.

    Example: conveyor secret delete S3_KEY
    """
    with reported(), connect(url, token) as client:
        client.delete_secret(name)
    out.print(f"secret {name} deleted", highlight=False)


@secret_app.command("keygen")
def secret_keygen() -> None:
    """Print a new key for CONVEYOR_SECRET_KEY.

    PostgreSQL deployments set the same key on every server and worker.

    Example: export CONVEYOR_SECRET_KEY=$(conveyor secret keygen)
    """
    from conveyor.server.secret_key import new_key

    print(new_key())


async def _rotate(store_url: str) -> int:
    from conveyor.server.secret_key import new_key, secret_key_of
    from conveyor.server.store import open_store

    key = secret_key_of(store_url)
    if key.file is None and len(key.texts()) < 2:
        raise SecretKeyError(
            "CONVEYOR_SECRET_KEY must hold the new key, then the old: NEW,OLD (see "
            "docs/operations.md)"
        )
    store = open_store(store_url)
    await store.open()
    try:
        if key.file is None:
            return await store.rewrap_secrets(key.rotate)
        # Both keys in the file while the secrets move: a process reads each at any moment.
        key.write([new_key(), *key.texts(create=True)])
        count = await store.rewrap_secrets(key.rotate)
        key.write(key.texts()[:1])
        return count
    finally:
        await store.close()


@secret_app.command("rotate-key")
def secret_rotate_key(store: StoreOpt = DEFAULT_STORE) -> None:
    """Encrypt every secret of the store again with a new key, all or none.

    SQLite (the key file beside the store): makes the new key and keeps only it.

    PostgreSQL: with CONVEYOR_SECRET_KEY=NEW,OLD (as every server and worker should have
    while it runs); afterwards NEW alone is enough.

    Example: CONVEYOR_SECRET_KEY=$NEW,$OLD conveyor secret rotate-key --store postgresql://db/c
    """
    count = run(_rotate(store))
    out.print(f"{count} secret(s) encrypted again with the new key", highlight=False)
