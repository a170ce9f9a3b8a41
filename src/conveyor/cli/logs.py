"""``conveyor task logs``: what a task wrote, page after page or followed live."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from enum import StrEnum
from typing import Annotated, Any

import typer

from conveyor.cli import render
from conveyor.cli.options import TokenOpt, UrlOpt, connect
from conveyor.cli.report import out, reported
from conveyor.sdk.calls import LogFilters
from conveyor.sdk.client import Client


class LogFormat(StrEnum):
    text = "text"
    json = "json"


class LogStreamName(StrEnum):
    stdout = "stdout"
    stderr = "stderr"


#: Lines per request when paging through a log; lines ``task get`` shows.
LOG_PAGE, LOG_TAIL = 1000, 20


def logs_cmd(
    task_id: Annotated[str, typer.Argument(help="The task id.", metavar="ID")],
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Print new lines as they are stored, until the "
                     "task ends."),
    ] = False,
    attempt: Annotated[
        int | None, typer.Option(min=1, help="Only the lines of this attempt (1, 2, …).")
    ] = None,
    stream: Annotated[
        LogStreamName | None, typer.Option(help="Only the lines of this stream.")
    ] = None,
    output: Annotated[
        LogFormat, typer.Option("--format", help="The lines, or the API's JSON, one a line.")
    ] = LogFormat.text,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Print what a task wrote to stdout and stderr, oldest first; stderr lines start with
    [stderr].

    With --follow: then each new line as the task writes it, until the task ends (exit 0).

    Example: conveyor task logs 0b6c0c1e-4d1c-4c29-9a7e-1f2d1f0b7a55 -f --stream stderr
    """
    filters: LogFilters = {}
    if attempt is not None:
        filters["attempt"] = attempt
    if stream is not None:
        filters["stream"] = stream.value
    printer = render.LogPrinter(out, as_json=output is LogFormat.json)
    with reported(), connect(url, token) as client:
        lines: Iterator[dict[str, Any]]
        if follow:
            lines = (line for line in client.follow_logs(task_id) if _kept(line, filters))
        else:
            lines = log_lines(client, task_id, filters)
        for line in lines:
            printer.print(line)


def log_lines(client: Client, task_id: str, filters: LogFilters) -> Iterator[dict[str, Any]]:
    """Every line kept so far, page after page."""
    query: LogFilters = {**filters, "limit": LOG_PAGE}
    while True:
        page = client.task_logs(task_id, **query)
        yield from page["data"]
        if page["next_cursor"] is None or len(page["data"]) < LOG_PAGE:
            return
        query["cursor"] = page["next_cursor"]


def _kept(line: dict[str, Any], filters: LogFilters) -> bool:
    """The stream route has no filters: ``--attempt`` and ``--stream`` apply here."""
    return all(line.get(name) == value for name, value in filters.items())


def log_tail(client: Client, task_id: str) -> list[dict[str, Any]]:
    """The last ``LOG_TAIL`` lines kept so far (the log is read oldest first)."""
    return list(deque(log_lines(client, task_id, {}), maxlen=LOG_TAIL))
