"""What the ``conveyor`` command shows: tables, panels, one-line errors, live waits.

Machine-readable output (``--format json``, results) goes to stdout as plain JSON; progress
and status lines go to stderr so they never mix with what a pipe reads.
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from rich.console import Console, Group, RenderableType
from rich.json import JSON
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from conveyor.clock import iso, to_us
from conveyor.cron import Cron
from conveyor.errors import WaitTimeout
from conveyor.sdk.client import Client
from conveyor.tasks import TaskStatus, is_terminal

STATUS_STYLES: Mapping[TaskStatus, str] = {
    TaskStatus.PENDING: "yellow",
    TaskStatus.RUNNING: "cyan",
    TaskStatus.RETRY: "magenta",
    TaskStatus.COMPLETE: "green",
    TaskStatus.CANCELLED: "bright_black",
    TaskStatus.EXPIRED: "bright_black",
    TaskStatus.TIMEOUT: "red",
    TaskStatus.FAILED: "bold red",
}
#: Polling of the waits: start fast, then ease off so many ids do not flood the gateway.
POLL_START_S, POLL_CAP_S = 0.1, 1.0


# -- small pieces ----------------------------------------------------------------------------


def one_line(message: str) -> str:
    return " ".join(message.split())


def print_error(console: Console, message: str) -> None:
    """``error: …`` on one line, however long, with no markup read from the message."""
    console.print(Text.assemble(("error:", "bold red"), " ", one_line(message)), soft_wrap=True)


def print_warning(console: Console, message: str) -> None:
    """``warning: …`` on one line: the command goes on."""
    line = Text.assemble(("warning:", "bold yellow"), " ", one_line(message))
    console.print(line, soft_wrap=True)


def print_json(data: Any) -> None:
    """Plain indented JSON on stdout, for pipes and ``json.loads``."""
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()


def status_text(status: str) -> Text:
    try:
        style = STATUS_STYLES[TaskStatus(status)]
    except ValueError:
        style = ""
    return Text(status, style=style)


def short_time(value: str | None, same_day_as: str | None = None) -> str:
    """``2026-11-28 19:29:35``; only the time when on the same day as ``same_day_as``."""
    if not value:
        return "-"
    day, _, clock = value.partition("T")
    clock = clock[:8]
    if same_day_as is not None and same_day_as.startswith(day):
        return clock
    return f"{day} {clock}"


def curl_line(url: str, token: str, body: str = "{}") -> str:
    return (
        f"curl -s -X POST {shlex.quote(url)} -H {shlex.quote('Authorization: Bearer ' + token)}"
        f" -H 'Content-Type: application/json' -d {shlex.quote(body)}"
    )


def outcome_line(task: Mapping[str, Any]) -> Text:
    """``<id>  STATUS`` and, for a failure, its error type and message."""
    line = Text.assemble(task["id"], "  ", status_text(task["status"]))
    error = task.get("error")
    if isinstance(error, Mapping):
        line.append(f"  {error.get('type', 'Error')}: {one_line(str(error.get('message', '')))}")
    return line


def ended_line(task: Mapping[str, Any]) -> Text:
    """``task <id> COMPLETE in 0.2 s``: from its creation to its end, by the task's own times."""
    line = Text.assemble("task ", task["id"], " ", status_text(task["status"]))
    created, ended = task.get("created_at"), task.get("ended_at")
    if created and ended:
        took = datetime.fromisoformat(ended) - datetime.fromisoformat(created)
        line.append(f" in {took.total_seconds():.1f} s")
    return line


# -- tables and panels ---------------------------------------------------------------------


def task_table(tasks: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(header_style="bold", box=None, pad_edge=False)
    # Ids and statuses are never cut; the free-text columns fold when the screen is narrow.
    table.add_column("id", no_wrap=True, min_width=36)
    table.add_column("status", no_wrap=True, min_width=9)
    table.add_column("queue", overflow="fold")
    table.add_column("created", no_wrap=True)
    table.add_column("started", no_wrap=True)
    table.add_column("ended", no_wrap=True)
    table.add_column("container", overflow="fold")
    for task in tasks:
        created = task.get("created_at")
        deployment = task.get("deployment") or {}
        table.add_row(
            task["id"],
            status_text(task["status"]),
            f"{deployment.get('name', '?')} v{deployment.get('version', '?')}",
            short_time(created),
            short_time(task.get("started_at"), created),
            short_time(task.get("ended_at"), created),
            task.get("container_id") or "-",
        )
    return table


def count_line(shown: int, more: bool) -> Text:
    noun = "task" if shown == 1 else "tasks"
    line = Text(f"{shown} {noun}", style="bold")
    if more:
        line.append(" (more match: raise --limit or narrow the filters)", style="dim")
    return line


def task_panel(task: Mapping[str, Any], inputs: Mapping[str, Any] | None = None) -> Panel:
    """Every field of the task: times, container, attempts, input, result, error."""
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold", no_wrap=True)
    fields.add_column(overflow="fold")
    deployment = task.get("deployment") or {}
    stub = task.get("stub") or {}
    stats = task.get("stats") or {}
    fields.add_row("status", status_text(task["status"]))
    fields.add_row("queue", f"{deployment.get('name')} v{deployment.get('version')}")
    fields.add_row("stub", f"{stub.get('id')} ({stub.get('type')})")
    fields.add_row("container", task.get("container_id") or "-")
    fields.add_row("attempts", str(task.get("attempts")))
    if task.get("replay_of"):
        fields.add_row("replay of", str(task["replay_of"]))
    for name in ("created_at", "started_at", "ended_at", "updated_at"):
        fields.add_row(name.removesuffix("_at"), task.get(name) or "-")
    duration = task.get("duration_s")
    fields.add_row("duration", "-" if duration is None else f"{duration:.3f} s")
    fields.add_row(
        "queue now",
        f"depth {stats.get('queue_depth')}, live containers {stats.get('active_containers')}",
    )
    parts: list[RenderableType] = [fields]
    if inputs is not None:
        parts += [Text("\ninput", style="bold"), JSON.from_data(inputs)]
    if task.get("result") is not None:
        parts += [Text("\nresult", style="bold"), JSON.from_data(task["result"])]
    error = task.get("error")
    if isinstance(error, Mapping):
        parts.append(Text("\nerror", style="bold red"))
        parts.append(Text(f"{error.get('type')}: {error.get('message')}", style="red"))
        if error.get("traceback"):
            parts.append(Text(str(error["traceback"]).rstrip(), style="dim"))
    return Panel(Group(*parts), title=f"task {task['id']}", title_align="left", expand=False)


def print_task(
    console: Console,
    task: Mapping[str, Any],
    inputs: Mapping[str, Any] | None = None,
    attempts: Sequence[Mapping[str, Any]] = (),
    log_tail: Sequence[Mapping[str, Any]] = (),
) -> None:
    """The panel (with the task's ``inputs``), its attempts, the last lines of its log, then
    each output's URL on a line of its own: inside the box, a long URL would be folded across
    its borders and could not be copied whole."""
    console.print(task_panel(task, inputs))
    if attempts:
        console.print(Text("attempts", style="bold"))
        console.print(attempt_table(attempts))
    if log_tail:
        console.print(Text(f"log (last {len(log_tail)} lines)", style="bold"))
        printer = LogPrinter(console)
        for line in log_tail:
            printer.print(line)
    outputs = task.get("outputs") or []
    if outputs:
        console.print(Text("outputs", style="bold"))
    for output in outputs:
        link = Text(output["name"], style=f"link {output['url']}")
        console.print(Text.assemble("  ", link, "  ", output["url"]), soft_wrap=True)


def attempt_table(attempts: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(header_style="bold", box=None, pad_edge=False)
    table.add_column("attempt", justify="right", no_wrap=True)
    table.add_column("container", overflow="fold")
    table.add_column("started", no_wrap=True)
    table.add_column("ended", no_wrap=True)
    table.add_column("outcome", no_wrap=True)
    table.add_column("error", overflow="fold")
    table.add_column("exit", no_wrap=True)
    for attempt in attempts:
        started = attempt.get("started_at")
        error = attempt.get("error") or {}
        outcome = attempt.get("outcome")
        table.add_row(
            str(attempt["attempt"]),
            attempt.get("container_id") or "-",
            short_time(started),
            short_time(attempt.get("ended_at"), started),
            status_text(outcome) if outcome else Text("running", style="cyan"),
            error.get("type") or "-",
            _exit_text(attempt.get("exit")),
        )
    return table


def _exit_text(exit: Mapping[str, Any] | None) -> str:
    if not exit:
        return "-"
    return str(exit.get("signal") or f"code {exit.get('code')}")


class LogPrinter:
    """Prints a task's log lines on stdout: as text (stderr lines after ``[stderr]``, red on a
    terminal; ``[attempt N]`` where another attempt's lines begin) or as JSON, one object a
    line. In a pipe the text is the lines as written, with no colour."""

    def __init__(self, console: Console, as_json: bool = False) -> None:
        self._console = console
        self._as_json = as_json
        self._attempt: int | None = None

    def print(self, item: Mapping[str, Any]) -> None:
        if self._as_json:
            self._write(orjson.dumps(item).decode())
            return
        attempt = item.get("attempt")
        if self._attempt is not None and attempt != self._attempt:
            self._write(f"[attempt {attempt}]", "dim")
        self._attempt = attempt
        prefix = "[stderr] " if item.get("stream") == "stderr" else ""
        self._write(prefix, "red", str(item.get("line", "")))

    def _write(self, head: str, style: str = "", tail: str = "") -> None:
        if self._console.is_terminal:
            self._console.print(Text.assemble((head, style), tail), soft_wrap=True)
        else:
            self._console.file.write(f"{head}{tail}\n")
            self._console.file.flush()


def queue_table(queues: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(header_style="bold", box=None, pad_edge=False)
    table.add_column("queue", overflow="fold")
    table.add_column("versions")
    table.add_column("depth", justify="right")
    table.add_column("containers", justify="right")
    table.add_column("tasks")
    for item in queues:
        versions = Text(" ").join(_version(v, item.get("route_version")) for v in item["versions"])
        counts = Text()
        for status, count in (item.get("counts") or {}).items():
            if count:
                style = STATUS_STYLES.get(TaskStatus(status), "")
                counts.append(f"{status} {count}  ", style=style)
        table.add_row(
            item["name"],
            versions if versions.plain else "-",
            str(item.get("queue_depth", 0)),
            str(item.get("active_containers", 0)),
            counts if counts.plain else Text("-", style="dim"),
        )
    return table


def _version(version: Mapping[str, Any], route: int | None) -> Text:
    """``v2←`` for the version the unversioned route goes to; dim, with "(stopped)" or "(no
    agent)", for a version stopped or that no live agent runs."""
    text = Text(f"v{version['version']}" + ("←" if version["version"] == route else ""))
    if not version.get("active", True):
        text.append(" (stopped)")
        text.stylize("dim")
    elif not version.get("agents"):
        text.append(" (no agent)")
        text.stylize("dim")
    return text


def local_times(times: Sequence[str], timezone: str | None) -> str:
    """ISO 8601 instants as a schedule's clock shows them: ``2026-11-28 19:30 CET``."""
    zone = ZoneInfo(timezone or "UTC")
    shown = [datetime.fromisoformat(t).astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
             for t in times]
    return ", ".join(shown) or "-"


def next_ticks(cron: Cron, n: int = 3) -> str:
    """A schedule's next ``n`` ticks from now, in its time zone."""
    return local_times([iso(t) or "" for t in cron.after(to_us(time.time()), n)], cron.timezone)


def schedule_table(schedules: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(header_style="bold", box=None, pad_edge=False)
    table.add_column("schedule", overflow="fold")
    table.add_column("version")
    table.add_column("when")
    table.add_column("timezone")
    table.add_column("next", overflow="fold")
    table.add_column("last tick", overflow="fold")
    for item in schedules:
        last = item.get("last_tick")
        if last is None:
            shown = Text("-", style="dim")
        else:
            shown = Text(local_times([last["at"]], item.get("timezone")))
            if last.get("catch_up"):
                shown.append(" catch-up", style="yellow")
            task_id = last.get("task_id")
            shown.append(f" task {task_id}" if task_id else " no task (pending limit)",
                         style="" if task_id else "red")
        table.add_row(
            item["name"],
            f"v{item['version']}",
            str(item.get("when") or "-"),
            str(item.get("timezone") or "-"),
            local_times(item.get("next") or [], item.get("timezone")),
            shown,
        )
    return table


def deployment_table(versions: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(header_style="bold", box=None, pad_edge=False)
    for column in ("queue", "version", "state", "kind", "agents", "created", "stub"):
        table.add_column(column, overflow="fold", justify="right" if column == "agents" else "left")
    for v in versions:
        state = Text("active", style="green") if v["active"] else Text("stopped", style="dim")
        kind = "served" if str(v["type"]).endswith("serve") else "deployed"
        table.add_row(v["name"], f"v{v['version']}", state, kind, str(v["agents"]),
                      short_time(v["created_at"]), v["stub_id"])
    if not versions:
        table.add_row(Text("no version deployed yet", style="dim"), *[""] * 6)
    return table


# -- waiting -----------------------------------------------------------------------------------


def follow_task(
    client: Client, task_id: str, timeout: float | None, console: Console
) -> dict[str, Any]:
    """The task once terminal, with a live status line meanwhile; ``WaitTimeout`` after
    ``timeout`` seconds."""
    started = time.monotonic()
    status = "PENDING"
    with console.status(f"task {task_id}") as line:
        for (task,) in _polled(lambda: [client.task(task_id)], timeout):
            status = task["status"]
            if is_terminal(TaskStatus(status)):
                return task
            elapsed = f"  {time.monotonic() - started:.0f} s"
            line.update(Text.assemble(f"task {task_id} ", status_text(status), elapsed))
    raise WaitTimeout(f"task {task_id} is still {status} after {timeout} s")


def wait_tasks(
    client: Client, task_ids: Sequence[str], timeout: float | None, console: Console
) -> tuple[dict[str, dict[str, Any]], bool]:
    """Poll every task until all are terminal, with a progress bar over them.

    Returns the last JSON of each task and whether they all became terminal in time.
    """
    latest: dict[str, dict[str, Any]] = {}
    waiting = list(dict.fromkeys(task_ids))

    def poll() -> list[dict[str, Any]]:
        nonlocal waiting
        latest.update((task_id, client.task(task_id)) for task_id in waiting)
        waiting = [i for i in waiting if not is_terminal(TaskStatus(latest[i]["status"]))]
        return [latest[i] for i in waiting]

    progress = Progress(
        TextColumn("waiting for tasks"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    )
    with progress:
        bar = progress.add_task("tasks", total=len(waiting))
        for _ in _polled(poll, timeout):
            progress.update(bar, completed=len(latest) - len(waiting))
            if not waiting:
                return latest, True
    return latest, False


def _polled(
    poll: Callable[[], list[dict[str, Any]]], timeout: float | None
) -> Iterator[list[dict[str, Any]]]:
    """``poll()`` now, then again and again, sooner at first, until ``timeout`` has passed
    (polling, not the event stream: it also sees agents in other processes at once)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    interval = POLL_START_S
    while True:
        yield poll()
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return
        time.sleep(interval if remaining is None else min(interval, remaining))
        interval = min(POLL_CAP_S, interval * 1.5)
