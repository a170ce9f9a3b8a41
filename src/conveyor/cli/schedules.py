"""``conveyor schedule list``: schedules, through a gateway."""

from __future__ import annotations

import typer

from conveyor.cli import render
from conveyor.cli.options import ListFormat, ListFormatOpt, TokenOpt, UrlOpt, connect
from conveyor.cli.report import out, reported

schedule_app = typer.Typer(
    help="Inspect schedules (functions decorated with @schedule).\n\n"
    "Example: conveyor schedule list",
    no_args_is_help=True,
)


@schedule_app.command("list")
def schedule_list(
    output: ListFormatOpt = ListFormat.table,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """List schedules: the version that ticks, when, its next 3 ticks and the last one.

    Example: conveyor schedule list --format json
    """
    with reported(), connect(url, token) as client:
        schedules = client.schedules()
    if output is ListFormat.json:
        render.print_json(schedules)
    else:
        out.print(render.schedule_table(schedules))
