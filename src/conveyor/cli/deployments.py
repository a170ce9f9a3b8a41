"""``conveyor deployment list|stop|start|delete``: deployed versions, through a gateway."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import typer

from conveyor.cli import render
from conveyor.cli.options import ListFormat, ListFormatOpt, TokenOpt, UrlOpt, connect
from conveyor.cli.report import err, out, reported
from conveyor.errors import ConveyorError
from conveyor.sdk.client import Client

deployment_app = typer.Typer(
    help="List, stop, start and delete deployed versions of task queues.\n\n"
    "Example: conveyor deployment stop resize:v1",
    no_args_is_help=True,
)

VersionsArg = Annotated[
    list[str],
    typer.Argument(help="Versions: a stub id, or NAME:vN such as resize:v1.", metavar="VERSION"),
]
_NAMED = re.compile(r"(?P<name>[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}):v(?P<version>\d{1,9})")


def _stub_ids(client: Client, given: Sequence[str]) -> list[str]:
    """The stub id of each version given; ``NAME:vN`` are looked up in one listing."""
    versions: list[dict[str, Any]] | None = None
    ids = []
    for text in given:
        match = _NAMED.fullmatch(text)
        if match is None:
            ids.append(text)
            continue
        versions = client.deployments() if versions is None else versions
        name, number = match["name"], int(match["version"])
        found = [v for v in versions if v["name"] == name and v["version"] == number]
        if not found:
            raise ConveyorError(f"unknown version v{number} of queue {name!r}")
        ids.append(found[0]["stub_id"])
    return ids


def _confirmed(count: int) -> bool:
    try:
        return typer.confirm(
            f"Delete {count} version(s) with all their tasks? This cannot be undone.", err=True
        )
    except typer.Abort:  # no answer (stdin closed, Ctrl-C): nothing is deleted
        return False


def _said(version: Mapping[str, Any], what: str) -> None:
    out.print(f"{version['name']} v{version['version']}  {what}  stub {version['stub_id']}",
              highlight=False)


@deployment_app.command("list")
def deployment_list(
    output: ListFormatOpt = ListFormat.table,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """List every version of every queue: active or stopped, and how many live agents run it.

    Example: conveyor deployment list --format json
    """
    with reported(), connect(url, token) as client:
        versions = client.deployments()
    if output is ListFormat.json:
        render.print_json(versions)
    else:
        out.print(render.deployment_table(versions))


@deployment_app.command("stop")
def deployment_stop(versions: VersionsArg, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Stop versions: no new tasks (409), running tasks finish, containers stop. The queue's
    unversioned route goes to its latest version still active.

    Example: conveyor deployment stop resize:v1
    """
    with reported(), connect(url, token) as client:
        for stub_id in _stub_ids(client, versions):
            _said(client.stop_deployment(stub_id), "stopped")


@deployment_app.command("start")
def deployment_start(versions: VersionsArg, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Start stopped versions again: they take tasks, and their waiting tasks run.

    Example: conveyor deployment start resize:v1
    """
    with reported(), connect(url, token) as client:
        for stub_id in _stub_ids(client, versions):
            _said(client.start_deployment(stub_id), "started")


@deployment_app.command("delete")
def deployment_delete(
    versions: VersionsArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask first.")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Delete versions with their tasks, outputs and logs; refused while any of their tasks
    is unfinished (stop the version, then wait or cancel).

    Example: conveyor deployment delete resize:v1 --yes
    """
    with reported(), connect(url, token) as client:
        ids = _stub_ids(client, versions)
        if not yes and not _confirmed(len(ids)):
            err.print("nothing deleted", highlight=False)
            raise typer.Exit(1)
        for stub_id in ids:
            answer = client.delete_deployment(stub_id)
            out.print(f"deleted stub {answer['stub_id']}  ({answer['deleted_tasks']} task(s))",
                      highlight=False)
