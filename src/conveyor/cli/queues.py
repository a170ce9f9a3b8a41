"""``conveyor queue list`` and ``conveyor deploy``: task queues, through a gateway."""

from __future__ import annotations

from typing import Annotated

import typer

from conveyor.cli import render
from conveyor.cli.options import ListFormat, ListFormatOpt, TokenOpt, UrlOpt, connect
from conveyor.cli.report import out, reported
from conveyor.errors import ConveyorError
from conveyor.sdk.bundle import IGNORE_FILE, make_bundle

queue_app = typer.Typer(
    help="Inspect task queues.\n\nExample: conveyor queue list", no_args_is_help=True
)


@queue_app.command("list")
def queue_list(
    output: ListFormatOpt = ListFormat.table,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """List task queues: versions, depth, live containers and task counts per status.

    Example: conveyor queue list --format json
    """
    with reported(), connect(url, token) as client:
        queues = client.queues()
    if output is ListFormat.json:
        render.print_json(queues)
    else:
        out.print(render.queue_table(queues))


def deploy_cmd(
    target: Annotated[
        str, typer.Argument(help="The task queue (or schedule) as FILE:FUNC.", metavar="FILE:FUNC")
    ],
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Upload the folder of FILE as a code bundle and make the queue's (or schedule's) next
    version; a schedule's next 3 ticks are shown.

    Bundled: the folder's files minus .git, __pycache__, .venv, .conveyor and its .conveyorignore.

    The ignore file takes gitignore-like patterns: *.log, build/, /docs, !keep.log.

    Deployed versions run on `conveyor worker` agents.

    Example: conveyor deploy app.py:resize
    """
    with reported():
        from conveyor.sdk.loader import load_target

        loaded = load_target(target)
        config = loaded.config(code_path=None)
        root = loaded.path.parent
        bundle = make_bundle(root)
        if loaded.path.name not in bundle.files:
            raise ConveyorError(f"{loaded.path.name} is excluded by {root / IGNORE_FILE}")
        with connect(url, token) as client:
            answer = client.deploy(config.to_json(), bundle.data)
            out.print(
                f"deployed [cyan]{answer['name']}[/cyan] [bold]v{answer['version']}[/bold]"
                f"  stub {answer['stub_id']}  ({len(bundle.files)} files, "
                f"{len(bundle.data) / 1024:.1f} KiB)",
                highlight=False,
            )
            cron = config.cron()
            if cron is not None:
                out.print(f"  when  {cron.when} ({cron.timezone})", highlight=False,
                          markup=False)
                out.print(f"  next  {render.next_ticks(cron)}", highlight=False)
                return
            out.print(f"  url   {answer['url']}", highlight=False, soft_wrap=True)
            out.print(
                "  try   " + render.curl_line(answer["url"], client.token or ""),
                highlight=False,
                soft_wrap=True,
                markup=False,
            )
