"""``conveyor put`` and ``conveyor task list|get|logs|stop|wait|replay``: tasks, through a
gateway."""

from __future__ import annotations

import sys
import warnings
from enum import StrEnum
from typing import Annotated

import orjson
import typer

from conveyor.cli import render
from conveyor.cli.logs import log_tail, logs_cmd
from conveyor.cli.options import (
    ListFormat,
    ListFormatOpt,
    TimeoutOpt,
    TokenOpt,
    UrlOpt,
    connect,
)
from conveyor.cli.report import EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, err, out, reported
from conveyor.errors import ConveyorError, HTTPError
from conveyor.sdk.calls import ConveyorWarning, ReplayFilters, TaskFilters, enqueue_call
from conveyor.sdk.client import Client
from conveyor.tasks import TaskStatus

task_app = typer.Typer(
    help="List, inspect, stop and wait for tasks.\n\nExample: conveyor task list --status running",
    no_args_is_help=True,
)


TaskIdsArg = Annotated[
    list[str], typer.Argument(help="Task ids, or - to read them from stdin.", metavar="ID")
]


class TaskFormat(StrEnum):
    panel = "panel"
    json = "json"


def _statuses(text: str) -> list[str]:
    """``running,Error`` → ``["RUNNING", "FAILED"]``, refusing unknown names before any request."""
    try:
        statuses = [TaskStatus.parse(part).value for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--status") from None
    return list(dict.fromkeys(statuses))


def _ids(task_ids: list[str], nothing: str) -> list[str]:
    """The ids given, or the whitespace-separated ids on stdin for ``-``; duplicates once.

    An empty stdin (a filter that matched no task) is no failure: ``nothing`` is said on
    stderr and the command exits 0.
    """
    ids = sys.stdin.read().split() if task_ids == ["-"] else task_ids
    if not ids:
        err.print(nothing, highlight=False)
        raise typer.Exit(EXIT_OK)
    return list(dict.fromkeys(ids))


def _known_queue(client: Client, name: str) -> None:
    """Refuse a queue name the workspace does not have, naming those it has."""
    try:
        client.queue(name)
    except HTTPError as exc:
        if exc.status_code != 404:
            raise
        names = ", ".join(q["name"] for q in client.queues())
        known = f"known queues: {names}" if names else "no queue is deployed yet"
        raise ConveyorError(f"unknown queue {name!r}; {known}") from None


def put_cmd(
    name: Annotated[
        str, typer.Argument(help="Queue name, or NAME/vN, NAME/latest.", metavar="NAME")
    ],
    body: Annotated[
        str, typer.Argument(help="The request body: a JSON object.", metavar="JSON")
    ] = "{}",
    wait: Annotated[
        bool, typer.Option("--wait", "-w", help="Wait for the task, then print its result.")
    ] = False,
    timeout: TimeoutOpt = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Enqueue a task and print its id.

    The JSON object's keys are the handler's keyword arguments, or give "args" and "kwargs".

    With --wait: a live status line until the task ends, then its final status (stderr) and
    its result as JSON (stdout).

    Exit code with --wait: 0 if the task is COMPLETE, 1 for any other end, 2 on --timeout.

    Example: conveyor put resize '{"path": "a.png", "width": 100}' --wait
    """
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="JSON") from None
    if not isinstance(payload, dict):
        raise typer.BadParameter("must be a JSON object, e.g. '{\"x\": 3}'", param_hint="JSON")
    with reported(), connect(url, token) as client:
        with warnings.catch_warnings(record=True, category=ConveyorWarning) as told:
            task_id = client.send(enqueue_call(name, payload))["task_id"]
        for warning in told:  # e.g. no agent runs that version: say why it may wait
            render.print_warning(err, f"{warning.message}; the task waits until one does")
        if not wait:
            print(task_id)
            return
        err.print(f"task {task_id}", highlight=False)
        task = render.follow_task(client, task_id, timeout, err)
    if task["status"] != TaskStatus.COMPLETE:
        render.print_error(err, "task " + render.outcome_line(task).plain)
        raise typer.Exit(EXIT_FAILED)
    err.print(render.ended_line(task), highlight=False)
    render.print_json(task.get("result"))


@task_app.command("list")
def task_list(
    status: Annotated[
        str | None,
        typer.Option(help="Comma list of statuses, any case; ERROR means FAILED."),
    ] = None,
    queue: Annotated[str | None, typer.Option(help="Only tasks of this queue.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many tasks.")] = 100,
    output: ListFormatOpt = ListFormat.table,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """List tasks, newest first.

    Example: conveyor task list --status pending,running --queue resize --limit 20
    """
    filters: TaskFilters = {"limit": limit}
    if status:
        filters["status"] = _statuses(status)
    if queue:
        filters["queue"] = queue
    with reported(), connect(url, token) as client:
        if queue:
            _known_queue(client, queue)
        answer = client.tasks(**filters)
    if output is ListFormat.json:
        render.print_json(answer["data"])
        return
    out.print(render.task_table(answer["data"]))
    out.print(render.count_line(len(answer["data"]), answer.get("next_cursor") is not None))


@task_app.command("get")
def task_get(
    task_id: Annotated[str, typer.Argument(help="The task id.", metavar="ID")],
    output: Annotated[
        TaskFormat, typer.Option("--format", help="A readable panel, or the API's JSON.")
    ] = TaskFormat.panel,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Show one task: every field, its input, result or error with traceback, outputs, each
    attempt, and the last lines of its log.

    Example: conveyor task get 0b6c0c1e-4d1c-4c29-9a7e-1f2d1f0b7a55 --format json
    """
    with reported(), connect(url, token) as client:
        task = client.task(task_id)
        if output is TaskFormat.json:
            render.print_json(task)
            return
        inputs = client.task_input(task_id)
        attempts = client.task_attempts(task_id)
        tail = log_tail(client, task_id)
    render.print_task(out, task, inputs, attempts, tail)


task_app.command("logs")(logs_cmd)


@task_app.command("replay")
def task_replay(
    task_ids: Annotated[
        list[str] | None,
        typer.Argument(help="Finished tasks' ids, or - to read them from stdin.", metavar="ID"),
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(help="Without ids: finished tasks of these statuses (comma list)."),
    ] = None,
    queue: Annotated[str | None, typer.Option(help="Without ids: tasks of this queue.")] = None,
    created_after: Annotated[
        str | None, typer.Option(help="Without ids: tasks created after this ISO 8601 time.")
    ] = None,
    latest: Annotated[
        bool,
        typer.Option(help="Run them on the version the queue's route goes to, not their own."),
    ] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Enqueue finished tasks again with the same input, by id or by filter (at most 1000);
    print the new tasks' ids, whose replay_of names the original. All or none.

    Example: conveyor task replay --status failed --queue resize --latest
    """
    filters: ReplayFilters = {}
    if status:
        filters["status"] = _statuses(status)
    if queue:
        filters["queue"] = queue
    if created_after:
        filters["created_after"] = created_after
    if task_ids and filters:
        raise typer.BadParameter("give task ids or filters, not both", param_hint="ID")
    if not task_ids and not filters:
        raise typer.BadParameter("give task ids, or --status/--queue/--created-after")
    ids = _ids(task_ids, "nothing to replay: no task ids on stdin") if task_ids else None
    with reported(), connect(url, token) as client:
        if queue:
            _known_queue(client, queue)
        made = client.replay(ids, latest=latest, **filters)
    for task_id in made:
        print(task_id)
    err.print(f"replayed {len(made)} task(s)", highlight=False)


@task_app.command("stop")
def task_stop(
    task_ids: TaskIdsArg,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Cancel tasks; one line per id: cancelled, already finished or not found.

    Exit code 0 if every id was cancelled or had already finished, 1 if any was not found.

    Example: conveyor task stop ID1 ID2   or   cat ids.txt | conveyor task stop -
    """
    ids = _ids(task_ids, "nothing to stop: no task ids on stdin")
    with reported(), connect(url, token) as client:
        answer = client.cancel(ids)
    what = {task_id: "cancelled" for task_id in answer.get("cancelled", [])}
    what.update({task_id: "already finished" for task_id in answer.get("already_finished", [])})
    for task_id in ids:
        out.print(f"{task_id}  {what.get(task_id, 'not found')}", highlight=False)
    if any(task_id not in what for task_id in ids):
        raise typer.Exit(1)


@task_app.command("wait")
def task_wait(
    task_ids: TaskIdsArg,
    timeout: TimeoutOpt = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Wait until every task has ended, with a progress bar; then one line per task.

    Exit code 0 only if all are COMPLETE, 1 otherwise, 2 if --timeout runs out first.

    Example: conveyor task wait 0b6c0c1e-4d1c-4c29-9a7e-1f2d1f0b7a55 --timeout 600
    """
    ids = _ids(task_ids, "nothing to wait for: no task ids on stdin")
    with reported(), connect(url, token) as client:
        latest, finished = render.wait_tasks(client, ids, timeout, err)
    for task_id in ids:
        out.print(render.outcome_line(latest[task_id]), highlight=False, soft_wrap=True)
    if not finished:
        render.print_error(err, f"{timeout} s passed before every task ended")
        raise typer.Exit(EXIT_TIMEOUT)
    if any(latest[i]["status"] != TaskStatus.COMPLETE for i in ids):
        raise typer.Exit(EXIT_FAILED)
